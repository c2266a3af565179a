"""Transforms: pure Polars functions from canonical rows to derived tables."""
