"""Everything the dashboards show, read from the warehouse: the tables in a fixed order, the
rejected rows grouped, each source's freshness per person (`pipelines.reports` renders them and
never touches DuckDB), for the person pages of some person shards or of everyone; the steps that
plan and write the pages are `pipelines.steps.pages` (`update_dashboards` runs both in turn).
The person tables are read a group of people at a time (`load_dashboard_inputs` hands over
`PersonGroups`), so the step's memory does not grow with the cohort.
"""

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl

from pipelines.incremental import ROWS_FINGERPRINT, PersonPlan
from pipelines.literals import sql_text
from pipelines.reports.dashboards import (
    DashboardInputs,
    PersonGroups,
    diet_columns_shown,
)
from pipelines.reports.inputs import SCHEMAS, person_order
from pipelines.schema import REJECT_EXAMPLES, REJECT_VALUE_SHOWN
from pipelines.steps import sql
from pipelines.steps.page_shards import freshness_key, kept_freshness
from pipelines.steps.pages import update_index, update_person_pages
from pipelines.store import MANIFEST, SHARDS, TABLES, read_shards, root_of, shard_count, shard_of
from pipelines.warehouse import Warehouse

UPSTREAM = (
    "persons",
    "diet_daily",
    "marker_draws",
    "marker_trends",
    "associations",
    "ingest_files",
    "unmapped_foods",
    "exposure_windows",
    "data_sufficiency",
    "biometrics",
    "daily_effects",
)

# Where each kind of source keeps its per-person dates: (table, date column).
_DATED_TABLES = (
    ("diet_entries", "day"),
    ("diet_daily_reported", "day"),
    ("lab_results", "collected_at"),
)

# People followed over time get a page; cross-sectional members (one undated draw) do not.
_FOLLOWED = (
    "SELECT DISTINCT person_id FROM diet_daily UNION "
    "SELECT DISTINCT person_id FROM marker_draws WHERE collected_at IS NOT NULL"
)


# The draw columns the cohort page reads (its CRP draws, and their kinds in the small multiples):
# half of the table's, of every followed person's draws.
_COHORT_DRAWS = {
    "person_id",
    "marker",
    "collected_at",
    "day",
    "value",
    "acute",
    "excluded_reason",
    "below_lod",
    "censored",
}


def _cohort_draw_columns(columns: list[str]) -> list[str]:
    return [c for c in columns if c in _COHORT_DRAWS]


# Unique keys of the big tables (cheaper to sort by than every column); others: ORDER BY ALL.
_ORDER = {
    # A finding's key is its leading columns, so this is ORDER BY ALL's order at half its cost.
    "associations": "scope, person_id, marker, feature, window_days, method",
    "diet_daily": "person_id, day",
    "exposure_windows": "person_id, marker, collected_at, window_days, feature",
    "daily_effects": "person_id, measure, scale, feature, lag",
}


# The columns each table is read with, where pages show only some. Left out of the read, the
# rest are also left out of its sort: the settings JSON on every association row made that sort
# twice as slow, and the day's nutrients were half of the diet read.
_SHOWN: dict[str, Callable[[list[str]], list[str]]] = {
    "associations": lambda columns: [c for c in columns if c != "parameters"],
    "diet_daily": diet_columns_shown,
    "daily_effects": lambda columns: [c for c in columns if c in SCHEMAS["daily_effects"]],
}


# Every table's (and view's) columns, in order: read once per read, as the reads of each group ask
# about tables and columns many times and each question to the catalog is a query. Of the
# warehouse's own catalog only: the temporary views of the same names a read-only connection of a
# moved project reads through (`pipelines.store.attach`) would list every column twice.
Schema = dict[str, list[str]]


def _schema(conn: duckdb.DuckDBPyConnection) -> Schema:
    schema: Schema = {}
    for table, column in conn.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() AND table_schema = 'main' "
        "ORDER BY table_name, ordinal_position"
    ).fetchall():
        schema.setdefault(table, []).append(column)
    return schema


def _columns(schema: Schema, name: str) -> set[str]:
    return set(schema.get(name, ()))


def _rejected_summary(conn: duckdb.DuckDBPyConnection, schema: Schema) -> pl.DataFrame:
    """Rejected rows grouped as the dashboards show them: per source, reason and column, the
    count and the first few rejects (file, line and the offending value), so that one bad setting
    is one line of the table however many rows it rejected."""
    # A warehouse written before rejects had a value column gets it at its next ingest.
    value = "value" if "value" in _columns(schema, "rejected_rows") else "NULL::VARCHAR AS value"
    shown = (
        f"CASE WHEN length(value) > {REJECT_VALUE_SHOWN} "
        f"THEN left(value, {REJECT_VALUE_SHOWN}) || '...' ELSE value END"
    )
    return conn.execute(
        sql("rejected_summary").format(value=value, shown=shown, examples=REJECT_EXAMPLES)
    ).pl()


def _day(x: date) -> date:
    return x.date() if isinstance(x, datetime) else x


def _source_freshness(
    conn: duckdb.DuckDBPyConnection, schema: Schema
) -> tuple[pl.DataFrame, str | None]:
    """Per source and person: the newest file of the source and the person's latest data day;
    and the key to keep them under (`page_shards.keep_freshness`), None when they were kept
    already (read back, not scanned again) or cannot be.

    Sources without per-person dates (e.g. a cross-sectional cohort) get one row with a null
    person and day, so the age of their newest file is still checked.
    """
    if "ingest_files" not in schema or "modified_at" not in _columns(schema, "ingest_files"):
        return pl.DataFrame(), None
    parts = []
    for name, day in _DATED_TABLES:
        if name in schema and {"source", "person_id", day} <= _columns(schema, name):
            parts.append(
                f"SELECT source, person_id, max(CAST({day} AS DATE)) AS latest_day FROM {name} "
                "WHERE person_id IS NOT NULL GROUP BY ALL"
            )
    days = (
        " UNION ALL ".join(parts)
        if parts
        else (
            "SELECT NULL::VARCHAR AS source, NULL::VARCHAR AS person_id, NULL::DATE AS latest_day "
            "WHERE false"
        )
    )
    query = sql("source_freshness").format(days=days)
    key = freshness_key(conn, query)
    kept = kept_freshness(conn, key)
    if kept is not None:
        return kept, None
    return conn.execute(query).pl(), key


def _between_dii_params(conn: duckdb.DuckDBPyConnection, schema: Schema) -> tuple[int, int] | None:
    """Fewest and most DII parameters behind the DIIs the between-person models use: those
    in diet_summary of people with a marker result (the models need one)."""
    if not (
        "diet_summary" in schema
        and "marker_draws" in schema
        and {"dii", "dii_params"} <= _columns(schema, "diet_summary")
    ):
        return None
    row = conn.execute(
        "SELECT min(dii_params), max(dii_params) FROM diet_summary WHERE dii IS NOT NULL "
        "AND person_id IN (SELECT person_id FROM marker_draws)"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row and row[0] is not None else None


def _in_group(people: pl.DataFrame, followed: bool = False) -> str:
    """SQL: the row is of one of `people` (registered as `_group`: person_id, followed), or of one
    of its followed people (tables that also hold cross-sectional members). The range of their
    ids comes first: DuckDB skips the row groups outside it, which the semi-join alone does not."""
    ids = people["person_id"]

    def literal(x: str | None) -> str:
        return "NULL" if x is None else sql_text(x)

    who = " WHERE followed" if followed else ""
    return (
        f"person_id BETWEEN {literal(ids.min())} AND {literal(ids.max())} "  # type: ignore[arg-type]
        f"AND person_id IN (SELECT person_id FROM _group{who})"
    )


def _select(
    schema: Schema,
    name: str,
    where: str = "true",
    ordered: bool = True,
    shown: Callable[[list[str]], list[str]] | None = None,
) -> str | None:
    """The query of `name`'s rows that pass `where`, with the columns pages read (`shown`, else
    `_SHOWN`'s), in a fixed order; None when the warehouse has no `name`.

    In a fixed order: DuckDB scans in parallel and the per-person steps update their tables in
    place, so an unordered read differs from run to run. Pages (and their content keys) must
    depend on the data only, or every page would be rendered again every night."""
    if name not in schema:
        return None
    columns = "*"
    shown = shown or _SHOWN.get(name)
    if shown is not None:
        columns = ", ".join('"' + c.replace('"', '""') + '"' for c in shown(schema[name])) or "*"
    order = f" ORDER BY {_ORDER.get(name, 'ALL')}" if ordered else ""
    return f"SELECT {columns} FROM {name} WHERE {where}{order}"


def _read(
    conn: duckdb.DuckDBPyConnection,
    schema: Schema,
    name: str,
    where: str = "true",
    shown: Callable[[list[str]], list[str]] | None = None,
) -> pl.DataFrame:
    """`name`'s rows that pass `where` (`_select`), an empty frame without the table."""
    query = _select(schema, name, where, shown=shown)
    return pl.DataFrame() if query is None else conn.execute(query).pl()


# The `ingest_files` rows the index lists one by one: each file with something to say (failed,
# rows rejected or skipped as duplicates, counts that do not add up: a superset of what the
# index flags, which decides again) and each source's newest (named when the source is stale).
# The others, nearly all of them at scale, become one row per source with their counts summed
# and `files` saying how many: the index shows only their totals, and a frame of every file
# made each run's dashboard steps grow with the history (issue 19). Only the columns the
# pages use are read.
_FILES_LISTED = """
WITH f AS (
    SELECT *,
        coalesce(status = 'error', false) OR error IS NOT NULL
        OR coalesce(rows_rejected, 0) > 0 OR coalesce(rows_duplicate, 0) > 0
        OR coalesce(rows_read, 0) - coalesce(rows_loaded, 0) - coalesce(rows_rejected, 0)
            - coalesce(rows_duplicate, 0) <> 0
        OR row_number() OVER (
            PARTITION BY source ORDER BY modified_at DESC NULLS LAST, path DESC NULLS LAST
        ) = 1 AS listed
    FROM (SELECT {columns} FROM ingest_files)
)
SELECT * EXCLUDE (listed), 1 AS files FROM f WHERE listed
UNION ALL BY NAME
SELECT source, max(modified_at) AS modified_at, sum(rows_read) AS rows_read,
    sum(rows_loaded) AS rows_loaded, sum(rows_rejected) AS rows_rejected,
    sum(rows_duplicate) AS rows_duplicate, count(*) AS files
FROM f WHERE NOT listed GROUP BY source
ORDER BY source, modified_at, path NULLS FIRST
"""
_FILE_COLUMNS = (
    "source",
    "path",
    "modified_at",
    "status",
    "error",
    "rows_read",
    "rows_loaded",
    "rows_rejected",
    "rows_duplicate",
)


def _files_listed(conn: duckdb.DuckDBPyConnection, schema: Schema) -> pl.DataFrame:
    """`ingest_files` as the index reads it (`_FILES_LISTED`; a column the table lacks is
    null); an empty frame without it."""
    if "ingest_files" not in schema:
        return pl.DataFrame()
    have = set(schema["ingest_files"])
    columns = ", ".join(c if c in have else f"NULL AS {c}" for c in _FILE_COLUMNS)
    return conn.execute(_FILES_LISTED.format(columns=columns)).pl()


def _page_people(conn: duckdb.DuckDBPyConnection, schema: Schema) -> pl.DataFrame:
    """Everyone with a person page (person_id, in page order) and whether they are followed over
    time: people with a diet log or a dated draw get a page; members of cross-sectional cohorts
    (one undated draw each, e.g. NHANES) appear on the cohort page only. A person finding gets
    its person a page too."""
    parts = ["SELECT NULL::VARCHAR AS person_id, false AS followed WHERE false"]
    if "diet_daily" in schema:
        parts.append("SELECT DISTINCT person_id, false FROM diet_daily")
        if "marker_draws" in schema:
            parts.append(f"SELECT person_id, true FROM ({_FOLLOWED})")
    if "associations" in schema and "scope" in _columns(schema, "associations"):
        parts.append("SELECT DISTINCT person_id, false FROM associations WHERE scope = 'person'")
    people = conn.execute(
        f"SELECT person_id, bool_or(followed) AS followed FROM ({' UNION ALL '.join(parts)}) "
        "WHERE person_id IS NOT NULL GROUP BY person_id"
    ).pl()
    order = {pid: i for i, pid in enumerate(person_order(people["person_id"].to_list()))}
    return people.sort(pl.col("person_id").replace_strict(order, return_dtype=pl.Int64))


@contextmanager
def _group(conn: duckdb.DuckDBPyConnection, people: pl.DataFrame) -> Iterator[None]:
    """`people` (a frame of `_page_people`) as `_group`, the people the reads are for."""
    conn.register("_group", people.to_arrow())
    try:
        yield
    finally:
        conn.unregister("_group")


def _person_queries(schema: Schema, people: pl.DataFrame, ordered: bool = True) -> dict[str, str]:
    """The queries of `people`'s rows (registered as `_group`) of every table a person page
    reads, by the `DashboardInputs` field they fill, the complete windows (`windows`) among
    them, in their fixed order (`ordered`; a fingerprint needs none); a table the warehouse
    lacks (or an older form of it) has none."""
    mine, followed = _in_group(people), _in_group(people, followed=True)

    def order(by: str) -> str:
        return f" ORDER BY {by}" if ordered else ""

    def select(name: str, where: str) -> str | None:
        return _select(schema, name, where, ordered)

    queries = {
        "persons": select("persons", followed),
        "diet_daily": select("diet_daily", mine),
        "marker_draws": select("marker_draws", followed),
        "marker_trends": select("marker_trends", followed),
        "data_sufficiency": select("data_sufficiency", followed),
        "daily_effects": select("daily_effects", followed),
    }
    # Older warehouses have no daily outcomes (or a biometrics without scales): no panel. The
    # outcomes are the readings with a scale (Cronometer's weight and blood pressure have none).
    if "biometrics" in schema and {"person_id", "day", "metric", "value", "unit", "scale"} <= (
        _columns(schema, "biometrics")
    ):
        queries["biometrics"] = (
            "SELECT person_id, day, metric, value, unit, scale FROM biometrics "
            f"WHERE scale IS NOT NULL AND {followed}{order('ALL')}"
        )
    if "scope" in _columns(schema, "associations"):
        queries["associations"] = select("associations", f"scope = 'person' AND {mine}")
    # Unmapped foods are counted per food, or per person and food by older warehouses.
    if "person_id" in _columns(schema, "unmapped_foods"):
        queries["unmapped_foods"] = select("unmapped_foods", mine)
    if "exposure_windows" in schema:
        queries["windows"] = (
            f"SELECT * FROM exposure_windows WHERE complete AND {followed}"
            f"{order(_ORDER['exposure_windows'])}"
        )
    return {name: query for name, query in queries.items() if query is not None}


def _person_tables(
    conn: duckdb.DuckDBPyConnection, schema: Schema, people: pl.DataFrame
) -> DashboardInputs:
    """`people`'s rows (registered as `_group`) of every table a person page reads, but the
    windows (`_windows`)."""
    queries = _person_queries(schema, people)
    queries.pop("windows", None)
    read = {name: conn.execute(query).pl() for name, query in queries.items()}

    def frame(name: str) -> pl.DataFrame:
        return read.get(name, pl.DataFrame())

    return DashboardInputs(
        persons=frame("persons"),
        diet_daily=frame("diet_daily"),
        marker_draws=frame("marker_draws"),
        marker_trends=frame("marker_trends"),
        associations=frame("associations"),
        unmapped_foods=frame("unmapped_foods"),
        data_sufficiency=frame("data_sufficiency"),
        biometrics=frame("biometrics"),
        daily_effects=frame("daily_effects"),
    )


def _windows(conn: duckdb.DuckDBPyConnection, schema: Schema, people: pl.DataFrame) -> pl.DataFrame:
    """The complete exposure windows of `people`'s followed people (registered as `_group`)."""
    query = _person_queries(schema, people).get("windows")
    return pl.DataFrame() if query is None else conn.execute(query).pl()


def _fingerprints(
    conn: duckdb.DuckDBPyConnection, schema: Schema, people: pl.DataFrame
) -> pl.DataFrame:
    """Per person of `people` (registered as `_group`), one fingerprint of every row the person
    tables give them (`_person_queries`), taken inside DuckDB: no row is read out. A person
    without a row has none (person_id, fingerprint). Their windows are not in it: the step
    fingerprints everyone's for its plan already (`pages.window_fingerprints`)."""
    queries = _person_queries(schema, people, ordered=False)
    queries.pop("windows", None)
    if not queries:
        return pl.DataFrame(schema={"person_id": pl.String, "fingerprint": pl.String})
    parts = " UNION ALL ".join(
        f"SELECT person_id, '{name}' AS name, {ROWS_FINGERPRINT} AS rows FROM ({q}) t "
        "GROUP BY person_id"
        for name, q in sorted(queries.items())
    )
    return conn.execute(
        "SELECT person_id, string_agg(name || '=' || rows, ';' ORDER BY name) AS fingerprint "
        f"FROM ({parts}) WHERE person_id IS NOT NULL GROUP BY person_id ORDER BY person_id"
    ).pl()


# What the cohort page reads of the findings: everything but the person findings, and of those
# the partially pooled ones of a food whose pooled (primary window) finding is significant.
_COHORT_FINDINGS = (
    "scope IS DISTINCT FROM 'person' OR (pooled_effect_pct IS NOT NULL AND "
    "(lower(marker), feature, window_days) IN (SELECT (lower(marker), feature, window_days) "
    "FROM associations WHERE scope = 'cohort' AND status = 'significant' "
    "AND window_role = 'primary'))"
)


def _cohort_findings(conn: duckdb.DuckDBPyConnection, schema: Schema) -> pl.DataFrame:
    columns = _columns(schema, "associations")
    if "scope" not in columns:
        return _read(conn, schema, "associations")
    if {"pooled_effect_pct", "window_role", "status"} <= columns:
        return _read(conn, schema, "associations", _COHORT_FINDINGS)
    return _read(conn, schema, "associations", "scope IS DISTINCT FROM 'person'")


def _diet_totals(conn: duckdb.DuckDBPyConnection, schema: Schema) -> float:
    """Everyone's energy (kcal) over their diet days."""
    if "energy_kcal" not in _columns(schema, "diet_daily"):
        return 0.0
    energy = conn.execute("SELECT sum(energy_kcal) FROM diet_daily").fetchone()
    return float(energy[0]) if energy and energy[0] is not None else 0.0


def _data_window(conn: duckdb.DuckDBPyConnection, schema: Schema) -> str:
    """The footer's data window: the first and last day of anyone's diet log or of a followed
    person's dated draw. As aggregates: the person pages read nobody else's draws, and the index
    need not hold them all to find two days."""
    days: list[object] = []
    if "day" in _columns(schema, "diet_daily"):
        days += conn.execute("SELECT min(day), max(day) FROM diet_daily").fetchone() or []
        # A dated draw makes its person followed (`_FOLLOWED`); without a diet table nobody is.
        if "collected_at" in _columns(schema, "marker_draws"):
            days += (
                conn.execute(
                    "SELECT min(collected_at), max(collected_at) FROM marker_draws "
                    "WHERE person_id IS NOT NULL"
                ).fetchone()
                or []
            )
    dated = [_day(x) for x in days if isinstance(x, date)]
    # Cross-sectional cohorts carry no dates at all.
    return f"{min(dated)} to {max(dated)}" if dated else "no dated data (cross-sectional)"


def load_dashboard_inputs(
    warehouse: Warehouse,
    shards: Collection[int] | None = None,
    *,
    people: bool = True,
    cohort_draws: bool = True,
) -> DashboardInputs:
    """Everything the dashboards show, read from the warehouse in one read-only connection: what
    the index and cohort page show across everyone (the followed people's draws, the cohort
    findings, the unmapped foods, the files, rejects and freshness, and the diet's days and
    energy as sums). The person tables are read a group of people at a time as their pages are
    rendered (`PersonGroups`, each group in a read-only connection of its own), of the people of
    the store shards `shards` (None: everyone); what spans everyone is read whole either way,
    as every person page shows some of it (the data window, the warnings).

    The steps read only their part, as both would grow with the cohort: the index step no
    person pages' people (`people=False`: an empty `PersonGroups`), the person-page step not
    everyone's draws, which only the cohort page shows (`cohort_draws=False`)."""
    with warehouse.read() as conn:
        schema = _schema(conn)
        draws = pl.DataFrame()
        if cohort_draws:
            followed = f"person_id IN ({_FOLLOWED})" if "diet_daily" in schema else "false"
            draws = _read(conn, schema, "marker_draws", followed, _cohort_draw_columns)
        groups = (
            _person_groups(conn, warehouse, schema, shards)
            if people
            else PersonGroups([], lambda ids: DashboardInputs(), lambda ids: pl.DataFrame())
        )
        rejected = _rejected_summary(conn, schema) if "rejected_rows" in schema else pl.DataFrame()
        freshness, to_keep = _source_freshness(conn, schema)
        return DashboardInputs(
            between_dii_params=_between_dii_params(conn, schema),
            marker_draws=draws,
            associations=_cohort_findings(conn, schema),
            ingest_files=_files_listed(conn, schema),
            rejected_summary=rejected,
            unmapped_foods=_read(conn, schema, "unmapped_foods"),
            source_freshness=freshness,
            freshness_key=to_keep,
            run_info={
                "run_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "code_version": f"gutsignal {version('gutsignal')}",
                "data_window": _data_window(conn, schema),
                "upstream": ", ".join(UPSTREAM),
            },
            energy_kcal_total=_diet_totals(conn, schema),
            people=groups,
        )


def _person_groups(
    conn: duckdb.DuckDBPyConnection,
    warehouse: Warehouse,
    schema: Schema,
    shards: Collection[int] | None,
) -> PersonGroups:
    """The people with a person page of the store shards `shards` (None: everyone), and how to
    read them a group at a time."""
    root = root_of(conn)
    count = shard_count(root) if (root / MANIFEST).exists() else SHARDS
    everyone = _page_people(conn, schema)
    people = everyone.with_columns(
        pl.Series("shard", [shard_of(p, count) for p in everyone["person_id"]], pl.Int64)
    )
    if shards is not None:
        people = people.filter(pl.col("shard").is_in(sorted({int(k) for k in shards})))
    # Read store shard by shard, in page order within one (a stable sort): a group's people
    # then lie in a few shards, and its reads open only their files (`_read_group`).
    people = people.sort("shard", maintain_order=True)
    return PersonGroups(
        people["person_id"].to_list(),
        lambda ids: _read_group(warehouse, schema, people, ids, _person_tables),
        lambda ids: _read_group(warehouse, schema, people, ids, _windows),
        lambda ids: _read_group(warehouse, schema, people, ids, _fingerprints),
    )


_Read = TypeVar("_Read")


def _read_group(
    warehouse: Warehouse,
    schema: Schema,
    people: pl.DataFrame,
    ids: list[str],
    read: Callable[[duckdb.DuckDBPyConnection, Schema, pl.DataFrame], _Read],
) -> _Read:
    """What `read` reads of `ids` (of `people`, a frame of `_page_people` with each person's
    store shard: `_person_tables` or `_windows`), in a warehouse of `schema` (read with
    `people`), from the files of their shards only."""
    group = people.filter(pl.col("person_id").is_in(pl.Series(ids, dtype=pl.String).implode()))
    with warehouse.read() as conn, _group(conn, group):
        read_shards(conn, TABLES, group["shard"].unique().to_list())
        return read(conn, schema, group)


def update_dashboards(
    warehouse: Warehouse, out_dir: Path, data: DashboardInputs, workers: int | None = None
) -> tuple[list[Path], PersonPlan]:
    """Write the dashboards: every person page that changed (`update_person_pages`), then the
    index and the cohort page (`update_index`). Returns the files written and the pages' plan."""
    written, plan = update_person_pages(warehouse, out_dir, data, workers)
    return written + update_index(warehouse, out_dir, data), plan
