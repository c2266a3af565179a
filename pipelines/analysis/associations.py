"""Associations between diet features and chronic marker levels, with honest uncertainty.

Response: the natural log of the marker (`log_value` of chronic draws). Exposure: one feature's mean
over a complete trailing window (`exposure_windows.complete`). Effects are reported as the % change
in the marker per +1 unit of the feature, 100 * (exp(beta) - 1), with the 95% CI from exp of the
beta CI, and `sd_feature` (the feature's SD among the rows used) so a reader can rescale to "per
typical change". Entry point: `compute_associations(draws, windows, persons, settings,
biometrics=...)`, the frames the `associations` asset reads; `per_person_ols` and
`cohort_models` are its two scopes on an `analysis_frame`.

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
  (person fixed-effects) estimate of the same adjusted model (`robust.within_fit`): every
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

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from pipelines.analysis.robust import batched_ols_hac, demean, within_fit
from pipelines.config import Settings
from pipelines.schema import RESULT_SCHEMA

# Pairs (feature, covariate) that must never be adjusted for one another because one is part of, or
# defined from, the other: adjusting fibre for carbohydrate removes the fibre it contains. The
# cohort model only ever adds `energy_kcal` today; the other pairs document the rule for future
# covariates.
TAUTOLOGICAL: frozenset[tuple[str, str]] = frozenset(
    {
        ("energy_kcal", "energy_kcal"),
        ("ultra_processed_energy_pct", "energy_kcal"),  # already a share of energy
        ("dii", "energy_kcal"),  # energy is one of the DII's parameters
        ("dii_no_alcohol", "energy_kcal"),
        ("dii_window", "energy_kcal"),
        ("fiber_g_per_1000kcal", "energy_kcal"),  # already energy-adjusted
        ("fiber_g", "carbs_g"),
        ("sugars_g", "carbs_g"),
        ("added_sugars_g", "carbs_g"),
        ("added_sugars_g", "sugars_g"),
        ("sat_fat_g", "fat_g"),
        ("mufa_g", "fat_g"),
        ("pufa_g", "fat_g"),
        ("trans_fat_g", "fat_g"),
        ("omega3_g", "fat_g"),
        ("omega6_g", "fat_g"),
        ("omega3_g", "pufa_g"),
        ("omega6_g", "pufa_g"),
        ("alcohol_servings", "alcohol_g"),
        ("alcohol_g", "alcohol_servings"),
        ("added_sugar_servings", "added_sugars_g"),
        ("added_sugars_g", "added_sugar_servings"),
    }
)
ENERGY = "energy_kcal"


def _data_table(name: str) -> list[dict[str, str]]:
    text = resources.files("pipelines.data").joinpath(name).read_text("utf-8")
    return pl.read_csv(text.encode(), infer_schema=False).to_dicts()


# The pre-specified core gut foods every adjusted model includes (pipelines/data/
# adjustment_core.csv says why each is there): fixed before looking at any outcome, so adjusting
# cannot be tuned to produce findings.
CORE_ADJUSTMENT: tuple[str, ...] = tuple(r["feature"] for r in _data_table("adjustment_core.csv"))
# Features that measure the same exposure as another (pipelines/data/feature_aliases.csv): only
# `same_as` is tested when both are present, so one exposure is one discovery.
FEATURE_ALIASES: dict[str, str] = {
    r["feature"]: r["same_as"] for r in _data_table("feature_aliases.csv")
}
TREND = "_trend"  # years since 1970: a linear time trend (within a person: their drift)
WEIGHT = "_weight"  # body weight (kg), the latest biometrics value at most 30 days before a draw
WEIGHT_MAX_AGE_DAYS = 30
DAYS_PER_YEAR = 365.25
COVARIATE_LABELS = {
    ENERGY: "energy (kcal)",
    TREND: "time trend",
    WEIGHT: "body weight",
    "fermented_servings": "fermented food",
    "ultra_processed_servings": "ultra-processed food",
}
# Per person, co-varying core foods come first (most correlated first), then energy, trend and
# weight, as many as leave PERSON_MIN_DF residual degrees of freedom.
COVARIATE_PRIORITY = {ENERGY: 2.0, TREND: 1.5, WEIGHT: 1.2}
PERSON_COVARY_R = 0.3
# Two exposures correlated this strongly within persons are largely the same foods (UPF and added
# sugar in a diet of sweets): adjusting one for the other leaves nothing to estimate, so the
# covariate is left out and the note says so (the VIF of what remains is in collinearity_vif).
COLLINEAR_R = 0.95
# A person's feature counts as a core food's twin only from this many draws on: with fewer, a
# correlation of 0.95 happens by chance (p ~ 0.0003 for two unrelated series at 8 draws, 0.05
# at 4).
TWIN_MIN_DRAWS = 8
PERSON_MIN_DF = 5
# A covariate is named as explaining a crude association when it carries this share of the move.
EXPLAINED_SHARE = 0.2
# A crude finding is `explained` when adjusting leaves less than half of its log effect (and the
# adjusted estimate is not significant); one that merely loses significance is not.
EXPLAINED_REMAINS = 0.5

INCONCLUSIVE_LOW_PCT = -20.0
INCONCLUSIVE_HIGH_PCT = 25.0
MIN_PERSONS_FOR_COVARIATES = 10
_T95 = 0.975


# --------------------------------------------------------------------------------------------------
# Multiple testing and status


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q); NaN entries stay NaN and are not counted."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok], kind="stable")
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    adj = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adj
    q[ok] = out
    return q


def _bh(p: str, over: list[str]) -> pl.Expr:
    """BH q-values of column `p` within groups `over` (rows sorted by p within the group)."""
    return (
        (pl.col(p) * pl.len().over(over) / pl.int_range(1, pl.len() + 1).over(over))
        .cum_min(reverse=True)
        .over(over)
        .clip(upper_bound=1.0)
    )


def _holm(p: str, over: list[str]) -> pl.Expr:
    """Holm adjusted p-values of column `p` within groups `over` (rows sorted by p within the
    group): (m - rank + 1) p, made monotone."""
    return (
        (pl.col(p) * (pl.len() - pl.int_range(pl.len())).over(over))
        .cum_max()
        .over(over)
        .clip(upper_bound=1.0)
    )


ADJUSTMENTS = {"holm": _holm, "bh": _bh}


def add_fdr_and_status(results: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """(Re)compute `q` within each `family` and `status` (see the module docstring).

    A food is one test: `settings.multiple_testing` (Holm or Benjamini-Hochberg) runs over the
    primary-window rows of a family. Its
    other windows (`window_role` "lag_shape") describe the lag shape; their q is the larger of
    the food's primary q and a Holm adjustment over the food's other windows (serial
    gatekeeping), so a window is significant only when its food is. A primary row whose crude
    estimate passes the same procedure (over the family's crude p-values) but whose adjusted
    estimate does not is `explained`. Rows without `window_role` count as primary, rows without
    `crude_p` are never explained. Call it again after concatenating results that share families.
    """
    if results.height == 0:
        return results
    adjust = ADJUSTMENTS[settings.multiple_testing]
    indexed = results.drop("q", strict=False).with_row_index("_i")
    role = (
        pl.col("window_role").fill_null("primary")
        if "window_role" in results.columns
        else pl.lit("primary")
    )
    has_p = pl.col("p").is_not_null() & pl.col("p").is_not_nan()
    base = indexed.select(
        "_i",
        "family",
        "feature",
        "p",
        (role == "primary").alias("_primary"),
        *([pl.col("crude_p")] if "crude_p" in results.columns else []),
    )
    primary_q = (
        base.filter(pl.col("_primary") & has_p)
        .sort("family", "p", "_i")
        .select("_i", "family", "feature", adjust("p", ["family"]).alias("q"))
    )
    lag_q = (
        base.filter(~pl.col("_primary") & has_p)
        .sort("family", "feature", "p", "_i")
        .with_columns(_holm("p", ["family", "feature"]).alias("_holm"))
        .join(
            primary_q.select("family", "feature", pl.col("q").alias("_gate")),
            on=["family", "feature"],
            how="left",
        )
        .select("_i", pl.max_horizontal("_holm", pl.col("_gate").fill_null(1.0)).alias("q"))
    )
    q = pl.concat([primary_q.select("_i", "q"), lag_q])
    if "crude_p" in results.columns:
        crude = (
            base.filter(
                pl.col("_primary")
                & pl.col("crude_p").is_not_null()
                & pl.col("crude_p").is_not_nan()
            )
            .sort("family", "crude_p", "_i")
            .select("_i", adjust("crude_p", ["family"]).alias("_crude_q"))
        )
    else:
        crude = pl.DataFrame(schema={"_i": pl.UInt32, "_crude_q": pl.Float64})
    sd = pl.when(pl.col("sd_feature") > 0).then(pl.col("sd_feature")).otherwise(1.0)

    def per_sd(col: str) -> pl.Expr:
        return 100.0 * ((1.0 + pl.col(col) / 100.0).pow(sd) - 1.0)

    inconclusive = (per_sd("ci_low_pct") <= INCONCLUSIVE_LOW_PCT) & (
        per_sd("ci_high_pct") >= INCONCLUSIVE_HIGH_PCT
    )
    # "Disappears": the adjusted log effect is under EXPLAINED_REMAINS of the crude one.
    remains = (pl.col("effect_pct") / 100.0).log1p() / (pl.col("crude_effect_pct") / 100.0).log1p()
    explained = (
        (
            (pl.col("_crude_q") <= settings.fdr)
            & role.eq("primary")
            & (remains < EXPLAINED_REMAINS)
        ).fill_null(False)
        if "crude_effect_pct" in results.columns
        else pl.lit(False)
    )
    out = (
        indexed.join(q, on="_i", how="left")
        .join(crude, on="_i", how="left")
        .sort("_i")
        .with_columns(
            pl.when(pl.col("q").is_null())
            .then(pl.lit("insufficient_data"))
            .when(pl.col("q") <= settings.fdr)
            .then(pl.lit("significant"))
            .when(explained)
            .then(pl.lit("explained"))
            .when(inconclusive.fill_null(False))
            .then(pl.lit("inconclusive"))
            .otherwise(pl.lit("not_significant"))
            .alias("status")
        )
    )
    if "explained_by" in results.columns:
        text = pl.format(
            "explained by what it co-occurs with: {} (crude {}%, q {}; adjusted {}%)",
            pl.col("explained_by").fill_null("the adjustment set"),
            pl.col("crude_effect_pct").round(1),
            pl.col("_crude_q").round(3),
            pl.col("effect_pct").round(1),
        )
        note = pl.col("note").fill_null("")
        out = out.with_columns(
            pl.when((pl.col("status") == "explained") & ~note.str.contains("explained by"))
            .then(pl.concat_str([text, note], separator="; ").str.strip_chars("; "))
            .otherwise(pl.col("note"))
            .alias("note")
        )
    out = out.drop("_i", "_crude_q")
    return out.select(results.columns + [c for c in ("q", "status") if c not in results.columns])


# --------------------------------------------------------------------------------------------------
# Per-person OLS, closed form over group sums


def _effects(beta: Any, se: Any, df: Any) -> dict[str, Any]:
    """% effect, CI and two-sided p from beta, its SE and t degrees of freedom (vectorised)."""
    beta = np.asarray(beta, dtype=float)
    se = np.asarray(se, dtype=float)
    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        tcrit = stats.t.ppf(_T95, df)
        tval = beta / se
        p = 2.0 * stats.t.sf(np.abs(tval), df)
        return {
            "effect_pct": 100.0 * np.expm1(beta),
            "ci_low_pct": 100.0 * np.expm1(beta - tcrit * se),
            "ci_high_pct": 100.0 * np.expm1(beta + tcrit * se),
            "p": p,
        }


def analysis_frame(draws: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """Windows of chronic draws joined to the response: person_id, marker, collected_at, feature,
    window_days, x (window mean), y (log marker), use (complete window with x and y), and integer
    codes `_pid` (person) and `_draw` (draw) that keep the cohort step free of string joins."""
    response = (
        draws.filter(pl.col("excluded_reason").is_null() & pl.col("log_value").is_not_null())
        .select("person_id", "marker", "collected_at", pl.col("log_value").alias("y"))
        .with_row_index("_draw")
        .with_columns((pl.col("person_id").rank("dense") - 1).cast(pl.Int64).alias("_pid"))
    )
    return windows.join(response, on=["person_id", "marker", "collected_at"], how="inner").select(
        "_pid",
        "_draw",
        "person_id",
        "marker",
        "collected_at",
        "feature",
        "window_days",
        pl.col("value").alias("x"),
        "y",
        (
            pl.col("complete")
            & pl.col("value").is_not_null()
            & pl.col("value").is_finite()
            & pl.col("y").is_finite()
        )
        .fill_null(False)
        .alias("use"),
    )


def _ols(y: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """OLS: beta, covariance, residual degrees of freedom (raises when X is rank deficient)."""
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise np.linalg.LinAlgError("collinear covariates")
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - X.shape[1]
    resid = y - X @ beta
    sigma2 = float(resid @ resid) / dof
    return beta, sigma2 * np.linalg.inv(X.T @ X), dof


# --------------------------------------------------------------------------------------------------
# The design: one row per draw and window, one column per feature, and who is adjusted for whom


def _prepare(
    data: pl.DataFrame, biometrics: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """An `analysis_frame` made wide (one row per draw and window, a column per feature holding
    the window mean where the window is usable, else null) plus the time trend and body weight
    columns, and the features tested (duplicates in FEATURE_ALIASES collapsed to one)."""
    if "_pid" not in data.columns:
        data = data.with_columns(
            (pl.col("person_id").rank("dense") - 1).cast(pl.Int64).alias("_pid")
        )
    dated = "collected_at" in data.columns
    if not dated:
        # A bare frame (tests, simulations): rows in order within a person are their draws.
        data = data.with_columns(pl.lit(None, dtype=pl.Datetime("us")).alias("collected_at"))
    if "_draw" not in data.columns:
        k = pl.int_range(pl.len()).over("person_id", "marker", "feature", "window_days")
        data = data.with_columns(
            (pl.struct("person_id", "marker", k.alias("_k")).rank("dense") - 1)
            .cast(pl.Int64)
            .alias("_draw"),
            pl.col("collected_at").fill_null(pl.lit(datetime(2000, 1, 1)) + pl.duration(days=k)),
        )
    present = set(data["feature"].unique().to_list())
    dropped = {f for f, same in FEATURE_ALIASES.items() if f in present and same in present}
    features = sorted(present - dropped)
    long = data.filter(pl.col("feature").is_in(features)).select(
        "_draw", "window_days", "feature", pl.when(pl.col("use")).then(pl.col("x")).alias("x")
    )
    draws = data.select("_draw", "_pid", "person_id", "marker", "collected_at", "y").unique(
        subset="_draw"
    )
    wide = (
        long.pivot(on="feature", index=["_draw", "window_days"], values="x")
        .join(draws, on="_draw", how="left")
        .with_columns(
            (pl.col("collected_at").dt.epoch("s") / (86400.0 * DAYS_PER_YEAR)).alias(TREND)
            if dated
            else pl.lit(None, dtype=pl.Float64).alias(TREND)
        )
    )
    for f in features:
        if f not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(f))
    weight = None
    if biometrics is not None and biometrics.height and "metric" in biometrics.columns:
        weight = (
            biometrics.filter(
                (pl.col("metric") == "weight") & pl.col("value").is_finite() & (pl.col("value") > 0)
            )
            .group_by(pl.col("person_id").cast(pl.String), pl.col("day").cast(pl.Date))
            .agg(pl.col("value").mean().alias(WEIGHT))
            .sort("day")
        )
    if weight is not None and weight.height:
        at = (
            draws.select("_draw", "person_id", pl.col("collected_at").dt.date().alias("_day"))
            .sort("_day")
            .join_asof(
                weight,
                left_on="_day",
                right_on="day",
                by="person_id",
                strategy="backward",
                tolerance=timedelta(days=WEIGHT_MAX_AGE_DAYS),
            )
        )
        wide = wide.join(at.select("_draw", WEIGHT), on="_draw", how="left")
    else:
        wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(WEIGHT))
    return wide.sort("marker", "window_days", "_pid", "collected_at"), features


def adjustment_candidates(feature: str, features: list[str], energy_adjust: bool) -> list[str]:
    """What the adjusted model for `feature` may include, in this order: the core gut foods
    (CORE_ADJUSTMENT) other than the feature itself and its aliases or tautological partners,
    energy (unless tautological), the time trend and body weight."""

    def related(a: str, b: str) -> bool:
        return (
            a == b
            or (a, b) in TAUTOLOGICAL
            or (b, a) in TAUTOLOGICAL
            or FEATURE_ALIASES.get(a) == b
            or FEATURE_ALIASES.get(b) == a
        )

    out = [c for c in CORE_ADJUSTMENT if c in features and not related(feature, c)]
    if energy_adjust and ENERGY in features and not related(feature, ENERGY):
        out.append(ENERGY)
    return [*out, TREND, WEIGHT]


def _label(name: str) -> str:
    return COVARIATE_LABELS.get(name, name.removesuffix("_servings").replace("_", " "))


def twin_note(core_foods: list[str]) -> str:
    """Why a feature that is a core food under another name is not tested."""
    return (
        "moves with "
        + ", ".join(_label(c) for c in core_foods)
        + f" within persons (|r| >= {COLLINEAR_R}): the data cannot tell them apart, and the "
        "pre-specified core food is tested instead"
    )


def _contributors(
    crude: float, adjusted: float, delta: np.ndarray, gamma: np.ndarray, names: list[str]
) -> str | None:
    """The covariates that moved the estimate: crude - adjusted = sum_c delta_c gamma_c exactly
    (delta_c: slope of covariate c on the feature, gamma_c: c's adjusted coefficient); those
    carrying at least EXPLAINED_SHARE of the move, largest first, at most three."""
    move = crude - adjusted
    if not (math.isfinite(move) and abs(move) > 0):
        return None
    share = delta * gamma / move
    order = np.argsort(-share)
    picked = [names[i] for i in order[:3] if np.isfinite(share[i]) and share[i] >= EXPLAINED_SHARE]
    return ", ".join(_label(n) for n in picked) or None


def primary_windows(results: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """`window_role` and `primary_window_days`: per marker, the window closest to
    `settings.primary_window_days` among those tested (the longer on a tie) is the primary one."""
    windows = results.select("marker", "window_days").drop_nulls().unique()
    target = settings.primary_window_days
    primary = (
        windows.with_columns(
            (pl.col("window_days") - target).abs().alias("_d"), (-pl.col("window_days")).alias("_t")
        )
        .sort("marker", "_d", "_t")
        .group_by("marker", maintain_order=True)
        .first()
        .select("marker", pl.col("window_days").alias("primary_window_days"))
    )
    return (
        results.drop("window_role", "primary_window_days", strict=False)
        .join(primary, on="marker", how="left")
        .with_columns(
            pl.when(
                pl.col("window_days").is_null()
                | (pl.col("window_days") == pl.col("primary_window_days"))
            )
            .then(pl.lit("primary"))
            .otherwise(pl.lit("lag_shape"))
            .alias("window_role")
        )
        .pipe(_conform_results)
    )


def _conform_results(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in RESULT_SCHEMA.items()
        ]
    )


# --------------------------------------------------------------------------------------------------
# Per-person models: one batched OLS per feature with Newey-West errors


def per_person_ols(
    data: pl.DataFrame,
    settings: Settings,
    *,
    biometrics: pl.DataFrame | None = None,
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """Per-person rows for every (person, marker, feature, window) in `data` (an
    `analysis_frame`): crude and adjusted OLS with Newey-West errors; q and status are left to
    `add_fdr_and_status`."""
    if data.height == 0:
        return _conform_results(pl.DataFrame())
    wide, features = _prepare(data, biometrics)
    return primary_windows(_person_rows(wide, features, settings, energy_adjust), settings)


class _Grid:
    """One (marker, window) chunk of the wide frame as person x draw arrays (NaN padded), built
    column by column as the fits ask for them."""

    def __init__(self, chunk: pl.DataFrame) -> None:
        sizes = chunk.group_by("_pid", maintain_order=True).agg(
            pl.col("person_id").first(), pl.len().alias("_n")
        )
        counts = sizes["_n"].to_numpy().astype(np.int64)
        self.person_ids = sizes["person_id"]
        self._chunk = chunk
        self._g = np.repeat(np.arange(counts.size), counts)
        self._r = np.arange(chunk.height) - np.repeat(np.cumsum(counts) - counts, counts)
        self._shape = (counts.size, int(counts.max()))
        self._cache: dict[str, np.ndarray] = {}

    def __call__(self, name: str) -> np.ndarray:
        if name not in self._cache:
            out = np.full(self._shape, np.nan)
            out[self._g, self._r] = self._chunk[name].cast(pl.Float64).fill_null(np.nan).to_numpy()
            self._cache[name] = out
        return self._cache[name]


def _person_rows(
    wide: pl.DataFrame, features: list[str], settings: Settings, energy_adjust: bool
) -> pl.DataFrame:
    parts = []
    for (marker, window), chunk in wide.group_by("marker", "window_days", maintain_order=True):
        grid = _Grid(chunk)
        parts += [
            _person_feature(marker, window, f, grid, features, settings, energy_adjust)
            for f in features
        ]
    if not parts:
        return _conform_results(pl.DataFrame())
    # One frame at the end: building one per feature cost more than the fits.
    joined = {
        k: np.concatenate([p[k] for p in parts])
        if isinstance(parts[0][k], np.ndarray)
        else [v for p in parts for v in p[k]]
        for k in parts[0]
    }
    out = pl.DataFrame(joined).with_columns(
        pl.col(pl.Float64).fill_nan(None),
        pl.lit("person").alias("scope"),
        pl.lit("ols_adjusted_hac").alias("method"),
        pl.lit(1, dtype=pl.Int64).alias("n_persons"),
        pl.concat_str([pl.col("marker"), pl.lit("|person:"), pl.col("person_id")]).alias("family"),
    )
    return _conform_results(out)


def _person_feature(
    marker: str,
    window: int,
    feature: str,
    col: _Grid,
    features: list[str],
    settings: Settings,
    energy_adjust: bool,
) -> dict[str, Any]:
    cands = adjustment_candidates(feature, features, energy_adjust)
    y, x = col("y"), col(feature)
    mask = np.isfinite(y) & np.isfinite(x)
    n = mask.sum(axis=1).astype(float)
    C = np.stack([col(c) for c in cands], axis=-1)  # (G, T, c)
    X = np.concatenate([x[..., None], C], axis=-1)
    X = np.where(mask[..., None] & np.isfinite(X), X, 0.0)
    m = mask.astype(float)
    nn = np.maximum(n, 1.0)
    Xc = (X - (X.sum(axis=1) / nn[:, None])[:, None, :]) * m[..., None]
    ss = (Xc * Xc).sum(axis=1)  # (G, 1 + c)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(ss[:, 0] / (n - 1.0))
        mean_x = np.abs(X[..., 0].sum(axis=1) / nn)
        cov_xc = np.einsum("gt,gtc->gc", Xc[..., 0], Xc[..., 1:])
        r = cov_xc / np.sqrt(ss[:, :1] * ss[:, 1:])
        delta = cov_xc / ss[:, :1]
    finite_on_rows = np.all(np.isfinite(C) | ~mask[..., None], axis=1)
    available = finite_on_rows & (ss[:, 1:] > 1e-12) & (np.abs(np.nan_to_num(r)) < COLLINEAR_R)
    is_core = np.array([c in CORE_ADJUSTMENT for c in cands])
    twins = (
        finite_on_rows
        & (ss[:, 1:] > 1e-12)
        & is_core[None, :]
        & (np.abs(np.nan_to_num(r)) >= COLLINEAR_R)
        & (feature not in CORE_ADJUSTMENT)
        & (n >= TWIN_MIN_DRAWS)[:, None]
    )
    priority = np.where(is_core[None, :], 3.0 + np.abs(np.nan_to_num(r)), 0.0)
    priority += np.array([COVARIATE_PRIORITY.get(c, 0.0) for c in cands])[None, :]
    eligible = available & (~is_core[None, :] | (np.abs(np.nan_to_num(r)) >= PERSON_COVARY_R))
    priority = np.where(eligible, priority, -np.inf)
    rank = np.argsort(np.argsort(-priority, axis=1, kind="stable"), axis=1, kind="stable")
    room = np.maximum(n - 2.0 - PERSON_MIN_DF, 0.0)
    include = eligible & (rank < room[:, None])
    use_adj = np.concatenate([np.ones((n.size, 1), bool), include], axis=1)
    use_crude = np.zeros_like(use_adj)
    use_crude[:, 0] = True
    adj = batched_ols_hac(y, X, mask, use_adj)
    crude = batched_ols_hac(y, X, mask, use_crude)

    enough = n >= max(settings.min_n_person, 3)
    varies = np.nan_to_num(sd) > 1e-6 * np.maximum(1.0, mean_x)
    ok = enough & varies & adj.ok & ~twins.any(axis=1)
    notes: list[str | None] = []
    names = np.array([_label(c) for c in cands], dtype=object)
    patterns = include @ (1 << np.arange(len(cands), dtype=np.int64)) if cands else np.zeros(n.size)
    pattern_text = {
        int(p): ", ".join(names[(int(p) >> np.arange(len(cands))) & 1 == 1]) or None
        for p in np.unique(patterns)
    }
    crude_eff = _effects(crude.beta, crude.se, crude.df)
    explained_by: list[str | None] = []
    for i in range(n.size):
        if not enough[i]:
            notes.append(f"{int(n[i])} complete windows; at least {settings.min_n_person} needed")
        elif not varies[i]:
            notes.append("the feature did not vary across these windows")
        elif twins[i].any():
            notes.append(twin_note([c for c, t in zip(cands, twins[i], strict=True) if t]))
        elif not ok[i]:
            notes.append("the adjusted model could not be fitted (collinear covariates)")
        else:
            notes.append(None)
        explained_by.append(
            _contributors(
                float(crude.beta[i]), float(adj.beta[i]), delta[i], adj.coef[i, 1:], list(cands)
            )
            if ok[i] and crude_eff["p"][i] < 0.05
            else None
        )
    okf = np.where(ok, 1.0, np.nan)
    size = n.size
    columns: dict[str, Any] = {
        "person_id": col.person_ids.to_list(),
        "marker": [marker] * size,
        "feature": [feature] * size,
        "window_days": np.full(size, window, dtype=np.int64),
        "n": n.astype(np.int64),
        "note": notes,
        "sd_feature": np.where(n > 1, sd, np.nan),
        "beta": adj.beta * okf,
        "se": adj.se * okf,
        "adjusted_for": [pattern_text[int(p)] for p in patterns],
        "collinearity_vif": adj.vif * okf,
        "explained_by": explained_by,
    }
    for prefix, fit in (("", adj), ("crude_", crude)):
        beta = fit.beta * okf
        for k, v in _effects(beta, fit.se, fit.df).items():
            columns[prefix + k] = np.where(np.isfinite(beta) & (fit.se > 0), v, np.nan)
    return columns


# --------------------------------------------------------------------------------------------------
# Cohort: person fixed effects (within-person), cluster-robust by person


def cohort_models(
    data: pl.DataFrame,
    persons: pl.DataFrame | None,
    settings: Settings,
    *,
    biometrics: pl.DataFrame | None = None,
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """Cohort scope for every (marker, feature, window) in `data` (an `analysis_frame`): the
    within-person effect, crude and adjusted, with a dependence-robust SE (`within_fit`).

    Only markers measured in at least 2 persons get cohort rows. `persons` is accepted for the
    between-person model of markers with one draw per person: person-level covariates (age, sex)
    are constant within a person and cannot move a within-person estimate."""
    if data.height == 0:
        return _conform_results(pl.DataFrame())
    wide, features = _prepare(data, biometrics)
    return _cohort_scope(data, wide, features, persons, settings, energy_adjust)


def _cohort_scope(
    data: pl.DataFrame,
    wide: pl.DataFrame,
    features: list[str],
    persons: pl.DataFrame | None,
    settings: Settings,
    energy_adjust: bool,
) -> pl.DataFrame:
    """Within-person rows for markers with repeated draws, between-person rows (`ols_between`,
    with age and sex) for markers where everyone has one draw; none for a single person."""
    per_marker = wide.group_by("marker").agg(
        pl.col("_pid").n_unique().alias("k"),
        pl.len().over("marker", "window_days", "_pid").max().alias("most"),
    )
    several = per_marker.filter(pl.col("k") >= 2)
    within = several.filter(pl.col("most") > 1)["marker"]
    between = several.filter(pl.col("most") <= 1)["marker"]
    parts = [
        _cohort_rows(wide.filter(pl.col("marker").is_in(within)), features, settings, energy_adjust)
    ]
    if between.len():
        parts.append(
            _between_rows(
                data.filter(pl.col("marker").is_in(between)), persons, settings, energy_adjust
            )
        )
    return primary_windows(pl.concat(parts), settings)


def _between_rows(
    data: pl.DataFrame, persons: pl.DataFrame | None, settings: Settings, energy_adjust: bool
) -> pl.DataFrame:
    """One draw per person: between-person OLS with energy, age and sex (`_cohort_row`)."""
    keys = ["marker", "feature", "window_days"]
    used = data.filter(pl.col("use"))
    energy = used.filter(pl.col("feature") == ENERGY).select(
        "_draw", "window_days", pl.col("x").alias("energy")
    )
    used = used.join(energy, on=["_draw", "window_days"], how="left")
    age, sex = _person_arrays(data, persons)
    arrays = dict(_iter_tests(used, keys, age, sex))
    none = _TestData(pid=np.array([], dtype=np.int64), x=np.array([]), y=np.array([]))
    rows = []
    for marker, feature, window in data.select(keys).unique().sort(keys).iter_rows():
        row = _cohort_row(
            arrays.get((marker, feature, window), none), feature, settings, energy_adjust
        )
        rows.append(
            row
            | {
                "scope": "cohort",
                "marker": marker,
                "feature": feature,
                "window_days": window,
                "method": row.get("method", "ols_between"),
                "family": f"{marker}|cohort",
            }
        )
    return _conform_results(_finish(rows))


def _cohort_rows(
    wide: pl.DataFrame, features: list[str], settings: Settings, energy_adjust: bool
) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    for (marker, window), chunk in wide.group_by("marker", "window_days", maintain_order=True):
        arrays = {
            c: chunk[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
            for c in [*features, TREND, WEIGHT, "y"]
        }
        y_all, t_all = arrays["y"], arrays[TREND]
        pid_all = chunk["_pid"].to_numpy()
        for f in features:
            row: dict[str, Any] = {
                "scope": "cohort",
                "marker": marker,
                "feature": f,
                "window_days": window,
                "family": f"{marker}|cohort",
            }
            x_all = arrays[f]
            mask = np.isfinite(x_all) & np.isfinite(y_all)
            cands = adjustment_candidates(f, features, energy_adjust)
            C = np.column_stack([arrays[c][mask] for c in cands])
            rows.append(
                row
                | _cohort_test(
                    f, y_all[mask], x_all[mask], C, cands, pid_all[mask], t_all[mask], settings
                )
            )
    return _conform_results(pl.DataFrame(rows, infer_schema_length=None))


def _cohort_test(
    feature: str,
    y: np.ndarray,
    x: np.ndarray,
    C: np.ndarray,
    cands: list[str],
    pid: np.ndarray,
    t: np.ndarray,
    settings: Settings,
) -> dict[str, Any]:
    n = int(x.size)
    _, groups = np.unique(pid, return_inverse=True)
    n_persons = int(groups.max()) + 1 if n else 0
    row: dict[str, Any] = {
        "n": n,
        "n_persons": n_persons,
        "sd_feature": float(np.std(x, ddof=1)) if n > 1 else None,
        "method": "fe_within_robust",
    }
    if n_persons < 2:
        return row | {"note": f"{n_persons} person(s) with complete windows; at least 2 needed"}
    if n < settings.min_n_cohort:
        return row | {"note": f"{n} complete windows; at least {settings.min_n_cohort} needed"}
    xw = demean(x, groups, n_persons)
    if float(xw @ xw) <= 1e-12 * max(1.0, float(x @ x)):
        return row | {"note": "the feature did not vary within persons"}
    # A covariate enters when every row has it and it varies within persons.
    Cw = demean(np.nan_to_num(C), groups, n_persons)
    sxx = float(xw @ xw)
    keep: list[int] = []
    collinear: list[int] = []
    for j in range(len(cands)):
        scc = float(Cw[:, j] @ Cw[:, j])
        if not (np.isfinite(C[:, j]).all() and scc > 1e-12):
            continue
        r = float(Cw[:, j] @ xw) / math.sqrt(scc * sxx)
        (collinear if abs(r) >= COLLINEAR_R else keep).append(j)
    names = [cands[j] for j in keep]
    twins = [cands[j] for j in collinear if cands[j] in CORE_ADJUSTMENT]
    if twins and feature not in CORE_ADJUSTMENT:
        # Within persons the feature is (nearly) a core food under another name: no model can
        # tell which of the two moves the marker, and the core food is the pre-specified one
        # (energy as a proxy for ultra-processed food was a false finding in the calibration).
        return row | {"note": twin_note(twins)}
    try:
        crude = within_fit(y, x[:, None], groups, t)
        adj = within_fit(y, np.column_stack([x, C[:, keep]]), groups, t)
    except np.linalg.LinAlgError:
        return row | {"note": "the within-person model could not be fitted (collinear covariates)"}
    delta = (Cw[:, keep].T @ xw) / sxx
    crude_eff = _effects(crude.beta, crude.se, crude.df)
    how = (
        f"cluster-robust by person, t({adj.df:.1f})"
        if adj.cov_type == "cluster"
        else f"Newey-West within person ({n_persons} persons: too few to cluster on)"
    )
    note = f"within-person effect (person fixed effects; SE {how})"
    if ENERGY in names:
        note += "; at the same energy intake, i.e. eaten instead of other foods"
    if collinear:
        note += (
            "; not adjusted for "
            + ", ".join(_label(cands[j]) for j in collinear)
            + f" (within-person |r| >= {COLLINEAR_R}: largely the same foods, tested apart)"
        )
    return row | {
        "beta": adj.beta,
        "se": adj.se,
        "df": adj.df,
        "note": note,
        "adjusted_for": ", ".join(_label(c) for c in names) or None,
        "collinearity_vif": adj.vif,
        "crude_effect_pct": float(crude_eff["effect_pct"]),
        "crude_ci_low_pct": float(crude_eff["ci_low_pct"]),
        "crude_ci_high_pct": float(crude_eff["ci_high_pct"]),
        "crude_p": float(crude_eff["p"]),
        "explained_by": _contributors(crude.beta, adj.beta, delta, adj.coef[1:], names)
        if crude_eff["p"] < 0.05
        else None,
        **{k: float(v) for k, v in _effects(adj.beta, adj.se, adj.df).items()},
    }


# --------------------------------------------------------------------------------------------------
# Partial pooling of person estimates toward the cohort


def partial_pooling(results: pl.DataFrame) -> pl.DataFrame:
    """`pooled_effect_pct` and its CI on person rows: the person's estimate shrunk toward the
    cohort's (empirical Bayes). With between-person variance tau^2 of the person estimates
    (DerSimonian-Laird, from at least 3 persons) and the person's SE s, the weight on the
    person's own estimate is B = tau^2 / (tau^2 + s^2), the pooled estimate b0 + B (b - b0) and
    its variance B s^2 + (1 - B)^2 s0^2 (normal CI). Few draws or a homogeneous cohort pull a
    person's estimate toward the cohort; a person who clearly differs keeps their own."""
    keys = ["marker", "feature", "window_days"]
    if results.height == 0 or "beta" not in results.columns:
        return results
    cohort = results.filter(
        (pl.col("scope") == "cohort") & pl.col("beta").is_not_null() & pl.col("se").is_not_null()
    ).select(*keys, pl.col("beta").alias("_b0"), pl.col("se").alias("_s0"))
    person = pl.col("scope") == "person"
    ok = person & pl.col("beta").is_not_null() & (pl.col("se") > 0)
    w = pl.when(ok).then(1.0 / pl.col("se") ** 2)
    bw = (w * pl.col("beta")).sum().over(keys) / w.sum().over(keys)
    q_stat = (w * (pl.col("beta") - bw) ** 2).sum().over(keys)
    m = ok.cast(pl.Int64).sum().over(keys)
    denom = w.sum().over(keys) - (w**2).sum().over(keys) / w.sum().over(keys)
    tau2 = pl.when(m >= 3).then(((q_stat - (m - 1)) / denom).clip(lower_bound=0.0))
    shrink = tau2 / (tau2 + pl.col("se") ** 2)
    est = pl.col("_b0") + shrink * (pl.col("beta") - pl.col("_b0"))
    sd = (shrink * pl.col("se") ** 2 + (1.0 - shrink) ** 2 * pl.col("_s0") ** 2).sqrt()
    z = 1.959963984540054
    out = (
        results.drop("pooled_effect_pct", "pooled_ci_low_pct", "pooled_ci_high_pct", strict=False)
        .join(cohort, on=keys, how="left", nulls_equal=True)
        .with_columns(
            *[
                pl.when(ok).then(100.0 * (e.exp() - 1.0)).alias(name)
                for name, e in (
                    ("pooled_effect_pct", est),
                    ("pooled_ci_low_pct", est - z * sd),
                    ("pooled_ci_high_pct", est + z * sd),
                )
            ]
        )
        .drop("_b0", "_s0")
    )
    return out.select(results.columns + [c for c in out.columns if c not in results.columns])


# --------------------------------------------------------------------------------------------------
# Cohort tests


@dataclass
class _TestData:
    """One cohort test's rows as arrays; `pid` are integer person codes, missing values are NaN
    (energy, age) or -1 (sex codes)."""

    pid: np.ndarray
    x: np.ndarray
    y: np.ndarray
    energy: np.ndarray | None = None
    age: np.ndarray | None = None
    sex: np.ndarray | None = None


def _iter_tests(
    data: pl.DataFrame,
    keys: list[str],
    age_by_pid: np.ndarray | None,
    sex_by_pid: np.ndarray | None,
) -> Iterator[tuple[tuple[Any, ...], _TestData]]:
    """Yield (key values, arrays) for each test; one sort and contiguous slices instead of a
    partition per test, which matters with millions of window rows."""
    data = data.sort([*keys, "_pid"])
    sizes = data.group_by(keys, maintain_order=True).agg(pl.len().alias("_n"))
    ends = np.cumsum(sizes["_n"].to_numpy())
    starts = ends - sizes["_n"].to_numpy()
    pid = data["_pid"].to_numpy()
    x = data["x"].to_numpy()
    y = data["y"].to_numpy()
    energy = data["energy"].fill_null(math.nan).to_numpy() if "energy" in data.columns else None
    for key, a, b in zip(sizes.select(keys).iter_rows(), starts, ends, strict=True):
        p = pid[a:b]
        yield (
            key,
            _TestData(
                pid=p,
                x=x[a:b],
                y=y[a:b],
                energy=None if energy is None else energy[a:b],
                age=None if age_by_pid is None else age_by_pid[p],
                sex=None if sex_by_pid is None else sex_by_pid[p],
            ),
        )


def _person_arrays(
    data: pl.DataFrame, persons: pl.DataFrame | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Age (NaN when missing) and sex code (-1 when missing) indexed by `_pid`."""
    if persons is None or persons.height == 0:
        return None, None
    ids = data.select("_pid", "person_id").unique(subset="_pid").sort("_pid")
    cov = persons.select(
        pl.col("person_id").cast(pl.String),
        *([pl.col("age").cast(pl.Float64)] if "age" in persons.columns else []),
        *([_normalise_sex(pl.col("sex"))] if "sex" in persons.columns else []),
    ).unique(subset="person_id", keep="first")
    joined = ids.join(cov, on="person_id", how="left").sort("_pid")
    size = int(ids["_pid"].to_numpy().max()) + 1
    age = sex = None
    if "age" in joined.columns:
        age = np.full(size, math.nan)
        age[joined["_pid"].to_numpy()] = joined["age"].fill_null(math.nan).to_numpy()
    if "sex" in joined.columns:
        sex = np.full(size, -1, dtype=np.int64)
        codes = (pl.col("sex").rank("dense") - 1).cast(pl.Int64).fill_null(-1)
        sex[joined["_pid"].to_numpy()] = joined.select(codes).to_series().to_numpy()
    return age, sex


def _person_covariates(td: _TestData, n_persons: int) -> tuple[list[np.ndarray], list[str]]:
    """Age and sex columns when every person in the test has them and there are enough persons."""
    cols: list[np.ndarray] = []
    names: list[str] = []
    if n_persons < MIN_PERSONS_FOR_COVARIATES:
        return cols, names
    if td.age is not None and not np.isnan(td.age).any() and np.ptp(td.age) > 0:
        cols.append(td.age.astype(float))
        names.append("age")
    if td.sex is not None and (td.sex >= 0).all():
        levels = np.unique(td.sex)
        cols.extend((td.sex == level).astype(float) for level in levels[1:])
        if levels.size > 1:
            names.append("sex")
    return cols, names


def _insufficient(note: str) -> dict[str, Any]:
    return {"note": note}


def _between_test(
    y: np.ndarray, x: np.ndarray, extra: list[np.ndarray], adjusted: list[str]
) -> dict[str, Any]:
    X = np.column_stack([np.ones_like(x), x, *extra])
    try:
        beta, cov, dof = _ols(y, X)
    except np.linalg.LinAlgError:
        return _insufficient("covariates are collinear with the feature")
    if dof < 1:
        return _insufficient("no residual degrees of freedom")
    note = "between persons (one draw each)"
    if adjusted:
        note += "; adjusted for " + ", ".join(adjusted)
    return {
        "method": "ols_between",
        "beta": float(beta[1]),
        "se": math.sqrt(cov[1, 1]),
        "df": dof,
        "note": note,
    }


def _cohort_row(
    td: _TestData, feature: str, settings: Settings, energy_adjust: bool
) -> dict[str, Any]:
    """One between-person test (one value per person: cross-sectional cohorts)."""
    n = td.x.size
    _, groups = np.unique(td.pid, return_inverse=True)
    n_persons = int(groups.max()) + 1 if n else 0
    row: dict[str, Any] = {"n": n, "n_persons": n_persons}
    x_all = td.x
    row["sd_feature"] = float(np.std(x_all, ddof=1)) if n > 1 else None
    if n_persons < 2:
        return row | _insufficient(
            f"{n_persons} person(s) with complete windows; at least 2 needed"
        )
    if n < settings.min_n_cohort:
        return row | _insufficient(f"{n} complete windows; at least {settings.min_n_cohort} needed")
    y = td.y
    if not (row["sd_feature"] or 0.0) > 1e-6 * max(1.0, abs(float(np.mean(x_all)))):
        return row | _insufficient("the feature did not vary")
    energy = None
    adjusted: list[str] = []
    if (
        energy_adjust
        and (feature, ENERGY) not in TAUTOLOGICAL
        and td.energy is not None
        and not np.isnan(td.energy).any()
        and float(np.ptp(td.energy)) > 0
    ):
        energy = td.energy
        adjusted.append("energy (kcal)")
    person_cols, names = _person_covariates(td, n_persons)
    adjusted += names
    fit = _between_test(y, x_all, ([energy] if energy is not None else []) + person_cols, adjusted)
    fit["covariates"] = ",".join(([ENERGY] if energy is not None else []) + names)
    return row | fit


def _finish(rows: list[dict[str, Any]]) -> pl.DataFrame:
    """Turn per-test dicts (with beta, se, df or just a note) into RESULT_SCHEMA rows."""
    records = []
    for r in rows:
        rec = {c: r.get(c) for c in RESULT_SCHEMA}
        if r.get("beta") is not None and r.get("se") is not None and r["se"] > 0:
            rec |= {k: float(v) for k, v in _effects(r["beta"], r["se"], r["df"]).items()}
        else:
            rec["beta"] = rec["se"] = None
        records.append(rec)
    return pl.DataFrame(records, schema=RESULT_SCHEMA)


def _normalise_sex(expr: pl.Expr) -> pl.Expr:
    s = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
    return (
        pl.when(s.is_in(["m", "male", "man", "1"]))
        .then(pl.lit("male"))
        .when(s.is_in(["f", "female", "woman", "2"]))
        .then(pl.lit("female"))
        .when(s == "")
        .then(None)
        .otherwise(s)
        .alias("sex")
    )


def compute_associations(
    draws: pl.DataFrame,
    windows: pl.DataFrame,
    persons: pl.DataFrame | None,
    settings: Settings,
    *,
    biometrics: pl.DataFrame | None = None,
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """The associations table (columns of RESULT_SCHEMA) from the frames the Dagster asset has:
    `marker_draws`, `exposure_windows`, `persons` and (optionally) `biometrics`.

    Per-person and cohort rows, crude and adjusted, the primary window and the lag shape, person
    estimates partially pooled toward the cohort, q-values and status. Cohort rows are produced
    for markers measured in at least 2 persons.
    """
    data = analysis_frame(draws, windows)
    if data.height == 0:
        return _conform_results(pl.DataFrame())
    wide, features = _prepare(data, biometrics)
    results = pl.concat(
        [
            primary_windows(_person_rows(wide, features, settings, energy_adjust), settings),
            _cohort_scope(data, wide, features, persons, settings, energy_adjust),
        ]
    )
    return _conform_results(add_fdr_and_status(partial_pooling(results), settings))


def cross_sectional(
    draws_or_frame: pl.DataFrame,
    features_frame: pl.DataFrame,
    persons: pl.DataFrame | None,
    settings: Settings,
    *,
    features: list[str] | None = None,
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """Between-person OLS of the log marker on each person-level feature (scope "cohort",
    method "ols_between", window_days null), with age, sex and energy covariates when available.

    `draws_or_frame`: marker draws (chronic rows are used) or any frame with person_id, marker and
    value or log_value. A person with several values contributes their mean log value (geometric
    mean). `features_frame`: wide (person_id plus one numeric column per feature) or long
    (person_id, feature, value).
    """
    response = person_response(draws_or_frame)
    long = person_features(features_frame, features)
    energy = long.filter(pl.col("feature") == ENERGY).select(
        "person_id", pl.col("value").alias("energy")
    )
    data = (
        response.join(long, on="person_id", how="inner")
        .rename({"value": "x"})
        .filter(pl.col("x").is_not_null() & pl.col("x").is_finite())
        .join(energy, on="person_id", how="left")
        .with_columns((pl.col("person_id").rank("dense") - 1).cast(pl.Int64).alias("_pid"))
    )
    age, sex = _person_arrays(data, persons)
    rows = []
    for (marker, feature), td in _iter_tests(data, ["marker", "feature"], age, sex):
        row = _cohort_row(td, feature, settings, energy_adjust)
        rows.append(
            row
            | {
                "scope": "cohort",
                "person_id": None,
                "marker": marker,
                "feature": feature,
                "window_days": None,
                "method": row.get("method", "ols_between"),
                "family": f"{marker}|cohort",
            }
        )
    return add_fdr_and_status(_finish(rows), settings)


def person_response(draws_or_frame: pl.DataFrame) -> pl.DataFrame:
    """person_id, marker, y: each person's mean log marker (chronic rows only), for
    between-person models. Accepts marker draws or any frame with person_id, marker and value or
    log_value."""
    response = draws_or_frame
    if "excluded_reason" in response.columns:
        response = response.filter(pl.col("excluded_reason").is_null())
    y_expr = (
        pl.col("log_value")
        if "log_value" in response.columns
        else pl.when(pl.col("value") > 0).then(pl.col("value").log())
    )
    return (
        response.select("person_id", "marker", y_expr.alias("y"))
        .filter(pl.col("y").is_not_null() & pl.col("y").is_finite())
        .group_by("person_id", "marker")
        .agg(pl.col("y").mean())
    )


def person_features(features_frame: pl.DataFrame, features: list[str] | None) -> pl.DataFrame:
    """person_id, feature, value (the person's mean) from a wide (person_id plus one numeric
    column per feature) or long (person_id, feature, value) frame."""
    if {"feature", "value"} <= set(features_frame.columns):
        long = features_frame.select("person_id", "feature", pl.col("value").cast(pl.Float64))
    else:
        numeric = [
            c
            for c, t in features_frame.schema.items()
            if c != "person_id" and t.is_numeric() and c not in ("age", "sex")
        ]
        long = features_frame.unpivot(
            index="person_id", on=numeric, variable_name="feature"
        ).with_columns(pl.col("value").cast(pl.Float64))
    long = long.group_by("person_id", "feature").agg(pl.col("value").mean())
    if features is not None:
        long = long.filter(pl.col("feature").is_in(features))
    return long
