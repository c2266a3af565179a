"""Every association model the pipeline fits, on the frames the `associations` asset reads.

One entry point, `run_all_models`, shared by the step (`pipelines/steps/analysis.py`) and the
simulation study (`pipelines/analysis/calibration.py`), so the calibration figures describe the
pipeline's own calls. Plain Polars in and out: no Dagster, no DuckDB.
"""

import polars as pl

from pipelines.analysis.associations import compute_associations
from pipelines.analysis.between import cross_sectional
from pipelines.analysis.model_frame import PeopleGroups
from pipelines.analysis.survey import has_design, survey_cross_sectional
from pipelines.config import Settings


def cohort_people(persons: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """The people cohort models may use: everyone, or those at least `cohort_min_age` old."""
    if settings.cohort_min_age is None:
        return persons
    return persons.filter(pl.col("age") >= settings.cohort_min_age)


def run_all_models(
    draws: pl.DataFrame,
    windows: pl.DataFrame | PeopleGroups,
    persons: pl.DataFrame,
    summary: pl.DataFrame,
    settings: Settings,
    biometrics: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per-person and cohort models on dated draws, between-person models on undated ones.

    The entry point a simulation can call with the frames this asset reads (the dated path is
    `compute_associations`, see its docstring); the asset passes the windows as `PeopleGroups`,
    a group of people at a time."""
    dated = draws.filter(pl.col("collected_at").is_not_null())
    undated = draws.filter(pl.col("collected_at").is_null())
    results = []
    if dated.height:
        results.append(
            compute_associations(dated, windows, persons, settings, biometrics=biometrics)
        )
    if undated.height and summary.height:
        adults = cohort_people(persons, settings)
        features = summary.drop("period", "dii_params", strict=False)
        if has_design(adults):
            # A survey cohort: the design spans everyone in it, the models only the eligible.
            results.append(
                survey_cross_sectional(
                    undated, features, persons, settings, eligible=adults["person_id"]
                )
            )
        else:
            eligible = undated.join(adults.select("person_id"), on="person_id", how="semi")
            results.append(cross_sectional(eligible, features, adults, settings))
    if not results:
        return compute_associations(dated, windows, persons, settings, biometrics=biometrics)
    return pl.concat(results, how="diagonal_relaxed")
