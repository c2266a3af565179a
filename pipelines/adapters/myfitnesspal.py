"""MyFitnessPal exports (File > Export, e.g. `Nutrition-Summary-2026-01-01-to-2026-10-01.csv`).

Two shapes, chosen by `options.level` in sources.yaml:

- default (`level: daily`), table `diet_daily_reported`: the "Nutrition Summary" export,
  `Date,Meal,Calories,Fat (g),Saturated Fat,...,Protein (g),Vitamin A,Vitamin C,Calcium,Iron,Note`,
  one row per meal per day (meal names are the user's own; a meal can have several rows a day)
  and no food names. The meals of a person-day are summed into ONE row (period "day", `line` =
  the first meal row's line, `input_lines` = how many meal rows it sums). Accounting is per input
  line like every other format: `rows_read` is the file's data lines, and a day loaded counts its
  `input_lines`, so 872 meal rows over 338 days are 872 lines read, not 338. A meal row with a
  bad number rejects its whole day
  (a day summed without one of its meals would understate intake): that row is rejected with its
  reason and the day's other meal rows with "day not loaded: another meal row of this day was
  rejected" (value "line N", that row), each with its own line. Rows without any nutrient value
  (a note on its own) are rejected as "note row (no nutrient values)" without affecting their day.
- `level: entries`, table `diet_entries`: the per-food shape
  `Date,Meal,Food,Calories,Fat (g),Carbohydrates (g),Fiber,Protein (g),Sodium (mg)`, one row per
  food, `food` from Food, `meal` from Meal, grams null (MFP gives no weight).

Nutrient headers are mapped by the data table `pipelines/data/mfp_columns.csv` (header, canonical,
factor, note). Vitamin A, Vitamin C, Calcium and Iron are NOT loaded: MFP exports them as % of the
daily value, whose reference amount depends on the label regulation in force, so they cannot be
turned into amounts honestly. Potassium has no canonical column; Note is ignored. Numbers may
carry thousands separators ("1,234" in quotes); blank cells stay null. Dates are ISO unless
`date_format` is set; file names play no part (persons come from `person:`).
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
    extra_fields_check,
    file_index_schema,
    parse_csv_batch,
    per_file,
    read_csv_table,
    split_rejects,
)
from pipelines.adapters.base import AdapterError, BatchResult, ParseResult
from pipelines.adapters.diet_csv import (
    SUMMARY_LABEL,
    column_table,
    date_checks,
    date_expr,
    mapped_columns,
    nutrient_columns,
    person_id,
    summary_row_check,
)
from pipelines.adapters.signatures import refuse_other_format
from pipelines.config import SourceConfig
from pipelines.rules import Check
from pipelines.schema import DIET_ENTRY_SCHEMA, DIET_REPORTED_SCHEMA, REJECT_SCHEMA, conform
from pipelines.text import format_text

COLUMNS_TABLE = Path(__file__).resolve().parent.parent / "data" / "mfp_columns.csv"
LEVELS = ("daily", "day", "entries")
NOTE_REASON = "note row (no nutrient values)"
DAY_REJECTED_REASON = "day not loaded: another meal row of this day was rejected"

_HINT = (
    "Is this a MyFitnessPal export (File > Export > Nutrition Summary)? Export it again, or "
    "point the source at the right files."
)


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one MyFitnessPal export; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _diary(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many MyFitnessPal exports at once, exactly as `parse` one by one would
    (`parse_csv_batch`)."""
    return parse_csv_batch(paths, source, _diary)


def _diary(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in DIET_ENTRY_SCHEMA or DIET_REPORTED_SCHEMA, rejects) for one file or a stack of
    files (then both with FILE_INDEX); days are summed and spoiled within each file."""
    source, path = table.source, table.path
    level = source.options.get("level", "daily")
    if level not in LEVELS:
        raise AdapterError(
            f"{path}: source {source.name!r}, key 'options.level': {level!r} is not one of "
            f"{list(LEVELS)} ('entries' for the per-food export, default 'daily')."
        )
    refuse_other_format(table, "myfitnesspal")
    date_i = table.require(["Date", "Day"], _HINT)
    food_i = None
    if level == "entries":
        food_i = table.require(
            ["Food", "Food Name"],
            f"Source {source.name!r} has options.level 'entries', which reads one row per food; "
            "for the Nutrition Summary (one row per meal) remove that option.",
        )
    columns = mapped_columns(table, column_table(COLUMNS_TABLE))
    if not columns:
        have = ", ".join(repr(h) for h in table.headers)
        raise AdapterError(
            f"{path}: no nutrient column recognised (columns in the file: {have}). {_HINT} "
            f"Nutrient headers are mapped in {COLUMNS_TABLE}; add a line there for a new one."
        )
    meal_i = table.find(["Meal"])
    person, person_check = person_id(table)

    date_raw = pl.col(cell(date_i))
    date_name = table.headers[date_i]
    nutrients = nutrient_columns(table, columns)
    frame = table.frame.with_columns(nutrients.parsed)
    meal = pl.lit(None, dtype=pl.String) if meal_i is None else pl.col(cell(meal_i))

    checks: list[Check] = [extra_fields_check(table), summary_row_check(date_raw, date_name)]
    if food_i is not None:
        food = pl.col(cell(food_i))
        food_name = table.headers[food_i]
        checks.append(
            Check(food.str.contains(SUMMARY_LABEL), food_name, pl.lit("summary row"), food)
        )
    if person_check is not None:
        checks.append(person_check)
    checks += date_checks(table, date_raw, date_name)
    carried = per_file(table.frame)
    schema = file_index_schema(table.frame)

    if food_i is not None:
        checks.append(Check(food.is_null(), food_name, pl.lit(f"{food_name} is blank")))
        good, rejects = split_rejects(frame, checks + nutrients.checks)
        rows = good.select(
            person.alias("person_id"),
            date_expr(date_raw, source).alias("day"),
            meal.alias("meal"),
            food.alias("food"),
            *nutrients.outputs,
            pl.col(LINE).alias("line"),
            *carried,
        )
        return conform(rows, {**DIET_ENTRY_SCHEMA, **schema}), conform(
            rejects, {**REJECT_SCHEMA, **schema}
        )

    # Daily level. Rows that cannot be placed on a day, or carry no numbers, are rejected alone.
    checks.append(
        Check(
            pl.all_horizontal([pl.col(cell(index)).is_null() for index, _, _ in columns]),
            None,
            pl.lit(NOTE_REASON),
        )
    )
    placed, alone = split_rejects(frame, checks)
    placed = placed.with_columns(
        person.alias("__person"), date_expr(date_raw, source).alias("__day")
    )
    # A bad number rejects its row and, below, the rest of its day.
    fine, bad = split_rejects(placed, nutrients.checks)
    # Days, and lines, are per file (`per_file`): a stack must not mix two files' days.
    key = [*carried, "__person", "__day"]
    bad_days = (
        placed.join(fine.select(*carried, LINE), on=[*carried, LINE], how="anti")
        .group_by(key)
        .agg(pl.col(LINE).min().alias("__bad_line"))
    )
    spoiled = fine.join(bad_days, on=key, how="inner", nulls_equal=True)
    fine = fine.join(bad_days, on=key, how="anti", nulls_equal=True)
    spoiled_rejects = spoiled.select(
        pl.col(LINE).cast(pl.Int64).alias("line"),
        pl.lit(None, dtype=pl.String).alias("column"),
        pl.lit(DAY_REJECTED_REASON).alias("reason"),
        # Which row spoiled the day: the line to look at.
        format_text("line {}", pl.col("__bad_line")).alias("value"),
        pl.col(RAW).alias("raw"),
        *carried,
    )

    per_meal = fine.select(*key, LINE, *nutrients.outputs)
    names = list(nutrients.values)
    days = (
        per_meal.group_by(key)
        .agg(
            pl.col(LINE).min().alias("line"),
            pl.len().cast(pl.Int64).alias("input_lines"),
            *[pl.col(n).sum() for n in names],
            *[pl.col(n).count().alias(f"__n_{n}") for n in names],
        )
        .select(
            pl.col("__person").alias("person_id"),
            pl.col("__day").alias("day"),
            pl.lit("day").alias("period"),
            # A nutrient no meal of the day reported stays null, not zero.
            *[pl.when(pl.col(f"__n_{n}") > 0).then(pl.col(n)).alias(n) for n in names],
            "line",
            "input_lines",
            *carried,
        )
        .sort([*carried, "line"])
    )
    reject_schema = {**REJECT_SCHEMA, **schema}
    all_rejects = pl.concat(
        [conform(r, reject_schema) for r in (alone, bad, spoiled_rejects)]
    ).sort([*carried, "line"])
    return conform(days, {**DIET_REPORTED_SCHEMA, **schema}), all_rejects
