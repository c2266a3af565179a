"""Exposure windows, associations and the daily-outcome effects: the statistics behind every
finding on the dashboards.

The methods live in `pipelines.analysis` (pure Polars/NumPy/statsmodels) and the steps that run
them on the warehouse in `pipelines.steps.analysis` (so the benchmark runs the same code without
Dagster); these assets open one transaction each, call the step and report what it did.
"""

import dagster as dg
import polars as pl

from pipelines.defs._metadata import md_table
from pipelines.defs._versions import CODE_VERSION
from pipelines.defs.partitions import all_people, per_person, person_shards, shards_of_run
from pipelines.defs.resources import ProjectResource
from pipelines.identity import remembered
from pipelines.incremental import changed
from pipelines.project import Project
from pipelines.steps.analysis import update_associations, update_exposure_windows
from pipelines.steps.daily import update_daily_effects


def exposure_windows_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`exposure_windows`, partitioned by the project's groups of person shards."""

    @dg.asset(
        code_version=CODE_VERSION,
        group_name="analysis",
        kinds={"polars", "duckdb"},
        deps=["diet_daily", "marker_draws"],
        # Per person: partitioned by groups of person shards (`pipelines.defs.partitions`).
        **per_person(partitions_def),
    )
    def exposure_windows(
        context: dg.AssetExecutionContext, project: ProjectResource
    ) -> dg.MaterializeResult:
        """Trailing means of every diet feature before each chronic draw (3 to 56 days, draw day
        excluded), with how many of the window's days were logged; incomplete windows are kept
        but flagged so the association step can skip them. A run of some shards recomputes only
        their people."""
        settings = project.config().settings
        shards = shards_of_run(context)
        with project.warehouse().write() as conn:
            plan = update_exposure_windows(conn, settings, shards)
            counts = "SELECT count(*), count(*) FILTER (complete) FROM exposure_windows"
            # Counted again only when the table's parts changed (`remembered`).
            row = remembered(conn, [counts], lambda: conn.execute(counts).fetchone())
        rows, complete = row or (0, 0)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "people_recomputed": "all" if plan.everyone else len(plan.touched),
                "complete_rows": complete,
                "windows": str(list(settings.windows)),
                "min_logged_fraction": settings.min_logged_fraction,
            }
        )

    return exposure_windows


@dg.asset(
    code_version=CODE_VERSION,
    group_name="analysis",
    kinds={"polars", "duckdb"},
    **all_people(),
    deps=["exposure_windows", "marker_draws", "persons", "diet_summary"],
)
def associations(
    context: dg.AssetExecutionContext, project: ProjectResource
) -> dg.MaterializeResult:
    """Every tested (marker, feature, window) pair, per person and pooled across people, as the %
    change in the marker per unit of the feature with a 95% CI, adjusted for the core gut foods,
    energy, a time trend and body weight (the crude estimate beside it), a Benjamini-Hochberg
    q-value over the foods' primary windows within each family, and a status that says
    `explained`, `insufficient_data` or `inconclusive` rather than print a number nobody should
    trust. Cross-sectional cohorts (undated draws and person-level intake, such as NHANES) get
    between-person models with age and sex as covariates; when their people carry a survey design
    (weights, strata, PSUs) the models are design-based (`survey_wls`, with race/ethnicity and
    income-to-poverty too) and an unweighted `ols_between` sits beside each."""
    with project.warehouse().write() as conn:
        refit, by_status = update_associations(conn, project.config().settings)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": int(by_status["len"].sum()),
            "significant": int(by_status.filter(pl.col("status") == "significant")["len"].sum()),
            "by_status": md_table(by_status),
            # False when no input changed since the last fit: the table was kept as it was.
            "refit": refit,
        }
    )


def daily_effects_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`daily_effects`, partitioned by the project's groups of person shards."""

    @dg.asset(
        code_version=CODE_VERSION,
        group_name="analysis",
        kinds={"polars", "duckdb"},
        deps=["diet_daily", "biometrics"],
        # Per person: partitioned by groups of person shards (`pipelines.defs.partitions`).
        **per_person(partitions_def),
    )
    def daily_effects(
        context: dg.AssetExecutionContext, project: ProjectResource
    ) -> dg.MaterializeResult:
        """Daily outcomes (the `biometrics` readings with a scale: symptoms, wearable signals)
        against the foods of the same and the previous days, per person and measure: a
        distributed-lag model of all foods at once with weekday effects and a trend,
        autocorrelation handled by quasi-differencing and calendar HAC errors, one test per food
        (its lag 0-3 sum) with a Benjamini-Hochberg q-value per person and measure, and the
        single lags and the trailing window beside it; only the people whose readings or diary
        changed are refitted (`settings.daily_outcomes`,
        pipelines/analysis/daily_outcomes.py), and a run of some shards refits only theirs."""
        shards = shards_of_run(context)
        with project.warehouse().write() as conn:
            plan = update_daily_effects(conn, project.config().settings, shards)
            counts = (
                "SELECT count(*), count(*) FILTER (status = 'significant'), "
                "count(DISTINCT person_id), count(DISTINCT (measure, scale)) FROM daily_effects"
            )
            # Counted again only when the table's parts changed (`remembered`).
            row = remembered(conn, [counts], lambda: conn.execute(counts).fetchone())
        rows, significant, people, measures = row or (0, 0, 0, 0)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "significant": significant,
                "people": people,
                "measures": measures,
                "people_refit": "all" if plan.everyone else len(plan.touched),
                # False when no person's inputs changed since the last run: the table was kept.
                "refit": changed(plan),
            }
        )

    return daily_effects


@dg.definitions
def analysis_assets() -> dg.Definitions:
    # Built at load time: the per-person assets' partitions come from the project's sources.yaml
    # (as in `pipelines.defs.features.assets`). A module with a @dg.definitions function
    # contributes only what that function returns.
    shards = person_shards(Project.from_env())
    return dg.Definitions(
        assets=[exposure_windows_asset(shards), associations, daily_effects_asset(shards)]
    )
