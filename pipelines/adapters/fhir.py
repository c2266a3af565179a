"""Placeholder: being written. Registered in pipelines/adapters/__init__.py."""

from pathlib import Path

from pipelines.adapters.base import AdapterError, ParseResult
from pipelines.config import SourceConfig


def parse(path: Path, source: SourceConfig) -> ParseResult:
    raise AdapterError(f"{path}: the fhir format is not available yet")
