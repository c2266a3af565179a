"""The dashboards: `dashboards/index.html`, one page per person and a cohort page."""

from datetime import UTC, datetime
from importlib.metadata import version

import dagster as dg
import polars as pl

from pipelines.defs.resources import ProjectResource
from pipelines.reports.dashboards import DashboardInputs, write_dashboards
from pipelines.warehouse import Warehouse, table_exists

UPSTREAM = (
    "persons",
    "diet_daily",
    "marker_draws",
    "marker_trends",
    "associations",
    "ingest_files",
    "unmapped_foods",
)


def load_dashboard_inputs(warehouse: Warehouse) -> DashboardInputs:
    """Everything the dashboards show, read from the warehouse in one read-only connection."""
    with warehouse.read() as conn:

        def table(name: str) -> pl.DataFrame:
            return (
                conn.execute(f"SELECT * FROM {name}").pl()
                if table_exists(conn, name)
                else (pl.DataFrame())
            )

        rejected = (
            conn.execute(
                "SELECT source, reason, count(*) AS n FROM rejected_rows GROUP BY ALL "
                "ORDER BY n DESC"
            ).pl()
            if table_exists(conn, "rejected_rows")
            else pl.DataFrame()
        )
        daily = table("diet_daily")
        draws = table("marker_draws")
        # Person pages are for people followed over time; members of cross-sectional cohorts
        # (one undated draw each, e.g. NHANES) appear on the cohort page only.
        followed = (
            conn.execute(
                "SELECT DISTINCT person_id FROM diet_daily UNION "
                "SELECT DISTINCT person_id FROM marker_draws WHERE collected_at IS NOT NULL"
            ).pl()["person_id"]
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
        window = (
            f"{daily['day'].min()!s} to {daily['day'].max()!s}" if daily.height else "no diet data"
        )
        return DashboardInputs(
            persons=people,
            diet_daily=daily,
            marker_draws=draws,
            marker_trends=trends,
            associations=table("associations"),
            ingest_files=table("ingest_files"),
            rejected_summary=rejected,
            unmapped_foods=table("unmapped_foods"),
            run_info={
                "run_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                "code_version": f"gutsignal {version('gutsignal')}",
                "data_window": window,
                "upstream": ", ".join(UPSTREAM),
            },
        )


@dg.asset(
    group_name="reports",
    kinds={"plotly", "html"},
    deps=["persons", "diet_daily", "marker_trends", "associations", "unmapped_foods"],
)
def dashboards(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    """Self-contained HTML dashboards that work offline: an index of people, a page per person
    (CRP timeline with acute spikes marked, lag-window heatmap, findings in plain words, data
    quality) and a cohort page. plotly.js is written once next to the pages."""
    out_dir = project.project.dashboards_dir
    data = load_dashboard_inputs(project.warehouse())
    written = write_dashboards(out_dir, data)
    index = out_dir / "index.html"
    return dg.MaterializeResult(
        metadata={
            "pages": len([p for p in written if p.suffix == ".html"]),
            "index": dg.MetadataValue.path(str(index)),
        }
    )
