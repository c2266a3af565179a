"""Canonical tables: the staging rows of every source in one table per target, and `persons`."""
