"""Associations between diet features and chronic marker levels, with honest uncertainty.

Response: the natural log of the marker (`log_value` of chronic draws). Exposure: one feature's mean
over a complete trailing window (`exposure_windows.complete`). Effects are reported as the % change
in the marker per +1 unit of the feature, 100 * (exp(beta) - 1), with the 95% CI from exp of the
beta CI, and `sd_feature` (the feature's SD among the rows used) so a reader can rescale to "per
typical change". Entry point: `compute_associations(draws, windows, persons, settings,
biometrics=...)`, the frames the `associations` asset reads; `association_parts` gives the same
rows in parts, the person rows a group of people at a time (the step writes them part by part).
The modules, in the order they run:
- `model_frame.py`: the analysis frame, the wide per-draw table with covariates (built a group
  of people at a time and read a (marker, window) at a time, `model_frame`), the core foods,
  aliases and thresholds below;
- `person_models.py` and `cohort_models.py`: the two scopes (`per_person_ols`,
  `cohort_models`), with `between.py` for markers measured once per person;
- `pooling.py`: person estimates partially pooled toward the cohort;
- `multiple_testing.py`: one test per food, the family's procedure and each row's status.

Adjusted and crude (issue 16)
- The primary estimate (`effect_pct`, CI, `p`, `q`, `status`) comes from a model that also holds
  the pre-specified core gut foods (CORE_ADJUSTMENT, `pipelines/data/adjustment_core.csv`:
  fermented, ultra-processed, alcohol: the categories with a directional prior in science.md
  section 4 that share items with many others), energy intake (unless TAUTOLOGICAL), a linear
  time trend and body weight where biometrics have one at most 30 days before the draw. Energy
  in the model means "at the same energy intake", i.e. the food eaten instead of other foods.
  `adjusted_for` lists what the model held; `collinearity_vif` is the feature's variance
  inflation from those covariates.
- The crude estimate (feature alone, same rows, same errors) sits beside it in `crude_*`.
- `explained`: the crude estimate passes the multiple-testing check (the same procedure over
  the family's crude p-values), the adjusted one does not, and less than half the crude log
  effect remains. `note` names the covariates that carry the move (crude - adjusted = sum over
  covariates of slope-on-the-feature times adjusted coefficient, exactly for OLS). Such a food
  is never shown as a finding.
- Features that measure one exposure twice (FEATURE_ALIASES, `pipelines/data/
  feature_aliases.csv`: alcohol_g and alcohol_servings, dii and dii_window, UPF energy share and
  UPF servings) collapse to one, so an exposure is one discovery.
- A feature that is, within persons, a core food under another name (|r| >= COLLINEAR_R with
  it, from TWIN_MIN_DRAWS draws on per person) is not tested: no model can tell the two apart,
  and the core food is the pre-specified one (`twin_note`). In the calibration study energy,
  when most of its variation came from ultra-processed snacks, was otherwise a false finding.

One test per food
- Each food is tested once, at its primary window (`settings.primary_window_days`, 28 days; the
  closest tested window when absent), one multiple-testing family per marker and scope
  (`f"{marker}|cohort"` or `f"{marker}|person:{id}"`) over the primary rows. The procedure is
  `settings.multiple_testing`: `holm` (the default) controls the family-wise error rate, the
  chance of even one false finding per family, which also bounds the false discovery rate;
  `bh` (Benjamini-Hochberg) controls only the false discovery rate. Beside real effects BH lets
  a null food through far more often than 5% of the time (one false among three findings is a
  false discovery rate of a third): the calibration study measured a cohort family-wise error
  of 11-17% under BH at 40 people with two planted effects, against 5% for the null cohort. A
  user acts on every finding, so Holm is the default; it costs some power in small cohorts.
  `q` is the adjusted p-value of that procedure. The other windows (`window_role`
  "lag_shape") describe the lag shape for the heatmap; their q is the larger of the food's
  primary q and a Holm adjustment over the food's other windows (serial gatekeeping), so a window
  is significant only when its food is.

Scopes and methods
- `person` / `ols_adjusted_hac`: for each person, marker, feature and window, OLS of log marker
  on the feature and covariates, batched over persons (`robust.batched_ols_hac`). With ~20 draws
  a person's model holds the core foods that co-vary with the feature (|r| >= PERSON_COVARY_R),
  most correlated first, then energy, trend and weight, as many as leave PERSON_MIN_DF residual
  degrees of freedom. SE: Newey-West over the draws in time order, its CI at the fixed-b
  critical value, never below classical OLS; t with n - 1 - k degrees of freedom.
  `pooled_effect_pct` and its CI: the person's estimate partially pooled toward the cohort's
  (`partial_pooling`, empirical Bayes).
- `cohort` / `fe_within_robust`: pooled over persons with repeated draws, the within-person
  (person fixed-effects) estimate of the same adjusted model (`robust.fit_within` of per-person
  statistics, `person_stats`): every
  covariate in the core set that all rows have and that varies within persons. Person-level
  covariates (age, sex) are constant within a person and cannot move it. SE: cluster-robust by
  person (CR2, t with Bell-McCaffrey degrees of freedom, at most G - 1)
  from MIN_CLUSTERS persons on, which stays valid
  when CRP drifts (autocorrelated residuals) and when persons' slopes differ (the estimate is
  then the average within-person effect); with fewer persons, panel Newey-West (never below
  the classical SE) and the estimate describes these persons only.
- `cohort` / `ols_between`: one draw per person (cross-sectional cohorts such as NHANES): OLS of log
  marker on the feature with age, sex and energy covariates when available. `cross_sectional` runs
  it on person-level features without windows; `compute_associations` uses it when nobody has
  repeated draws. Survey cohorts (people with weight, stratum and PSU) get design-based
  `survey_wls` rows instead, with `ols_between` beside them: see `pipelines.analysis.survey`.

Thresholds (all from `pipelines.config.Settings`)
- `insufficient_data`: fewer than `min_n_person` (person) or `min_n_cohort` (cohort) rows, fewer
  than 2 persons in a cohort test, or a feature that does not vary; numbers are null and `note` says
  why.
- `significant` when q <= `settings.fdr` (the error rate the procedure controls).
- `inconclusive`: not significant and the CI is too wide to say anything: the CI for a one-SD change
  of the feature (`sd_feature`) reaches both -20% and +25% (0.8x and 1.25x, symmetric on the log
  scale). Scaling to one SD keeps the rule independent of units (per kcal every CI is narrow, per
  1,000 kcal every CI is wide). Otherwise `not_significant`.

Association, not causation: these are observational estimates even within a person.

"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import polars as pl

from pipelines.analysis.cohort_models import cohort_scope, within_rows
from pipelines.analysis.model_frame import (
    PeopleGroups,
    Stash,
    conform_results,
    in_memory,
    model_frame,
    primary_windows,
)
from pipelines.analysis.multiple_testing import add_fdr_and_status
from pipelines.analysis.person_models import person_rows
from pipelines.analysis.pooling import pooled_estimates
from pipelines.config import Settings


def compute_associations(
    draws: pl.DataFrame,
    windows: pl.DataFrame | PeopleGroups,
    persons: pl.DataFrame | None,
    settings: Settings,
    *,
    biometrics: pl.DataFrame | None = None,
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """The associations table (columns of RESULT_SCHEMA) from the frames the Dagster asset has:
    `marker_draws`, `exposure_windows` (one frame, or read a group of people at a time through
    `PeopleGroups`, which bounds memory: see `model_frame`), `persons` and (optionally)
    `biometrics`: the parts of `association_parts`, everyone's person rows in one group.

    Per-person and cohort rows, crude and adjusted, the primary window and the lag shape, person
    estimates partially pooled toward the cohort, q-values and status. Cohort rows are produced
    for markers measured in at least 2 persons.
    """
    parts = list(
        association_parts(
            draws, windows, persons, settings, biometrics=biometrics, energy_adjust=energy_adjust
        )
    )
    return pl.concat(parts) if parts else conform_results(pl.DataFrame())


def association_parts(
    draws: pl.DataFrame,
    windows: pl.DataFrame | PeopleGroups,
    persons: pl.DataFrame | None,
    settings: Settings,
    *,
    biometrics: pl.DataFrame | None = None,
    energy_adjust: bool = True,
    people_per_group: int | None = None,
    stash: Stash = in_memory,
) -> Iterator[pl.DataFrame]:
    """`compute_associations`' rows in parts, each final: the person rows of each group of
    `people_per_group` people (everyone when None), then the cohort rows.

    What grows with the cohort is kept in `stash` (Parquet files, for the step) until it is
    needed: the wide table, read back a (marker, window) at a time (`WideParts`), and the person
    rows (about 155 a person), fitted a group of people and a (marker, window) at a time and
    kept until the partial pooling is known, which needs every person's estimate: three numbers
    of each row are held for that (`pooled_estimates`). The FDR families are one person's or the
    cohort's, so each part's q-values are final. The rows, bit for bit, do not depend on the
    grouping; their order does (one group gives the order of one fit of everyone).
    """
    frame = model_frame(draws, windows, biometrics, stash)
    if not frame.chunks:
        return
    features = frame.features
    tested = pl.DataFrame(
        {
            "marker": [c.marker for c in frame.chunks],
            "window_days": [c.window_days for c in frame.chunks],
        },
        schema={"marker": pl.String, "window_days": pl.Int64},
    )
    keys = numbered_tests(tested, features)
    step = people_per_group or frame.people
    # Each group's person rows, a part per (marker, window), kept in `stash`: (load, the part's
    # first row among `estimates`, its rows).
    fitted: dict[int, list[tuple[Callable[[], pl.DataFrame], int, int]]] = {}
    estimates: list[pl.DataFrame] = []
    within: list[Future[pl.DataFrame]] = []
    at = 0
    # A (marker, window) of the wide table at a time (`WideChunk`): its cohort model on a
    # second core while its person models fit on this one, a group of people at a time (numpy
    # and Polars release the GIL in their kernels). A chunk is read once the cohort model of the
    # one before the last is done, so at most two are held and neither core waits for a read.
    with ThreadPoolExecutor(1) as background:
        for chunk in frame.chunks:
            if len(within) > 1:
                within[-2].result()
            wide = chunk.read()
            if chunk.marker in frame.within:
                within.append(
                    background.submit(within_rows, wide, features, settings, energy_adjust)
                )
            for first in range(0, frame.people, step):
                people = range(first, min(first + step, frame.people))
                rows = person_rows(wide, features, settings, energy_adjust, people)
                if rows.height == 0:
                    continue
                rows = primary_windows(rows, settings, tested)
                estimates.append(with_key(rows, keys).select("_key", "beta", "se"))
                fitted.setdefault(first, []).append((stash(rows), at, rows.height))
                at += rows.height
                del rows
            del wide
        cohort = cohort_scope([w.result() for w in within], frame, persons, settings, energy_adjust)
    pooled = pooled_estimates(pl.concat(estimates), with_key(cohort, keys))
    del estimates
    # A group's rows together: a person's FDR family spans the marker's windows.
    for _, parts in sorted(fitted.items()):
        rows = pl.concat(
            load().with_columns(pooled.slice(start, height).get_columns())
            for load, start, height in parts
        )
        yield conform_results(add_fdr_and_status(rows, settings))
    yield conform_results(add_fdr_and_status(cohort, settings))


def numbered_tests(tested: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """Each test (marker, window_days, feature) of `tested` windows and `features` numbered
    (`_key`) in the order `person_rows` walks them: markers and windows sorted, features in
    their order."""
    return (
        tested.select("marker", pl.col("window_days").cast(pl.Int64))
        .sort("marker", "window_days")
        .join(pl.DataFrame({"feature": features}, schema={"feature": pl.String}), how="cross")
        .with_row_index("_key")
    )


def with_key(rows: pl.DataFrame, keys: pl.DataFrame) -> pl.DataFrame:
    """`rows` with the `_key` of their test (`numbered_tests`; null for a test not among them)."""
    return rows.join(
        keys, on=["marker", "window_days", "feature"], how="left", maintain_order="left"
    )
