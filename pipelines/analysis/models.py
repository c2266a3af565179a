"""Every association model the pipeline fits, on the frames the `associations` asset reads.

One entry point, `run_all_models`, shared by the step (`pipelines/steps/analysis.py`) and the
simulation study (`pipelines/analysis/calibration.py`), so the calibration figures describe the
pipeline's own calls. Plain Polars in and out: no Dagster, no DuckDB.
"""

from collections.abc import Iterator

import polars as pl

from pipelines.analysis.associations import association_parts
from pipelines.analysis.between import cross_sectional
from pipelines.analysis.model_frame import PeopleGroups, Stash, conform_results, in_memory
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
    """Per-person and cohort models on dated draws, between-person models on undated ones: the
    parts of `model_parts` in one frame. The entry point a simulation can call with the frames
    the `associations` asset reads."""
    parts = list(model_parts(draws, windows, persons, summary, settings, biometrics))
    if not parts:
        return conform_results(pl.DataFrame())
    return pl.concat(parts, how="diagonal_relaxed")


def model_parts(
    draws: pl.DataFrame,
    windows: pl.DataFrame | PeopleGroups,
    persons: pl.DataFrame,
    summary: pl.DataFrame,
    settings: Settings,
    biometrics: pl.DataFrame | None = None,
    *,
    people_per_group: int | None = None,
    stash: Stash = in_memory,
) -> Iterator[pl.DataFrame]:
    """Every association row, in parts of the columns of RESULT_SCHEMA: the dated path's
    (`association_parts`, person rows a group of `people_per_group` people at a time, kept in
    `stash` meanwhile), then the between-person rows of undated draws. The step passes the
    windows as `PeopleGroups`, read a group of people at a time, and writes part by part."""
    dated = draws.filter(pl.col("collected_at").is_not_null())
    undated = draws.filter(pl.col("collected_at").is_null())
    if dated.height:
        yield from association_parts(
            dated,
            windows,
            persons,
            settings,
            biometrics=biometrics,
            people_per_group=people_per_group,
            stash=stash,
        )
    if undated.height and summary.height:
        adults = cohort_people(persons, settings)
        features = summary.drop("period", "dii_params", strict=False)
        if has_design(adults):
            # A survey cohort: the design spans everyone in it, the models only the eligible.
            yield survey_cross_sectional(
                undated, features, persons, settings, eligible=adults["person_id"]
            )
        else:
            eligible = undated.join(adults.select("person_id"), on="person_id", how="semi")
            yield cross_sectional(eligible, features, adults, settings)
