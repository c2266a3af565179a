"""Checks on the canonical tables: a raw line loads once, lab results are unique and plausible.

Each check runs inside its table's asset step, on the step's own write connection, after the
table is built (`TABLE_CHECKS`, wired in `assets.py`): a step of its own per check cost a DuckDB
connection and Dagster's step events every run, for a query of milliseconds.
"""

import dagster as dg
import duckdb
import polars as pl

from pipelines.defs._checks import TableCheck
from pipelines.ingest import check_unique_lines
from pipelines.transforms.plausibility import MAX_CRP_MG_L
from pipelines.warehouse import memory_limit

# DuckDB's memory while the unique-lines check groups the (file, line) keys of a pass
# (`ROWS_PER_PASS` rows): room for one pass's hash table, with a margin for passes that come out
# larger (the files are split by hash), since DuckDB fails rather than spills here.
UNIQUE_LINES_MEMORY_LIMIT = "256MB"


def diet_entries_unique_lines(
    conn: duckdb.DuckDBPyConnection, feeding: list[str]
) -> dg.AssetCheckResult:
    # It forgets the files it has checked, so it writes: inside the asset's transaction. Under the
    # connection's 1 GB DuckDB kept the blocks of every entry it grouped, growing with the cohort.
    with memory_limit(conn, UNIQUE_LINES_MEMORY_LIMIT):
        duplicates, files_checked = check_unique_lines(conn, "diet_entries", feeding)
    return dg.AssetCheckResult(
        passed=duplicates == 0,
        metadata={
            "duplicate_keys": duplicates,
            "files_checked": "all" if files_checked is None else files_checked,
        },
    )


def lab_results_unique_key(
    conn: duckdb.DuckDBPyConnection, feeding: list[str]
) -> dg.AssetCheckResult:
    dupes = conn.execute(
        "SELECT person_id, marker, collected_at, count(*) AS n FROM lab_results "
        "GROUP BY ALL HAVING n > 1"
    ).pl()
    return dg.AssetCheckResult(passed=dupes.is_empty(), metadata={"duplicate_keys": dupes.height})


# Canonical unit and a generous plausible range per marker: outside it, a unit went wrong. CRP's
# ceiling is the plausibility rule's (ingest rejects above it), so a value ingest accepted never
# fails this check.
PLAUSIBLE = {
    "hscrp": ("mg/L", 0.0, MAX_CRP_MG_L),
    "crp": ("mg/L", 0.0, MAX_CRP_MG_L),
    "esr": ("mm/h", 0.0, 200.0),
    "il6": ("pg/mL", 0.0, 10000.0),
    "calprotectin": ("ug/g", 0.0, 10000.0),
    "ferritin": ("ng/mL", 0.0, 100000.0),
    "wbc": ("10^3/uL", 0.0, 500.0),
}


def lab_results_plausible_units(
    conn: duckdb.DuckDBPyConnection, feeding: list[str]
) -> dg.AssetCheckResult:
    df = conn.execute("SELECT marker, unit, value FROM lab_results").pl()
    bad = 0
    for marker, (unit, low, high) in PLAUSIBLE.items():
        rows = df.filter(pl.col("marker") == marker)
        bad += rows.filter(
            (pl.col("unit") != unit) | (pl.col("value") < low) | (pl.col("value") > high)
        ).height
    return dg.AssetCheckResult(passed=bad == 0, metadata={"implausible_results": bad})


# Per canonical table, its checks; each is called with the table's connection and the names of
# the sources that feed the table.
TABLE_CHECKS: dict[str, tuple[TableCheck, ...]] = {
    "diet_entries": (
        TableCheck(
            "diet_entries",
            diet_entries_unique_lines,
            "A raw file line loads at most once (among the files loaded since it last passed).",
        ),
    ),
    "lab_results": (
        TableCheck(
            "lab_results",
            lab_results_unique_key,
            "One result per person, marker and collection time.",
        ),
        TableCheck(
            "lab_results",
            lab_results_plausible_units,
            "Every result is in its marker's canonical unit and within a plausible range.",
        ),
    ),
}
