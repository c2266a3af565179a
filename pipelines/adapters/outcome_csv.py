"""Generic daily-outcome CSV (format `csv`, kind outcomes): one reading per line (table
`biometrics`).

A symptom diary or a wearable export reshaped by the user, in the long shape
`Date,Measure,Value[,Unit][,Scale]` (e.g. `2026-01-05,Bloating,6,,0-10`). As in the lab CSV,
`columns:` in sources.yaml maps the canonical fields to the file's headers: `day` (a date, or a
timestamp whose time of day goes to `time`), `measure`, `value`, and optionally `time`, `unit`
and `scale`; a field without a mapping is looked up under common header names (`DEFAULT_HEADERS`).

- The measure is snake-cased and given its stable name (`pipelines.outcome_vocabulary`):
  "Bloated" -> `bloating`, "Resting Heart Rate" -> `resting_hr`; other names are kept snake-cased.
- The scale is never guessed for a rating: it is the row's scale cell ("0-10", "0-4", "Bristol",
  "yes/no"), else `yes_no` for a yes/no value, else `unit` when the row has a unit, else
  `options: {scale: "0-10"}` of the source. A rating without any is rejected ("no scale").
  `bristol_stool` is always on the Bristol scale (1-7); a physical measure (`resting_hr`,
  `hrv_rmssd`, `skin_temp_dev`, `sleep_duration`, ...) is always `unit`, converted to its
  canonical unit (minutes of sleep -> h, a °F deviation -> °C); a blank unit means the canonical
  one.
- Values are numbers in the source's decimal convention, or yes/no (also true/false) -> 1/0.
- Each line is one reading, loaded or rejected naming its column. Values outside their scale or
  physically implausible are rejected by the plausibility rules after parsing.

The wide shape, a day column and one column per measure (`Date,Bloating,Stool,RHR` /
`2026-01-05,6,4,58`), as a spreadsheet diary is usually kept, is read when the source maps its
measures in `options.measures` (stable measure name -> header), in the mapping style of the diet
CSV's nutrient columns:

    columns: {day: Date}
    options:
      measures: {bloating: Bloating, bristol_stool: Stool, resting_hr: RHR}
      scales: {bloating: "0-10"}
      units: {resting_hr: bpm}

Measures get their stable names as above ("Bloated" -> `bloating`). A column's scale comes from
the mapping, never from its cells: `bristol_stool` is on the Bristol scale and a physical measure
(or one given a unit in `options.units`) is `unit`, converted from that unit; any other measure
takes `options.scales`, else `options.scale`, else the file is refused naming the measure, as is
a scale that contradicts the measure, an unknown scale or unit, or a `columns:` key other than
`day` and `time`. Yes/no cells load as 1/0 only in a `yes/no` column. Accounting is per reading,
as in the Oura format: `rows_read` counts the non-blank cells of the mapped measure columns (a
blank cell is no reading), and each reading is loaded or rejected on its own, naming its column,
so rows_read == loaded + rejected + duplicate holds per reading; a line whose date is bad rejects
each of its readings. A reading outside its scale or the body's range is rejected here, with the
plausibility rules' reason, naming its column (`Bloating`) and showing the cell as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

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
from pipelines.adapters.base import AdapterError, BatchResult, ParseResult, parse_each
from pipelines.adapters.cronometer_biometrics import metric_name
from pipelines.adapters.diet_csv import date_checks, date_expr, person_id
from pipelines.config import SourceConfig
from pipelines.outcome_vocabulary import (
    ALIASES,
    PHYSICAL,
    SCALE_BRISTOL,
    SCALE_UNIT,
    SCALE_YES_NO,
    normalise_scale,
)
from pipelines.rules import Check
from pipelines.schema import BIOMETRIC_SCHEMA, REJECT_SCHEMA, conform, empty
from pipelines.text import format_text, number
from pipelines.transforms.plausibility import outcome_rules

# Header names tried, in order, for a field that `columns:` does not map.
DEFAULT_HEADERS: dict[str, tuple[str, ...]] = {
    "day": ("Day", "Date", "Timestamp", "Date/Time", "Datetime"),
    "time": ("Time", "Time of Day"),
    "measure": ("Measure", "Metric", "Symptom", "Name", "Variable"),
    "value": ("Value", "Rating", "Score", "Amount"),
    "unit": ("Unit", "Units"),
    "scale": ("Scale",),
}
REQUIRED = ("day", "measure", "value")
OPTIONS = ("scale", "measures", "scales", "units")
WIDE_COLUMNS = ("day", "time")

_YES = ("yes", "y", "true")
_NO = ("no", "n", "false")
# "measure|unit" -> factor to the measure's canonical unit.
_FACTORS = {f"{m}|{u}": f for m, (_, units) in PHYSICAL.items() for u, f in units.items()}
_CANONICAL_UNIT = {m: unit for m, (unit, _) in PHYSICAL.items()}
# A wide column's readings, parsed and converted to the canonical unit, and whether a cell is no
# number (frame columns of `wide_readings`).
_VALUE, _INVALID = "__value", "__invalid"


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one outcome CSV, long or wide; see the module docstring."""
    table = read_csv_table(path, source)
    if "measures" in source.options:
        return _wide_readings(table)
    rows, rejects = _readings(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many outcome CSVs at once, exactly as `parse` one by one would (`parse_csv_batch`).
    The wide shape counts readings, not lines, so its files are read one by one."""
    if "measures" in source.options:
        return parse_each(parse, paths, source)
    return parse_csv_batch(paths, source, _readings)


def default_scale(source: SourceConfig, path: Path) -> str | None:
    """The source's `options: {scale: ...}`, normalised; a scale that is none of the known shapes
    stops the file, naming the key."""
    raw = source.options.get("scale")
    if raw is None:
        return None
    scale = normalise_scale(str(raw))
    if scale is None:
        raise AdapterError(
            f"{path}: source {source.name!r}, key 'options.scale': {raw!r} is not a scale; "
            'write e.g. "0-10", "0-4", "bristol" or "yes/no".'
        )
    return scale


def _stamp_time(day_raw: pl.Expr) -> pl.Expr:
    """The time of day of a timestamp cell ("2026-01-05 21:30"), for files without a time column."""
    return (
        pl.when(day_raw.str.contains(r"\d[ T]\d{1,2}:\d{2}"))
        .then(day_raw.str.extract(r"[ T](\d{1,2}:\d{2})", 1))
        .otherwise(None)
    )


def _find_columns(table: CsvTable) -> dict[str, int]:
    """Column index per canonical field (mapped by `columns:` or found under a default name)."""
    source, path = table.source, table.path
    _refuse_unknown_options(source, path)
    unknown = sorted(set(source.columns) - set(DEFAULT_HEADERS))
    if unknown:
        raise AdapterError(
            f"{path}: source {source.name!r} maps unknown key(s) {unknown} in 'columns'; "
            f"known keys: {list(DEFAULT_HEADERS)}."
        )
    return table.mapped(DEFAULT_HEADERS, REQUIRED)


def _readings(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in BIOMETRIC_SCHEMA, rejects) for one file or a stack of files (then both with
    FILE_INDEX): every line stands alone, so a stack needs nothing per file."""
    source = table.source
    found = _find_columns(table)
    fallback_scale = default_scale(source, table.path)
    person, person_check = person_id(table)

    def text(key: str) -> pl.Expr:
        return pl.col(cell(found[key])) if key in found else pl.lit(None, dtype=pl.String)

    def header(key: str) -> str:
        return table.headers[found[key]] if key in found else key

    day_raw = text("day")
    parsed_day = date_expr(day_raw, source)
    stamp_time = _stamp_time(day_raw)

    measure = metric_name(text("measure"))
    measure = measure.replace(ALIASES)
    physical = measure.is_in(list(PHYSICAL)).fill_null(False)
    bristol = (measure == "bristol_stool").fill_null(False)

    value_raw = text("value")
    answer = value_raw.str.to_lowercase()
    is_yes_no = answer.is_in([*_YES, *_NO]).fill_null(False)
    single, invalid = number(value_raw, source.decimal)
    value = pl.when(is_yes_no).then(answer.is_in(_YES).cast(pl.Float64)).otherwise(single)

    unit_raw = text("unit")
    unit_key = unit_raw.str.strip_chars().str.to_lowercase()
    factor = pl.concat_str([measure, pl.lit("|"), unit_key]).replace_strict(
        _FACTORS, default=None, return_dtype=pl.Float64
    )
    canonical_unit = measure.replace_strict(_CANONICAL_UNIT, default=None, return_dtype=pl.String)

    scale_raw = text("scale")
    scale_cell = scale_raw.map_elements(normalise_scale, return_dtype=pl.String, skip_nulls=True)
    rating_scale = pl.coalesce(
        scale_cell,
        pl.when(is_yes_no).then(pl.lit(SCALE_YES_NO)),
        # A row with a unit is a physical quantity, whatever scale the source's ratings use.
        pl.when(unit_raw.is_not_null()).then(pl.lit(SCALE_UNIT)),
        pl.lit(fallback_scale, dtype=pl.String),
    )
    scale = (
        pl.when(physical)
        .then(pl.lit(SCALE_UNIT))
        .when(bristol)
        .then(pl.lit(SCALE_BRISTOL))
        .otherwise(rating_scale)
    )
    # Both scales the row names are kept apart: a physical measure said to be on a rating scale
    # (or Bristol stool on another scale) is a mapping slip, not a reading to convert.
    implied = pl.when(physical).then(pl.lit(SCALE_UNIT)).when(bristol).then(pl.lit(SCALE_BRISTOL))
    scale_header, value_header = header("scale"), header("value")

    checks: list[Check] = [extra_fields_check(table)]
    if person_check is not None:
        checks.append(person_check)
    checks += date_checks(table, day_raw, header("day"))
    checks += [
        Check(measure.is_null(), header("measure"), pl.lit(f"{header('measure')} is blank")),
        Check(value_raw.is_null(), value_header, pl.lit(f"{value_header} is blank")),
        Check(
            ~is_yes_no & invalid,
            value_header,
            not_a_number_reason(source.decimal, cell=value_raw),
            value_raw,
        ),
        Check(
            scale_raw.is_not_null() & scale_cell.is_null(),
            scale_header,
            pl.lit('unknown scale (expected e.g. "0-10", "0-4", "bristol" or "yes/no")'),
            scale_raw,
        ),
        Check(
            implied.is_not_null() & scale_cell.is_not_null() & (scale_cell != implied),
            scale_header,
            format_text("{} is always on scale {}", measure, implied),
            scale_raw,
        ),
        Check(
            physical & unit_raw.is_not_null() & factor.is_null(),
            header("unit"),
            format_text("unknown unit for {} (expected {})", measure, canonical_unit),
            unit_raw,
        ),
        Check(
            scale.is_null(),
            value_header,
            format_text(
                "no scale for {}: add a scale column or options: {scale: ...} to the source",
                measure,
            ),
            value_raw,
        ),
    ]
    good, rejects = split_rejects(table.frame, checks)

    rows = good.select(
        person.alias("person_id"),
        parsed_day.alias("day"),
        pl.coalesce(text("time"), stamp_time).alias("time"),
        measure.alias("metric"),
        (value * pl.when(physical).then(factor.fill_null(1.0)).otherwise(1.0)).alias("value"),
        pl.when(physical).then(canonical_unit).otherwise(unit_raw).alias("unit"),
        scale.alias("scale"),
        value_raw.alias("value_raw"),
        unit_raw.alias("unit_raw"),
        pl.col(LINE).alias("line"),
        *per_file(table.frame),
    )
    schema = file_index_schema(table.frame)
    return conform(rows, {**BIOMETRIC_SCHEMA, **schema}), conform(
        rejects, {**REJECT_SCHEMA, **schema}
    )


def _refuse_unknown_options(source: SourceConfig, path: Path) -> None:
    unknown = sorted(set(source.options) - set(OPTIONS))
    if unknown:
        raise AdapterError(
            f"{path}: source {source.name!r} sets unknown option(s) {unknown}; the outcome CSV "
            f"knows {list(OPTIONS)}."
        )


def _option_mapping(source: SourceConfig, path: Path, key: str) -> dict[str, str]:
    """`options.<key>` as {stable measure name: text}; anything but a mapping stops the file."""
    raw = source.options.get(key) or {}
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise AdapterError(
            f"{path}: source {source.name!r}, key 'options.{key}': expected a mapping of measure "
            f"names to values, such as {{bloating: ...}}, not {raw!r}."
        )
    out = {_stable_name(k): str(v) for k, v in raw.items()}
    if len(out) < len(raw):
        raise AdapterError(
            f"{path}: source {source.name!r}, key 'options.{key}': {sorted(raw)} name one measure "
            "twice (after giving them their stable names)."
        )
    return out


def _stable_name(raw: str) -> str:
    """The stable measure name of a mapping key, as `metric_name` and ALIASES give a cell's."""
    snake = re.sub(r"[^a-z0-9]+", "_", re.sub(r"\([^)]*\)", "", raw).lower()).strip("_")
    return ALIASES.get(snake, snake)


class WideColumn(NamedTuple):
    """A measure column of a wide file, resolved from a mapping (never from its cells)."""

    position: int  # of the header
    measure: str
    scale: str
    unit: str | None  # stored: the canonical unit of a physical measure, else as mapped
    unit_raw: str | None  # as mapped in options.units
    factor: float  # to the canonical unit


def _wide_columns(table: CsvTable) -> list[WideColumn]:
    """The mapped measure columns with their scale, unit and factor, all from the mapping; a
    mapping that does not say, or contradicts itself, stops the file naming the key."""
    source, path = table.source, table.path
    _refuse_unknown_options(source, path)
    where = f"{path}: source {source.name!r}"
    extra = sorted(set(source.columns) - set(WIDE_COLUMNS))
    if extra:
        raise AdapterError(
            f"{where} maps {extra} in 'columns'; with options.measures (one column per measure) "
            f"'columns' names only {list(WIDE_COLUMNS)}."
        )
    measures = _option_mapping(source, path, "measures")
    if not measures:
        raise AdapterError(f"{where}, key 'options.measures': map at least one measure.")
    scales = _option_mapping(source, path, "scales")
    units = _option_mapping(source, path, "units")
    for key, mapping in (("scales", scales), ("units", units)):
        stray = sorted(set(mapping) - set(measures))
        if stray:
            raise AdapterError(
                f"{where}, key 'options.{key}': {stray} not among options.measures "
                f"({sorted(measures)})."
            )
    fallback = default_scale(source, path)
    out: list[WideColumn] = []
    for measure, header in measures.items():
        index = table.require(
            [header],
            f"Source {source.name!r} maps {measure} to it (options.measures in sources.yaml); fix "
            "the name there or in the file.",
        )
        written = scales.get(measure)
        scale = None if written is None else normalise_scale(written)
        if written is not None and scale is None:
            raise AdapterError(
                f"{where}, key 'options.scales.{measure}': {written!r} is not a scale; write e.g. "
                '"0-10", "0-4", "bristol" or "yes/no".'
            )
        unit_written = units.get(measure)
        implied = (
            SCALE_UNIT
            if measure in PHYSICAL or unit_written is not None
            else SCALE_BRISTOL
            if measure == "bristol_stool"
            else None
        )
        if implied is not None and scale is not None and scale != implied:
            raise AdapterError(
                f"{where}, key 'options.scales.{measure}': {measure} is always on scale "
                f"{implied}, not {scale}."
            )
        scale = implied or scale or fallback
        if scale is None:
            raise AdapterError(
                f"{where}: no scale for {measure} (column {header!r}); add "
                f"'options.scales: {{{measure}: \"0-10\"}}' (or its own scale)."
            )
        unit, factor = unit_written, 1.0
        if measure in PHYSICAL:
            unit = _CANONICAL_UNIT[measure]
            if unit_written is not None:
                found = _FACTORS.get(f"{measure}|{unit_written.strip().lower()}")
                if found is None:
                    raise AdapterError(
                        f"{where}, key 'options.units.{measure}': unknown unit "
                        f"{unit_written!r} for {measure} (expected {unit})."
                    )
                factor = found
        out.append(WideColumn(index, measure, scale, unit, unit_written, factor))
    return out


def _wide_readings(table: CsvTable) -> ParseResult:
    """The wide shape: its columns from `options.measures`, its day (and time) from `columns:`."""
    source = table.source
    columns = _wide_columns(table)
    day_i = table.require(
        [source.columns["day"]] if "day" in source.columns else DEFAULT_HEADERS["day"],
        f"Name the day column with 'columns: {{day: <header>}}' for source {source.name!r}.",
    )
    time_i = (
        table.require([source.columns["time"]], "Fix the time column named in 'columns'.")
        if "time" in source.columns
        else table.find(DEFAULT_HEADERS["time"])
    )
    stamp_time = _stamp_time(pl.col(cell(day_i)))
    time = stamp_time if time_i is None else pl.coalesce(pl.col(cell(time_i)), stamp_time)
    return wide_readings(table, columns, day_i, time)


def wide_readings(
    table: CsvTable, columns: Sequence[WideColumn], day_i: int, time: pl.Expr
) -> ParseResult:
    """One reading per non-blank cell of each of `columns`, in file order: what the outcome CSV's
    wide shape and the fixed wide exports (Oura) read. `day_i` is the day column's position and
    `time` the time of day of each line (a null literal for a format without one)."""
    source = table.source
    day_raw = pl.col(cell(day_i))
    person, person_check = person_id(table)
    checks: list[Check] = [extra_fields_check(table)]
    if person_check is not None:
        checks.append(person_check)
    checks += date_checks(table, day_raw, table.headers[day_i])

    rows: list[pl.DataFrame] = []
    rejects: list[pl.DataFrame] = [empty(REJECT_SCHEMA)]
    read = 0
    for column in columns:
        raw = pl.col(cell(column.position))
        parsed, invalid = number(raw, source.decimal)
        if column.scale == SCALE_YES_NO:
            answer = raw.str.to_lowercase()
            is_answer = answer.is_in([*_YES, *_NO])
            parsed = pl.when(is_answer).then(answer.is_in(_YES).cast(pl.Float64)).otherwise(parsed)
            invalid = invalid & ~is_answer
        # Each cell is parsed once, not once for every check that reads its value.
        readings = table.frame.filter(raw.is_not_null()).with_columns(
            (parsed * column.factor).alias(_VALUE), invalid.alias(_INVALID)
        )
        read += readings.height
        header = table.headers[column.position]
        value = pl.col(_VALUE)
        number_check = Check(
            pl.col(_INVALID), header, not_a_number_reason(source.decimal, cell=raw), raw
        )
        # The plausibility rules would reject an out-of-scale reading too, but naming `value`.
        bounds = outcome_rules(header, value, pl.lit(column.scale), pl.lit(column.measure), raw)
        good, bad = split_rejects(readings, [*checks, number_check, *bounds])
        rejects.append(conform(bad, REJECT_SCHEMA))
        rows.append(
            good.select(
                person.alias("person_id"),
                date_expr(day_raw, source).alias("day"),
                time.alias("time"),
                pl.lit(column.measure).alias("metric"),
                value.alias("value"),
                pl.lit(column.unit, dtype=pl.String).alias("unit"),
                pl.lit(column.scale).alias("scale"),
                raw.alias("value_raw"),
                pl.lit(column.unit_raw, dtype=pl.String).alias("unit_raw"),
                pl.col(LINE).alias("line"),
            )
        )
    # In file order: by line, and within a line in the order of the mapping.
    out = conform(pl.concat(rows, how="vertical_relaxed"), BIOMETRIC_SCHEMA)
    all_rejects = pl.concat(rejects, how="vertical_relaxed")
    return ParseResult(
        rows=out.sort("line", maintain_order=True),
        rejects=all_rejects.sort("line", maintain_order=True),
        rows_read=read,
    )
