"""Ingest: one asset per source in sources.yaml, files -> staging table."""
