"""The analysis steps without Dagster: exposure_windows and associations as the assets in
`pipelines/defs/analysis/assets.py` run them (and the benchmark measures them), with their
warehouse side: which diet features exist and which diet_daily rows an exposure window can read.

The methods are in `pipelines.analysis`. Each step function runs inside the caller's transaction
(`Warehouse.write()`).
"""

import itertools
import json
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path

import duckdb
import polars as pl

from pipelines.analysis.model_frame import PeopleGroups, Stash
from pipelines.analysis.models import model_parts
from pipelines.analysis.windows import build_exposure_windows, features_from
from pipelines.config import Settings, result_settings
from pipelines.identity import inputs_identity
from pipelines.incremental import (
    PersonPlan,
    changed,
    full_salt,
    in_scope,
    only_people,
    plan_people,
    plan_whole,
    quiet_plan,
    record,
    register_people,
)
from pipelines.schema import EXPOSURE_WINDOWS_SCHEMA, NUTRIENTS, RESULT_SCHEMA
from pipelines.steps.features import (
    SPOOL_COMPRESSION,
    columns_with_values,
    full_build_shards,
    replace_with_parts,
    settings_salt,
    shard_scope,
)
from pipelines.store import (
    replace_people,
    root_of,
    shard_count,
    shard_of,
    shard_sources,
    shard_sql,
)
from pipelines.warehouse import ident, memory_limit, table_exists

# exposure_windows is built over groups of this many people (everyone on a first run, the
# changed people on a night): its output is draws x windows x features long rows, about 1,000 a
# person, so everyone at once grew with the cohort.
WINDOW_GROUP_PEOPLE = 250
# DuckDB's memory while the step runs (`memory_limit`): under the connection's 1 GB it kept the
# blocks of diet_daily it scanned cached, which grew with the cohort. A first run sorts the
# window days shard by shard in it (`window_days_of_groups`): one sort of everyone's (1.6 M
# days of 38 columns at 10,000 people) failed under 128 MB and passed under 256 MB; a shard's is
# a sixteenth of that.
WINDOW_MEMORY_LIMIT = "256MB"
# A first run reads its groups of people from sorted scans in batches of this many rows
# (`sorted_groups`).
STREAM_BATCH_ROWS = 50_000


def daily_features(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """`feature_columns` of the whole diet_daily table, worked out in DuckDB: only the DII and
    the nutrients count when they hold a value (`columns_with_values`)."""
    if not table_exists(conn, "diet_daily"):
        return []
    columns = [d[0] for d in conn.execute("SELECT * FROM diet_daily LIMIT 0").description]
    valued = [c for c in ["dii", *NUTRIENTS] if c in columns]
    return features_from(columns, columns_with_values(conn, "diet_daily", valued))


def window_days_sql(settings: Settings, daily: str = "diet_daily") -> str:
    """The diet_daily rows (of `daily`: the table, or a shard of it) some exposure window can
    read: the `max(settings.windows)` days before one of the person's chronic draws.

    Windows read nothing else, so a new diary day after a person's last draw changes none of
    their inputs and a nightly run does not recompute them. The full and the incremental path
    read the same rows, so their running totals (and rounding) agree."""
    longest = max(settings.windows, default=0)
    # A semi join that builds on the draws (a few a person): the correlated EXISTS it replaces
    # was planned over every distinct diet_daily (person, day), which grew with the cohort.
    return f"""
        SELECT d.* FROM {daily} d SEMI JOIN (
            SELECT person_id, day FROM marker_draws
            WHERE excluded_reason IS NULL AND day IS NOT NULL
        ) m ON d.person_id = m.person_id AND d.day < m.day AND d.day >= m.day - {int(longest)}"""


def windows_of(
    daily: pl.DataFrame, draws: pl.DataFrame, settings: Settings, features: list[str]
) -> pl.DataFrame:
    """The exposure windows of the people in `draws`, with the DII of each window's means."""
    return build_exposure_windows(daily, draws, settings, features, window_dii=True)


def update_exposure_windows(
    conn: duckdb.DuckDBPyConnection, settings: Settings, shards: Collection[int] | None = None
) -> PersonPlan:
    """exposure_windows from diet_daily and marker_draws, for everyone or for the people whose
    window days or draws changed, a group of WINDOW_GROUP_PEOPLE people at a time: memory is one
    group's days, draws and windows whatever the cohort or the night.

    `shards` (of the store; None: all) limits the step to their people: it plans, rewrites and
    records only them (a run of some person-shard partitions). With every shard it is the step
    over everyone, unchanged."""
    daily_sql, draws_sql = window_days_sql(settings), "SELECT * FROM marker_draws"
    scope = shard_scope(conn, shards)
    with memory_limit(conn, WINDOW_MEMORY_LIMIT):
        # The features below are diet_daily's, so its identity stands for them (`quiet_plan`):
        # a night with nothing new stops before they are counted over the whole table.
        identity = inputs_identity(conn, [daily_sql, draws_sql], full_salt(settings_salt(settings)))
        quiet = quiet_plan(conn, "exposure_windows", identity, ["exposure_windows"], scope)
        if quiet is not None:
            return quiet
        # Which features exist is a property of everyone's diet_daily, not of the people
        # recomputed (nor of a group of them): decided here, in SQL, and passed down.
        features = daily_features(conn)
        plan = plan_people(
            conn,
            "exposure_windows",
            inputs=[daily_sql, draws_sql],
            outputs=["exposure_windows"],
            salt=settings_salt(settings) + ",".join(features),
            scope=scope,
            identity=identity,
        )

        count = shard_count(root_of(conn))
        if plan.everyone:
            # A draw without a person_id joins no diary day: it has no windows.
            drawn = "SELECT DISTINCT person_id FROM marker_draws WHERE person_id IS NOT NULL"
            people = [r[0] for r in conn.execute(in_scope(drawn, scope)).fetchall()]
            groups = person_groups(people, count)
            draws = conn.execute(f"{in_scope(draws_sql, scope)} ORDER BY ALL").pl()
            days = window_days_of_groups(conn, settings, features, groups, count)
            windows = (
                windows_of(
                    daily, draws.filter(pl.col("person_id").is_in(group)), settings, features
                )
                for group, daily in zip(groups, days, strict=True)
            )
            # An empty part last: the table's schema when no group has a row.
            empty = pl.DataFrame(schema=EXPOSURE_WINDOWS_SCHEMA)
            replace_with_parts(
                conn,
                "exposure_windows",
                itertools.chain(windows, [empty]),
                write_memory=WINDOW_MEMORY_LIMIT,
                shards=full_build_shards(conn, ["exposure_windows"], shards, scope),
            )
        else:
            for group in person_groups(plan.touched, count):
                # Replaces the rows of the group's people (`_people`): theirs only.
                register_people(conn, group)
                # In row order (ORDER BY ALL), as on a first run (`window_days_of_groups`).
                daily = conn.execute(f"{only_people(daily_sql)} ORDER BY ALL").pl()
                draws = conn.execute(f"{only_people(draws_sql)} ORDER BY ALL").pl()
                replace_people(
                    conn, "exposure_windows", windows_of(daily, draws, settings, features)
                )
        record(conn, plan, scope)
    return plan


def window_days_of_groups(
    conn: duckdb.DuckDBPyConnection,
    settings: Settings,
    features: list[str],
    groups: list[list[str]],
    shards: int,
) -> Iterator[pl.DataFrame]:
    """The window days (`window_days_sql`) of each group of `groups` (`person_groups`: in the
    order of store shard and person_id) in turn, each group's in row order (ORDER BY of the
    columns the windows read; a person-day is one row), read shard by shard (`sorted_groups`).

    A query per group scanned every window day again, so a first run cost groups x days, which
    grew with the square of the cohort; and one sort of everyone's days needed DuckDB memory
    that grew with the cohort: at 10,000 people it failed under 128 MB (issue 19). A shard's
    sort needs a shard's."""
    whole = window_days_sql(settings)
    have = {d[0] for d in conn.execute(f"SELECT * FROM ({whole}) LIMIT 0").description}
    listed = ", ".join(ident(c) for c in ["person_id", "day", "logged", *features] if c in have)
    ends = shard_order_ends((shard_of(group[-1], shards), group[-1]) for group in groups)
    wanted = {shard_of(person, shards) for group in groups for person in group}
    queries = [
        f"SELECT {shard} AS _shard, {listed} FROM ({window_days_sql(settings, source)}) "
        f"ORDER BY _shard, {listed}"
        for shard, source in shard_sources(conn, "diet_daily", wanted)
    ]
    # An empty query last: the columns, when no shard of the groups' people has a day.
    queries.append(f"SELECT 0 AS _shard, {listed} FROM ({whole}) LIMIT 0")
    return (days.drop("_shard") for days in sorted_groups(conn, queries, ends))


def shard_order_ends(lasts: Iterable[tuple[int, str]]) -> list[pl.Expr]:
    """`sorted_groups`' `ends` for groups of people in the order of store shard and person_id,
    each group given by its last (shard, person_id): true on the rows (with `_shard` and
    `person_id` columns) of the group and of the groups before it."""
    return [
        (pl.col("_shard") < shard) | ((pl.col("_shard") == shard) & (pl.col("person_id") <= last))
        for shard, last in lasts
    ]


def sorted_groups(
    conn: duckdb.DuckDBPyConnection, queries: list[str], ends: list[pl.Expr]
) -> Iterator[pl.DataFrame]:
    """The rows of `queries`, one query after the other, group by group, read in batches of
    STREAM_BATCH_ROWS as the groups are taken: each query sorts its rows, every group's rows
    come after the earlier groups' (in one query or a later one), and `ends[i]` is true on the
    rows of group i and of the groups before it (null counts as false); the last group takes
    the rest. One scan and sort of each query, whatever the number of groups, and memory of a
    group and a batch besides DuckDB's sort of one query. Nothing else may run on `conn` until
    the last group is out (DuckDB streams each result)."""
    readers = (conn.execute(query).to_arrow_reader(STREAM_BATCH_ROWS) for query in queries)
    first = next(readers)
    batches = (batch for reader in itertools.chain([first], readers) for batch in reader)
    held = [pl.DataFrame(pl.from_arrow(first.schema.empty_table()))]
    more = True
    for number, end in enumerate(ends):
        within = pl.lit(True) if number == len(ends) - 1 else end.fill_null(False)
        # Read on until a row of a later group (or the end) shows the group is whole.
        while more and (held[-1].height == 0 or held[-1].select(within.last()).item()):
            batch = next(batches, None)
            more = batch is not None
            if batch is not None:
                held.append(pl.DataFrame(pl.from_arrow(batch)))
        rows = pl.concat(held)
        yield rows.filter(within)
        held = [rows.filter(~within)]


def person_groups(people: list[str], shards: int) -> list[list[str]]:
    """`people` in groups of WINDOW_GROUP_PEOPLE, in the order of their store shard and then
    person_id: a group's rows rewrite one or a few shards of the store (`replace_people`), not
    all of them, so a night that touches many people rewrites each shard about once."""
    ordered = sorted(people, key=lambda p: (shard_of(p, shards), p))
    size = WINDOW_GROUP_PEOPLE
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


ASSOCIATION_INPUTS = ("marker_draws", "exposure_windows", "persons", "diet_summary")
# The associations read the exposure windows in groups of people of about this many window rows
# each (issue 19): loading everyone's windows at once (and their join and pivot) grew the step's
# peak with the cohort, ~600 MB above the 13 MB wide table the models read at 1,500 people.
ASSOCIATION_GROUP_ROWS = 250_000
# ... and fit and write the person-scope rows this many people at a time: about 155 rows a
# person, they were what still grew with the cohort (0.21 MB a person).
ASSOCIATION_FIT_PEOPLE = 250
# DuckDB's memory while the step runs (`memory_limit`), and while it copies the fitted rows
# into the table: above these limits DuckDB kept what it had read or written cached, which grew
# with the cohort. The windows are sorted shard by shard in the first (`sorted_groups`; one sort
# of everyone's 9.8 M window rows at 10,000 people failed under 64 MB). The copy into the
# store's shards (`store.replace_all`) holds each shard's rows until it writes them: 1.55 M rows
# (10,000 people) failed under 128 MB and passed under 256 MB.
ASSOCIATION_MEMORY_LIMIT = "256MB"
ASSOCIATION_WRITE_MEMORY = "256MB"
# The features of the windows that join a usable chronic draw (`analysis_frame`'s inner join and
# `draw_codes`' filter), everyone's: which are tested is decided once for the cohort.
PRESENT_FEATURES_SQL = """
    SELECT DISTINCT w.feature FROM exposure_windows w
    JOIN marker_draws d ON w.person_id = d.person_id AND w.marker = d.marker
        AND w.collected_at = d.collected_at
    WHERE d.excluded_reason IS NULL AND d.log_value IS NOT NULL"""


def window_group_ends(conn: duckdb.DuckDBPyConnection, rows: int) -> list[pl.Expr]:
    """The people of exposure_windows in groups of about `rows` window rows, in the order of
    their store shard and person_id (a person is never split), as `sorted_groups`' `ends` over
    rows with a `_shard` column: true on the rows of the group and of the groups before it."""
    count = shard_count(root_of(conn))
    people = conn.execute(
        f"SELECT {shard_sql(count)} AS shard, person_id, count(*) AS n FROM exposure_windows "
        "WHERE person_id IS NOT NULL GROUP BY ALL ORDER BY shard, person_id"
    ).pl()
    last = (
        people.with_columns(chunk=(pl.col("n").cum_sum() - pl.col("n")) // rows)
        .group_by("chunk", maintain_order=True)
        .last()
    )
    return shard_order_ends(last.select("shard", "person_id").iter_rows())


def parquet_stash(directory: Path) -> Stash:
    """A `Stash` that keeps each frame in a Parquet file of `directory` until it is read back."""
    numbers = itertools.count()

    def stash(frame: pl.DataFrame) -> Callable[[], pl.DataFrame]:
        path = directory / f"{next(numbers):06d}.parquet"
        frame.write_parquet(path, compression=SPOOL_COMPRESSION)
        return lambda: pl.read_parquet(path)

    return stash


def update_associations(
    conn: duckdb.DuckDBPyConnection, settings: Settings
) -> tuple[bool, pl.DataFrame]:
    """Fit every association (`model_parts`) when any input changed: the cohort models and the
    FDR families span everyone, so it is all or nothing. Returns whether it refit, and the
    association rows counted per `scope` and `status` (`len`): counted in DuckDB, because the
    table holds about 150 rows a person, and a frame of them all made a quiet night's memory
    grow with the cohort (issue 19)."""
    inputs: tuple[str, ...] = ASSOCIATION_INPUTS
    # Body weight is a covariate where biometrics exist (a source of kind biometrics).
    if table_exists(conn, "biometrics"):
        inputs = (*inputs, "biometrics")
    with memory_limit(conn, ASSOCIATION_MEMORY_LIMIT):
        plan = plan_whole(
            conn,
            "associations",
            inputs=[f"SELECT * FROM {t}" for t in inputs],
            outputs=["associations"],
            salt=settings_salt(settings),
        )
        if changed(plan):
            write_associations(conn, settings, inputs)
            record(conn, plan)
    counts = conn.execute(
        "SELECT scope, status, count(*) AS len FROM associations GROUP BY ALL ORDER BY ALL"
    ).pl()
    return changed(plan), counts


def write_associations(
    conn: duckdb.DuckDBPyConnection, settings: Settings, inputs: tuple[str, ...]
) -> None:
    """Replace the associations table with every association (`model_parts`) of the tables
    `inputs`: the person rows fitted and written a group of ASSOCIATION_FIT_PEOPLE at a time."""
    # In a fixed order: the per-person steps update their tables in place, so the physical row
    # order depends on the history of runs; the fits must not see that.
    draws, people, summary, *bio = (
        conn.execute(f"SELECT * FROM {t} ORDER BY ALL").pl()
        for t in inputs
        if t != "exposure_windows"
    )
    # The windows, by far the largest input, a group of people at a time (`model_frame`): the
    # draws and people above are a few rows a person.
    ends = window_group_ends(conn, ASSOCIATION_GROUP_ROWS)
    present = [r[0] for r in conn.execute(PRESENT_FEATURES_SQL).fetchall()]
    # Each group's windows in row order (ORDER BY ALL), read shard by shard, each shard sorted
    # apart (`sorted_groups`): a query per group scanned every window again, groups x windows in
    # all, which grew with the square of the cohort, and one sort of every window needed DuckDB
    # memory that grew with it (issue 19). The model frame reads the groups in turn, and nothing
    # else queries `conn` meanwhile.
    queries = [
        f"SELECT {shard} AS _shard, * FROM {source} ORDER BY ALL"
        for shard, source in shard_sources(conn, "exposure_windows")
    ]
    stream = (rows.drop("_shard") for rows in sorted_groups(conn, queries, ends))
    windows = PeopleGroups(count=len(ends), read=lambda _: next(stream), present=present)
    parameters = pl.lit(json.dumps(result_settings(settings), default=list)).alias("parameters")
    with tempfile.TemporaryDirectory(prefix="gutsignal-association-fits-") as fits:
        parts = model_parts(
            draws,
            windows,
            people,
            summary,
            settings,
            bio[0] if bio else None,
            people_per_group=ASSOCIATION_FIT_PEOPLE,
            stash=parquet_stash(Path(fits)),
        )
        # An empty part last: the table's schema when no part has a row.
        empty = pl.DataFrame(schema=RESULT_SCHEMA)
        replace_with_parts(
            conn,
            "associations",
            (part.with_columns(parameters) for part in itertools.chain(parts, [empty])),
            write_memory=ASSOCIATION_WRITE_MEMORY,
        )
