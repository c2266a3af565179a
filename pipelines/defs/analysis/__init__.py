"""Analysis: exposure windows, associations and the daily-outcome effects."""
