"""Cronometer "Daily Nutrition" export (`dailysummary.csv`): one row per day (diet_daily_reported).

Seen header: `Date,Energy (kcal),Alcohol (g),Caffeine (mg),Water (g),Carbs (g),Fiber (g),
Net Carbs (g),Fat (g),Monounsaturated (g),Saturated (g),Trans-Fats (g),Protein (g),Completed`.
The nutrient set follows the user's settings; columns are mapped by the same data table as the
servings export (`pipelines/data/cronometer_columns.csv`) and unknown columns are ignored. Each
loaded row has period "day" and `completed` from the `Completed` column (true/false; null when the
export has no such column or the cell is blank).

Cronometer writes a row of zeros for every day in the exported range that nothing was logged on.
Those are not days of zero intake, so they are rejected with "day not logged (all nutrients
zero)" (all recognised nutrients zero or blank; "... all nutrients blank" when nothing is filled),
which keeps them visible in rejected_rows without feeding zeros into the analysis. A date that
appears twice in one file keeps its first line; the later one is rejected ("duplicate date in
file"). Blank nutrient cells stay null; non-numeric or negative cells, bad dates and summary lines
("Total", "Average", a blank date) are rejected with the column and reason.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipelines.adapters._csv import (
    LINE,
    Check,
    cell,
    extra_fields_check,
    read_csv_table,
    split_rejects,
)
from pipelines.adapters.base import AdapterError, ParseResult
from pipelines.adapters.cronometer_servings import COLUMNS_TABLE, nutrient_columns
from pipelines.adapters.diet_csv import (
    DUPLICATE_DATE_REASON,
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
from pipelines.config import SourceConfig
from pipelines.schema import DIET_REPORTED_SCHEMA, REJECT_SCHEMA, conform

NOT_LOGGED_REASON = "day not logged (all nutrients zero)"
NOT_LOGGED_BLANK_REASON = "day not logged (all nutrients blank)"

_HINT = (
    "Is this a Cronometer Daily Nutrition export (Export Data > Daily Nutrition)? Export it "
    "again, or point the source at the right files."
)


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one Cronometer daily nutrition export; see the module docstring."""
    table = read_csv_table(path, source)
    date_i = table.require(["Date", "Day"], _HINT)
    columns = mapped_columns(table, nutrient_columns())
    if not columns:
        have = ", ".join(repr(h) for h in table.headers)
        raise AdapterError(
            f"{path}: no nutrient column recognised (columns in the file: {have}). {_HINT} "
            f"Nutrient headers are mapped in {COLUMNS_TABLE}; add a line there for a new one."
        )
    completed_i = table.find(["Completed"])
    person, person_check = person_id(table)

    date_raw = pl.col(cell(date_i))
    date_name = table.headers[date_i]
    nutrients = parse_nutrients(table, columns)

    checks: list[Check] = [extra_fields_check(table), summary_row_check(date_raw, date_name)]
    if person_check is not None:
        checks.append(person_check)
    checks += date_checks(table, date_raw, date_name)
    checks += nutrients.checks
    completed: pl.Expr = pl.lit(None, dtype=pl.Boolean)
    if completed_i is not None:
        completed_raw = pl.col(cell(completed_i))
        checks.append(boolean_check(completed_raw, table.headers[completed_i]))
        completed = boolean(completed_raw)[0]
    values = [pl.col(v) for v in nutrients.values.values()]
    checks += [
        Check(
            pl.all_horizontal([v.is_null() for v in values]),
            None,
            pl.lit(NOT_LOGGED_BLANK_REASON),
        ),
        Check(
            pl.all_horizontal([v.fill_null(0) == 0 for v in values]),
            None,
            pl.lit(NOT_LOGGED_REASON),
        ),
    ]

    good, rejects = split_rejects(table.frame.with_columns(nutrients.parsed), checks)
    keyed = good.with_columns(person.alias("__person"), date_expr(date_raw, source).alias("__day"))
    keyed, repeats = reject_repeats(keyed, ["__person", "__day"], date_name, DUPLICATE_DATE_REASON)

    rows = keyed.select(
        pl.col("__person").alias("person_id"),
        pl.col("__day").alias("day"),
        pl.lit("day").alias("period"),
        completed.alias("completed"),
        *nutrients.outputs,
        pl.col(LINE).alias("line"),
    )
    all_rejects = pl.concat([conform(rejects, REJECT_SCHEMA), conform(repeats, REJECT_SCHEMA)])
    return ParseResult(
        rows=conform(rows, DIET_REPORTED_SCHEMA),
        rejects=all_rejects.sort("line"),
        rows_read=table.rows_read,
    )
