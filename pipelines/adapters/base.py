"""What every adapter returns, and the error it raises when a file cannot be read at all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.config import SourceConfig


@dataclass
class ParseResult:
    """What an adapter read from one file.

    `rows` has the canonical schema of the source's kind (`pipelines.schema`), including `line`, the
    1-based physical line of the file where the row starts. `rejects` has REJECT_SCHEMA.
    `rows_read` counts data rows seen, so rows_read == len(rows) + len(rejects).
    """

    rows: pl.DataFrame
    rejects: pl.DataFrame
    rows_read: int


class AdapterError(Exception):
    """The file cannot be read at all (wrong encoding, missing required column, ...)."""


@dataclass(frozen=True)
class Format:
    """A registered file format: the source kinds it can feed and its parse function."""

    kinds: tuple[str, ...]
    parse: Callable[[Path, SourceConfig], ParseResult]
