"""The dashboards: one page per person (its findings and lag-window scan in a section file beside
it), partitioned by person shards (`person_pages`), then `dashboards/index.html` and a cohort page
across everyone (`dashboards`), rendered from what the person pages kept of each person (read from
the warehouse by `pipelines.steps.dashboards`, rendered by `pipelines.reports`)."""

import dagster as dg

from pipelines.defs._versions import REPORTS_VERSION
from pipelines.defs.partitions import all_people, per_person, person_shards, shards_of_run
from pipelines.defs.resources import ProjectResource
from pipelines.project import Project
from pipelines.reports.inputs import COHORT, INDEX, SECTION_SUFFIX, DashboardInputs
from pipelines.steps.dashboards import load_dashboard_inputs
from pipelines.steps.pages import update_index, update_person_pages


def person_pages_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`person_pages`, partitioned by the project's groups of person shards."""

    @dg.asset(
        code_version=REPORTS_VERSION,
        group_name="reports",
        kinds={"plotly", "html"},
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
        # Per person: partitioned by groups of person shards (`pipelines.defs.partitions`). It
        # writes the warehouse too: the plan's record and what the index shows of each person.
        **per_person(partitions_def),
    )
    def person_pages(
        context: dg.AssetExecutionContext, project: ProjectResource
    ) -> dg.MaterializeResult:
        """A self-contained HTML page per person that works offline (CRP timeline with acute
        spikes marked, lag-window heatmap, findings in plain words, data quality), with its
        findings and lag-window scan in a file beside it (person_<id>.lag.js), and plotly.js
        written once next to the pages. Only the pages and section files whose inputs changed
        are rendered, like the other per-person steps recompute; a run of some shards renders,
        records and removes only their people's. What the index and the cohort page show of
        each person is kept in `page_summaries`."""
        out_dir = project.project.dashboards_dir
        warehouse = project.warehouse()
        shards = shards_of_run(context)
        # Their people, a group at a time; not everyone's draws, which only the cohort page shows.
        data = _inputs(project, shards=shards, cohort_draws=False)
        written, plan = update_person_pages(warehouse, out_dir, data, shards=shards)
        return dg.MaterializeResult(
            metadata={
                # Person pages with nothing new on them are kept, not rendered again.
                "pages_rendered": len([p for p in written if p.suffix == ".html"]),
                # A page's findings and lag scan: rendered when a draw or a finding changed.
                "sections_rendered": len([p for p in written if p.name.endswith(SECTION_SUFFIX)]),
                "people_recomputed": "all" if plan.everyone else len(plan.people),
            }
        )

    return person_pages


@dg.asset(
    code_version=REPORTS_VERSION,
    group_name="reports",
    kinds={"plotly", "html"},
    # Across everyone: once in a run of any range of partitions, with the warehouse's writers.
    **all_people(),
    deps=[
        "person_pages",
        "persons",
        "marker_draws",
        "associations",
        "unmapped_foods",
        "diet_daily",
        "diet_summary",
    ],
)
def dashboards(context: dg.AssetExecutionContext, project: ProjectResource) -> dg.MaterializeResult:
    """The index of people and the cohort page, rendered from what the person pages kept of
    each person (`page_summaries`) and the cohort-wide tables, without reading anyone's rows
    again: always written, as they span everyone."""
    out_dir = project.project.dashboards_dir
    written = update_index(project.warehouse(), out_dir, _inputs(project, people=False))
    index = out_dir / INDEX
    return dg.MaterializeResult(
        metadata={
            "pages": len(list(out_dir.glob("*.html"))),
            "pages_rendered": len([p for p in written if p.name in (INDEX, COHORT)]),
            "index": dg.MetadataValue.path(str(index)),
        }
    )


def _inputs(
    project: ProjectResource,
    *,
    shards: list[int] | None = None,
    people: bool = True,
    cohort_draws: bool = True,
) -> DashboardInputs:
    data = load_dashboard_inputs(
        project.warehouse(), shards, people=people, cohort_draws=cohort_draws
    )
    config = project.config()
    data.pseudonymise_cohort = config.settings.pseudonymise_cohort
    data.demo_sources = frozenset(s.name for s in config.sources if s.demo)
    return data


@dg.definitions
def reports_assets() -> dg.Definitions:
    # Built at load time: the per-person assets' partitions come from the project's sources.yaml
    # (as in `pipelines.defs.features.assets`). A module with a @dg.definitions function
    # contributes only what that function returns.
    return dg.Definitions(
        assets=[person_pages_asset(person_shards(Project.from_env())), dashboards]
    )
