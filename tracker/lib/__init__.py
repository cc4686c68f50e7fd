"""Pure helpers of the tracker (no Django, no database): the bottom layer."""
