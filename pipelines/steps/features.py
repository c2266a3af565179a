"""The feature steps without Dagster: diet_daily, diet_summary and marker_models as the assets
in `pipelines/defs/features/assets.py` run them (and the benchmark measures them), with their
warehouse reads and writes: which diet_entries columns diet_daily loads, the groups of people a
full build runs over and the gap days an incremental build brings up to date. food_taxonomy's
step is `pipelines.steps.taxonomy`.

The transforms themselves are pure Polars functions in `pipelines.transforms.diet` and
`pipelines.analysis.draws`. Each step function runs inside the caller's transaction
(`Warehouse.write()`).
"""

import json
import tempfile
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Final

import duckdb
import polars as pl

from pipelines.analysis.draws import build_marker_draws, marker_trends
from pipelines.config import Settings, result_settings
from pipelines.identity import inputs_identity
from pipelines.incremental import (
    DayPlan,
    PersonPlan,
    changed,
    full_salt,
    in_scope,
    only_days,
    only_people,
    parse_salt,
    plan_days,
    plan_people,
    plan_whole,
    quiet_days,
    record,
    record_days,
    register_people,
    row_identity,
)
from pipelines.literals import sql_text
from pipelines.schema import NUTRIENTS
from pipelines.steps.diet_days import diet_days, diet_days_of_groups, footers_cached
from pipelines.store import TABLES as STORE_TABLES
from pipelines.store import (
    in_shards,
    replace_all,
    replace_people,
    rewrite,
    root_of,
    shard_count,
    shard_sources,
    shard_sql,
)
from pipelines.store_writes import write_shards
from pipelines.transforms.diet import build_diet_summary, diet_gap_changes, diet_gap_days
from pipelines.warehouse import ident, memory_limit, replace_table, table_exists

# What diet_daily reads from diet_entries besides the nutrients (`pipelines.steps.diet_days`):
# the person-day, and the food, source category and grams that give the category servings. Not
# read: time, meal, amount_raw, line, source, file_id.
DAILY_ENTRY_COLUMNS = ("person_id", "day", "food", "category_raw", "grams")
# Nutrients diet_daily reads row by row (alcohol servings, ultra-processed energy), so they
# are loaded even when no entry reports them.
ROW_NUTRIENTS = ("energy_kcal", "alcohol_g")


def daily_entry_columns(conn: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """The diet_entries columns diet_daily uses, and the nutrients no entry reports.

    `SELECT *` made the diet_daily step peak at 14 GB at 10 M entries: it loaded 39 columns of
    which the transform never reads six (the raw text and the provenance columns), and many
    nutrient columns that the sources' formats never fill (the Cronometer servings export leaves
    17 of 28 null). Such all-null nutrients stay in DuckDB and go to `diet_days` as
    `unreported_nutrients`, which gives the same null daily columns that loading them did.
    """
    table_cols = [d[0] for d in conn.execute("SELECT * FROM diet_entries LIMIT 0").description]
    nutrients = [n for n in NUTRIENTS if n in table_cols]
    reported = columns_with_values(conn, "diet_entries", nutrients)
    unreported = [n for n in nutrients if n not in reported and n not in ROW_NUTRIENTS]
    wanted = {*DAILY_ENTRY_COLUMNS, *nutrients} - set(unreported)
    return [c for c in table_cols if c in wanted], unreported


def columns_with_values(
    conn: duckdb.DuckDBPyConnection, table: str, columns: list[str]
) -> set[str]:
    """The numeric `columns` of `table` that hold any value (NaN counts as one).

    One EXISTS per column, inside DuckDB: a column with values stops at its first, and one
    without skips the Parquet row groups whose statistics say they hold only nulls, where
    counting every column's values read the whole table every night. The test is written as
    `>= -inf` (true for every value of a DOUBLE, NaN included, as `IS NOT NULL` is) because
    DuckDB skips row groups by their min/max for a comparison, not for `IS NOT NULL`."""
    if not columns:
        return set()
    row = conn.execute(
        "SELECT "
        + ", ".join(
            f"EXISTS (SELECT 1 FROM {ident(table)} WHERE {ident(c)} >= '-Infinity'::DOUBLE)"
            for c in columns
        )
    ).fetchone()
    return {c for c, has in zip(columns, row or [False] * len(columns), strict=True) if has}


def settings_salt(settings: Settings) -> str:
    """The settings as text: a change to any that shapes the tables recomputes every person."""
    return json.dumps(result_settings(settings), sort_keys=True, default=str)


# A full build of diet_daily runs over groups of people with about this many input rows each:
# building everyone at once peaked at 8.9 GB at 10 M entries, and memory grew with the cohort.
FULL_BUILD_ROWS = 2_000_000


# DuckDB's memory while `replace_with_parts` copies the spooled files into the table
# (`memory_limit`): the copy streams, but under the connection's 1 GB DuckDB kept every block it
# wrote, so the step's peak grew with the table.
WRITE_MEMORY_LIMIT = "256MB"
# The spooled parts are read once, right away, and deleted: compressed for speed, not size
# (zstd, Polars' default, took half as long again to write).
SPOOL_COMPRESSION: Final = "lz4"
# DuckDB's memory while `replace_by_person_chunks` reads the groups of people, and while
# diet_daily plans, builds and records its days: under the connection's 1 GB DuckDB held what
# the plan and the record took from every person-day, so the step's peak grew with the cohort
# (1.02 GB at 10,000 people against 0.86 GB at 2,000).
BUILD_MEMORY_LIMIT = "256MB"


def shard_scope(conn: duckdb.DuckDBPyConnection, shards: Collection[int] | None) -> str | None:
    """The scope (`in_shards`, for `plan_people` and `plan_days`) of a run of some of the store's
    shards; None for a run of every shard (or `shards` None), which is the step over everyone,
    exactly as before partitions (`pipelines.defs.partitions`)."""
    if shards is None:
        return None
    count = shard_count(root_of(conn))
    return None if set(shards) >= set(range(count)) else in_shards(shards, count)


def full_build_shards(
    conn: duckdb.DuckDBPyConnection,
    outputs: list[str],
    shards: Collection[int] | None,
    scope: str | None,
) -> list[int] | None:
    """The store shards a step's full build replaces (`replace_with_parts`): all of them (None)
    over everyone, or on a first run of some shards (the other shards' parts start empty, and
    their people are planned as new when their shards run); else only the scope's shards, which
    is "everyone" under a scope, the other shards' rows and parts kept as they are."""
    if scope is None or shards is None or not all(table_exists(conn, t) for t in outputs):
        return None
    return sorted(set(shards))


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


def replace_by_person_chunks(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    inputs: list[str],
    rows: int,
    build: Callable[[list[str]], pl.DataFrame],
    shards: Collection[int] | None = None,
) -> int:
    """Replace the store table `table` with `build(queries)`, run once per group of people of
    about `rows` input rows (`register_person_chunks`), `queries` being each query of `inputs`
    restricted to the group's people (`build` reads them, into Polars or inside DuckDB). Returns
    how many groups ran. With `shards`, only those shards are replaced (`replace_with_parts`):
    `inputs` then hold only their people.

    For per-person steps only: the result of a group must not depend on the other groups.
    Memory is one group's inputs and outputs, whatever the size of the cohort: each group's
    result is spooled to Parquet (`replace_with_parts`).
    """
    chunks = register_person_chunks(conn, inputs, rows)

    def built(chunk: int) -> pl.DataFrame:
        return build([only_chunk(conn, sql, chunk) if chunks else sql for sql in inputs])

    # Under the connection's 1 GB DuckDB kept what the step had scanned cached beside each
    # group's frames, up to its limit, so the peak grew with the inputs.
    with memory_limit(conn, BUILD_MEMORY_LIMIT):
        # No rows at all: one build on the (empty) inputs still gives the table its schema.
        replace_with_parts(
            conn, table, (built(chunk) for chunk in range(max(chunks, 1))), shards=shards
        )
    return chunks


def replace_with_parts(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    parts: Iterable[pl.DataFrame],
    write_memory: str = WRITE_MEMORY_LIMIT,
    shards: Collection[int] | None = None,
) -> None:
    """Replace `table` with the rows of `parts`, in order; the first part gives the schema when
    no part has a row. Each part is spooled to Parquet as it comes and the table written by one
    `CREATE TABLE ... AS SELECT` over the files, which DuckDB streams to disk: appending the
    parts one by one inside the step's transaction kept every appended row in memory (DuckDB
    holds a transaction's local appends), so the peak grew with the table again. The copy runs
    under DuckDB's memory limit `write_memory`. A table of the Parquet store (`store.TABLES`)
    is written to its shards (`store.replace_all`), or with `shards` to those shards only
    (`replace_shards`: the parts hold only their people's rows), any other as a DuckDB table."""
    with tempfile.TemporaryDirectory(prefix=f"gutsignal-{table}-") as spool:
        files: list[str] = []
        for number, part in enumerate(parts):
            if number == 0 or part.height:
                files.append(str(Path(spool) / f"{number:06d}.parquet"))
                part.write_parquet(files[-1], compression=SPOOL_COMPRESSION)
            del part
        listed = ", ".join(f"'{f}'" for f in files)
        rows = f"SELECT * FROM read_parquet([{listed}], union_by_name = true)"
        with memory_limit(conn, write_memory):
            if table in STORE_TABLES and shards is not None:
                replace_shards(conn, table, rows, shards)
            elif table in STORE_TABLES:
                replace_all(conn, table, rows)
            else:
                conn.execute(f"CREATE OR REPLACE TABLE {ident(table)} AS {rows}")


def replace_shards(
    conn: duckdb.DuckDBPyConnection, table: str, rows: str, shards: Collection[int]
) -> None:
    """Replace the store shards `shards` of `table` with the rows of the query `rows` (all of
    them people of those shards), cast to the table's columns as `store.rewrite` casts: a full
    build under a scope of shards. The other shards' parts stay as they are, so the table keeps
    its columns; a column the table lacks cannot be added to some shards only."""
    count = shard_count(root_of(conn))
    columns = conn.execute(f"DESCRIBE {ident(table)}").fetchall()
    have = {d[0] for d in conn.execute(f"SELECT * FROM ({rows}) LIMIT 0").description}
    extra = have - {c[0] for c in columns}
    if extra:
        raise ValueError(
            f"{table} has no columns {sorted(extra)}: a run of some person shards cannot add "
            "them; run every partition to rebuild the table whole"
        )
    new = ", ".join(
        f"CAST({ident(name) if name in have else 'NULL'} AS {kind}) AS {ident(name)}"
        for name, kind, *_ in columns
    )
    write_shards(
        conn,
        table,
        lambda k: f"SELECT {new} FROM ({rows}) WHERE {shard_sql(count)} = {int(k)}",
        shards,
        drop=None,
    )


def only_chunk(conn: duckdb.DuckDBPyConnection, sql: str, chunk: int) -> str:
    """`sql` restricted to the people of one group of `register_person_chunks` (null-safe).

    A group is a range of consecutive person_ids (the null one, ordered last, in the last group),
    so it is read as a range test on literals, which DuckDB applies inside the scan: a join on
    the group's people probed every row of every input once per group."""
    row = conn.execute(
        "SELECT min(person_id), max(person_id), count(*) > count(person_id) FROM _chunks "
        "WHERE chunk = ?",
        [chunk],
    ).fetchone()
    low, high, nulls = row if row else (None, None, False)
    tests = [] if low is None else [f"person_id BETWEEN {sql_text(low)} AND {sql_text(high)}"]
    if nulls:
        tests.append("person_id IS NULL")
    return f"SELECT * FROM ({sql}) WHERE {' OR '.join(tests) or 'false'}"


def day_inputs_sql(conn: duckdb.DuckDBPyConnection, columns: list[str]) -> tuple[str, str]:
    """diet_daily's two inputs as `plan_days` fingerprints them: each diary entry as its
    `row_identity` with the categories of its food, and each dated reported total as its
    `row_identity`. A day is recomputed when its rows or its foods' categories change, and only
    then (not on any new food). The categories enter as one hash per (food, category_raw) pair,
    joined on the hash of the pair: a few thousand pairs, against millions of entries."""
    entry_id = row_identity(conn, "diet_entries", columns)
    entries = (
        "WITH c AS (SELECT hash(food, category_raw) AS pair, "
        "hash(list(DISTINCT category ORDER BY category)) AS cats "
        "FROM food_categories GROUP BY food, category_raw) "
        f"SELECT e.person_id, e.day, {entry_id} AS row_id, c.cats "
        "FROM diet_entries e LEFT JOIN c ON hash(e.food, e.category_raw) = c.pair"
    )
    reported_columns = [
        d[0] for d in conn.execute("SELECT * FROM diet_daily_reported LIMIT 0").description
    ]
    reported_id = row_identity(conn, "diet_daily_reported", reported_columns)
    reported = (
        f"SELECT person_id, day, {reported_id} AS row_id "
        "FROM diet_daily_reported WHERE day IS NOT NULL"
    )
    return entries, reported


def replace_changed_days(
    conn: duckdb.DuckDBPyConnection, daily: pl.DataFrame, settings: Settings
) -> None:
    """Replace the diet_daily rows of the changed keys in `_days` with `daily` (theirs, built
    without gap days) and bring the unlogged gap days of the people in `_people` up to date (see
    diet_gap_keys): a new day after a gap, or a removed last day, changes days that had no input
    change themselves. One rewrite of each touched shard for both.

    Only the gap days that come or go are written: a gap row depends on its key alone. Shard by
    shard: a person's gap days depend on their own days only, so each shard's touched people are
    read, worked out and rewritten before the next. Over all of them at once, a night on which
    everyone synced held every day of the cohort in Polars (issue 19: +640 MB at 10,000 people).
    """
    shards = shard_count(root_of(conn))
    people = conn.execute(f"SELECT person_id, {shard_sql(shards)} AS _shard FROM _people").pl()
    daily = daily.join(people, on="person_id", how="left")
    schema = conn.execute("SELECT * FROM diet_daily LIMIT 0").pl().schema
    for shard in sorted(people["_shard"].unique()):
        mine = daily.filter(pl.col("_shard") == shard).drop("_shard")
        _replace_changed_days_of_shard(conn, shard, shards, mine, settings, schema)


def _replace_changed_days_of_shard(
    conn: duckdb.DuckDBPyConnection,
    shard: int,
    shards: int,
    daily: pl.DataFrame,
    settings: Settings,
    schema: pl.Schema,
) -> None:
    """`replace_changed_days` for the people of `_people` in store shard `shard` (of `shards`);
    `daily` is theirs."""
    people = f"SELECT person_id FROM _people WHERE {shard_sql(shards)} = {shard}"
    # Four narrow columns of the touched people's days as they will be: cheap next to building
    # the days. Read from the shard's parts alone (`shard_sources`).
    keys = ["person_id", "day", "entries", "diet_source"]
    kept_sql = [
        f"SELECT {', '.join(keys)} FROM {source} t "
        f"WHERE {rows_shard} = {shard} AND person_id IN ({people}) "
        "AND NOT EXISTS (SELECT 1 FROM _days d WHERE d.person_id = t.person_id AND d.day = t.day)"
        for rows_shard, source in shard_sources(conn, "diet_daily", [shard])
    ]
    kept = (
        conn.execute(" UNION ALL ".join(kept_sql)).pl()
        if kept_sql
        else pl.DataFrame(schema={k: schema[k] for k in keys})
    )
    gone, new = diet_gap_changes(pl.concat([kept, daily.select(keys)], how="vertical_relaxed"))
    rows = pl.concat([daily, diet_gap_days(new, settings, schema)], how="diagonal_relaxed")
    conn.register("_gone_gaps", gone.select("person_id", "day").to_arrow())
    try:
        rewrite(
            conn,
            "diet_daily",
            # IN, not a correlated EXISTS: DuckDB turns that into a join that first collects
            # every key of the parts it scans (+170 MB over the 1.8 M records at 10,000 people).
            "(t.person_id, t.day) IN (SELECT person_id, day FROM _days) "
            "OR ((t.person_id, t.day) IN (SELECT person_id, day FROM _gone_gaps) "
            "AND t.entries = 0 AND t.diet_source IS NULL)",
            rows,
            people=people,
        )
    finally:
        conn.unregister("_gone_gaps")


def update_diet_daily(
    conn: duckdb.DuckDBPyConnection, settings: Settings, shards: Collection[int] | None = None
) -> DayPlan:
    """Build diet_daily from diet_entries, diet_daily_reported and food_categories: everyone in
    groups of about FULL_BUILD_ROWS input rows on a first run (or after a settings or code
    change), otherwise only the changed person-days (`plan_days`) and the touched people's gap
    days, which a new or removed day moves.

    `shards` (of the store; None: all) limits the step to their people: it plans, rewrites and
    records only their days (a run of some person-shard partitions). With every shard it is the
    step over everyone, unchanged."""
    scope = shard_scope(conn, shards)
    # What the plan reads, by identity (`quiet_days`): a night with nothing new stops here,
    # before the columns in use or a fingerprint of a diary row are worked out.
    identity = inputs_identity(
        conn,
        [f"SELECT * FROM {t}" for t in ("diet_entries", "diet_daily_reported", "food_categories")],
        full_salt(settings_salt(settings) + parse_salt(conn)),
    )
    quiet = quiet_days(conn, "diet_daily", identity, ["diet_daily"], scope)
    if quiet is not None:
        return quiet
    with footers_cached(conn), memory_limit(conn, BUILD_MEMORY_LIMIT):
        columns, unreported = daily_entry_columns(conn)
        entries_sql = f"SELECT {', '.join(ident(c) for c in columns)} FROM diet_entries"
        # Reported rows without a day are person-level (diet_summary's); no day uses them.
        reported_sql = "SELECT * FROM diet_daily_reported WHERE day IS NOT NULL"
        plan = plan_days(
            conn,
            "diet_daily",
            inputs=list(day_inputs_sql(conn, columns)),
            outputs=["diet_daily"],
            salt=settings_salt(settings) + json.dumps(sorted(unreported)) + parse_salt(conn),
            # The taxonomy and the food reference reach a day only through its foods' categories,
            # fingerprinted above: a new rule recomputes the days that eat the foods it matches.
            exclude_data=("taxonomy.csv", "food_reference.csv.gz"),
            scope=scope,
            identity=identity,
        )
        categories_sql = "SELECT * FROM food_categories"
        if plan.everyone:
            inputs = [in_scope(entries_sql, scope), in_scope(reported_sql, scope)]
            chunks = register_person_chunks(conn, inputs, FULL_BUILD_ROWS)
            # No rows at all: one group of the (empty) inputs still gives the table its schema.
            groups = [
                (only_chunk(conn, inputs[0], k), only_chunk(conn, inputs[1], k))
                if chunks
                else (inputs[0], inputs[1])
                for k in range(max(chunks, 1))
            ]
            # The groups' entries are summed to days inside DuckDB, several groups at once.
            replace_with_parts(
                conn,
                "diet_daily",
                diet_days_of_groups(
                    conn, groups, [*inputs, categories_sql], categories_sql, settings, unreported
                ),
                shards=full_build_shards(conn, ["diet_daily"], shards, scope),
            )
        elif plan.days:
            reported = conn.execute(only_days(reported_sql)).pl()
            # Gap days depend on the person's whole range, so they are left to replace_changed_days.
            daily = diet_days(
                conn,
                only_days(entries_sql),
                categories_sql,
                settings,
                reported,
                unreported,
                fill_gaps=False,
            )
            replace_changed_days(conn, daily, settings)
        record_days(conn, plan, scope)
    return plan


def update_diet_summary(conn: duckdb.DuckDBPyConnection) -> PersonPlan:
    """Person-level intake from the reported totals (diet_summary), when they changed. Only
    sources with person-level totals (NHANES recall means) have rows here: a diary cohort
    has none, whatever its size."""
    reported_sql = "SELECT * FROM diet_daily_reported"
    plan = plan_whole(conn, "diet_summary", [reported_sql], ["diet_summary"], salt="")
    if changed(plan):
        replace_table(conn, "diet_summary", build_diet_summary(conn.execute(reported_sql).pl()))
        record(conn, plan)
    return plan


def update_marker_models(
    conn: duckdb.DuckDBPyConnection, settings: Settings, shards: Collection[int] | None = None
) -> PersonPlan:
    """marker_draws and marker_trends from lab_results, for everyone or for the people whose
    results changed. Lab results are a few rows a person a month (12,000 rows for 2,000
    people), so everyone's fit in one frame.

    `shards` (of the store; None: all) limits the step to their people: it plans, rewrites and
    records only them (a run of some person-shard partitions, `pipelines.defs.partitions`). With
    every shard it is the step over everyone, unchanged."""
    labs_sql = "SELECT * FROM lab_results"
    outputs = ["marker_draws", "marker_trends"]
    scope = shard_scope(conn, shards)
    plan = plan_people(
        conn,
        "marker_models",
        inputs=[labs_sql],
        outputs=outputs,
        salt=settings_salt(settings),
        scope=scope,
    )
    if plan.everyone and (scope is None or not all(table_exists(conn, t) for t in outputs)):
        # Everyone, or a first run of some shards: the other shards' parts start empty, and
        # their people are planned as new when their shards run.
        draws = build_marker_draws(conn.execute(in_scope(labs_sql, scope)).pl(), settings)
        replace_all(conn, "marker_draws", draws)
        replace_all(conn, "marker_trends", marker_trends(draws))
    elif changed(plan):
        # Everyone in the scope: its people with results, and those with rows left.
        people = (
            conn.execute(
                " UNION ".join(
                    f"SELECT person_id FROM {t} WHERE {scope}" for t in ["lab_results", *outputs]
                )
                + " ORDER BY ALL"
            )
            .pl()["person_id"]
            .to_list()
            if plan.everyone
            else plan.touched
        )
        register_people(conn, people)
        draws = build_marker_draws(conn.execute(only_people(labs_sql)).pl(), settings)
        replace_people(conn, "marker_draws", draws)
        replace_people(conn, "marker_trends", marker_trends(draws))
    record(conn, plan, scope)
    return plan
