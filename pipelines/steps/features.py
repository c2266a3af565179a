"""The warehouse reads and writes of the feature steps: which diet_entries columns diet_daily
loads, the foods without a category, the groups of people a full build runs over and the gap
days an incremental build brings up to date.

The transforms themselves are pure Polars functions in `pipelines.transforms.food_categories`
and `pipelines.transforms.diet`.
"""

import json

import duckdb
import polars as pl

from pipelines.config import Settings, result_settings
from pipelines.schema import NUTRIENTS
from pipelines.transforms.diet import diet_gap_changes, diet_gap_days
from pipelines.warehouse import ident, insert_frame

# What build_diet_daily reads from diet_entries besides the nutrients (see _daily_from_entries and
# entry_servings in pipelines/transforms/diet.py): the person-day, and the food, source category
# and grams that give the category servings. Not read: time, meal, amount_raw, line, source,
# file_id.
DAILY_ENTRY_COLUMNS = ("person_id", "day", "food", "category_raw", "grams")
# Nutrients build_diet_daily reads row by row (alcohol servings, ultra-processed energy), so they
# are loaded even when no entry reports them.
ROW_NUTRIENTS = ("energy_kcal", "alcohol_g")


def daily_entry_columns(conn: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """The diet_entries columns build_diet_daily uses, and the nutrients no entry reports.

    `SELECT *` made the diet_daily step peak at 14 GB at 10 M entries: it loaded 39 columns of
    which the transform never reads six (the raw text and the provenance columns), and many
    nutrient columns that the sources' formats never fill (the Cronometer servings export leaves
    17 of 28 null). Such all-null nutrients stay in DuckDB and go to build_diet_daily as
    `unreported_nutrients`, which gives the same null daily columns that loading them did.
    """
    table_cols = [d[0] for d in conn.execute("SELECT * FROM diet_entries LIMIT 0").description]
    nutrients = [n for n in NUTRIENTS if n in table_cols]
    # count(col) counts the non-null values: one scan inside DuckDB, nothing loaded.
    counts = (
        conn.execute(
            f"SELECT {', '.join(f'count({ident(n)})' for n in nutrients)} FROM diet_entries"
        ).fetchone()
        if nutrients
        else None
    ) or [0] * len(nutrients)
    unreported = [
        n for n, k in zip(nutrients, counts, strict=True) if k == 0 and n not in ROW_NUTRIENTS
    ]
    wanted = {*DAILY_ENTRY_COLUMNS, *nutrients} - set(unreported)
    return [c for c in table_cols if c in wanted], unreported


def diet_entries_for_daily(conn: duckdb.DuckDBPyConnection) -> tuple[pl.DataFrame, list[str]]:
    """The diet_entries build_diet_daily needs (see `daily_entry_columns`), for everyone."""
    columns, unreported = daily_entry_columns(conn)
    entries = conn.execute(f"SELECT {', '.join(ident(c) for c in columns)} FROM diet_entries").pl()
    return entries, unreported


def unmapped_people_counts(conn: duckdb.DuckDBPyConnection, pairs: pl.DataFrame) -> pl.DataFrame:
    """Entries and energy per (person_id, food, category_raw) for the unmapped `pairs` only: what
    unmapped_foods_from_counts needs to count a food's people across its category_raw values."""
    empty = pl.DataFrame(
        schema={
            "person_id": pl.String,
            "food": pl.String,
            "category_raw": pl.String,
            "entries": pl.Int64,
            "energy_kcal": pl.Float64,
        }
    )
    if pairs.is_empty():
        return empty
    conn.register("_unmapped_pairs", pairs.select("food", "category_raw").to_arrow())
    try:
        return conn.execute(
            "SELECT e.person_id, e.food, e.category_raw, count(*) AS entries, "
            "sum(e.energy_kcal) AS energy_kcal FROM diet_entries e SEMI JOIN _unmapped_pairs u "
            "ON e.food IS NOT DISTINCT FROM u.food "
            "AND e.category_raw IS NOT DISTINCT FROM u.category_raw GROUP BY ALL"
        ).pl()
    finally:
        conn.unregister("_unmapped_pairs")


def settings_salt(settings: Settings) -> str:
    """The settings as text: a change to any that shapes the tables recomputes every person."""
    return json.dumps(result_settings(settings), sort_keys=True, default=str)


# A full build of diet_daily runs over groups of people with about this many input rows each:
# building everyone at once peaked at 8.9 GB at 10 M entries, and memory grew with the cohort.
FULL_BUILD_ROWS = 2_000_000


def register_person_chunks(conn: duckdb.DuckDBPyConnection, inputs: list[str], rows: int) -> int:
    """Split the people of `inputs` (queries with a person_id column) into consecutive groups of
    about `rows` input rows, in a temp table `_chunks` (person_id, chunk); returns how many
    groups. A person is never split: every per-person step sees all of a person's rows."""
    union = " UNION ALL ".join(f"SELECT person_id FROM ({sql})" for sql in inputs)
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _chunks AS
        SELECT person_id,
               (sum(n) OVER (ORDER BY person_id NULLS LAST ROWS UNBOUNDED PRECEDING) - n)
                   // {int(rows)} AS chunk
        FROM (SELECT person_id, count(*) AS n FROM ({union}) GROUP BY person_id)
        """
    )
    row = conn.execute("SELECT count(DISTINCT chunk) FROM _chunks").fetchone()
    # Chunk numbers can skip (a person bigger than `rows`): renumber them densely.
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _chunks AS SELECT person_id, "
        "dense_rank() OVER (ORDER BY chunk) - 1 AS chunk FROM _chunks"
    )
    return int(row[0]) if row else 0


def only_chunk(sql: str, chunk: int) -> str:
    """`sql` restricted to the people of one group of `register_person_chunks` (null-safe)."""
    return (
        f"SELECT t.* FROM ({sql}) t SEMI JOIN (SELECT person_id FROM _chunks "
        f"WHERE chunk = {int(chunk)}) c ON t.person_id IS NOT DISTINCT FROM c.person_id"
    )


def entries_with_categories_sql(entries_sql: str) -> str:
    """Each entry with the categories of its food, for diet_daily's per-day fingerprints: a day
    is recomputed when its foods' categories change, and only then (not on any new food)."""
    return (
        "WITH c AS (SELECT food, category_raw, list(DISTINCT category ORDER BY category) AS cats "
        "FROM food_categories GROUP BY ALL) "
        f"SELECT e.*, c.cats FROM ({entries_sql}) e LEFT JOIN c "
        "ON e.food IS NOT DISTINCT FROM c.food "
        "AND e.category_raw IS NOT DISTINCT FROM c.category_raw"
    )


def replace_gap_days(conn: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Bring the unlogged gap days of the people in `_people` up to date (see diet_gap_keys): a
    new day after a gap, or a removed last day, changes days that had no input change themselves.

    Only the gap days that come or go are written. Deleting and inserting again every gap day of
    the people touched left deleted rows all over the table, and the DuckDB checkpoint after the
    step took 0.9 s instead of 0.04 s on a night when 2,000 people sync a day.
    """
    # Four narrow columns of the touched people's days: cheap next to building the days.
    days = conn.execute(
        "SELECT person_id, day, entries, diet_source FROM diet_daily "
        "WHERE person_id IN (SELECT person_id FROM _people)"
    ).pl()
    gone, new = diet_gap_changes(days)
    if gone.height:
        conn.register("_gone_gaps", gone.to_arrow())
        try:
            conn.execute(
                "DELETE FROM diet_daily t USING _gone_gaps g WHERE t.person_id = g.person_id "
                "AND t.day = g.day AND t.entries = 0 AND t.diet_source IS NULL"
            )
        finally:
            conn.unregister("_gone_gaps")
    schema = conn.execute("SELECT * FROM diet_daily LIMIT 0").pl().schema
    insert_frame(conn, "diet_daily", diet_gap_days(new, settings, schema))
