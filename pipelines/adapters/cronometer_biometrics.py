"""Cronometer biometrics export: one row per reading (table `biometrics`).

Seen header: `Day,Time,Group,Metric,Unit,Amount` (e.g. `2026-01-05,07:30,,Weight,lbs,212.5`).
Day, Metric and Amount are required, Time and Unit are used when present, other columns ignored.

- `metric` is the Metric in snake case without parenthesised parts: "Weight" -> `weight`,
  "Body Fat" -> `body_fat`, "Blood Pressure (mmHg)" -> `blood_pressure`.
- Values are converted to a canonical unit when the unit is known (`UNITS` below): lbs -> kg
  (x 0.45359237), stone -> kg, inches -> cm, °F -> °C; other units are kept as written. The cell
  and unit as written stay in `value_raw` and `unit_raw`.
- Blood pressure is written as one reading "120/80". The row stays ONE row (so that every
  physical row is one loaded or one rejected row): metric `blood_pressure_systolic`, value = the
  systolic pressure, and the diastolic pressure is kept in `value_raw` ("120/80", split it with
  `split_part(value_raw, '/', 2)` in SQL). A metric that is already systolic or diastolic
  ("Blood Pressure Diastolic") is a plain number like any other.
- A non-numeric amount, a blood pressure that is not systolic/diastolic, a blank metric or a day
  that is not a date rejects the row, naming the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipelines.adapters._csv import (
    LINE,
    CsvTable,
    cell,
    extra_fields_check,
    file_index_schema,
    not_a_number_reason,
    parse_csv_batch,
    per_file,
    read_csv_table,
    split_rejects,
)
from pipelines.adapters.base import BatchResult, ParseResult
from pipelines.adapters.diet_csv import date_checks, date_expr, person_id, summary_row_check
from pipelines.adapters.signatures import refuse_other_format
from pipelines.config import SourceConfig
from pipelines.rules import Check
from pipelines.schema import BIOMETRIC_SCHEMA, REJECT_SCHEMA, conform
from pipelines.text import number

# Lower-cased unit as written -> (canonical unit, factor, offset): value = (raw + offset) * factor.
UNITS: dict[str, tuple[str, float, float]] = {
    "lbs": ("kg", 0.45359237, 0.0),
    "lb": ("kg", 0.45359237, 0.0),
    "pounds": ("kg", 0.45359237, 0.0),
    "pound": ("kg", 0.45359237, 0.0),
    "st": ("kg", 6.35029318, 0.0),
    "stone": ("kg", 6.35029318, 0.0),
    "kg": ("kg", 1.0, 0.0),
    "kgs": ("kg", 1.0, 0.0),
    "in": ("cm", 2.54, 0.0),
    "inch": ("cm", 2.54, 0.0),
    "inches": ("cm", 2.54, 0.0),
    "cm": ("cm", 1.0, 0.0),
    "°f": ("°C", 5.0 / 9.0, -32.0),
    "f": ("°C", 5.0 / 9.0, -32.0),
    "fahrenheit": ("°C", 5.0 / 9.0, -32.0),
    "°c": ("°C", 1.0, 0.0),
    "c": ("°C", 1.0, 0.0),
    "mmhg": ("mmHg", 1.0, 0.0),
    "bpm": ("bpm", 1.0, 0.0),
    "%": ("%", 1.0, 0.0),
}

_PAIR = r"^([0-9]+(?:[.,][0-9]+)?)\s*/\s*([0-9]+(?:[.,][0-9]+)?)$"
_HINT = (
    "Is this a Cronometer biometrics export (Export Data > Biometrics)? Export it again, or "
    "point the source at the right files."
)


def metric_name(raw: pl.Expr) -> pl.Expr:
    """Snake-case metric name: "Body Fat" -> body_fat, "Blood Pressure (mmHg)" -> blood_pressure."""
    return (
        raw.str.replace_all(r"\([^)]*\)", "")
        .str.to_lowercase()
        .str.replace_all(r"[^a-z0-9]+", "_")
        .str.strip_chars("_")
        .replace("", None)
    )


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one Cronometer biometrics export; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _readings(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many biometrics exports at once, exactly as `parse` one by one would
    (`parse_csv_batch`)."""
    return parse_csv_batch(paths, source, _readings)


def _readings(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in BIOMETRIC_SCHEMA, rejects) for one file or a stack of files (then both with
    FILE_INDEX): every row stands alone, so a stack needs nothing per file."""
    source = table.source
    refuse_other_format(table, "cronometer_biometrics")
    day_i = table.require(["Day", "Date"], _HINT)
    metric_i = table.require(["Metric"], _HINT)
    amount_i = table.require(["Amount", "Value"], _HINT)
    unit_i = table.find(["Unit", "Units"])
    time_i = table.find(["Time"])
    person, person_check = person_id(table)

    def optional(index: int | None) -> pl.Expr:
        return pl.lit(None, dtype=pl.String) if index is None else pl.col(cell(index))

    day_raw = pl.col(cell(day_i))
    day_name, metric_header = table.headers[day_i], table.headers[metric_i]
    amount_header = table.headers[amount_i]
    amount = pl.col(cell(amount_i))
    unit_raw = optional(unit_i)
    decimal = source.decimal

    metric = metric_name(pl.col(cell(metric_i)))
    is_bp = metric.is_in(["blood_pressure", "bp"]).fill_null(False)
    pair = amount.str.extract_groups(_PAIR)
    # The pair's parts are plain numbers; either separator is unambiguous inside "120/80".
    systolic = (
        pair.struct.field("1").str.replace(",", ".", literal=True).cast(pl.Float64, strict=False)
    )
    single, invalid = number(amount, decimal)
    raw_value = pl.when(is_bp).then(systolic).otherwise(single)

    unit_key = unit_raw.str.strip_chars().str.to_lowercase()
    conversion = unit_key.replace_strict(
        {k: v[0] for k, v in UNITS.items()}, default=None, return_dtype=pl.String
    )
    factor = unit_key.replace_strict(
        {k: v[1] for k, v in UNITS.items()}, default=1.0, return_dtype=pl.Float64
    )
    offset = unit_key.replace_strict(
        {k: v[2] for k, v in UNITS.items()}, default=0.0, return_dtype=pl.Float64
    )

    checks: list[Check] = [extra_fields_check(table), summary_row_check(day_raw, day_name)]
    if person_check is not None:
        checks.append(person_check)
    checks += date_checks(table, day_raw, day_name)
    checks += [
        Check(metric.is_null(), metric_header, pl.lit(f"{metric_header} is blank")),
        Check(amount.is_null(), amount_header, pl.lit(f"{amount_header} is blank")),
        Check(
            is_bp & systolic.is_null(),
            amount_header,
            pl.lit("blood pressure not written as systolic/diastolic (such as 120/80)"),
            amount,
        ),
        Check(~is_bp & invalid, amount_header, not_a_number_reason(decimal, cell=amount), amount),
    ]
    good, rejects = split_rejects(table.frame, checks)

    rows = good.select(
        person.alias("person_id"),
        date_expr(day_raw, source).alias("day"),
        optional(time_i).alias("time"),
        pl.when(is_bp).then(pl.lit("blood_pressure_systolic")).otherwise(metric).alias("metric"),
        ((raw_value + offset) * factor).alias("value"),
        pl.coalesce(conversion, unit_raw).alias("unit"),
        amount.alias("value_raw"),
        unit_raw.alias("unit_raw"),
        pl.col(LINE).alias("line"),
        *per_file(table.frame),
    )
    schema = file_index_schema(table.frame)
    return conform(rows, {**BIOMETRIC_SCHEMA, **schema}), conform(
        rejects, {**REJECT_SCHEMA, **schema}
    )
