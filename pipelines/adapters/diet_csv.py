"""Generic diet CSV (format `csv`, kind diet): any diary, totals or cohort table, mapped by config.

`columns:` in sources.yaml maps canonical names to the file's headers (matching forgives case,
spacing, a trailing space and `µ`/`u`); headers it does not name are ignored. Keys:

- `day`: the date of the row. Dates are parsed with `date_format` / `datetime_format` (strptime
  syntax) when given, and ISO 8601 (YYYY-MM-DD) is always accepted; any other shape is rejected with
  a reason asking for `date_format`, because 03/04/2024 is March in one country and April in the
  next. A file whose dates disprove the configured order (11/27/2024 with "%d/%m/%Y") is refused
  whole, with the `date_format` to set (`refuse_swapped_dates`).
- `food`: present => one row per logged food (table `diet_entries`); then `day` is required, and
  `time`, `meal`, `category` (kept as `category_raw`), `amount` (raw text such as "100 g"; grams
  are read from mass and volume units) and `grams` (a number of grams) are optional.
- no `food` => totals (table `diet_daily_reported`): one row per person-day with `day`, period
  `options.period` (default "day"), optional `completed` (true/false). Without `day` the table is
  CROSS-SECTIONAL (one row per person, as in NHANES-style wide intake tables): day is null and
  period is `options.period` (default "summary").
- any canonical nutrient column of `pipelines.schema.NUTRIENTS` (`energy_kcal: Calories`,
  `fiber_g: Fibre (g)`, ...), in the canonical unit; `options.scale` multiplies a nutrient whose
  file unit differs (`scale: {caffeine_mg: 1000}` when caffeine is in grams).

The person comes from `person:` as for every source; ids read from a column lose a spreadsheet's
".0" (`62161.0` -> `62161`).

Rows are rejected, with the column and reason, for: a blank or unparseable date, a non-numeric or
negative number, a blank food name, a blank person id, and "summary rows": a row whose date (or,
cross-sectionally, person) cell is a label such as "Total", "Average" or "TOTAL:", or whose date
cell is blank while other cells are filled (reason "summary row"). Totals keep one row per
person-day (per person when cross-sectional): a later repeat in the same file is rejected
("duplicate date in file" / "duplicate person in file").

Helpers shared with the other diet adapters (Cronometer daily summary and biometrics,
MyFitnessPal) live here too: nutrient parsing, summary-row detection, person ids, per-file
duplicates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.adapters._csv import (
    LINE,
    NEGATIVE_REASON,
    RAW,
    CsvTable,
    cell,
    date_reason,
    extra_fields_check,
    file_index_schema,
    header_key,
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
from pipelines.adapters.cronometer_servings import AMOUNT_GRAMS
from pipelines.config import SourceConfig
from pipelines.rules import Check
from pipelines.schema import (
    DIET_ENTRY_SCHEMA,
    DIET_REPORTED_SCHEMA,
    NUTRIENTS,
    REJECT_SCHEMA,
    conform,
    empty,
)
from pipelines.text import number

FIELDS = ("day", "time", "meal", "food", "amount", "grams", "category", "completed")
OPTIONS = ("scale", "period")

# Labels that mark a totals/average line rather than data ("Total", "TOTAL:", "Daily average",
# and the German/French/Spanish words spreadsheets in those locales write).
SUMMARY_LABEL = (
    r"(?i)^(?:grand\s+|daily\s+|weekly\s+|monthly\s+|sub\s*)?"
    r"(?:totals?|sums?|averages?|avg\.?|means?|summary|summe|gesamt|durchschnitt|moyenne|"
    r"promedio)\s*:?$"
)
SUMMARY_REASON = "summary row"
DUPLICATE_DATE_REASON = "duplicate date in file"

_TRUE = ("true", "yes", "y", "1")
_FALSE = ("false", "no", "n", "0")


# ---- helpers shared by the diet adapters -------------------------------------------------------


@dataclass(frozen=True)
class Nutrients:
    """Parsed nutrient columns of one table.

    Add `parsed` to the frame before checking (each cell is parsed once); `outputs` are the
    canonical columns (factor applied) for the loaded rows; `values` maps each canonical nutrient
    to its parsed (unscaled) column in the frame.
    """

    outputs: list[pl.Expr]
    parsed: list[pl.Expr]
    checks: list[Check]
    values: dict[str, str]


def nutrient_columns(
    table: CsvTable, columns: Sequence[tuple[int, str, float]], *, negative: bool = True
) -> Nutrients:
    """Parse the nutrient cells at (header position, canonical column, factor) `columns`.

    A blank cell stays null ("not reported", never zero). Checks reject non-numbers and, if
    `negative`, numbers below zero; non-numbers are reported before negatives in another column
    because they are the likelier typo.
    """
    outputs: list[pl.Expr] = []
    parsed: list[pl.Expr] = []
    invalid_checks: list[Check] = []
    negative_checks: list[Check] = []
    values: dict[str, str] = {}
    decimal = table.source.decimal
    for index, canonical, factor in columns:
        if canonical in values:
            continue  # a second column for a nutrient already read stays out
        header = table.headers[index]
        raw = pl.col(cell(index))
        value, invalid = number(raw, decimal)
        value_col, invalid_col = f"__value_{canonical}", f"__invalid_{canonical}"
        values[canonical] = value_col
        parsed += [value.alias(value_col), invalid.alias(invalid_col)]
        outputs.append((pl.col(value_col) * factor).alias(canonical))
        invalid_checks.append(
            Check(pl.col(invalid_col), header, not_a_number_reason(decimal, cell=raw), raw)
        )
        if negative:
            negative_checks.append(
                Check(pl.col(value_col) < 0, header, pl.lit(NEGATIVE_REASON), raw)
            )
    return Nutrients(outputs, parsed, invalid_checks + negative_checks, values)


def mapped_columns(
    table: CsvTable, mapping: dict[str, tuple[str, float]]
) -> list[tuple[int, str, float]]:
    """(position, canonical, factor) for the headers of `table` that `mapping` (keyed by
    `header_key`) knows, in header order."""
    found: list[tuple[int, str, float]] = []
    for index, header in enumerate(table.headers):
        target = mapping.get(header_key(header))
        if target is not None:
            found.append((index, *target))
    return found


@cache
def column_table(path: Path) -> dict[str, tuple[str, float]]:
    """header_key(header) -> (canonical nutrient, factor) from a data table with the columns
    header, canonical, factor, note. Rows with a blank canonical are known but not loaded."""
    table = pl.read_csv(path, infer_schema=False)
    mapping: dict[str, tuple[str, float]] = {}
    for i, row in enumerate(table.iter_rows(named=True), start=2):
        canonical = (row["canonical"] or "").strip()
        if not canonical:
            continue
        where = f"{path}, line {i}"
        if canonical not in NUTRIENTS:
            raise AdapterError(f"{where}: {canonical!r} is not a canonical nutrient column")
        try:
            factor = float(row["factor"])
        except (TypeError, ValueError):
            raise AdapterError(f"{where}: factor {row['factor']!r} is not a number") from None
        mapping[header_key(row["header"])] = (canonical, factor)
    return mapping


def summary_row_check(key: pl.Expr, header: str) -> Check:
    """Reject totals/average/note lines: `key` (the date cell) is a label such as "Total" or blank.

    Rows whose cells are all blank never reach the adapters, so a blank key means other cells are
    filled: a total or a note under the data, not a dated row.
    """
    return Check(
        key.is_null() | key.str.contains(SUMMARY_LABEL), header, pl.lit(SUMMARY_REASON), key
    )


def person_id(table: CsvTable) -> tuple[pl.Expr, Check | None]:
    """person_id and the blank-id check (see `person_column_check`); ids read from a column lose a
    spreadsheet's ".0" so that 62161.0 and 62161 are one person."""
    person, check = person_column_check(table)
    if check is None:
        return person, None
    return person.str.replace(r"^([0-9]+)\.0+$", "${1}"), check


def date_expr(raw: pl.Expr, source: SourceConfig) -> pl.Expr:
    """The date of a cell: configured datetime_format / date_format first, then ISO 8601."""
    formats = [f for f in (source.datetime_format, source.date_format) if f]
    return parse_datetime(raw, formats).dt.date()


def date_checks(table: CsvTable, raw: pl.Expr, header: str) -> list[Check]:
    """Reject a date cell that does not parse, saying which setting to change. (A blank date is a
    summary row, see `summary_row_check`.) A file whose dates disprove the configured day/month
    order is refused whole (`refuse_swapped_dates`)."""
    source = table.source
    refuse_swapped_dates(table, raw, header)
    return [
        Check(
            date_expr(raw, source).is_null(),
            header,
            date_reason(raw, source.date_format, source.datetime_format),
            raw,
        )
    ]


def boolean(raw: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(value, invalid) for a true/false cell (also yes/no, 1/0); blank is null."""
    s = raw.str.strip_chars().str.to_lowercase()
    value = pl.when(s.is_in(_TRUE)).then(pl.lit(True)).when(s.is_in(_FALSE)).then(pl.lit(False))
    return value, (s.is_not_null() & ~s.is_in([*_TRUE, *_FALSE])).fill_null(False)


def boolean_check(raw: pl.Expr, header: str) -> Check:
    _, invalid = boolean(raw)
    return Check(invalid, header, pl.lit("not true or false"), raw)


def reject_repeats(
    good: pl.DataFrame, key: Sequence[str], column: str | None, reason: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep the first row (by line) of each `key` in `good`; reject later ones with `reason` and
    the key's last column as their value."""
    carried = per_file(good)
    if good.height == 0:
        return good, empty({**REJECT_SCHEMA, **file_index_schema(good)})
    # A stack's files each keep their own first rows (`per_file`).
    ordered = good.sort([*carried, LINE])
    first = ordered.select(pl.struct([*carried, *key]).is_first_distinct()).to_series()
    repeats = ordered.filter(~first).select(
        pl.col(LINE).cast(pl.Int64).alias("line"),
        pl.lit(column, dtype=pl.String).alias("column"),
        pl.lit(reason).alias("reason"),
        # The repeated key (the day, or the person of a cross-sectional table).
        pl.col(key[-1]).cast(pl.String).alias("value"),
        pl.col(RAW).alias("raw"),
        *carried,
    )
    return ordered.filter(first), repeats


# ---- the generic diet CSV ----------------------------------------------------------------------


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one mapped diet CSV; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _diet(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many mapped diet CSVs at once, exactly as `parse` one by one would
    (`parse_csv_batch`)."""
    return parse_csv_batch(paths, source, _diet)


def _diet(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in DIET_ENTRY_SCHEMA or DIET_REPORTED_SCHEMA, rejects) for one file or a stack of
    files (then both with FILE_INDEX); repeats are looked for within each file."""
    source, path = table.source, table.path
    mapping = source.columns
    _check_config(path, source)
    scale = _scale(path, source)
    entries = "food" in mapping
    if entries and "day" not in mapping:
        raise AdapterError(
            f"{path}: source {source.name!r} maps 'food', so rows are logged foods and need a "
            "date: add 'day: <header of the date column>' to its columns in sources.yaml."
        )
    nutrient_keys = [k for k in mapping if k in NUTRIENTS]
    if not entries and not nutrient_keys:
        raise AdapterError(
            f"{path}: source {source.name!r} maps no nutrient column, so there is nothing to "
            "load. Map at least one, for example 'energy_kcal: Calories', under columns in "
            f"sources.yaml (canonical names: {', '.join(NUTRIENTS)})."
        )

    found = {
        key: table.require(
            [header],
            f"Source {source.name!r} maps {key} to it (columns: in sources.yaml); fix the name "
            "there or in the file.",
        )
        for key, header in mapping.items()
    }
    person, person_check = person_id(table)

    def text(key: str) -> pl.Expr:
        return pl.col(cell(found[key])) if key in found else pl.lit(None, dtype=pl.String)

    def header(key: str) -> str:
        return table.headers[found[key]]

    checks: list[Check] = [extra_fields_check(table)]
    cross_sectional = "day" not in found
    if not cross_sectional:
        checks.append(summary_row_check(text("day"), header("day")))
    elif source.person.column is not None:
        # Without dates, a "Total" or "Mean" line is labelled in the person column.
        person_i = table.require([source.person.column], "")
        checks.append(
            Check(
                pl.col(cell(person_i)).str.contains(SUMMARY_LABEL),
                table.headers[person_i],
                pl.lit(SUMMARY_REASON),
                pl.col(cell(person_i)),
            )
        )
    if entries:
        checks.append(
            Check(
                text("food").str.contains(SUMMARY_LABEL),
                header("food"),
                pl.lit(SUMMARY_REASON),
                text("food"),
            )
        )
    if person_check is not None:
        checks.append(person_check)
    day = pl.lit(None, dtype=pl.Date)
    if not cross_sectional:
        day = date_expr(text("day"), source)
        checks += date_checks(table, text("day"), header("day"))
    if entries:
        checks.append(
            Check(text("food").is_null(), header("food"), pl.lit(f"{header('food')} is blank"))
        )

    nutrients = nutrient_columns(table, [(found[k], k, scale.get(k, 1.0)) for k in nutrient_keys])
    parsed = list(nutrients.parsed)
    grams: pl.Expr = pl.lit(None, dtype=pl.Float64)
    if "grams" in found:
        value, invalid = number(text("grams"), source.decimal)
        parsed += [value.alias("__grams"), invalid.alias("__grams_invalid")]
        grams = pl.col("__grams")
        checks += [
            Check(
                pl.col("__grams_invalid"),
                header("grams"),
                not_a_number_reason(source.decimal, cell=text("grams")),
                text("grams"),
            ),
            Check(pl.col("__grams") < 0, header("grams"), pl.lit(NEGATIVE_REASON), text("grams")),
        ]
    elif "amount" in found:
        grams = amount_grams(text("amount"), source.decimal)
    checks += nutrients.checks
    if "completed" in found:
        checks.append(boolean_check(text("completed"), header("completed")))

    good, rejects = split_rejects(table.frame.with_columns(parsed), checks)
    carried = per_file(table.frame)
    schema = file_index_schema(table.frame)

    if entries:
        rows = good.select(
            person.alias("person_id"),
            day.alias("day"),
            text("time").alias("time"),
            text("meal").alias("meal"),
            text("food").alias("food"),
            text("amount").alias("amount_raw"),
            grams.alias("grams"),
            text("category").alias("category_raw"),
            *nutrients.outputs,
            pl.col(LINE).alias("line"),
            *carried,
        )
        return conform(rows, {**DIET_ENTRY_SCHEMA, **schema}), conform(
            rejects, {**REJECT_SCHEMA, **schema}
        )

    period = str(source.options.get("period", "summary" if cross_sectional else "day"))
    keyed = good.with_columns(person.alias("__person"), day.alias("__day"))
    if cross_sectional:
        keyed, repeats = reject_repeats(
            keyed,
            ["__person"],
            source.person.column,
            "duplicate person in file (a table without a day column has one row per person; "
            "if rows are days, map the date with columns: {day: <header>} in sources.yaml)",
        )
    else:
        keyed, repeats = reject_repeats(
            keyed, ["__person", "__day"], header("day"), DUPLICATE_DATE_REASON
        )
    completed = boolean(text("completed"))[0] if "completed" in found else pl.lit(None)
    rows = keyed.select(
        pl.col("__person").alias("person_id"),
        pl.col("__day").alias("day"),
        pl.lit(period).alias("period"),
        completed.alias("completed"),
        *nutrients.outputs,
        pl.col(LINE).alias("line"),
        *carried,
    )
    reject_schema = {**REJECT_SCHEMA, **schema}
    all_rejects = pl.concat([conform(rejects, reject_schema), conform(repeats, reject_schema)])
    return (
        conform(rows, {**DIET_REPORTED_SCHEMA, **schema}),
        all_rejects.sort([*carried, "line"]),
    )


def amount_grams(amount: pl.Expr, decimal: str) -> pl.Expr:
    """Grams from an amount such as "100 g", "1.5 kg" or "8 fl oz"; null for other units
    ("2 large", "1 cup"): no grams rather than a guess (volumes count at the density of water)."""
    parts = amount.str.extract_groups(r"^([0-9][0-9.,]*)\s*(.*)$")
    quantity, _ = number(parts.struct.field("1"), decimal)
    unit = parts.struct.field("2").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    factor = unit.replace_strict(AMOUNT_GRAMS, default=None, return_dtype=pl.Float64)
    return quantity * factor


def _check_config(path: Path, source: SourceConfig) -> None:
    unknown = sorted(set(source.columns) - set(FIELDS) - set(NUTRIENTS))
    if unknown:
        extra = (
            " (the person column is set with person: {column: ...})"
            if any(k in ("person", "person_id", "participant", "subject") for k in unknown)
            else ""
        )
        raise AdapterError(
            f"{path}: source {source.name!r} maps unknown key(s) {unknown} in 'columns'{extra}. "
            f"Known keys: {', '.join(FIELDS)} and the canonical nutrients "
            f"({', '.join(NUTRIENTS)})."
        )
    if "food" not in source.columns:
        for key in ("time", "meal", "amount", "grams", "category"):
            if key in source.columns:
                raise AdapterError(
                    f"{path}: source {source.name!r} maps {key!r} but not 'food': rows without a "
                    f"food are totals, which have no {key}. Map 'food' for one row per logged "
                    f"food, or remove {key!r} from its columns in sources.yaml."
                )
    elif "completed" in source.columns:
        raise AdapterError(
            f"{path}: source {source.name!r} maps 'completed', which belongs to daily totals, "
            "together with 'food' (one row per logged food); remove one of them in sources.yaml."
        )
    unknown_options = sorted(set(source.options) - set(OPTIONS))
    if unknown_options:
        raise AdapterError(
            f"{path}: source {source.name!r} has unknown option(s) {unknown_options}; the csv "
            f"diet format knows {list(OPTIONS)}."
        )


def _scale(path: Path, source: SourceConfig) -> dict[str, float]:
    raw: Any = source.options.get("scale") or {}
    where = f"{path}: source {source.name!r}, key 'options.scale'"
    if not isinstance(raw, dict):
        raise AdapterError(f"{where}: expected a mapping of nutrient -> factor")
    scale: dict[str, float] = {}
    for key, factor in raw.items():
        if key not in NUTRIENTS:
            raise AdapterError(f"{where}: {key!r} is not a canonical nutrient column")
        if isinstance(factor, bool) or not isinstance(factor, int | float) or factor <= 0:
            raise AdapterError(f"{where}: factor for {key!r} must be a positive number")
        if key not in source.columns:
            raise AdapterError(
                f"{where}: scales {key!r}, which is not mapped under columns; map it or drop "
                "the factor."
            )
        scale[key] = float(factor)
    return scale
