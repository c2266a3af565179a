"""From canonical rows to analysable features: food categories, `diet_daily`, `marker_draws`.

The transforms are pure Polars functions in `pipelines.transforms.diet` and
`pipelines.analysis.draws`; these assets only read their inputs from the warehouse and write the
results back, all inside one transaction each.
"""

import json
from dataclasses import asdict

import dagster as dg
import duckdb
import polars as pl

from pipelines.analysis.draws import build_marker_draws, marker_trends
from pipelines.analysis.sufficiency import data_sufficiency as sufficiency_table
from pipelines.config import Settings
from pipelines.defs._metadata import column_schema, md_table
from pipelines.defs._versions import CODE_VERSION
from pipelines.defs.resources import ProjectResource
from pipelines.incremental import (
    only_days,
    only_people,
    plan_days,
    plan_people,
    record,
    record_days,
    register_people,
    replace_days,
    replace_people,
)
from pipelines.schema import NUTRIENTS
from pipelines.transforms.diet import (
    build_diet_daily,
    build_diet_summary,
    categorise_foods,
    diet_gap_changes,
    diet_gap_days,
    load_overrides,
    unmapped_foods_from_counts,
    unmapped_pairs,
)
from pipelines.warehouse import ident, insert_frame, replace_table

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
    """The settings as text: a change to any of them recomputes every person."""
    return json.dumps(asdict(settings), sort_keys=True, default=str)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "food_categories",
            code_version=CODE_VERSION,
            group_name="features",
            kinds={"polars", "duckdb"},
            deps=["diet_entries"],
            description="Each distinct logged food with its gut-food categories and what "
            "assigned each one: the USDA reference item it matched (with the score), the rule "
            "(pipelines/data/taxonomy.csv) or the user's override line.",
        ),
        dg.AssetSpec(
            "unmapped_foods",
            code_version=CODE_VERSION,
            group_name="features",
            kinds={"polars", "duckdb"},
            deps=["diet_entries"],
            description="Foods without a category, with entry counts and share of logged "
            "energy, so the user can see what to add to the overrides file.",
        ),
    ],
    pool="duckdb_writer",
)
def food_taxonomy(context: dg.AssetExecutionContext, project: ProjectResource):
    """Categorise every distinct (food, source category) pair, with the user's overrides.

    Runs over all pairs every time (a few thousand names, matched once each and cached), so an
    edited overrides file or taxonomy changes food_categories at once; diet_daily then rebuilds
    only the days that eat a food whose categories changed (entries_with_categories_sql).
    """
    config = project.config()
    overrides = (
        load_overrides(config.path.parent / config.settings.food_overrides)
        if config.settings.food_overrides
        else None
    )
    with project.warehouse().write() as conn:
        # Counted in DuckDB: loading every entry's (person, food, category, energy) into Polars
        # took 4-6 s at 10 M entries, for a few thousand distinct foods.
        pairs = conn.execute(
            "SELECT food, category_raw, count(*) AS entries, sum(energy_kcal) AS energy_kcal "
            "FROM diet_entries GROUP BY food, category_raw"
        ).pl()
        categories = categorise_foods(pairs, overrides=overrides)
        unmapped = unmapped_foods_from_counts(
            unmapped_people_counts(conn, unmapped_pairs(pairs, categories)),
            categories,
            float(pairs["energy_kcal"].sum() or 0.0),
        )
        replace_table(conn, "food_categories", categories)
        replace_table(conn, "unmapped_foods", unmapped)
    mapped_share = 1.0 - float(unmapped["energy_share"].sum() or 0.0)
    yield dg.MaterializeResult(
        asset_key="food_categories",
        metadata={
            "dagster/row_count": categories.height,
            "foods_mapped": categories["food"].n_unique(),
            "foods_by_reference": categories.filter(
                pl.col("rule_id").str.starts_with("reference:")
            )["food"].n_unique(),
            "override_lines": 0 if overrides is None else overrides.height,
            "energy_share_mapped": round(mapped_share, 4),
            "by_category": md_table(categories.group_by("category").len().sort("category")),
        },
    )
    yield dg.MaterializeResult(
        asset_key="unmapped_foods",
        metadata={"dagster/row_count": unmapped.height, "energy_share": round(1 - mapped_share, 4)},
    )


@dg.asset(
    code_version=CODE_VERSION,
    group_name="features",
    kinds={"polars", "duckdb"},
    pool="duckdb_writer",
    deps=["diet_entries", "diet_daily_reported", "food_categories"],
)
def diet_daily(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    """One row per person-day: nutrients, gut-food category servings and whether the day was logged.

    Days between a person's first and last entry with nothing (or too little) logged are kept with
    `logged = false`, so exposure windows can require enough logged days instead of treating a
    forgotten day as a day of eating nothing. `logged_rule` says which rule decided each day's
    `logged` (food entries, a reported total's energy, "marked complete", or nothing logged).

    Incremental by (person, day) (`plan_days`): only days whose entries, reported totals or foods'
    categories changed are built again; the touched people's gap days are then rebuilt from their
    range, since a new or removed day moves them.
    """
    settings = project.config().settings
    with project.warehouse().write() as conn:
        columns, unreported = daily_entry_columns(conn)
        entries_sql = f"SELECT {', '.join(ident(c) for c in columns)} FROM diet_entries"
        # Reported rows without a day are person-level (diet_summary's); no day uses them.
        reported_sql = "SELECT * FROM diet_daily_reported WHERE day IS NOT NULL"
        categories = conn.execute("SELECT * FROM food_categories").pl()
        plan = plan_days(
            conn,
            "diet_daily",
            inputs=[entries_with_categories_sql(entries_sql), reported_sql],
            outputs=["diet_daily"],
            salt=settings_salt(settings) + json.dumps(sorted(unreported)),
            # The taxonomy reaches a day only through its foods' categories, fingerprinted above:
            # a new rule recomputes the days that eat the foods it matches, not everyone.
            exclude_data=("taxonomy.csv",),
        )
        if plan.everyone:
            chunks = register_person_chunks(conn, [entries_sql, reported_sql], FULL_BUILD_ROWS)
            for chunk in range(chunks):
                entries = conn.execute(only_chunk(entries_sql, chunk)).pl()
                reported = conn.execute(only_chunk(reported_sql, chunk)).pl()
                daily = build_diet_daily(entries, categories, settings, reported, unreported)
                if chunk == 0:
                    replace_table(conn, "diet_daily", daily)
                else:
                    insert_frame(conn, "diet_daily", daily)
            if chunks == 0:
                daily = build_diet_daily(
                    conn.execute(entries_sql).pl(), categories, settings, None, unreported
                )
                replace_table(conn, "diet_daily", daily)
        else:
            entries = conn.execute(only_days(entries_sql)).pl()
            reported = conn.execute(only_days(reported_sql)).pl()
            # Gap days depend on the person's whole range, so they are left to replace_gap_days.
            daily = build_diet_daily(
                entries, categories, settings, reported, unreported, fill_gaps=False
            )
            replace_days(conn, "diet_daily", daily)
            replace_gap_days(conn, settings)
        record_days(conn, plan)
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (logged), count(DISTINCT person_id) FROM diet_daily"
        ).fetchone()
    rows, logged, people = row or (0, 0, 0)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": rows,
            "dagster/column_schema": column_schema(daily),
            "days_logged": logged,
            "people": people,
            "people_recomputed": "all" if plan.everyone else len(plan.people),
            "days_recomputed": "all" if plan.everyone else plan.days,
        }
    )


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


@dg.asset(
    code_version=CODE_VERSION,
    group_name="features",
    kinds={"polars", "duckdb"},
    pool="duckdb_writer",
    deps=["diet_daily_reported"],
)
def diet_summary(
    context: dg.AssetExecutionContext, project: ProjectResource
) -> dg.MaterializeResult:
    """Person-level intake for cross-sectional cohorts (reported totals without a date, such as
    NHANES recall means): nutrients, energy-adjusted fibre and the DII with its parameter count."""
    with project.warehouse().write() as conn:
        reported = conn.execute("SELECT * FROM diet_daily_reported").pl()
        summary = build_diet_summary(reported)
        replace_table(conn, "diet_summary", summary)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": summary.height, "people": summary["person_id"].n_unique()}
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "marker_draws",
            code_version=CODE_VERSION,
            group_name="features",
            kinds={"polars", "duckdb"},
            deps=["lab_results"],
            description="Every lab result as an analysable draw: log scale, below-detection "
            "values at LOD/sqrt(2), acute CRP (> 10 mg/L) and the washout after it excluded with "
            "a reason, draws close together merged into one visit.",
        ),
        dg.AssetSpec(
            "marker_trends",
            code_version=CODE_VERSION,
            group_name="features",
            kinds={"polars", "duckdb"},
            deps=["lab_results"],
            description="Per person and marker: chronic baseline, Theil-Sen trend with CI, "
            "hs-CRP category and whether the latest change exceeds the reference change value.",
        ),
    ],
    pool="duckdb_writer",
)
def marker_models(context: dg.AssetExecutionContext, project: ProjectResource):
    """Separate acute from chronic inflammation and summarise each person's chronic course."""
    settings = project.config().settings
    labs_sql = "SELECT * FROM lab_results"
    with project.warehouse().write() as conn:
        plan = plan_people(
            conn,
            "marker_models",
            inputs=[labs_sql],
            outputs=["marker_draws", "marker_trends"],
            salt=settings_salt(settings),
        )
        if plan.everyone:
            draws = build_marker_draws(conn.execute(labs_sql).pl(), settings)
            replace_table(conn, "marker_draws", draws)
            replace_table(conn, "marker_trends", marker_trends(draws))
        else:
            register_people(conn, plan.touched)
            draws = build_marker_draws(conn.execute(only_people(labs_sql)).pl(), settings)
            replace_people(conn, "marker_draws", draws)
            replace_people(conn, "marker_trends", marker_trends(draws))
        record(conn, plan)
        reasons = conn.execute(
            "SELECT excluded_reason, count(*) AS len FROM marker_draws GROUP BY ALL "
            "ORDER BY excluded_reason NULLS FIRST"
        ).pl()
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (excluded_reason IS NULL), count(*) FILTER (acute), "
            "(SELECT count(*) FROM marker_trends) FROM marker_draws"
        ).fetchone()
    draws_n, chronic, acute, trends_n = row or (0, 0, 0, 0)
    recomputed = "all" if plan.everyone else len(plan.touched)
    yield dg.MaterializeResult(
        asset_key="marker_draws",
        metadata={
            "dagster/row_count": draws_n,
            "chronic_draws": chronic,
            "acute_draws": acute,
            "excluded_by_reason": md_table(reasons),
            "people_recomputed": recomputed,
        },
    )
    yield dg.MaterializeResult(
        asset_key="marker_trends",
        metadata={"dagster/row_count": trends_n, "people_recomputed": recomputed},
    )


@dg.asset(
    code_version=CODE_VERSION,
    name="data_sufficiency",
    group_name="features",
    kinds={"polars", "duckdb"},
    pool="duckdb_writer",
    deps=["marker_draws"],
)
def data_sufficiency_asset(
    context: dg.AssetExecutionContext, project: ProjectResource
) -> dg.MaterializeResult:
    """Per person and marker: how many more chronic draws would be needed to detect a 20% and a
    50% change, given the person's own observed variation (or the published one, early on), read
    from the simulated lookup table pipelines/data/sufficiency_draws.csv (see
    pipelines/analysis/sufficiency.py; `gutsignal sufficiency-table` regenerates it)."""
    with project.warehouse().write() as conn:
        draws = conn.execute("SELECT * FROM marker_draws").pl()
        table = sufficiency_table(draws)
        replace_table(conn, "data_sufficiency", table)
    return dg.MaterializeResult(metadata={"dagster/row_count": table.height})
