"""Automation: the `refresh_all` job, the nightly schedule and the new-file sensor."""
