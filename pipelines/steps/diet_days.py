"""diet_daily's rows from diary entries: the entries summed to person-days inside DuckDB, the
days finished in Polars (`pipelines.transforms.diet.diet_daily_from_sums`).

The sums run where the entries are: reading a group of people's entries into Polars and summing
them there cost several times the query that sums them (issue 19), and the per-entry frame (an
entry's servings of every category) never exists. `build_diet_daily` gives the same table from
frames (an in-memory DuckDB), for tests and callers without a warehouse; the step reads the
warehouse's own tables.

An entry's servings of a category: its grams over the category's standard serving
(`load_serving_sizes`), alcohol in standard drinks from `alcohol_g` (else from the grams at
12% ABV); counted once per row of its (food, category_raw) pair in food_categories that names
the category (a pair that names it twice counts twice), 0 when its pair names it not or has no
categories. `is_upf`, whether a pair names `ultra_processed`, gives a day's ultra-processed
energy. Nutrients are null on a day no entry of which reports them.
"""

from collections import deque
from collections.abc import Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from queue import SimpleQueue

import duckdb
import polars as pl

from pipelines.config import Settings
from pipelines.identity import inputs_identity
from pipelines.schema import CATEGORIES, NUTRIENTS
from pipelines.transforms.diet import (
    ALCOHOL_FRACTION_FALLBACK,
    ALCOHOL_G_PER_DRINK,
    diet_daily_from_sums,
    load_serving_sizes,
)
from pipelines.warehouse import ident


def _double(value: float) -> str:
    """A DOUBLE literal (a bare `150.0` is a DECIMAL in DuckDB)."""
    return f"{float(value)!r}::DOUBLE"


def pair_categories_sql(categories: str) -> str:
    """Per (food, category_raw) pair of the query `categories` (food_categories' rows), for each
    category `m_<category>`, how many of the pair's rows name it (null when none does); and
    `_is_upf`."""
    columns = []
    for c in CATEGORIES:
        n = f"count(*) FILTER (WHERE category = '{c}')"
        columns.append(f"CASE WHEN {n} > 0 THEN {n}::DOUBLE END AS {ident('m_' + c)}")
    return (
        f"SELECT food, category_raw, {', '.join(columns)}, "
        "coalesce(bool_or(category = 'ultra_processed'), false) AS _is_upf "
        f"FROM ({categories}) GROUP BY food, category_raw"
    )


def day_sums_sql(
    entries: str, categories: str, columns: Collection[str], unreported: Collection[str]
) -> str:
    """The query summing the entries of the query `entries` (its `columns`) to one row per
    person-day with entries: `entries` (their count), each nutrient of `columns` or
    `unreported` (null for the latter: no entry reports them), each category's servings and
    `_upf_kcal` (the energy of ultra-processed entries). An entry without a day has no day."""
    sizes = load_serving_sizes()
    drinks = (
        f"coalesce(e.alcohol_g, e.grams * {_double(ALCOHOL_FRACTION_FALLBACK)}) "
        f"/ {_double(ALCOHOL_G_PER_DRINK)}"
    )

    def servings(category: str) -> str:
        # Times the count of rows naming it (x * 1.0 is x): null, so not summed, when none does
        # or the entry has no pair or no grams; a day without any has 0.
        one = drinks if category == "alcohol" else f"e.grams / {_double(sizes[category])}"
        return (
            f"coalesce(sum(({one}) * p.{ident('m_' + category)}), 0.0) "
            f"AS {ident(category + '_servings')}"
        )

    nutrients = [
        f"sum(e.{ident(n)}) AS {ident(n)}" if n in columns else f"NULL::DOUBLE AS {ident(n)}"
        for n in NUTRIENTS
        if n in columns or n in unreported
    ]
    return f"""
        SELECT e.person_id, e.day, count(*) AS entries, {", ".join(nutrients)},
               {", ".join(servings(c) for c in CATEGORIES)},
               coalesce(sum(e.energy_kcal) FILTER (WHERE p._is_upf), 0.0) AS _upf_kcal
        FROM ({entries}) e LEFT JOIN ({pair_categories_sql(categories)}) p
            ON e.food IS NOT DISTINCT FROM p.food
            AND e.category_raw IS NOT DISTINCT FROM p.category_raw
        WHERE e.day IS NOT NULL
        GROUP BY e.person_id, e.day"""


@contextmanager
def one_thread(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB on one thread for the duration. A day's sums then add its entries in the order
    the query gives them, every run: in parallel DuckDB combines a group's partial sums in
    whatever order its threads finish, which changed the last bits of a few days' sums from one
    build to the next."""
    row = conn.execute("SELECT current_setting('threads')").fetchone()
    conn.execute("SET threads = 1")
    try:
        yield
    finally:
        if row:
            conn.execute(f"SET threads = {int(row[0])}")


@contextmanager
def footers_cached(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """DuckDB keeps the Parquet files' footers it has read for the duration (a global setting):
    the step scans diet_entries' part files many times over (a test per nutrient, the plan, a
    query per group of people), and read every footer again each time. A part file's name is
    never used twice (`pipelines.store`), so a footer kept is never stale."""
    row = conn.execute("SELECT current_setting('parquet_metadata_cache')").fetchone()
    conn.execute("SET parquet_metadata_cache = true")
    try:
        yield
    finally:
        if row and not row[0]:
            conn.execute("SET parquet_metadata_cache = false")


def diet_days(
    conn: duckdb.DuckDBPyConnection,
    entries: str,
    categories: str,
    settings: Settings,
    reported: pl.DataFrame | None = None,
    unreported_nutrients: Collection[str] = (),
    fill_gaps: bool = True,
) -> pl.DataFrame:
    """diet_daily's rows of the entries of the query `entries` (with person_id, day, food,
    category_raw, grams, energy_kcal, alcohol_g and any nutrients) and the `reported` daily
    totals, the foods' categories from the query `categories`: see
    `pipelines.transforms.diet.diet_daily_from_sums` for the days, `unreported_nutrients` and
    `fill_gaps`."""
    columns = [d[0] for d in conn.execute(f"SELECT * FROM ({entries}) LIMIT 0").description]
    with one_thread(conn):
        sums = conn.execute(day_sums_sql(entries, categories, columns, unreported_nutrients)).pl()
    return diet_daily_from_sums(sums, settings, reported, fill_gaps)


# At most this many groups of a full build are summed at once (`diet_days_of_groups`): each on a
# DuckDB thread of its own, under the step's memory limit shared between them.
MAX_WORKERS = 4


def diet_days_of_groups(
    conn: duckdb.DuckDBPyConnection,
    groups: Sequence[tuple[str, str]],
    sources: list[str],
    categories: str,
    settings: Settings,
    unreported_nutrients: Collection[str] = (),
) -> Iterator[pl.DataFrame]:
    """`diet_days` of each group of people (the query of its entries and the query of its
    reported totals), in order, as many at once as DuckDB has threads (at most MAX_WORKERS).

    `diet_days` sums on one DuckDB thread (`one_thread`), so one group at a time left the other
    cores idle; each group runs instead on a connection of its own (a cursor: the same database,
    its own transaction), its days finished in Polars in the same thread while the next groups
    sum. A cursor sees what is committed: when the inputs `sources` (the queries the groups
    restrict) are not what this connection sees (they changed in its open transaction, or read a
    temporary table), the groups run one by one on this connection."""
    threads = conn.execute("SELECT current_setting('threads')").fetchone()
    workers = max(1, min(int(threads[0]) if threads else 1, MAX_WORKERS, len(groups)))
    seen = inputs_identity(conn, sources, "") if workers > 1 else None
    cursors = [conn.cursor() for _ in range(workers)] if seen is not None else []
    if cursors and inputs_identity(cursors[0], sources, "") != seen:
        for cursor in cursors:
            cursor.close()
        cursors = []
    free: SimpleQueue[duckdb.DuckDBPyConnection] = SimpleQueue()
    for worker in cursors or [conn]:
        free.put(worker)

    def days_of(group: tuple[str, str]) -> pl.DataFrame:
        worker = free.get()
        try:
            entries, reported = group
            return diet_days(
                worker,
                entries,
                categories,
                settings,
                worker.execute(reported).pl(),
                unreported_nutrients,
            )
        finally:
            free.put(worker)

    try:
        # Held to one thread for the whole run (a global setting): a worker's own `one_thread`
        # then finds and restores 1, whatever the others do.
        with one_thread(conn), ThreadPoolExecutor(max(1, len(cursors))) as pool:
            running: deque[Future[pl.DataFrame]] = deque()
            for group in groups:
                running.append(pool.submit(days_of, group))
                if len(running) > len(cursors):
                    yield running.popleft().result()
            while running:
                yield running.popleft().result()
    finally:
        for cursor in cursors:
            cursor.close()


def build_diet_daily(
    entries: pl.DataFrame,
    categories: pl.DataFrame,
    settings: Settings,
    reported: pl.DataFrame | None = None,
    unreported_nutrients: Collection[str] = (),
    fill_gaps: bool = True,
) -> pl.DataFrame:
    """`diet_days` of frames: the diary `entries`, their foods' `categories` (food_categories'
    rows) and the `reported` daily totals, summed in an in-memory DuckDB."""
    with duckdb.connect() as conn:
        conn.register("_entries", entries.to_arrow())
        conn.register(
            "_categories", categories.select("food", "category_raw", "category").to_arrow()
        )
        return diet_days(
            conn,
            "SELECT * FROM _entries",
            "SELECT * FROM _categories",
            settings,
            reported,
            unreported_nutrients,
            fill_gaps,
        )
