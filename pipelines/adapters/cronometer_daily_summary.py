"""Cronometer "Daily Nutrition" export (`dailysummary.csv`): one row per day (diet_daily_reported).

Seen header: `Date,Energy (kcal),Alcohol (g),Caffeine (mg),Water (g),Carbs (g),Fiber (g),
Net Carbs (g),Fat (g),Monounsaturated (g),Saturated (g),Trans-Fats (g),Protein (g),Completed`.
The nutrient set follows the user's settings; columns are mapped by the same data table as the
servings export (`pipelines/data/cronometer_columns.csv`) and unknown columns are ignored. Each
loaded row has period "day" and `completed` from the `Completed` column (true/false, also the
`FALSE` of a spreadsheet re-save; null when the export has no such column or the cell is blank).
`completed` false means "not marked", not "incomplete": real exports have it false on every day,
so whether a day counts as logged is decided from its content (see
`pipelines.transforms.diet.diet_daily_from_sums`).

A variant has a `Group` column after `Date`: one row per meal group (Breakfast, Lunch, Dinner,
Snacks, the user's own names) plus a `Total` row per date. The day's intake is its `Total` row,
or the sum of its groups when there is none; the day loads as one row whose `input_lines` counts
the lines it stands for (its Total and group rows), so row accounting stays per input line. A
repeated date and group is rejected ("duplicate date and group in file"). A bad number in the
row the day's intake comes from (the Total, or any group when there is no Total) rejects the
day: that row with its reason, the day's other rows with "day not loaded: another row of this
day was rejected (line N)"; a bad group row under a good Total row is rejected alone.

Files of another format (a Servings export named `dailysummary.csv`, a MyFitnessPal summary, ...)
are refused with a message naming the format that reads them (`pipelines/adapters/signatures.py`).

Cronometer writes a row of zeros for every day in the exported range that nothing was logged on.
Those are not days of zero intake, so they are rejected with "day not logged (all nutrients
zero)" (all recognised nutrients zero or blank; "... all nutrients blank" when nothing is filled),
which keeps them visible in rejected_rows without feeding zeros into the analysis (in the Group
variant an empty day is a Total row with blank nutrients; each line of it is rejected). A date that
appears twice in one file keeps its first line; the later one is rejected ("duplicate date in
file"). Blank nutrient cells stay null; non-numeric or negative cells, bad dates and summary lines
("Total", "Average", a blank date) are rejected with the column and reason.
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
from pipelines.adapters.cronometer_servings import COLUMNS_TABLE, nutrient_columns
from pipelines.adapters.diet_csv import (
    DUPLICATE_DATE_REASON,
    SUMMARY_LABEL,
    boolean,
    boolean_check,
    date_checks,
    date_expr,
    mapped_columns,
    person_id,
    reject_repeats,
    summary_row_check,
)
from pipelines.adapters.diet_csv import (
    nutrient_columns as parse_nutrients,
)
from pipelines.adapters.signatures import refuse_other_format
from pipelines.config import SourceConfig
from pipelines.rules import Check
from pipelines.schema import DIET_REPORTED_SCHEMA, REJECT_SCHEMA, conform
from pipelines.text import format_text

NOT_LOGGED_REASON = "day not logged (all nutrients zero)"
NOT_LOGGED_BLANK_REASON = "day not logged (all nutrients blank)"
DUPLICATE_GROUP_REASON = "duplicate date and group in file"
DAY_REJECTED_REASON = "day not loaded: another row of this day was rejected"
# The group of the one row per date of an export without a Group column.
TOTAL_GROUP = "Total"

_HINT = (
    "Is this a Cronometer Daily Nutrition export (Export Data > Daily Nutrition)? Export it "
    "again, or point the source at the right files."
)


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one Cronometer daily nutrition export; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _days(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many daily nutrition exports at once, exactly as `parse` one by one would
    (`parse_csv_batch`)."""
    return parse_csv_batch(paths, source, _days)


def _days(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in DIET_REPORTED_SCHEMA, rejects) for one file or a stack of files (then both with
    FILE_INDEX). Days, their groups and repeats are per file: every key, join on LINE and sort
    by line starts with `per_file`, so a stack never mixes two files' rows of a day."""
    source, path = table.source, table.path
    refuse_other_format(table, "cronometer_daily_summary")
    date_i = table.require(["Date", "Day"], _HINT)
    columns = mapped_columns(table, nutrient_columns())
    if not columns:
        have = ", ".join(repr(h) for h in table.headers)
        raise AdapterError(
            f"{path}: no nutrient column recognised (columns in the file: {have}). {_HINT} "
            f"Nutrient headers are mapped in {COLUMNS_TABLE}; add a line there for a new one."
        )
    completed_i = table.find(["Completed"])
    group_i = table.find(["Group"])
    person, person_check = person_id(table)

    date_raw = pl.col(cell(date_i))
    date_name = table.headers[date_i]
    nutrients = parse_nutrients(table, columns)

    checks: list[Check] = [extra_fields_check(table), summary_row_check(date_raw, date_name)]
    if person_check is not None:
        checks.append(person_check)
    checks += date_checks(table, date_raw, date_name)
    completed: pl.Expr = pl.lit(None, dtype=pl.Boolean)
    if completed_i is not None:
        completed_raw = pl.col(cell(completed_i))
        checks.append(boolean_check(completed_raw, table.headers[completed_i]))
        completed = boolean(completed_raw)[0]
    if group_i is None:
        # One row per date: the row is the day's total.
        group, repeat_reason = pl.lit(TOTAL_GROUP), DUPLICATE_DATE_REASON
    else:
        group_raw = pl.col(cell(group_i))
        group_name = table.headers[group_i]
        checks.append(Check(group_raw.is_null(), group_name, pl.lit(f"{group_name} is blank")))
        group, repeat_reason = group_raw, DUPLICATE_GROUP_REASON

    values = [pl.col(v) for v in nutrients.values.values()]
    empty_checks = [
        Check(
            pl.all_horizontal([v.is_null() for v in values]), None, pl.lit(NOT_LOGGED_BLANK_REASON)
        ),
        Check(
            pl.all_horizontal([v.fill_null(0) == 0 for v in values]),
            None,
            pl.lit(NOT_LOGGED_REASON),
        ),
    ]
    if group_i is None:
        # A row is a day: an empty one is rejected before repeats are looked for, so that a
        # repeated date's first usable line is the one that loads.
        checks += nutrients.checks + empty_checks

    # Rows that cannot be placed on a day (and group), or carry a bad number, are rejected.
    placed, alone = split_rejects(table.frame.with_columns(nutrients.parsed), checks)
    carried = per_file(table.frame)
    key = [*carried, "__person", "__day"]
    placed = placed.with_columns(
        person.alias("__person"),
        date_expr(date_raw, source).alias("__day"),
        group.alias("__group"),
        completed.alias("__completed"),
    ).with_columns(pl.col("__group").str.contains(SUMMARY_LABEL).alias("__total"))
    fine, bad = split_rejects(placed, nutrients.checks)
    # reject_repeats keeps repeats within a file by itself.
    fine, repeats = reject_repeats(fine, ["__person", "__day", "__group"], date_name, repeat_reason)

    # With groups, a bad number in the row the day's total comes from (the Total row, or any
    # group when there is no Total) rejects the day's other rows too: a day without one of its
    # meals would understate intake. A bad group row under a good Total row only costs itself.
    has_total = pl.col("__total").any().over(key)
    bad_days = (
        placed.with_columns(has_total.alias("__has_total"))
        .join(fine.select(*carried, LINE), on=[*carried, LINE], how="anti")
        .join(repeats.select(*carried, pl.col("line").alias(LINE)), on=[*carried, LINE], how="anti")
        .filter(pl.col("__total") | ~pl.col("__has_total"))
        .group_by(key)
        .agg(pl.col(LINE).min().alias("__bad_line"))
    )
    spoiled = fine.join(bad_days, on=key, how="inner", nulls_equal=True)
    fine = fine.join(bad_days, on=key, how="anti", nulls_equal=True)
    spoiled_rejects = spoiled.select(
        pl.col(LINE).cast(pl.Int64).alias("line"),
        pl.lit(None, dtype=pl.String).alias("column"),
        format_text(f"{DAY_REJECTED_REASON} (line {{}})", pl.col("__bad_line")).alias("reason"),
        pl.col(RAW).alias("raw"),
        *carried,
    )

    # The day's values on each of its rows: the Total row's, or the sum of the groups (a nutrient
    # no group reported stays null). An empty day is then rejected on every one of its lines.
    fine = fine.with_columns(has_total.alias("__has_total")).with_columns(
        pl.when(pl.col("__has_total"))
        .then(pl.col(v).filter(pl.col("__total")).first())
        .when(pl.col(v).is_not_null().any())
        .then(pl.col(v).sum())
        .over(key)
        .alias(v)
        for v in nutrients.values.values()
    )
    fine, empty_days = split_rejects(fine, empty_checks)

    # One row per day: the Total row when there is one, else the day's first group row.
    chosen = pl.col("__total") | ~pl.col("__has_total")
    days = (
        fine.with_columns(
            pl.len().over(key).cast(pl.Int64).alias("__lines"),
            pl.when(pl.col("__has_total"))
            .then(pl.col("__completed"))
            .otherwise(pl.col("__completed").max().over(key))
            .alias("__completed"),
        )
        .sort([*carried, LINE])
        .filter(chosen)
        .unique(subset=key, keep="first", maintain_order=True)
    )
    rows = days.select(
        pl.col("__person").alias("person_id"),
        pl.col("__day").alias("day"),
        pl.lit("day").alias("period"),
        pl.col("__completed").alias("completed"),
        *nutrients.outputs,
        pl.col(LINE).alias("line"),
        pl.col("__lines").alias("input_lines"),
        *carried,
    )
    schema = file_index_schema(table.frame)
    reject_schema = {**REJECT_SCHEMA, **schema}
    all_rejects = pl.concat(
        [conform(r, reject_schema) for r in (alone, repeats, bad, spoiled_rejects, empty_days)]
    )
    return conform(rows, {**DIET_REPORTED_SCHEMA, **schema}), all_rejects.sort([*carried, "line"])
