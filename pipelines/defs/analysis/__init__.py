"""Analysis: exposure windows and associations."""
