"""Dagster wiring, one folder per domain (assets.py, checks.py), found by `dg.load_defs`."""
