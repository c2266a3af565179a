"""Generic lab-result CSV (format `csv`, kind labs): patient-portal and lab exports.

Lab CSVs have no standard, so `columns:` in sources.yaml maps the canonical fields to the file's
headers: `collected_at`, `marker` (the test name), `value`, `unit`, and optionally
`reference_range`, `flag` and `loinc`. A field without a mapping is looked up under common header
names (Date, Collected, Test, Result, Units, ...). The person comes from `person:`.

Dates are parsed with `datetime_format` / `date_format` (strptime syntax) when given, and ISO 8601
is always accepted; any other shape is rejected with a reason asking for date_format, because
07/11/2024 is July in one country and November in the next; a file whose dates disprove the
configured order (11/27/2024 with "%d/%m/%Y") is refused whole, naming the format to set.
Results may be censored ("<0.3", "> 150", "<=0.2": the bound is kept with censored "<" or ">");
text results ("CANCELLED", "TNP") are rejected. Markers and units are then mapped by
`pipelines.transforms.labs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipelines.adapters._csv import (
    LINE,
    RAW,
    CsvTable,
    cell,
    date_reason,
    extra_fields_check,
    file_index_schema,
    not_a_number_reason,
    parse_csv_batch,
    parse_datetime,
    per_file,
    person_column_check,
    read_csv_table,
    refuse_swapped_dates,
    split_rejects,
)
from pipelines.adapters.base import AdapterError, BatchResult, ParseResult
from pipelines.config import SourceConfig
from pipelines.lab_vocabulary import CENSORED, LOW_BOUND, reference_range_text
from pipelines.rules import Check
from pipelines.schema import REJECT_SCHEMA, conform
from pipelines.text import number
from pipelines.transforms.labs import LabTableError, normalise_lab_rows, on_distinct

# Header names tried, in order, for a field that `columns:` does not map.
DEFAULT_HEADERS: dict[str, tuple[str, ...]] = {
    "collected_at": (
        "Collected",
        "Collection Date",
        "Collected At",
        "Date Collected",
        "Collection Date/Time",
        "Collection Time",
        "Specimen Collected",
        "Draw Date",
        "Date",
        "Date/Time",
    ),
    "marker": ("Test", "Test Name", "Component", "Analyte", "Observation"),
    "value": ("Result", "Value", "Result Value"),
    "unit": ("Units", "Unit", "UOM"),
    "reference_range": ("Reference Range", "Range", "Ref Range", "Reference Interval"),
    "flag": ("Flag", "Abnormal Flag", "Abnormal"),
    "loinc": ("LOINC", "LOINC Code", "Loinc Num"),
}
REQUIRED = ("collected_at", "marker", "value")


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one lab-result CSV; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _results(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many lab CSVs at once, exactly as `parse` one by one would (`parse_csv_batch`): a
    portal download is many small files, and per file the expressions and the marker mapping
    cost far more than the rows."""
    return parse_csv_batch(paths, source, _results)


def _results(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in LAB_RESULT_SCHEMA, rejects) for one file or a stack of files (then both with
    FILE_INDEX), so `parse` and `parse_batch` cannot drift apart."""
    source, path = table.source, table.path
    unknown = sorted(set(source.columns) - set(DEFAULT_HEADERS))
    if unknown:
        extra = (
            " (the person column is set with person: {column: ...})"
            if any(k in ("person", "person_id", "patient") for k in unknown)
            else ""
        )
        raise AdapterError(
            f"{path}: source {source.name!r} maps unknown key(s) {unknown} in 'columns'; "
            f"known keys: {list(DEFAULT_HEADERS)}{extra}."
        )

    found = table.mapped(DEFAULT_HEADERS, REQUIRED)
    person, person_check = person_column_check(table)

    def text(key: str) -> pl.Expr:
        return pl.col(cell(found[key])) if key in found else pl.lit(None, dtype=pl.String)

    def header(key: str) -> str:
        return table.headers[found[key]] if key in found else key

    # Dates
    date_raw = text("collected_at")
    if "collected_at" in found:
        refuse_swapped_dates(table, date_raw, header("collected_at"))
    formats = [f for f in (source.datetime_format, source.date_format) if f]
    # Parsed once into columns (see `parsed` below): the checks and the output read them, and an
    # expression used twice is computed twice.
    collected = pl.col("__collected")

    # Results: an optional comparator, then a number in the source's decimal convention.
    value_raw = text("value")
    parts = value_raw.str.extract_groups(CENSORED)
    comparator = parts.struct.field("1")
    number_text = pl.col("__number_text")
    value = pl.col("__value")
    low_text, high_text = reference_range_text(text("reference_range"))
    parsed = [pl.coalesce(parts.struct.field("2"), value_raw).alias("__number_text")]
    # Dates and ranges repeat (a draw's time on each of its results, a test's range on each of its
    # rows), so they are parsed once per distinct text; without a range column they are null.
    by_text = [("collected_at", parse_datetime(date_raw, formats), "__collected")]
    if "reference_range" in found:
        by_text += [("reference_range", low_text, "__ref_low")]
        by_text += [("reference_range", high_text, "__ref_high")]
    else:
        parsed += [low_text.alias("__ref_low"), high_text.alias("__ref_high")]
    censored = (
        pl.when(comparator.is_in(LOW_BOUND))
        .then(pl.lit(">"))
        .when(comparator.is_not_null())
        .then(pl.lit("<"))
    )

    checks: list[Check] = [extra_fields_check(table)]
    if person_check is not None:
        checks.append(person_check)
    checks += [
        Check(
            date_raw.is_null(),
            header("collected_at"),
            pl.lit(f"collection date ({header('collected_at')}) is blank"),
        ),
        Check(
            collected.is_null(),
            header("collected_at"),
            date_reason(date_raw, source.date_format, source.datetime_format),
            date_raw,
        ),
        Check(value_raw.is_null(), header("value"), pl.lit("result is blank")),
        Check(
            value.is_null(),
            header("value"),
            not_a_number_reason(source.decimal, "no numeric result", number_text),
            value_raw,
        ),
    ]
    frame = table.frame
    for key, expr, alias in by_text:
        frame = on_distinct(frame, cell(found[key]), expr, alias)
    frame = frame.with_columns(parsed).with_columns(
        number(number_text, source.decimal)[0].alias("__value")
    )
    good, rejects = split_rejects(frame, checks)
    carried = per_file(table.frame)

    low, _ = number(pl.col("__ref_low"), source.decimal)
    high, _ = number(pl.col("__ref_high"), source.decimal)
    rows = good.select(
        person.alias("person_id"),
        collected.alias("collected_at"),
        text("marker").alias("test_name_raw"),
        text("loinc").alias("loinc"),
        value.alias("value"),
        censored.alias("censored"),
        value_raw.alias("value_raw"),
        text("unit").alias("unit_raw"),
        low.alias("ref_low"),
        high.alias("ref_high"),
        text("flag").alias("flag"),
        pl.col(LINE).alias("line"),
        pl.col(RAW).alias("raw"),
        *carried,
    )
    try:
        loaded, unmapped = normalise_lab_rows(
            rows,
            {
                "test_name_raw": header("marker"),
                "value": header("value"),
                "unit_raw": header("unit"),
            },
            crp_method=source.crp_method,
            carry=carried,
        )
    except LabTableError as exc:
        raise AdapterError(f"{path}: cannot map lab results: {exc}") from exc
    reject_schema = {**REJECT_SCHEMA, **file_index_schema(table.frame)}
    all_rejects = pl.concat([conform(rejects, reject_schema), unmapped], how="vertical").sort(
        [*carried, "line"], maintain_order=True
    )
    return loaded, all_rejects
