"""Checks on the features: one row per person-day, every lab result drawn once, no acute draw in
the chronic analysis. Each runs inside its asset's step, on the step's connection, after the
step wrote its tables (`pipelines.defs._checks`)."""

import dagster as dg
import duckdb

from pipelines.defs._checks import TableCheck
from pipelines.identity import remembered
from pipelines.steps.features import BUILD_MEMORY_LIMIT
from pipelines.store import shard_sources
from pipelines.warehouse import memory_limit


def diet_daily_unique_days(conn: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    query = "SELECT person_id, day, count(*) AS n FROM diet_daily GROUP BY ALL HAVING n > 1"

    def duplicates() -> int:
        # A person's rows are all in their store shard, so a repeated day is repeated within
        # one: grouped a shard at a time, the hash table holds one shard's person-days, not the
        # cohort's (issue 19: +89 MB at 10,000 people over the whole table at once).
        total = 0
        for _, rows in shard_sources(conn, "diet_daily"):
            row = conn.execute(
                f"SELECT count(*) FROM (SELECT person_id, day FROM {rows} "
                "GROUP BY ALL HAVING count(*) > 1)"
            ).fetchone()
            total += int(row[0]) if row else 0
        return total

    # Grouped again only when the table's parts changed: not on a night with nothing new; under
    # the step's memory limit (`BUILD_MEMORY_LIMIT`) a shard's hash table spills, not grows.
    with memory_limit(conn, BUILD_MEMORY_LIMIT):
        dupes = remembered(conn, [query], duplicates)
    return dg.AssetCheckResult(passed=dupes == 0, metadata={"duplicate_days": dupes})


def marker_draws_account_for_results(conn: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    row = conn.execute(
        "SELECT (SELECT count(*) FROM lab_results), (SELECT count(*) FROM marker_draws)"
    ).fetchone()
    results, draws = (row or (0, 0))[0], (row or (0, 0))[1]
    return dg.AssetCheckResult(
        passed=results == draws, metadata={"lab_results": results, "marker_draws": draws}
    )


def acute_draws_excluded(conn: duckdb.DuckDBPyConnection) -> dg.AssetCheckResult:
    row = conn.execute(
        "SELECT count(*) FROM marker_draws WHERE acute AND excluded_reason IS NULL"
    ).fetchone()
    leaked = int(row[0]) if row else 0
    return dg.AssetCheckResult(passed=leaked == 0, metadata={"acute_in_chronic": leaked})


DIET_DAILY_CHECKS = (
    TableCheck("diet_daily", diet_daily_unique_days, "One row per person and day."),
)
MARKER_DRAWS_CHECKS = (
    TableCheck(
        "marker_draws",
        marker_draws_account_for_results,
        "Every lab result appears exactly once in marker_draws.",
    ),
    TableCheck(
        "marker_draws",
        acute_draws_excluded,
        "No acute CRP draw is left in the chronic analysis.",
    ),
)
