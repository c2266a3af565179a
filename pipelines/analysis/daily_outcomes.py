"""Daily outcomes (gut symptoms, wearable signals) against the foods eaten in the days before.

Entry point: `daily_outcome_effects(outcomes, diet_daily, settings)`, with `outcomes` the
`biometrics` rows of daily outcomes (person_id, day, metric, value, unit, scale) and `diet_daily`
the person-day food table. One row per person x measure x scale x food x lag term, with the
estimate in the outcome's own units per extra serving a day (`estimate`, `se`, `ci_low`,
`ci_high`, `p`, `q`, `status`, `note`). Pure Polars and NumPy: no Dagster, no DuckDB.

The series. A measure's readings of one day are averaged (several Bristol readings a day become
their mean), and each scale is its own series: bloating on 0-4 and on 0-10 are never mixed
(README "Daily outcomes"). A day counts only when its outcome, its foods on that day and on each
of the `lags` days before were logged (diet_daily `logged`), and at least `min_logged_fraction`
of the trailing window's days were: an unlogged day is missing, never zero intake. Days that fail
stay out of the fit, but keep their place on the calendar (next paragraph).

The model (science.md section 5.2, a distributed-lag model with unconstrained lags). Per person and
measure, one OLS of the daily outcome on, for every food at once, its intake on the day itself
and on each of the 1 to 3 days before (lags 0-3, one regressor each) and its mean over the
`window_days` days before those (days 4-10 by default: the trailing window, which does not
overlap the lags so each term means one thing), with day-of-week fixed effects (the weekly
rhythm: weekend eating and weekend symptoms would otherwise be one another's cause) and a linear
time trend (a slow drift in symptoms and in diet). All foods in one model: each is adjusted for
the others, so a food that merely co-occurs with a culprit (shares meals with it) is not blamed.
A food with no recorded intake, or one that does not vary over the person's usable days, leaves
the model and its rows say why.

Autocorrelation (science.md section 5.6). Symptoms carry over from one day to the next, so the
residuals are autocorrelated and classical OLS standard errors are too narrow. Two steps. First
a Cochrane-Orcutt quasi-difference: phi, the group's AR(1) coefficient, and the model refitted on
y_t - phi y_(t-1) and X_t - phi X_(t-1) over days whose previous day is usable too (the
coefficients keep their meaning; one day is lost per run of days). Then a Newey-West (Bartlett)
SE on that fit, `robust.batched_ols_hac`, which also widens it to the fixed-b critical value
(Kiefer & Vogelsang 2005) and never below the classical SE. The lag count is `hac_lag_rule`:
floor(sqrt(T)) by default, as for the markers (13 for half a year), or "newey_west".

phi (`_ar1_phi`). The lag-1 autocorrelation of the OLS residuals over pairs of consecutive usable
days (numerator and denominator over the same pairs) is biased low, and not by a little: the
model holds some 20-35 terms for 100-180 days, and residuals of a regression on smooth
regressors (lags, 7-day means, the trend) are less autocorrelated than the noise (Kendall's
(1 + 3 phi)/T is the part for the mean alone). So phi is the value whose expected residual
autocorrelation matches the observed one: under AR(1) noise u with correlations S(phi) at the
usable days' distances the residuals M u (M = I - Q Q', Q a basis of the design) have covariance
M S(phi) M, whose lag-1 autocorrelation over the same pairs (ratio of expectations) is computed
on a grid of phi in 0-0.95 and inverted by interpolation (a mean-bias correction for this design
and these gaps, in the spirit of Andrews 1993), 0 below the value for phi = 0. Checked with the
calibration's generator (pipelines/analysis/calibration_daily.py: AR(1) phi 0.6 plus a slow
drift, weekly rhythm, 8% unlogged days; null scenario, 400 replicates, seed 16, 56,828 null
tests, each variant on the same cohorts), share of null tests at p <= 0.05: denominator over
every usable day (the earlier code, phi 0.41 for a true 0.6) 6.7%; over the pairs 5.9%; plus
Kendall's correction 5.7%; iterated Cochrane-Orcutt to convergence 5.3%; this estimate 4.6%
(Monte Carlo SE 0.1 each), null CIs covering 95.4%; the slow drift needed no model of its own.
It costs one (T x T) product per grid point and group. HAC alone was not enough: over 600
simulated null tests with AR(1) residuals (phi 0.6, 120 days) the one-per-food test was positive
9-16% of the time with Newey-West's L = floor(4 (T/100)^(2/9)) lags and 8-13% with
floor(sqrt(T)), because a sum over lags and a 7-day window mean are themselves smooth.
Caveat: quasi-differencing assumes intake does not respond to past symptoms (no feedback: a
person who avoids a food after a bad day breaks it); OLS with HAC alone does not, and is what
the first step fits. HAC needs equally spaced observations: daily outcomes are, and missing
days keep their calendar position with a zero score (the amplitude-modulated series of Datta &
Du 2012), so a lag is always a distance in days, never "the previous usable row". CIs and p use
t with n - 1 - k degrees of freedom (`model_frame.t_inference`).

One test per food. The test of a food is pre-declared, never the smallest p over its lags: its
cumulative acute effect, the sum of its lag 0-3 coefficients (the effect of one more serving on
each of the last four days; `lag` "0-3", `window_role` "primary"), estimated directly by
re-parametrising the lags (x_0 carries the sum, the others enter as x_l - x_0). A food acting on
one day only is found through this sum too, at a quarter of the precision a test at the right
lag would have had, which is the price of not choosing the lag after seeing the data. The
single lags and the trailing window (`window_role` "lag_shape") describe the lag shape.

Multiple testing (science.md section 5.5). The family is one person's measure on one scale
(`f"{measure}|{scale}|person:{id}"`), the primary rows of all its foods:
`settings.multiple_testing` over them, Benjamini-Hochberg by default (false discovery rate), or
Holm as the markers use by default. Lag-shape rows get the markers' serial gatekeeping
(`multiple_testing.family_qvalues`): their q is at least their food's, so a lag is significant
only when its food is. Status: `significant` (q <= `fdr`), `not_significant`, or
`insufficient_data` (no estimate; `note` says why: too few usable days or residual degrees of
freedom, no intake recorded, the food did not vary, a collinear design).

Checked against simulated truth in tests/test_daily_outcomes.py (a planted lag-1 effect beside a
correlated food without one; the false-positive rate and CI coverage under AR(1) residuals).
Association, not causation, as everywhere else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from pipelines.analysis.model_frame import t_inference
from pipelines.analysis.multiple_testing import ADJUSTMENTS, family_qvalues
from pipelines.analysis.robust import batched_ols_hac, hac_maxlags
from pipelines.analysis.windows import min_days_logged
from pipelines.schema import DAILY_EFFECTS_SCHEMA

# Gut-relevant foods a daily model holds by default (those present in diet_daily): the core
# adjustment foods and the usual suspects of gut symptoms. Each costs five regressors.
DEFAULT_FOODS: tuple[str, ...] = (
    "fermented_servings",
    "high_fodmap_servings",
    "dairy_servings",
    "gluten_grains_servings",
    "ultra_processed_servings",
    "added_sugar_servings",
    "alcohol_servings",
)
METHOD = "ols_dlm_hac"


@dataclass(frozen=True)
class DailySettings:
    """The daily-outcome analysis' choices (module docstring)."""

    foods: tuple[str, ...] | None = None  # None: DEFAULT_FOODS present in diet_daily
    lags: tuple[int, ...] = (0, 1, 2, 3)
    window_days: int = 7  # the trailing window, the days before the longest lag
    min_logged_fraction: float = 0.8
    min_days: int = 56  # eight weeks of usable days
    min_df: int = 20  # residual degrees of freedom, so the HAC variance is not all noise
    multiple_testing: str = "bh"
    fdr: float = 0.05
    hac_lag_rule: str = "sqrt"  # or "newey_west" (module docstring)

    def __post_init__(self) -> None:
        if sorted(set(self.lags)) != list(self.lags) or not self.lags or self.lags[0] < 0:
            raise ValueError(f"lags must be increasing and non-negative, got {self.lags}")
        if self.multiple_testing not in ADJUSTMENTS:
            raise ValueError(f"multiple_testing must be one of {sorted(ADJUSTMENTS)}")


def newey_west_lags(n: np.ndarray) -> np.ndarray:
    """floor(4 (n/100)^(2/9)), at least 1 (Newey & West 1994)."""
    n_arr = np.maximum(np.asarray(n, dtype=float), 1.0)
    return np.maximum(1, np.floor(4.0 * (n_arr / 100.0) ** (2.0 / 9.0))).astype(int)


@dataclass
class _Design:
    """Every group (person x measure x scale) on its own calendar, padded to one length."""

    keys: list[tuple[str, str, str, str | None]]  # person_id, measure, scale, unit
    y: np.ndarray  # (G, T)
    X: np.ndarray  # (G, T, K): per food its lags then its window; weekday dummies; trend
    mask: np.ndarray  # (G, T) usable days
    present: np.ndarray  # (G, F) the food has recorded intake
    varies: np.ndarray  # (G, F) ... and varies over the usable days
    use: np.ndarray  # (G, K) columns in each group's model
    sd: np.ndarray  # (G, F) SD of the day's intake over the usable days


def _daily_series(outcomes: pl.DataFrame) -> pl.DataFrame:
    return (
        outcomes.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())
        .with_columns(pl.col("scale").fill_null("unit"))
        .group_by("person_id", "metric", "scale", "day")
        .agg(pl.col("value").mean(), pl.col("unit").drop_nulls().first())
        .sort("person_id", "metric", "scale", "day")
    )


def _intake(diet_daily: pl.DataFrame, foods: list[str]) -> dict[str, tuple[int, np.ndarray]]:
    """Per person: the first day (days since 1970) and a (days, foods) array, NaN when the day
    was not logged or the food not reported."""
    logged = pl.col("logged").fill_null(False) if "logged" in diet_daily.columns else pl.lit(True)
    daily = (
        diet_daily.filter(logged)
        .select(
            pl.col("person_id").cast(pl.String),
            pl.col("day").cast(pl.Date).cast(pl.Int64).alias("d"),
            *[pl.col(f).cast(pl.Float64).fill_nan(None) for f in foods],
        )
        .group_by("person_id", "d")
        .agg(pl.col(foods).mean())
    )
    out = {}
    for (pid,), part in daily.group_by("person_id"):
        d = part["d"].to_numpy()
        first = int(d.min())
        arr = np.full((int(d.max()) - first + 1, len(foods)), np.nan)
        arr[d - first] = part.select(foods).to_numpy(allow_copy=True).astype(float)
        out[str(pid)] = (first, arr)
    return out


def _design(
    series: pl.DataFrame, diet_daily: pl.DataFrame, foods: list[str], s: DailySettings
) -> _Design:
    intake = _intake(diet_daily, foods)
    lags, w = list(s.lags), s.window_days
    need = min_days_logged(w, s.min_logged_fraction)
    nf, per = len(foods), len(lags) + 1
    groups = list(series.group_by("person_id", "metric", "scale", maintain_order=True))
    days_of = [p["day"].cast(pl.Int64).to_numpy() for _, p in groups]
    spans = [int(d.max() - d.min()) + 1 for d in days_of]
    T = max(spans, default=1)
    G, K = len(groups), nf * per + 7
    y = np.full((G, T), np.nan)
    X = np.full((G, T, K), np.nan)
    keys = []
    for g, ((pid, metric, scale), part) in enumerate(groups):
        unit = part["unit"].drop_nulls().first()
        keys.append((str(pid), str(metric), str(scale), None if unit is None else str(unit)))
        d = days_of[g]
        d0, t = int(d.min()), np.arange(spans[g])
        y[g, d - d0] = part["value"].to_numpy()
        first, arr = intake.get(str(pid), (0, np.full((0, nf), np.nan)))

        def at(day: np.ndarray, arr: np.ndarray = arr, first: int = first) -> np.ndarray:
            i = day - first
            inside = (i >= 0) & (i < arr.shape[0])
            out = np.full((day.size, nf), np.nan)
            out[inside] = arr[i[inside]]
            return out

        day = d0 + t
        for j, lag in enumerate(lags):
            X[g, t, j : nf * per : per] = at(day - lag)
        back = np.stack([at(day - lags[-1] - k) for k in range(1, w + 1)])  # (w, t, F)
        count = np.isfinite(back).sum(axis=0)
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(np.where(count[None] > 0, back, 0.0), axis=0)
        X[g, t, per - 1 : nf * per : per] = np.where(count >= need, mean, np.nan)
        weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; 0 is Monday
        X[g, t, nf * per : nf * per + 6] = weekday[:, None] == np.arange(1, 7)[None, :]
        X[g, t, -1] = t / 365.25
    food_cols = X[..., : nf * per].reshape(G, T, nf, per)
    present = np.isfinite(food_cols[..., 0]).any(axis=1)  # (G, F)
    complete = np.where(present[:, None, :, None], np.isfinite(food_cols), True).all(axis=(2, 3))
    mask = np.isfinite(y) & complete & np.isfinite(X[..., -1])
    m = mask.astype(float)
    n = np.maximum(m.sum(axis=1), 1.0)
    x0 = np.where(mask[..., None], np.nan_to_num(food_cols[..., 0]), 0.0)
    mean0 = x0.sum(axis=1) / n[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt((((x0 - mean0[:, None]) * m[..., None]) ** 2).sum(axis=1) / (n[:, None] - 1))
    varies = present & (np.nan_to_num(sd) > 1e-9 * np.maximum(1.0, np.abs(mean0)))
    dummies = np.where(mask[..., None], np.nan_to_num(X[..., nf * per : nf * per + 6]), 0.0)
    dummy_used = dummies.sum(axis=1) > 0
    dummy_used &= dummies.sum(axis=1) < n[:, None]
    use = np.concatenate(
        [np.repeat(varies, per, axis=1), dummy_used, np.ones((G, 1), bool)], axis=1
    )
    return _Design(keys, y, np.nan_to_num(X), mask, present, varies, use, sd)


# AR(1) coefficients at which the expected residual autocorrelation is computed (_ar1_phi).
PHI_GRID = np.linspace(0.0, 0.95, 11)
PHI_DIGITS = 6


def _ar1_phi(e: np.ndarray, Z: np.ndarray, pos: np.ndarray) -> float:
    """The AR(1) coefficient whose OLS residuals would show, on average, the lag-1
    autocorrelation these do (module docstring). e: OLS residuals on the usable days, Z their
    design (intercept included), pos the days' calendar positions."""
    prev = np.nonzero(np.diff(pos) == 1)[0]  # pairs of consecutive days: (prev, prev + 1)
    denom = float(e[prev] @ e[prev])
    if prev.size < 2 or denom <= 0:
        return 0.0
    observed = float(e[prev + 1] @ e[prev]) / denom
    # Under AR(1) with coefficient phi the residuals e = M u have covariance M S M, with S the
    # AR(1) correlations at these days' distances and M = I - Q Q' (Q an orthonormal basis of
    # the design). Their expected lag-1 autocorrelation over these pairs, per grid point:
    Q = np.linalg.qr(Z)[0]
    powers = PHI_GRID[:, None] ** np.arange(pos[-1] - pos[0] + 1)[None]
    S = powers[:, np.abs(pos[:, None] - pos[None, :])]
    SQ = S @ Q
    QSQ = Q.T[None] @ SQ

    def cov(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return (
            S[:, i, j]
            - (Q[i][None] * SQ[:, j]).sum(axis=-1)
            - (SQ[:, i] * Q[j][None]).sum(axis=-1)
            + ((Q[i][None] @ QSQ) * Q[j][None]).sum(axis=-1)
        ).sum(axis=1)

    expected = np.maximum.accumulate(cov(prev + 1, prev) / cov(prev, prev))
    if observed <= expected[0]:
        return 0.0
    # Rounded far below its sampling error (about 0.05): the matrix products above are summed
    # in an order that depends on the BLAS thread count (one in a Dask worker), and unrounded
    # the last bits would carry into every estimate, so two executors would disagree.
    return round(float(np.interp(observed, expected, PHI_GRID)), PHI_DIGITS)


def _quasi_difference(d: _Design) -> _Design:
    """Cochrane-Orcutt: each group's AR(1) coefficient from its OLS residuals (`_ar1_phi`),
    then y_t - phi y_(t-1) and X_t - phi X_(t-1) on days whose previous day is usable (module
    docstring)."""
    y, X, mask = d.y.copy(), d.X.copy(), d.mask
    for g in range(y.shape[0]):
        m = mask[g]
        if m.sum() <= d.use[g].sum() + 2:
            continue
        Z = np.column_stack([np.ones(int(m.sum())), X[g][m][:, d.use[g]]])
        coef, *_ = np.linalg.lstsq(Z, y[g][m], rcond=None)
        phi = _ar1_phi(y[g][m] - Z @ coef, Z, np.nonzero(m)[0])
        y[g, 1:] = d.y[g, 1:] - phi * d.y[g, :-1]
        X[g, 1:] = d.X[g, 1:] - phi * d.X[g, :-1]
    after = np.concatenate([np.zeros((mask.shape[0], 1), bool), mask[:, 1:] & mask[:, :-1]], 1)
    return _Design(d.keys, y, X, after, d.present, d.varies, d.use, d.sd)


def _terms(lags: list[int], w: int) -> list[tuple[str, int, int, str]]:
    """(label, first day back, last day back, role) of a food's reported terms; the first is
    its one test."""
    tail = (lags[-1] + 1, lags[-1] + w)
    return [
        (f"{lags[0]}-{lags[-1]}", lags[0], lags[-1], "primary"),
        *[(str(lag), lag, lag, "lag_shape") for lag in lags],
        (f"{tail[0]}-{tail[1]}", tail[0], tail[1], "lag_shape"),
    ]


def _columns_for(d: _Design, f: int, term: int, per: int) -> tuple[np.ndarray, np.ndarray]:
    """X and use with the reported coefficient in column 0. Term 0 (the sum over the lags)
    re-parametrises: sum_l b_l x_l = (sum_l b_l) x_0 + sum_{l>0} b_l (x_l - x_0)."""
    base = f * per
    X = d.X.copy()
    if term == 0:
        for j in range(1, per - 1):
            X[..., base + j] = d.X[..., base + j] - d.X[..., base]
        target = base
    else:
        target = base + term - 1
    order = [target] + [c for c in range(X.shape[2]) if c != target]
    use = d.use[:, order].copy()
    use[:, 0] = True
    return X[..., order], use


def daily_outcome_effects(
    outcomes: pl.DataFrame, diet_daily: pl.DataFrame, settings: DailySettings | None = None
) -> pl.DataFrame:
    """Per person x measure x scale x food x lag term: the estimate and its test (module
    docstring). Deterministic: the same frames give the same rows in the same order."""
    s = settings or DailySettings()
    foods = [f for f in (s.foods or DEFAULT_FOODS) if f in diet_daily.columns]
    if s.foods is not None and len(foods) < len(s.foods):
        missing = sorted(set(s.foods) - set(foods))
        raise ValueError(f"diet_daily has no column(s) {missing}")
    series = _daily_series(outcomes)
    if series.height == 0 or not foods:
        return pl.DataFrame(schema=DAILY_EFFECTS_SCHEMA)
    d = _quasi_difference(_design(series, diet_daily, foods, s))
    per, terms = len(s.lags) + 1, _terms(list(s.lags), s.window_days)
    n = d.mask.sum(axis=1)
    k_used = d.use.sum(axis=1)
    enough = (n >= s.min_days) & (n - 1 - k_used >= s.min_df)
    maxlags = newey_west_lags(n) if s.hac_lag_rule == "newey_west" else hac_maxlags(n)
    rows: dict[str, list[Any]] = {c: [] for c in DAILY_EFFECTS_SCHEMA if c not in ("q", "status")}
    for f, food in enumerate(foods):
        for term, (label, lag_from, lag_to, role) in enumerate(terms):
            X, use = _columns_for(d, f, term, per)
            fit = batched_ols_hac(d.y, X, d.mask, use, maxlags=maxlags, calendar=True)
            ok = enough & d.varies[:, f] & fit.ok
            inf = t_inference(fit.beta, fit.se, fit.df)
            for g, (pid, metric, scale, unit) in enumerate(d.keys):
                rows["person_id"].append(pid)
                rows["measure"].append(metric)
                rows["scale"].append(scale)
                rows["unit"].append(unit)
                rows["feature"].append(food)
                rows["lag"].append(label)
                rows["lag_from"].append(lag_from)
                rows["lag_to"].append(lag_to)
                rows["window_role"].append(role)
                rows["n_days"].append(int(n[g]))
                rows["hac_lags"].append(int(maxlags[g]))
                rows["sd_feature"].append(float(d.sd[g, f]) if n[g] > 1 else None)
                rows["note"].append(_reason(d, g, f, n[g], k_used[g], enough[g], ok[g], s))
                for col, val in (
                    ("estimate", fit.beta),
                    ("se", fit.se),
                    ("ci_low", inf["ci_low"]),
                    ("ci_high", inf["ci_high"]),
                    ("p", inf["p"]),
                ):
                    rows[col].append(float(val[g]) if ok[g] else None)
                rows["family"].append(f"{metric}|{scale}|person:{pid}")
                rows["method"].append(METHOD)
    out = pl.DataFrame(rows, schema={c: DAILY_EFFECTS_SCHEMA[c] for c in rows})
    out = out.sort("person_id", "measure", "scale", "feature", "lag_from", "lag_to")
    q = family_qvalues(out, s.multiple_testing)
    out = out.with_columns(q.alias("q")).with_columns(
        pl.when(pl.col("q").is_null())
        .then(pl.lit("insufficient_data"))
        .when(pl.col("q") <= s.fdr)
        .then(pl.lit("significant"))
        .otherwise(pl.lit("not_significant"))
        .alias("status")
    )
    return out.select(list(DAILY_EFFECTS_SCHEMA))


def _reason(
    d: _Design, g: int, f: int, n: int, k: int, enough: bool, ok: bool, s: DailySettings
) -> str | None:
    if not enough:
        return (
            f"{n} usable days for {k} terms; at least {s.min_days} days and {s.min_df} residual "
            "degrees of freedom needed (a usable day has the outcome, the food logged on it and "
            f"on the {s.lags[-1]} days before, and {math.ceil(s.min_logged_fraction * 100)}% of "
            "the trailing window logged)"
        )
    if not d.present[g, f]:
        return "no intake of this food recorded"
    if not d.varies[g, f]:
        return "the food did not vary over the usable days"
    if not ok:
        return "the model could not be fitted (collinear terms)"
    return None
