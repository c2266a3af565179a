"""Exposure windows and associations: the statistics behind every finding on the dashboards.

The methods live in `pipelines.analysis` (pure Polars/NumPy/statsmodels) and the steps that run
them on the warehouse in `pipelines.steps.analysis` (so the benchmark runs the same code without
Dagster); these assets open one transaction each, call the step and report what it did.
"""

import dagster as dg
import polars as pl

from pipelines.defs._metadata import md_table
from pipelines.defs._versions import CODE_VERSION
from pipelines.defs.resources import ProjectResource
from pipelines.steps.analysis import update_associations, update_exposure_windows


@dg.asset(
    code_version=CODE_VERSION,
    group_name="analysis",
    kinds={"polars", "duckdb"},
    pool="duckdb_writer",
    deps=["diet_daily", "marker_draws"],
)
def exposure_windows(
    context: dg.AssetExecutionContext, project: ProjectResource
) -> dg.MaterializeResult:
    """Trailing means of every diet feature before each chronic draw (3 to 56 days, draw day
    excluded), with how many of the window's days were logged; incomplete windows are kept but
    flagged so the association step can skip them."""
    settings = project.config().settings
    with project.warehouse().write() as conn:
        plan = update_exposure_windows(conn, settings)
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (complete) FROM exposure_windows"
        ).fetchone()
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


@dg.asset(
    code_version=CODE_VERSION,
    group_name="analysis",
    kinds={"polars", "duckdb"},
    pool="duckdb_writer",
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
        refit, result = update_associations(conn, project.config().settings)
    by_status = result.group_by("scope", "status").len().sort("scope", "status")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": result.height,
            "significant": result.filter(pl.col("status") == "significant").height,
            "by_status": md_table(by_status),
            # False when no input changed since the last fit: the table was kept as it was.
            "refit": refit,
        }
    )
