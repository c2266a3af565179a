"""FHIR R4 Observations (format `fhir`, kind labs): Bundle, single resource, JSON array or NDJSON.

Accepted shapes, detected from the content (not the file name):
- a single resource (`{"resourceType": "Observation", ...}`), as in Apple Health's clinical-records
  export (one resource per file);
- a `Bundle` (`entry[].resource`), as from a patient portal or Synthea's FHIR output;
- a JSON array of resources;
- NDJSON (one resource per line, blank lines ignored), as from FHIR Bulk Data export. A Bundle on
  an NDJSON line is read too.

What a row is (`rows_read`): an Observation resource, or something that should be a resource but
cannot be identified (an NDJSON line that is not valid JSON, a Bundle entry without a resource);
those are rejected, so a damaged Observation is never lost silently. Other resource types (Patient,
Condition, DiagnosticReport, ...) are not data rows of a labs source: they are skipped and not
counted. A file holding only other resource types therefore reads as zero rows.

`line` is the physical line for NDJSON, the 1-based entry number for a Bundle (entry `entry[3]` in
the JSON path is line 4) or array, and 1 for a single resource. A rejected row's `column` is the
JSON path of the offending field, e.g. `entry[3].resource.valueQuantity.value`.

Fields read from an Observation:
- `code.coding[]`: the LOINC coding (system http://loinc.org; a code known to markers.csv is
  preferred when there are several) gives `loinc`; `code.text`, else that coding's `display`, else
  any coding's display, gives `test_name_raw`. The code maps the marker first (every code of
  markers.csv, e.g. leukocytes as 26464-8 in `/nL` from the German MII profiles); the name is only
  the fallback, so an Observation with a LOINC code and no display or text loads.
- `effectiveDateTime`, else `effectivePeriod.start`, else `effectiveInstant`, else `issued` gives
  `collected_at`. A UTC offset is dropped (the wall-clock time the lab printed, as in lab_csv);
  partial dates (`2024-03`) are rejected.
- `valueQuantity`: `value`, `comparator` (`<`, `<=` -> censored "<"; `>`, `>=` -> ">") and the
  unit: UCUM `code` when present (and the quantity's system is UCUM or absent), else `unit`.
  `valueString` ("<0.3", "5.2") is parsed like a lab CSV cell, with the unit of the reference
  range (a string has none of its own); `valueInteger` is a number; any other value (text,
  CodeableConcept, dataAbsentReason) is rejected as "no numeric result".
- `referenceRange[0]`: `low.value` / `high.value`, else its `text` ("0.0-3.0"); unreadable ranges
  stay null (context, not a result).
- `interpretation[0]`: the first coding's code (e.g. "H"), else its text, gives `flag`.
- `status` entered-in-error or cancelled: rejected ("status cancelled").
- person: `person:` in sources.yaml when it is a fixed id or from_folder; otherwise (person:
  {column: subject}) the id in `subject.reference`: "Patient/123" -> "123", "urn:uuid:abc" -> "abc".

Markers and units are then mapped by `pipelines.transforms.labs.normalise_lab_rows`. A rejected
non-marker Observation keeps a short `raw` (code and name), others their compact JSON.

The flow: fhir_items.py reads the file into counted items, fhir_observation.py turns each
Observation into row fields, and this module maps markers and units and gathers the rejects.
`parse_batch` does that for many files with one marker mapping; `parse` is it for one file.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.adapters.base import FILE_INDEX, AdapterError, BatchResult, ParseResult
from pipelines.adapters.fhir_items import Item, file_items, item_raw, read_text
from pipelines.adapters.fhir_observation import Reject, observation
from pipelines.config import SourceConfig
from pipelines.lab_vocabulary import CENSORED, LOW_BOUND, reference_range
from pipelines.schema import LAB_RESULT_SCHEMA, REJECT_SCHEMA, conform, empty
from pipelines.text import format_text, number
from pipelines.transforms.labs import LabTableError, lab_tables, normalise_lab_rows

# Marker names given to normalise_lab_rows for its reject `column`, mapped back to JSON paths.
_CODE, _VALUE, _UNIT = "@code", "@value", "@unit"
# A Polars (Rust) panic is a BaseException; KeyboardInterrupt and SystemExit must still stop a run.
_FAILURES = (Exception, pl.exceptions.PanicException)
_ROW_SCHEMA = {**LAB_RESULT_SCHEMA, FILE_INDEX: pl.Int64}
_REJECT_SCHEMA = {**REJECT_SCHEMA, FILE_INDEX: pl.Int64}


@dataclass
class _Rows:
    """Columns of a frame being built, one entry per counted item."""

    values: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, **cells: Any) -> None:
        for key, value in cells.items():
            self.values.setdefault(key, []).append(value)

    def extend(self, other: _Rows) -> None:
        for key, values in other.values.items():
            self.values.setdefault(key, []).extend(values)

    @staticmethod
    def joined(parts: Iterable[_Rows]) -> _Rows:
        rows = _Rows()
        for part in parts:
            rows.extend(part)
        return rows


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one FHIR JSON or NDJSON file; see the module docstring. It is `parse_batch` of the
    file alone, so reading one file and reading many cannot drift apart."""
    batch = parse_batch([path], source)
    if 0 in batch.errors:
        raise batch.errors[0]
    return ParseResult(
        rows=batch.rows.drop(FILE_INDEX),
        rejects=batch.rejects.drop(FILE_INDEX),
        rows_read=batch.rows_read[0],
    )


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many FHIR files at once (see `Format.parse_batch`): a patient portal or Apple Health
    gives one small file per resource or report, and per file the marker mapping (a few queries,
    its patterns compiled) costs far more than its Observations. Each file is decoded and its
    Observations read on their own (JSON has no layout to share); marker mapping then runs once
    for all of them, deciding the CRP method within each file, as for one file."""
    rows_read = [0] * len(paths)
    errors: dict[int, BaseException] = {}
    try:
        # LOINC codes of markers.csv, to pick the right coding when a code lists several.
        known_loincs = set(lab_tables().by_loinc.to_series(0).drop_nulls().to_list())
        tables_error: LabTableError | None = None
    except LabTableError as exc:
        known_loincs, tables_error = set(), exc
    items: list[Item] = []  # every counted item of the batch, indexed by the `item` columns
    early = _Rows()  # rejected before marker mapping
    candidates: dict[int, _Rows] = {}  # per file: the rows handed to normalise_lab_rows
    for i, path in enumerate(paths):
        # A file's items are gathered apart and kept only if all of them could be read, so a
        # failing file leaves nothing behind in the batch.
        file_early, file_candidates = _Rows(), _Rows()
        try:
            read = _file_items(path, source)
            if tables_error is not None:
                raise AdapterError(f"{path}: cannot map lab results: {tables_error}")
            fixed_person = source.person.for_file(path)
            for n, item in enumerate(read):
                at = len(items) + n
                _read_item(item, i, at, fixed_person, known_loincs, file_early, file_candidates)
        except _FAILURES as exc:
            errors[i] = exc
            continue
        items += read
        rows_read[i] = len(read)
        early.extend(file_early)
        if file_candidates.values:
            candidates[i] = file_candidates

    try:
        rows, rejects = _normalise(_Rows.joined(candidates.values()), source, items)
    except _FAILURES:
        # Marker mapping failed on the batch: each file alone, so that a failure stays with its
        # own file, with the message `parse` gives it.
        rows, rejects = _normalise_each(candidates, source, items, paths, errors)
    for i in errors:
        rows_read[i] = 0
    if len(errors) == len(paths):
        # As `parse_each` gives when no file could be read.
        return BatchResult(pl.DataFrame(), pl.DataFrame(), rows_read, errors)
    early_rejects = (
        conform(pl.DataFrame(early.values), _REJECT_SCHEMA)
        if early.values
        else empty(_REJECT_SCHEMA)
    )
    rejects = pl.concat([early_rejects, rejects], how="vertical")
    failed = pl.col(FILE_INDEX).is_in(list(errors))
    return BatchResult(
        rows=rows.filter(~failed).sort(FILE_INDEX, "line", maintain_order=True),
        rejects=rejects.filter(~failed).sort(FILE_INDEX, "line", maintain_order=True),
        rows_read=rows_read,
        errors=errors,
    )


def _normalise_each(
    candidates: dict[int, _Rows],
    source: SourceConfig,
    items: list[Item],
    paths: Sequence[Path],
    errors: dict[int, BaseException],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`_normalise` file by file, failures into `errors` (broken marker tables as the
    AdapterError naming the file that `parse` raises)."""
    outputs = []
    for i, rows in candidates.items():
        try:
            outputs.append(_normalise(rows, source, items))
        except LabTableError as exc:
            errors[i] = AdapterError(f"{paths[i]}: cannot map lab results: {exc}")
        except _FAILURES as exc:
            errors[i] = exc
    if not outputs:
        return empty(_ROW_SCHEMA), empty(_REJECT_SCHEMA)
    return (
        pl.concat([r for r, _ in outputs], how="vertical"),
        pl.concat([r for _, r in outputs], how="vertical"),
    )


def _file_items(path: Path, source: SourceConfig) -> list[Item]:
    """The counted items of one file, or AdapterError naming it."""
    if source.columns:
        raise AdapterError(
            f"{path}: source {source.name!r} sets 'columns', but format fhir reads the FHIR "
            "fields themselves; remove 'columns' from the source in sources.yaml."
        )
    text = read_text(path, source)
    if not text.strip():
        raise AdapterError(
            f"{path}: the file is empty. Export it again, or remove it from data/raw/ if it is "
            "not meant to be loaded."
        )
    return list(file_items(path, text))


def _read_item(
    item: Item,
    file: int,
    index: int,
    fixed_person: str | None,
    known_loincs: set[str],
    early: _Rows,
    candidates: _Rows,
) -> None:
    """One counted item of file number `file` (item number `index` of the batch) into `early`
    (rejected now) or `candidates` (row fields for marker mapping)."""
    if item.error is not None:
        early.add(
            line=item.line,
            column=item.error[0],
            reason=item.error[1],
            value=item.error_value,
            raw=item_raw(item),
            **{FILE_INDEX: file},
        )
        return
    try:
        fields = observation(item.resource, fixed_person, known_loincs)
    except Reject as rej:
        early.add(
            line=item.line,
            column=item.prefix + rej.path,
            reason=rej.reason,
            value=rej.value,
            raw=item_raw(item),
            **{FILE_INDEX: file},
        )
        return
    except (
        TypeError,
        ValueError,
        AttributeError,
        KeyError,
        IndexError,
        ArithmeticError,
        RecursionError,
    ) as exc:
        # A safety net: a shape no rule above foresaw still becomes a reject, not a crash.
        early.add(
            line=item.line,
            column=item.prefix.rstrip(".") or None,
            reason=f"Observation could not be read ({type(exc).__name__})",
            value=str(exc),
            raw=item_raw(item),
            **{FILE_INDEX: file},
        )
        return
    candidates.add(line=item.line, prefix=item.prefix, item=index, **fields, **{FILE_INDEX: file})


# ---- marker mapping ----------------------------------------------------------------------------

_CANDIDATE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "line": pl.Int64,
    "prefix": pl.String,
    "item": pl.Int64,
    "person_id": pl.String,
    "collected_at": pl.Datetime("us"),
    "date_path": pl.String,
    "loinc": pl.String,
    "test_name_raw": pl.String,
    "number": pl.Float64,
    "value_text": pl.String,
    "comparator": pl.String,
    "value_raw": pl.String,
    "value_path": pl.String,
    "unit_raw": pl.String,
    "unit_path": pl.String,
    "ref_low": pl.Float64,
    "ref_high": pl.Float64,
    "ref_text": pl.String,
    "flag": pl.String,
    FILE_INDEX: pl.Int64,
}


def _normalise(
    rows: _Rows, source: SourceConfig, items: list[Item]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse text values, then map markers and units (LabTableError when the tables are broken);
    rejects get JSON paths as their column. Both outputs keep FILE_INDEX; `items` are the batch's
    counted items, which the `item` column indexes."""
    if not rows.values:
        return empty(_ROW_SCHEMA), empty(_REJECT_SCHEMA)
    frame = pl.DataFrame(rows.values, schema=_CANDIDATE_SCHEMA).with_row_index("__key")

    # Text values ("<0.3", "5.2") are read exactly like a lab CSV cell.
    parts = pl.col("value_text").str.extract_groups(CENSORED)
    text_comparator = parts.struct.field("1")
    parsed, _ = number(pl.coalesce(parts.struct.field("2"), pl.col("value_text")), source.decimal)
    comparator = pl.coalesce(pl.col("comparator"), text_comparator)
    text_low, text_high = reference_range(pl.col("ref_text"), source.decimal)
    work = frame.with_columns(
        pl.coalesce(pl.col("number"), parsed).alias("value"),
        pl.when(comparator.is_in(list(LOW_BOUND)))
        .then(pl.lit(">"))
        .when(comparator.is_not_null())
        .then(pl.lit("<"))
        .alias("censored"),
        pl.when(pl.col("ref_low").is_null() & pl.col("ref_high").is_null())
        .then(text_low)
        .otherwise(pl.col("ref_low"))
        .alias("ref_low"),
        pl.when(pl.col("ref_low").is_null() & pl.col("ref_high").is_null())
        .then(text_high)
        .otherwise(pl.col("ref_high"))
        .alias("ref_high"),
        # normalise_lab_rows sees the row key as `line`, so its rejects can be traced back.
        pl.col("__key").cast(pl.Int64).alias("line"),
    )
    loaded, unmapped = normalise_lab_rows(
        work,
        {"test_name_raw": _CODE, "value": _VALUE, "unit_raw": _UNIT},
        crp_method=source.crp_method,
        carry=[FILE_INDEX],  # the CRP method is decided within each file
    )

    meta = frame.select(
        pl.col("__key").cast(pl.Int64),
        pl.col("line").alias("__line"),
        "prefix",
        "value_path",
        "unit_path",
        "item",
        format_text("{} {}", pl.col("loinc").fill_null("-"), pl.col("test_name_raw").fill_null(""))
        .str.strip_chars()
        .alias("__short"),
    )
    loaded = loaded.join(
        meta, left_on="line", right_on="__key", how="left", maintain_order="left"
    ).with_columns(pl.col("__line").alias("line"))
    column = pl.col("column")
    rejects = unmapped.join(
        meta, left_on="line", right_on="__key", how="left", maintain_order="left"
    ).select(
        pl.col("__line").alias("line"),
        pl.when(column == _CODE)
        .then(pl.col("prefix") + "code")
        .when(column == _VALUE)
        .then(pl.col("prefix") + pl.col("value_path"))
        .when(column == _UNIT)
        .then(pl.col("prefix") + pl.col("unit_path"))
        .otherwise(column)
        .alias("column"),
        "reason",
        "value",
        (column == _CODE).alias("__is_code"),
        "__short",
        "item",
        FILE_INDEX,
    )
    # Not-a-marker rejects (most of a Synthea or Apple Health file) keep only "LOINC name"; the
    # few others get the resource's JSON, built only for them.
    raw = [
        short if is_code else item_raw(items[item])
        for is_code, short, item in rejects.select("__is_code", "__short", "item").iter_rows()
    ]
    rejects = rejects.with_columns(pl.Series("raw", raw, dtype=pl.String))
    return conform(loaded, _ROW_SCHEMA), conform(rejects, _REJECT_SCHEMA)
