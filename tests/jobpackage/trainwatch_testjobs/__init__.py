"""Training functions of a team's package, for the test suite (see pyproject.toml)."""
