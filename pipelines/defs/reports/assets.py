"""The dashboards: `dashboards/index.html`, one page per person (its findings and lag-window scan
in a section file beside it) and a cohort page (read from the warehouse by
`pipelines.steps.dashboards`, rendered by `pipelines.reports`)."""

import dagster as dg

from pipelines.defs._versions import REPORTS_VERSION
from pipelines.defs.resources import ProjectResource
from pipelines.reports.inputs import SECTION_SUFFIX
from pipelines.steps.dashboards import load_dashboard_inputs, update_dashboards


@dg.asset(
    code_version=REPORTS_VERSION,
    group_name="reports",
    kinds={"plotly", "html"},
    # It writes the warehouse too: the plan's record of what the pages were built from.
    pool="duckdb_writer",
    deps=[
        "persons",
        "diet_daily",
        "diet_summary",
        "marker_draws",
        "marker_trends",
        "exposure_windows",
        "associations",
        "data_sufficiency",
        "unmapped_foods",
        # The daily outcomes panel: the readings and their tests.
        "biometrics",
        "daily_effects",
    ],
)
def dashboards(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    """Self-contained HTML dashboards that work offline: an index of people, a page per person
    (CRP timeline with acute spikes marked, lag-window heatmap, findings in plain words, data
    quality) and a cohort page. plotly.js is written once next to the pages, and each page's
    findings and lag-window scan in a file beside it (person_<id>.lag.js). Only the person pages
    and section files whose inputs changed are rendered, like the other per-person steps
    recompute."""
    out_dir = project.project.dashboards_dir
    warehouse = project.warehouse()
    data = load_dashboard_inputs(warehouse)
    config = project.config()
    data.pseudonymise_cohort = config.settings.pseudonymise_cohort
    data.demo_sources = frozenset(s.name for s in config.sources if s.demo)
    written, plan = update_dashboards(warehouse, out_dir, data)
    index = out_dir / "index.html"
    return dg.MaterializeResult(
        metadata={
            "pages": len(list(out_dir.glob("*.html"))),
            # Person pages with nothing new on them are kept, not rendered again; the index and
            # the cohort page are always written.
            "pages_rendered": len([p for p in written if p.suffix == ".html"]),
            # A page's findings and lag scan: rendered when a draw or a finding changed.
            "sections_rendered": len([p for p in written if p.name.endswith(SECTION_SUFFIX)]),
            "people_recomputed": "all" if plan.everyone else len(plan.people),
            "index": dg.MetadataValue.path(str(index)),
        }
    )
