"""What every adapter returns, and the error it raises when a file cannot be read at all."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from pipelines.config import SourceConfig

if TYPE_CHECKING:
    from pipelines.adapters._csv import CsvTable
    from pipelines.rules import Check

# Daily outcomes (symptoms, wearable signals) share `biometrics` with Cronometer's biometrics: one
# table of a person's dated readings, so that a resting heart rate is one series whichever app
# measured it.
DEFAULT_TARGET = {
    "diet": "diet_entries",
    "labs": "lab_results",
    "persons": "persons",
    "outcomes": "biometrics",
}


@dataclass
class ParseResult:
    """What an adapter read from one file.

    `rows` has the schema of the source's target table (`pipelines.schema.TARGET_SCHEMAS`),
    including `line`, the 1-based physical line of the file where the row starts (for formats
    without lines, such as XPT or JSON, the 1-based record number). `rejects` has REJECT_SCHEMA.
    `rows_read` counts input lines (data rows) seen, so rows_read == lines_of(rows) +
    len(rejects): a row that stands for several lines (a day summed from meal rows, see
    `input_lines` in DIET_REPORTED_SCHEMA) counts each of them.
    """

    rows: pl.DataFrame
    rejects: pl.DataFrame
    rows_read: int


def lines_of(rows: pl.DataFrame) -> int:
    """The input lines `rows` stand for: one per row, or each row's `input_lines` when given."""
    if "input_lines" not in rows.columns:
        return rows.height
    return int(rows.select(pl.col("input_lines").fill_null(1).sum()).item())


class AdapterError(Exception):
    """The file cannot be read at all (wrong encoding, missing required column, ...)."""


FILE_INDEX = "__file"


@dataclass
class BatchResult:
    """What an adapter read from several files at once (see `Format.parse_batch`).

    `rows` and `rejects` are the per-file `ParseResult` frames of every file that could be read,
    stacked, each with an extra Int64 column FILE_INDEX: the file's position in the list of paths
    given. Within a file, rows keep their order. `rows_read[i]` is the i-th file's `rows_read` (0
    for a file in `errors`); `errors[i]` is the exception that stopped the i-th file (an
    AdapterError for a file that cannot be read, anything else for a bug in the adapter).
    """

    rows: pl.DataFrame
    rejects: pl.DataFrame
    rows_read: list[int]
    errors: dict[int, BaseException]


ParseFn = Callable[[Path, SourceConfig], ParseResult]
BatchFn = Callable[[Sequence[Path], SourceConfig], BatchResult]
# How a CSV format's table transform gets its rows' person ids: the expression and the check
# rejecting blank ids (`_csv.person_column_check`, or `diet_csv.person_id`).
PersonRule = Callable[["CsvTable"], "tuple[pl.Expr, Check | None]"]


def parse_each(parse: ParseFn, paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """A BatchResult from calling `parse` once per file: right for every format, and what formats
    without a faster batch reader use. One file's failure never stops the others."""
    rows: list[pl.DataFrame] = []
    rejects: list[pl.DataFrame] = []
    rows_read = [0] * len(paths)
    errors: dict[int, BaseException] = {}
    for i, path in enumerate(paths):
        try:
            result = parse(path, source)
        # A Polars (Rust) panic is a BaseException, so it is named explicitly; KeyboardInterrupt
        # and SystemExit still stop the run.
        except (Exception, pl.exceptions.PanicException) as exc:
            errors[i] = exc
            continue
        rows_read[i] = result.rows_read
        index = pl.lit(i, dtype=pl.Int64).alias(FILE_INDEX)
        rows.append(result.rows.with_columns(index))
        rejects.append(result.rejects.with_columns(index))
    return BatchResult(
        rows=pl.concat(rows, how="vertical_relaxed") if rows else pl.DataFrame(),
        rejects=pl.concat(rejects, how="vertical_relaxed") if rejects else pl.DataFrame(),
        rows_read=rows_read,
        errors=errors,
    )


def _default_target(source: SourceConfig) -> str:
    return DEFAULT_TARGET[source.kind]


@dataclass(frozen=True)
class Format:
    """A registered file format.

    `kinds` are the source kinds it can feed; `target` names the canonical table a configured
    source of this format writes (known before any file is read, so Dagster's asset graph can
    be built from sources.yaml alone). `batch`, when a format has one, reads many files in one
    pass and must give exactly what `parse_each(parse, ...)` gives: per-file work (building
    expressions, compiling patterns, starting a query) costs more than a small file's rows, and a
    nightly run adds many small files. `person_in_file` is True for formats whose files name
    their own people (FHIR subject, Synthea PATIENT, NHANES SEQN): a source of such a format
    without a `person` key takes the ids from there, any other from its folder names.

    `kinds` and `person_in_file` are what sources.yaml is checked against
    (`pipelines.config.FormatFacts`).

    `person_rule`, for a CSV format, gives the `PersonRule` its table transform calls for a
    source, so a file's people can be read from its person column alone (`person_ids`, for the
    new-file sensor). None: only the whole parse tells (FHIR subjects, NHANES SEQN, Synthea).
    """

    kinds: tuple[str, ...]
    parse: ParseFn
    target: Callable[[SourceConfig], str] = field(default=_default_target)
    batch: BatchFn | None = None
    person_in_file: bool = False
    person_rule: Callable[[SourceConfig], PersonRule] | None = None

    def parse_batch(self, paths: Sequence[Path], source: SourceConfig) -> BatchResult:
        if self.batch is not None:
            return self.batch(paths, source)
        return parse_each(self.parse, paths, source)


_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_file_text(
    path: Path,
    source: SourceConfig,
    unknown_hint: str,
    invalid_hint: str,
    check: Callable[[bytes, str], None] | None = None,
) -> str:
    """The text of `path` in the source's encoding, without a byte-order mark.

    A byte-order mark says what the file is; trusting it over the configuration is never a guess.
    `check(data, codec)` may reject the bytes before they are decoded. Every error names the file
    (and the line of an invalid byte); the hints say what to do, per format."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AdapterError(f"{path}: cannot be opened ({exc.strerror or exc}).") from exc
    try:
        codec = codecs.lookup(source.encoding).name
    except LookupError as exc:
        raise AdapterError(
            f"{path}: unknown encoding {source.encoding!r} (key 'encoding' of source "
            f"{source.name!r}); {unknown_hint}"
        ) from exc
    if data.startswith(_UTF8_BOM):
        codec = "utf-8-sig"
    elif data.startswith(_UTF16_BOMS):
        codec = "utf-16"
    if check is not None:
        check(data, codec)
    try:
        return data.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AdapterError(
            f"{path}: cannot be read as {source.encoding} (invalid byte at line {line}). "
            f"{invalid_hint}"
        ) from exc
