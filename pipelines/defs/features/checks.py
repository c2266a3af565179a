"""Checks on the features: one row per person-day, every lab result drawn once, no acute draw in
the chronic analysis."""

import dagster as dg

from pipelines.defs.resources import ProjectResource


@dg.asset_check(asset="diet_daily", description="One row per person and day.")
def diet_daily_unique_days(project: ProjectResource) -> dg.AssetCheckResult:
    dupes = project.warehouse().query(
        "SELECT person_id, day, count(*) AS n FROM diet_daily GROUP BY ALL HAVING n > 1"
    )
    return dg.AssetCheckResult(passed=dupes.is_empty(), metadata={"duplicate_days": dupes.height})


@dg.asset_check(
    asset="marker_draws", description="Every lab result appears exactly once in marker_draws."
)
def marker_draws_account_for_results(project: ProjectResource) -> dg.AssetCheckResult:
    with project.warehouse().read() as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM lab_results), (SELECT count(*) FROM marker_draws)"
        ).fetchone()
    results, draws = (row or (0, 0))[0], (row or (0, 0))[1]
    return dg.AssetCheckResult(
        passed=results == draws, metadata={"lab_results": results, "marker_draws": draws}
    )


@dg.asset_check(
    asset="marker_draws", description="No acute CRP draw is left in the chronic analysis."
)
def acute_draws_excluded(project: ProjectResource) -> dg.AssetCheckResult:
    leaked = project.warehouse().query(
        "SELECT count(*) AS n FROM marker_draws WHERE acute AND excluded_reason IS NULL"
    )["n"][0]
    return dg.AssetCheckResult(passed=leaked == 0, metadata={"acute_in_chronic": int(leaked)})
