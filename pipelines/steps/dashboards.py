"""Everything the dashboards show, read from the warehouse: the tables in a fixed order, the
rejected rows grouped, each source's freshness per person (`pipelines.reports` renders them and
never touches DuckDB); and the step's plan: which person pages to render (`update_dashboards`).
"""

from collections.abc import Callable
from datetime import UTC, date, datetime
from importlib.metadata import version
from pathlib import Path

import duckdb
import polars as pl

from pipelines.incremental import PersonPlan, plan_people, record
from pipelines.reports.dashboards import (
    DashboardInputs,
    PageInputs,
    diet_columns_shown,
    page_inputs,
    write_dashboards,
)
from pipelines.reports.inputs import SCHEMAS
from pipelines.schema import REJECT_EXAMPLES, REJECT_VALUE_SHOWN
from pipelines.steps import sql
from pipelines.warehouse import Warehouse, table_exists

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


def _rejected_summary(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Rejected rows grouped as the dashboards show them: per source, reason and column, the
    count and the first few rejects (file, line and the offending value), so that one bad setting
    is one line of the table however many rows it rejected."""
    # A warehouse written before rejects had a value column gets it at its next ingest.
    value = "value" if "value" in _columns(conn, "rejected_rows") else "NULL::VARCHAR AS value"
    shown = (
        f"CASE WHEN length(value) > {REJECT_VALUE_SHOWN} "
        f"THEN left(value, {REJECT_VALUE_SHOWN}) || '...' ELSE value END"
    )
    return conn.execute(
        sql("rejected_summary").format(value=value, shown=shown, examples=REJECT_EXAMPLES)
    ).pl()


def _day(x: date) -> date:
    return x.date() if isinstance(x, datetime) else x


def _columns(conn: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'main' AND table_name = ?",
            [name],
        ).fetchall()
    }


def _source_freshness(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """Per source and person: the newest file of the source and the person's latest data day.

    Sources without per-person dates (e.g. a cross-sectional cohort) get one row with a null
    person and day, so the age of their newest file is still checked.
    """
    if not table_exists(conn, "ingest_files") or "modified_at" not in _columns(
        conn, "ingest_files"
    ):
        return pl.DataFrame()
    parts = []
    for name, day in _DATED_TABLES:
        if table_exists(conn, name) and {"source", "person_id", day} <= _columns(conn, name):
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
    return conn.execute(sql("source_freshness").format(days=days)).pl()


def _between_dii_params(conn: duckdb.DuckDBPyConnection) -> tuple[int, int] | None:
    """Fewest and most DII parameters behind the DIIs the between-person models use: those
    in diet_summary of people with a marker result (the models need one)."""
    if not (
        table_exists(conn, "diet_summary")
        and table_exists(conn, "marker_draws")
        and {"dii", "dii_params"} <= _columns(conn, "diet_summary")
    ):
        return None
    row = conn.execute(
        "SELECT min(dii_params), max(dii_params) FROM diet_summary WHERE dii IS NOT NULL "
        "AND person_id IN (SELECT person_id FROM marker_draws)"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row and row[0] is not None else None


# What a person page reads of `biometrics`: the daily outcomes (readings with a scale; Cronometer's
# weight and blood pressure have none) of people followed over time.
_OUTCOMES = (
    "SELECT person_id, day, metric, value, unit, scale FROM biometrics "
    f"WHERE scale IS NOT NULL AND person_id IN ({_FOLLOWED}) ORDER BY ALL"
)


def load_dashboard_inputs(warehouse: Warehouse) -> DashboardInputs:
    """Everything the dashboards show, read from the warehouse in one read-only connection."""
    with warehouse.read() as conn:
        # In a fixed order: DuckDB scans in parallel and the per-person steps update their tables
        # in place, so an unordered read differs from run to run. Pages (and their content keys)
        # must depend on the data only, or every page would be rendered again every night.
        def table(name: str) -> pl.DataFrame:
            if not table_exists(conn, name):
                return pl.DataFrame()
            columns = "*"
            if name in _SHOWN:
                in_table = [d[0] for d in conn.execute(f"SELECT * FROM {name} LIMIT 0").description]
                shown = _SHOWN[name](in_table)
                columns = ", ".join('"' + c.replace('"', '""') + '"' for c in shown) or "*"
            order = _ORDER.get(name, "ALL")
            return conn.execute(f"SELECT {columns} FROM {name} ORDER BY {order}").pl()

        rejected = (
            _rejected_summary(conn) if table_exists(conn, "rejected_rows") else pl.DataFrame()
        )
        daily = table("diet_daily")
        draws = table("marker_draws")
        # Person pages are for people followed over time; members of cross-sectional cohorts
        # (one undated draw each, e.g. NHANES) appear on the cohort page only.
        followed = (
            conn.execute(_FOLLOWED).pl()["person_id"]
            if table_exists(conn, "diet_daily") and table_exists(conn, "marker_draws")
            else pl.Series("person_id", [], pl.String)
        )
        people = table("persons")
        if people.height:
            people = people.filter(pl.col("person_id").is_in(followed.implode()))
        if draws.height:
            draws = draws.filter(pl.col("person_id").is_in(followed.implode()))
        trends = table("marker_trends")
        if trends.height:
            trends = trends.filter(pl.col("person_id").is_in(followed.implode()))
        sufficiency = table("data_sufficiency")
        if sufficiency.height:
            sufficiency = sufficiency.filter(pl.col("person_id").is_in(followed.implode()))
        effects = table("daily_effects")
        if effects.height:
            effects = effects.filter(pl.col("person_id").is_in(followed.implode()))
        # Only complete windows reach the scatter behind each lag-heatmap cell; filtering here
        # keeps a big cohort's windows out of memory.
        windows = (
            conn.execute(
                f"SELECT * FROM exposure_windows WHERE complete AND person_id IN ({_FOLLOWED}) "
                f"ORDER BY {_ORDER['exposure_windows']}"
            ).pl()
            if table_exists(conn, "exposure_windows") and followed.len()
            else pl.DataFrame()
        )
        # Older warehouses have no daily outcomes (or a biometrics without scales): no panel.
        outcomes = (
            conn.execute(_OUTCOMES).pl()
            if table_exists(conn, "diet_daily")
            and table_exists(conn, "marker_draws")
            and table_exists(conn, "biometrics")
            and {"person_id", "day", "metric", "value", "unit", "scale"}
            <= _columns(conn, "biometrics")
            else pl.DataFrame()
        )
        days = [
            x
            for x in (
                daily["day"].min() if daily.height else None,
                daily["day"].max() if daily.height else None,
                draws["collected_at"].min() if draws.height else None,
                draws["collected_at"].max() if draws.height else None,
            )
            if isinstance(x, date)
        ]
        # Cross-sectional cohorts carry no dates at all.
        window = (
            f"{min(_day(x) for x in days)} to {max(_day(x) for x in days)}"
            if days
            else "no dated data (cross-sectional)"
        )
        return DashboardInputs(
            persons=people,
            between_dii_params=_between_dii_params(conn),
            diet_daily=daily,
            marker_draws=draws,
            marker_trends=trends,
            associations=table("associations"),
            ingest_files=table("ingest_files"),
            rejected_summary=rejected,
            unmapped_foods=table("unmapped_foods"),
            exposure_windows=windows,
            data_sufficiency=sufficiency,
            source_freshness=_source_freshness(conn),
            biometrics=outcomes,
            daily_effects=effects,
            run_info={
                "run_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "code_version": f"gutsignal {version('gutsignal')}",
                "data_window": window,
                "upstream": ", ".join(UPSTREAM),
            },
        )


STEP = "dashboards"


def plan_pages(conn: duckdb.DuckDBPyConnection, pages: PageInputs) -> PersonPlan:
    """Which person pages to render: the people whose page inputs changed since the pages were
    last written, or everyone when what every page shares changed (`pages.shared`, the salt).

    The fingerprints are taken of the frames the pages are built from, not of the warehouse
    tables again: they cover exactly what a page shows (the columns, the rows of followed people,
    the person-scope findings), and a step between the read and this plan cannot slip in rows
    the pages never saw. Rows without a person are on no person page (the index and cohort page,
    always written, show them; the counts in the pipeline-wide warnings are in the salt).
    """
    views = {name: f"_page_{name}" for name in pages.tables}
    for name, view in views.items():
        conn.register(view, pages.tables[name].to_arrow())
    try:
        return plan_people(
            conn,
            STEP,
            inputs=[f"SELECT * FROM {v} WHERE person_id IS NOT NULL" for v in views.values()],
            outputs=[],  # the pages are files: a missing one is rendered (`write_dashboards`)
            salt=pages.shared,
        )
    finally:
        for view in views.values():
            conn.unregister(view)


def update_dashboards(
    warehouse: Warehouse, out_dir: Path, data: DashboardInputs, workers: int | None = None
) -> tuple[list[Path], PersonPlan]:
    """Write the dashboards, rendering only the person pages whose inputs changed (all on a first
    run), and record what they were built from once they are written: a run that fails before
    that leaves the old record, so the next run renders the same pages again."""
    with warehouse.read() as conn:
        plan = plan_pages(conn, page_inputs(data, out_dir))
    written = write_dashboards(
        out_dir, data, workers, render=None if plan.everyone else plan.people
    )
    with warehouse.write() as conn:
        record(conn, plan)
    return written, plan
