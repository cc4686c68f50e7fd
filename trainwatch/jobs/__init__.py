"""Training functions registered as entry points of Trainwatch's own package (see pyproject.toml)."""
