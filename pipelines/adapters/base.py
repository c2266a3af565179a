"""What every adapter returns, and the error it raises when a file cannot be read at all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipelines.config import SourceConfig

DEFAULT_TARGET = {"diet": "diet_entries", "labs": "lab_results", "persons": "persons"}


@dataclass
class ParseResult:
    """What an adapter read from one file.

    `rows` has the schema of the source's target table (`pipelines.schema.TARGET_SCHEMAS`),
    including `line`, the 1-based physical line of the file where the row starts (for formats
    without lines, such as XPT or JSON, the 1-based record number). `rejects` has REJECT_SCHEMA.
    `rows_read` counts data rows seen, so rows_read == len(rows) + len(rejects).
    """

    rows: pl.DataFrame
    rejects: pl.DataFrame
    rows_read: int


class AdapterError(Exception):
    """The file cannot be read at all (wrong encoding, missing required column, ...)."""


def _default_target(source: SourceConfig) -> str:
    return DEFAULT_TARGET[source.kind]


@dataclass(frozen=True)
class Format:
    """A registered file format.

    `kinds` are the source kinds it can feed; `target` names the canonical table a configured
    source of this format writes (known before any file is read, so Dagster's asset graph can
    be built from sources.yaml alone).
    """

    kinds: tuple[str, ...]
    parse: Callable[[Path, SourceConfig], ParseResult]
    target: Callable[[SourceConfig], str] = field(default=_default_target)
