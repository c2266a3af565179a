"""Cronometer servings export (`servings.csv`): one row per logged food.

Headers are read by name. Day, Food Name and Amount are required; Time, Group (the meal) and
Category are used when present. Nutrient columns are mapped to canonical nutrient columns by the
data table `pipelines/data/cronometer_columns.csv` (header, canonical, factor, note), because the
column set depends on the user's Cronometer settings and the names still need checking against real
files: extending the table needs no code. Columns the table does not know are ignored.

A blank nutrient cell means "not reported" and stays null. A non-numeric or negative nutrient, a
blank food name or a day that is not a date rejects the row, naming the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import polars as pl

from pipelines.adapters._csv import (
    LINE,
    NEGATIVE_REASON,
    CsvTable,
    cell,
    date_reason,
    extra_fields_check,
    file_index_schema,
    header_key,
    not_a_number_reason,
    parse_csv_batch,
    parse_datetime,
    per_distinct,
    person_column_check,
    read_csv_table,
    refuse_swapped_dates,
    split_rejects,
)
from pipelines.adapters.base import AdapterError, BatchResult, ParseResult
from pipelines.adapters.signatures import refuse_other_format
from pipelines.config import SourceConfig
from pipelines.rules import Check
from pipelines.schema import DIET_ENTRY_SCHEMA, NUTRIENTS, REJECT_SCHEMA, conform
from pipelines.text import number

COLUMNS_TABLE = Path(__file__).resolve().parent.parent / "data" / "cronometer_columns.csv"

# Amount units that are a mass or a volume. Volumes count as grams at the density of water, a fair
# approximation for the drinks and liquids logged by volume; anything else ("2 large",
# "1.00 full recipe", "1 cup") gives no grams rather than a guess.
AMOUNT_GRAMS: dict[str, float] = {
    "g": 1.0,
    "gram": 1.0,
    "grams": 1.0,
    "kg": 1000.0,
    "mg": 0.001,
    "oz": 28.349523,
    "lb": 453.59237,
    "lbs": 453.59237,
    "ml": 1.0,
    "l": 1000.0,
    "dl": 100.0,
    "cl": 10.0,
    "fl oz": 29.5735,
    "fl. oz": 29.5735,
    "floz": 29.5735,
}

_HINT = (
    "Is this a Cronometer servings export (Export Data > Food & Recipe Entries)? "
    "Export it again, or point the source at the right files."
)


@cache
def nutrient_columns() -> dict[str, tuple[str, float]]:
    """header_key(header) -> (canonical nutrient column, factor), from cronometer_columns.csv."""
    table = pl.read_csv(COLUMNS_TABLE, infer_schema=False)
    mapping: dict[str, tuple[str, float]] = {}
    for i, row in enumerate(table.iter_rows(named=True), start=2):
        canonical = (row["canonical"] or "").strip()
        if not canonical:
            continue  # known but deliberately not loaded (see its note)
        where = f"{COLUMNS_TABLE}, line {i}"
        if canonical not in NUTRIENTS:
            raise AdapterError(f"{where}: {canonical!r} is not a canonical nutrient column")
        try:
            factor = float(row["factor"])
        except (TypeError, ValueError):
            raise AdapterError(f"{where}: factor {row['factor']!r} is not a number") from None
        mapping[header_key(row["header"])] = (canonical, factor)
    return mapping


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one Cronometer servings export; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _entries(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many servings exports at once, exactly as `parse` one by one would: a nightly run adds
    one small file per person, and per file the expressions and queries of `_entries` cost far
    more than the rows, so they run once per group of files with the same header."""
    return parse_csv_batch(paths, source, _entries)


def _entries(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in DIET_ENTRY_SCHEMA, rejects) for one file or a stack of files (then both with
    FILE_INDEX), so `parse` and `parse_batch` cannot drift apart."""
    source = table.source
    refuse_other_format(table, "cronometer_servings")
    day_i = table.require(["Day", "Date"], _HINT)
    food_i = table.require(["Food Name", "Food"], _HINT)
    amount_i = table.require(["Amount"], _HINT)
    person, person_check = person_column_check(table)

    def optional(names: list[str]) -> pl.Expr:
        index = table.find(names)
        return pl.lit(None, dtype=pl.String) if index is None else pl.col(cell(index))

    day_raw = pl.col(cell(day_i))
    formats = [source.date_format] if source.date_format else ["%Y-%m-%d"]
    day = pl.col("__day")  # parsed once into the frame, with the nutrients below
    day_name = table.headers[day_i]
    refuse_swapped_dates(table, day_raw, day_name, keys=("date_format",))
    checks: list[Check] = [extra_fields_check(table)]
    if person_check is not None:
        checks.append(person_check)
    checks += [
        Check(day_raw.is_null(), day_name, pl.lit(f"{day_name} is blank")),
        Check(day.is_null(), day_name, date_reason(day_raw, source.date_format, None), day_raw),
        Check(
            pl.col(cell(food_i)).is_null(),
            table.headers[food_i],
            pl.lit(f"{table.headers[food_i]} is blank"),
        ),
    ]

    nutrients, parsed, nutrient_checks = _nutrients(table)
    checks += nutrient_checks
    # Each nutrient cell parsed once, each distinct day once; the checks and the output read them.
    days = per_distinct(
        table.frame.get_column(cell(day_i)), lambda text: parse_datetime(text, formats).dt.date()
    )
    good, rejects = split_rejects(table.frame.with_columns(*parsed, days.alias("__day")), checks)

    carried = file_index_schema(table.frame)
    amount = pl.col(cell(amount_i))
    grams = per_distinct(good.get_column(cell(amount_i)), lambda text: _grams(text, source.decimal))
    rows = good.select(
        person.alias("person_id"),
        day.alias("day"),
        optional(["Time"]).alias("time"),
        optional(["Group", "Meal"]).alias("meal"),
        pl.col(cell(food_i)).alias("food"),
        amount.alias("amount_raw"),
        grams.alias("grams"),
        optional(["Category"]).alias("category_raw"),
        *nutrients,
        pl.col(LINE).alias("line"),
        *[pl.col(name) for name in carried],
    )
    return (
        conform(rows, {**DIET_ENTRY_SCHEMA, **carried}),
        conform(rejects, {**REJECT_SCHEMA, **carried}),
    )


def _nutrients(table: CsvTable) -> tuple[list[pl.Expr], list[pl.Expr], list[Check]]:
    """For the canonical nutrient columns found: output expressions, parsing expressions (to add to
    the frame before checking) and the checks on their cells."""
    mapping = nutrient_columns()
    outputs: list[pl.Expr] = []
    parsed: list[pl.Expr] = []
    invalid_checks: list[Check] = []
    negative_checks: list[Check] = []
    seen: set[str] = set()
    for index, header in enumerate(table.headers):
        target = mapping.get(header_key(header))
        if target is None or target[0] in seen:
            # Unknown columns, and a second column for a nutrient already read, stay out.
            continue
        canonical, factor = target
        seen.add(canonical)
        raw = pl.col(cell(index))
        value, _ = number(raw, table.source.decimal)
        value_col = f"__value_{canonical}"
        parsed.append(value.alias(value_col))
        outputs.append((pl.col(value_col) * factor).alias(canonical))
        invalid_checks.append(
            Check(
                # `number`'s invalid, read off the parsed column (a non-blank cell without a
                # value) rather than parsing every cell a second time.
                (raw != "") & pl.col(value_col).is_null(),
                header,
                not_a_number_reason(table.source.decimal, cell=raw),
                raw,
            )
        )
        negative_checks.append(Check(pl.col(value_col) < 0, header, pl.lit(NEGATIVE_REASON), raw))
    # Report a non-number before a negative number in another column: it is the likelier typo.
    return outputs, parsed, invalid_checks + negative_checks


def _grams(amount: pl.Expr, decimal: str) -> pl.Expr:
    """Grams from an Amount such as "100.00 g", "1.5 kg" or "8.00 fl oz"; null for other units."""
    parts = amount.str.extract_groups(r"^([0-9][0-9.,]*)\s*(.*)$")
    quantity, _ = number(parts.struct.field("1"), decimal)
    unit = parts.struct.field("2").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()
    factor = unit.replace_strict(AMOUNT_GRAMS, default=None, return_dtype=pl.Float64)
    return quantity * factor
