"""The dashboards: `dashboards/index.html`, one page per person and a cohort page (read from the
warehouse by `pipelines.steps.dashboards`, rendered by `pipelines.reports`)."""

import dagster as dg

from pipelines.defs._versions import REPORTS_VERSION
from pipelines.defs.resources import ProjectResource
from pipelines.reports.dashboards import write_dashboards
from pipelines.steps.dashboards import load_dashboard_inputs


@dg.asset(
    code_version=REPORTS_VERSION,
    group_name="reports",
    kinds={"plotly", "html"},
    deps=[
        "persons",
        "diet_daily",
        "marker_trends",
        "exposure_windows",
        "associations",
        "data_sufficiency",
        "unmapped_foods",
    ],
)
def dashboards(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    """Self-contained HTML dashboards that work offline: an index of people, a page per person
    (CRP timeline with acute spikes marked, lag-window heatmap, findings in plain words, data
    quality) and a cohort page. plotly.js is written once next to the pages."""
    out_dir = project.project.dashboards_dir
    data = load_dashboard_inputs(project.warehouse())
    config = project.config()
    data.pseudonymise_cohort = config.settings.pseudonymise_cohort
    data.demo_sources = frozenset(s.name for s in config.sources if s.demo)
    written = write_dashboards(out_dir, data)
    index = out_dir / "index.html"
    return dg.MaterializeResult(
        metadata={
            "pages": len(list(out_dir.glob("*.html"))),
            # Person pages with nothing new on them are kept, not rendered again.
            "pages_rendered": len([p for p in written if p.suffix == ".html"]),
            "index": dg.MetadataValue.path(str(index)),
        }
    )
