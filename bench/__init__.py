"""Benchmarks: each script prints its figures and ends with one name=value line (README, Performance)."""
