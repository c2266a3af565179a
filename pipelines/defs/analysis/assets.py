"""Exposure windows and associations: the statistics behind every finding on the dashboards.

The methods live in `pipelines.analysis` (pure Polars/NumPy/statsmodels); this module wires them
to the warehouse and records the parameters used next to the numbers.
"""

import json

import dagster as dg
import polars as pl

from pipelines.analysis.models import run_all_models
from pipelines.analysis.windows import build_exposure_windows
from pipelines.config import result_settings
from pipelines.defs._metadata import md_table
from pipelines.defs._versions import CODE_VERSION
from pipelines.defs.resources import ProjectResource
from pipelines.incremental import (
    changed,
    only_people,
    plan_people,
    plan_whole,
    record,
    register_people,
    replace_people,
)
from pipelines.steps.analysis import daily_features, window_days_sql
from pipelines.steps.features import settings_salt
from pipelines.transforms.dii import dii_of_window_means
from pipelines.warehouse import replace_table, table_exists


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
    daily_sql, draws_sql = window_days_sql(settings), "SELECT * FROM marker_draws"
    with project.warehouse().write() as conn:
        # Which features exist is a property of everyone's diet_daily, not of the people
        # recomputed: decided here, in SQL, and passed down.
        features = daily_features(conn)
        plan = plan_people(
            conn,
            "exposure_windows",
            inputs=[daily_sql, draws_sql],
            outputs=["exposure_windows"],
            salt=settings_salt(settings) + ",".join(features),
        )
        if not plan.everyone:
            register_people(conn, plan.touched)
            daily_sql, draws_sql = only_people(daily_sql), only_people(draws_sql)
        daily = conn.execute(f"{daily_sql} ORDER BY ALL").pl()
        draws = conn.execute(f"{draws_sql} ORDER BY ALL").pl()
        windows = build_exposure_windows(daily, draws, settings, features)
        windows = pl.concat([windows, dii_of_window_means(windows)], how="vertical_relaxed")
        if plan.everyone:
            replace_table(conn, "exposure_windows", windows)
        else:
            replace_people(conn, "exposure_windows", windows)
        record(conn, plan)
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
    settings = project.config().settings
    inputs: tuple[str, ...] = ("marker_draws", "exposure_windows", "persons", "diet_summary")
    with project.warehouse().write() as conn:
        # Body weight is a covariate where biometrics exist (a source of kind biometrics).
        if table_exists(conn, "biometrics"):
            inputs = (*inputs, "biometrics")
        # The cohort models and the FDR families span everyone: refit all or nothing.
        plan = plan_whole(
            conn,
            "associations",
            inputs=[f"SELECT * FROM {t}" for t in inputs],
            outputs=["associations"],
            salt=settings_salt(settings),
        )
        refit = changed(plan)
        if refit:
            # In a fixed order: the per-person steps update their tables in place, so the
            # physical row order depends on the history of runs; the fits must not see that.
            draws, windows, people, summary, *bio = (
                conn.execute(f"SELECT * FROM {t} ORDER BY ALL").pl() for t in inputs
            )
            parameters = json.dumps(result_settings(settings), default=list)
            result = run_all_models(
                draws, windows, people, summary, settings, bio[0] if bio else None
            ).with_columns(pl.lit(parameters).alias("parameters"))
            replace_table(conn, "associations", result)
            record(conn, plan)
        else:
            result = conn.execute("SELECT scope, status FROM associations").pl()
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
