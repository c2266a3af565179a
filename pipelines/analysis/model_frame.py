"""The model frame every association model reads: the analysis frame (draws joined to their
exposure windows), the wide per-draw table with covariates, which covariates a feature is
adjusted for, the shared constants (core foods, aliases, thresholds) and the result rows'
shape. See `pipelines.analysis.associations` for the methods as a whole."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from importlib import resources
from typing import Any

import numpy as np
import polars as pl
from scipy import special

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


def data_table(name: str) -> list[dict[str, str]]:
    text = resources.files("pipelines.data").joinpath(name).read_text("utf-8")
    return pl.read_csv(text.encode(), infer_schema=False).to_dicts()


# The pre-specified core gut foods every adjusted model includes (pipelines/data/
# adjustment_core.csv says why each is there): fixed before looking at any outcome, so adjusting
# cannot be tuned to produce findings.
CORE_ADJUSTMENT: tuple[str, ...] = tuple(r["feature"] for r in data_table("adjustment_core.csv"))
# Features that measure the same exposure as another (pipelines/data/feature_aliases.csv): only
# `same_as` is tested when both are present, so one exposure is one discovery.
FEATURE_ALIASES: dict[str, str] = {
    r["feature"]: r["same_as"] for r in data_table("feature_aliases.csv")
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
# Per-person OLS, closed form over group sums


def t_inference(beta: Any, se: Any, df: Any) -> dict[str, np.ndarray]:
    """95% CI (`ci_low`, `ci_high`) and two-sided p of beta from its SE and t degrees of freedom,
    on beta's own scale (vectorised)."""
    beta = np.asarray(beta, dtype=float)
    se = np.asarray(se, dtype=float)
    df = np.asarray(df, dtype=float)
    # The t quantile and tail straight from scipy.special, which `stats.t.ppf` and `stats.t.sf`
    # call after checking and broadcasting their arguments (the same values, nan for df <= 0):
    # that wrapper cost more than the functions, called once per test.
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        tcrit = special.stdtrit(df, _T95)
        p = 2.0 * special.stdtr(df, -np.abs(beta / se))
        return {"ci_low": beta - tcrit * se, "ci_high": beta + tcrit * se, "p": p}


def effects(beta: Any, se: Any, df: Any) -> dict[str, Any]:
    """% effect, CI and two-sided p from beta (of a log marker), its SE and t degrees of freedom
    (vectorised)."""
    beta = np.asarray(beta, dtype=float)
    raw = t_inference(beta, se, df)
    with np.errstate(invalid="ignore", over="ignore"):
        return {
            "effect_pct": 100.0 * np.expm1(beta),
            "ci_low_pct": 100.0 * np.expm1(raw["ci_low"]),
            "ci_high_pct": 100.0 * np.expm1(raw["ci_high"]),
            "p": raw["p"],
        }


def draw_codes(draws: pl.DataFrame) -> pl.DataFrame:
    """The response of every chronic draw with its integer codes: `_draw` (the draw's row) and
    `_pid` (the person's dense rank). Worked out once for everyone, so that frames built a group
    of people at a time number people and draws as one frame of everyone would."""
    return (
        draws.filter(pl.col("excluded_reason").is_null() & pl.col("log_value").is_not_null())
        .select("person_id", "marker", "collected_at", pl.col("log_value").alias("y"))
        .with_row_index("_draw")
        .with_columns((pl.col("person_id").rank("dense") - 1).cast(pl.Int64).alias("_pid"))
    )


def analysis_frame(draws: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """Windows of chronic draws joined to the response: person_id, marker, collected_at, feature,
    window_days, x (window mean), y (log marker), use (complete window with x and y), and integer
    codes `_pid` (person) and `_draw` (draw) that keep the cohort step free of string joins."""
    return join_windows(draw_codes(draws), windows)


def join_windows(codes: pl.DataFrame, windows: pl.DataFrame) -> pl.DataFrame:
    """`analysis_frame` from the `draw_codes` of everyone and some people's (or all) windows."""
    return windows.join(codes, on=["person_id", "marker", "collected_at"], how="inner").select(
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


def ols(y: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """OLS: beta, covariance, residual degrees of freedom (raises when X is rank deficient)."""
    if np.linalg.matrix_rank(X) < X.shape[1]:
        raise np.linalg.LinAlgError("collinear covariates")
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    dof = len(y) - X.shape[1]
    resid = y - X @ beta
    sigma2 = float(resid @ resid) / dof
    return beta, sigma2 * np.linalg.inv(X.T @ X), dof


# Keeps a frame until it is needed again: `stash(frame)` returns the call that gives it back.
Stash = Callable[[pl.DataFrame], Callable[[], pl.DataFrame]]

# --------------------------------------------------------------------------------------------------
# The design: one row per draw and window, one column per feature, and who is adjusted for whom


@dataclass(frozen=True)
class PeopleGroups:
    """Exposure windows read a group of people at a time: `read(i)` gives the windows of group i
    (0 <= i < count, no person in two groups). `present` is every feature of the windows that
    join a usable chronic draw, everyone's: which features are tested (and which aliases drop
    out) is a property of the whole cohort, so it is worked out once, not per group."""

    count: int
    read: Callable[[int], pl.DataFrame]
    present: list[str]


@dataclass(frozen=True)
class WideChunk:
    """The wide rows of one (marker, window), read when a fit needs them: `read()` gives them
    sorted as `sort_wide` sorts (by person, each person's draws in time order). The fits walk
    the table a (marker, window) at a time, so only one chunk need be in memory."""

    marker: str
    window_days: int
    read: Callable[[], pl.DataFrame]


@dataclass(frozen=True)
class ModelFrame:
    """What the models read: the wide table of everyone (`prepare_wide`'s rows) as `chunks`, one
    per (marker, window) in the table's order; the features tested; the number of people
    (`_pid` runs from 0 to `people` - 1); the markers with a within-person model (`within`:
    repeated draws, at least 2 persons) and with a between-person one (`between`: one draw a
    person, at least 2 persons); and the `analysis_frame` rows of the markers with at most one
    draw per person (their between-person model reads the long rows; a diary cohort with repeated
    draws keeps none)."""

    chunks: list[WideChunk]
    features: list[str]
    people: int
    within: list[str]
    between: list[str]
    single: pl.DataFrame


class WideParts:
    """The wide table of everyone, gathered a group of people at a time (`add`) and kept in
    `stash` (Parquet files, for the step) by (marker, window) until a fit reads that chunk: the
    table grows with the cohort's draws, one chunk of it does so by a factor of markers x
    windows less (issue 19). People must not be split between two groups."""

    def __init__(self, stash: Stash) -> None:
        self.stash = stash
        self.pieces: dict[tuple[str, int], list[Callable[[], pl.DataFrame]]] = {}
        self.counts: list[pl.DataFrame] = []
        self.people = 0

    def add(self, wide: pl.DataFrame) -> pl.DataFrame:
        """Keep one group's wide rows (`wide_rows`'); returns their `marker_counts`."""
        counts = marker_counts(wide)
        if wide.height == 0:
            return counts
        self.counts.append(counts)
        self.people = max(self.people, int(wide["_pid"].max()) + 1)  # type: ignore[arg-type]
        for (marker, window), rows in wide.partition_by(
            "marker", "window_days", as_dict=True
        ).items():
            self.pieces.setdefault((marker, window), []).append(self.stash(rows))
        return counts

    def frame(self, features: list[str], single: pl.DataFrame) -> ModelFrame:
        """The `ModelFrame` of what was added (`single` as it says)."""
        counts = pl.concat(self.counts) if self.counts else marker_counts(pl.DataFrame())
        # People are in one group only: a marker's persons add up over groups.
        per_marker = counts.group_by("marker").agg(pl.col("persons").sum(), pl.col("most").max())
        several = per_marker.filter(pl.col("persons") >= 2).sort("marker")
        chunks = [
            WideChunk(marker, window, partial(_read_chunk, loads))
            for (marker, window), loads in sorted(self.pieces.items())
        ]
        return ModelFrame(
            chunks,
            features,
            self.people,
            within=several.filter(pl.col("most") > 1)["marker"].to_list(),
            between=several.filter(pl.col("most") <= 1)["marker"].to_list(),
            single=single,
        )


def marker_counts(wide: pl.DataFrame) -> pl.DataFrame:
    """Per marker of `wide` (rows of `wide_rows`): its persons, and the most draws one person
    has in one of its windows."""
    if wide.height == 0:
        return pl.DataFrame(schema={"marker": pl.String, "persons": pl.UInt32, "most": pl.UInt32})
    return (
        wide.group_by("marker", "window_days", "_pid")
        .len()
        .group_by("marker")
        .agg(pl.col("_pid").n_unique().alias("persons"), pl.col("len").max().alias("most"))
    )


def _read_chunk(loads: list[Callable[[], pl.DataFrame]]) -> pl.DataFrame:
    # Relaxed: a feature absent from a group is a null Float64 column there (`wide_rows`),
    # whatever the dtype of the window values (integers in some tests).
    return sort_wide(pl.concat([load() for load in loads], how="vertical_relaxed"))


def in_memory(frame: pl.DataFrame) -> Callable[[], pl.DataFrame]:
    return lambda: frame


def model_frame(
    draws: pl.DataFrame,
    windows: pl.DataFrame | PeopleGroups,
    biometrics: pl.DataFrame | None = None,
    stash: Stash = in_memory,
) -> ModelFrame:
    """The `ModelFrame` of dated chronic `draws` and their `windows` (one frame, or
    `PeopleGroups`), its wide rows kept in `stash` (`WideParts`).

    Built a group of people at a time: the long windows, their join to the draws and the pivot
    are many times the size of the wide table they give (issue 19: at 1,500 people ~600 MB of
    them for a 13 MB wide table), so only one group's are held at once. People and draws are
    numbered once for everyone (`draw_codes`) and each chunk sorted when it is read, so the
    table is the same, row for row, however the cohort is split."""
    codes = draw_codes(draws)
    if isinstance(windows, PeopleGroups):
        features = tested_features(windows.present)
        frames: Iterator[pl.DataFrame] = (
            join_windows(codes, windows.read(i)) for i in range(windows.count)
        )
    else:
        whole = join_windows(codes, windows)
        features = tested_features(whole["feature"].unique().to_list())
        frames = iter([whole])
        del whole
    weight = body_weight(biometrics)
    parts = WideParts(stash)
    singles: list[pl.DataFrame] = []
    # The between-person model of a marker everyone has one draw of reads long rows (`cohort_scope`
    # sends it `single`), and whether a marker is one is known only once every group is seen: a
    # group's rows of markers with one draw a person are kept, and dropped as soon as someone
    # turns out to have several (`repeated`), so a diary cohort keeps none.
    repeated: set[str] = set()
    for data in frames:
        if data.height == 0:
            continue
        most = parts.add(wide_rows(data, features, weight, dated=True))
        repeated |= set(most.filter(pl.col("most") > 1)["marker"].to_list())
        once = most.filter(pl.col("most") <= 1)["marker"]
        singles.append(
            data.filter(pl.col("marker").is_in(once.implode()) & ~pl.col("marker").is_in(repeated))
        )
        del data
    # In the windows' key order, however the groups were cut (by store shard, say): the
    # between-person fits sum these rows in order.
    single = (
        pl.concat(singles)
        .filter(~pl.col("marker").is_in(repeated))
        .sort("person_id", "marker", "collected_at", "window_days", "feature")
        if singles
        else pl.DataFrame()
    )
    return parts.frame(features, single)


def tested_features(present: Iterable[str]) -> list[str]:
    """The features tested among those `present`: duplicates in FEATURE_ALIASES collapse to one."""
    present = set(present)
    dropped = {f for f, same in FEATURE_ALIASES.items() if f in present and same in present}
    return sorted(present - dropped)


def prepare_wide(
    data: pl.DataFrame, biometrics: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, list[str]]:
    """An `analysis_frame` (or a bare frame of tests and simulations) made wide (`wide_rows`),
    and the features tested (duplicates in FEATURE_ALIASES collapsed to one)."""
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
    features = tested_features(data["feature"].unique().to_list())
    return sort_wide(wide_rows(data, features, body_weight(biometrics), dated)), features


def sort_wide(wide: pl.DataFrame) -> pl.DataFrame:
    """The wide rows in the order the fits walk them: by marker and window, each person's draws
    in time order."""
    return wide.sort("marker", "window_days", "_pid", "collected_at")


def body_weight(biometrics: pl.DataFrame | None) -> pl.DataFrame | None:
    """Body weight (kg) per person and day from `biometrics`, or None when there is none."""
    if biometrics is None or biometrics.height == 0 or "metric" not in biometrics.columns:
        return None
    weight = (
        biometrics.filter(
            (pl.col("metric") == "weight") & pl.col("value").is_finite() & (pl.col("value") > 0)
        )
        .group_by(pl.col("person_id").cast(pl.String), pl.col("day").cast(pl.Date))
        .agg(pl.col("value").mean().alias(WEIGHT))
        .sort("day")
    )
    return weight if weight.height else None


def wide_rows(
    data: pl.DataFrame, features: list[str], weight: pl.DataFrame | None, dated: bool
) -> pl.DataFrame:
    """The rows of `data` (an `analysis_frame` with `_pid` and `_draw`) made wide, unsorted: one
    row per draw and window, a column per feature of `features` holding the window mean where the
    window is usable (else null), the time trend and the body weight (`body_weight`) at the
    draw. Columns in one fixed order, so that groups of people stack."""
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
    if weight is not None:
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
    return wide.select(
        "_draw",
        "window_days",
        *features,
        "_pid",
        "person_id",
        "marker",
        "collected_at",
        "y",
        TREND,
        WEIGHT,
    )


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


def covariate_label(name: str) -> str:
    return COVARIATE_LABELS.get(name, name.removesuffix("_servings").replace("_", " "))


def twin_note(core_foods: list[str]) -> str:
    """Why a feature that is a core food under another name is not tested."""
    return (
        "moves with "
        + ", ".join(covariate_label(c) for c in core_foods)
        + f" within persons (|r| >= {COLLINEAR_R}): the data cannot tell them apart, and the "
        "pre-specified core food is tested instead"
    )


def contributors(
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
    return ", ".join(covariate_label(n) for n in picked) or None


def primary_windows(
    results: pl.DataFrame, settings: Settings, tested: pl.DataFrame | None = None
) -> pl.DataFrame:
    """`window_role` and `primary_window_days`: per marker, the window closest to
    `settings.primary_window_days` among those tested (the longer on a tie) is the primary one.
    The windows tested are those of `results`, or the (marker, window_days) rows of `tested`
    when `results` are some people's rows of a larger fit."""
    windows = (results if tested is None else tested).select("marker", "window_days")
    windows = windows.drop_nulls().unique()
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
        .pipe(conform_results)
    )


def conform_results(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(
        [
            (pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c)
            for c, t in RESULT_SCHEMA.items()
        ]
    )
