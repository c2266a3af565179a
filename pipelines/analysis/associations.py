"""Associations between diet features and chronic marker levels, with honest uncertainty.

Response: the natural log of the marker (`log_value` of chronic draws). Exposure: one feature's mean
over a complete trailing window (`exposure_windows.complete`). Effects are reported as the % change
in the marker per +1 unit of the feature, 100 * (exp(beta) - 1), with the 95% CI from exp of the
beta CI, and `sd_feature` (the feature's SD among the rows used) so a reader can rescale to "per
typical change".

Scopes and methods
- `person` / `ols_log_linear`: for each person, marker, feature and window, ordinary least squares
  of log marker on the feature with a t-based CI (closed form from group sums, so thousands of tests
  cost one group-by). Needs `settings.min_n_person` complete windows and a feature that varies.
- `cohort` / `mixedlm_within`: pooled over persons with repeated draws, a linear mixed model with a
  random intercept per person fitted by REML, on the within-person centred feature plus the person's
  mean of it (Mundlak / Curran & Bauer within-between split). The within coefficient is the effect
  reported; the between coefficient goes into `note`. Covariates: energy intake over the same window
  (split the same way, see TAUTOLOGICAL) and, when every person has them and there are at least
  MIN_PERSONS_FOR_COVARIATES persons, age and sex. Person-level covariates cannot move the within
  estimate (its columns are orthogonal to anything constant within a person); they refine the
  between estimate. The within CI uses a t distribution with the within-person residual degrees of
  freedom (n - persons - within columns). If the fit fails, `ols_fixed_effects` (person fixed
  effects) takes over; its point estimate equals the mixed model's within estimate, so nothing
  jumps. The mixed model is fitted by our own profiled REML for the random-intercept case (a
  one-dimensional optimisation over group sums): statsmodels' MixedLM gives the same numbers
  (tested) but takes ~1.5 s per fit on 2,000 persons, i.e. minutes per marker.
  `engine="statsmodels"` uses MixedLM instead.
- `cohort` / `ols_between`: one draw per person (cross-sectional cohorts such as NHANES): OLS of log
  marker on the feature with age, sex and energy covariates when available. `cross_sectional` runs
  it on person-level features without windows; `compute_associations` uses it when nobody has
  repeated draws. Survey cohorts (people with weight, stratum and PSU) get design-based
  `survey_wls` rows instead, with `ols_between` beside them: see `pipelines.analysis.survey`.

Thresholds (all from `pipelines.config.Settings`)
- `insufficient_data`: fewer than `min_n_person` (person) or `min_n_cohort` (cohort) rows, fewer
  than 2 persons in a cohort test, or a feature that does not vary; numbers are null and `note` says
  why.
- Benjamini-Hochberg q-values within each family (`f"{marker}|cohort"` or
  `f"{marker}|person:{id}"`), over the tests that produced a p-value. `significant` when q <=
  `settings.fdr`.
- `inconclusive`: not significant and the CI is too wide to say anything: the CI for a one-SD change
  of the feature (`sd_feature`) reaches both -20% and +25% (0.8x and 1.25x, symmetric on the log
  scale). Scaling to one SD keeps the rule independent of units (per kcal every CI is narrow, per
  1,000 kcal every CI is wide). Otherwise `not_significant`.

Association, not causation: these are observational estimates even within a person.

"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import optimize, stats

from pipelines.config import Settings
from pipelines.schema import RESULT_SCHEMA

Engine = Literal["reml", "statsmodels"]

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


def add_fdr_and_status(results: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """(Re)compute `q` within each `family` and `status` (see the module docstring).

    Call it again after concatenating results from several calls that share families.
    """
    if results.height == 0:
        return results
    indexed = results.drop("q", strict=False).with_row_index("_i")
    tested = (
        indexed.filter(pl.col("p").is_not_null() & pl.col("p").is_not_nan())
        .select("_i", "family", "p")
        .sort("family", "p", "_i")
        .with_columns(
            (
                pl.col("p") * pl.len().over("family") / pl.int_range(1, pl.len() + 1).over("family")
            ).alias("_raw")
        )
        .with_columns(
            pl.col("_raw").cum_min(reverse=True).over("family").clip(upper_bound=1.0).alias("q")
        )
        .select("_i", "q")
    )
    sd = pl.when(pl.col("sd_feature") > 0).then(pl.col("sd_feature")).otherwise(1.0)

    def per_sd(col: str) -> pl.Expr:
        return 100.0 * ((1.0 + pl.col(col) / 100.0).pow(sd) - 1.0)

    inconclusive = (per_sd("ci_low_pct") <= INCONCLUSIVE_LOW_PCT) & (
        per_sd("ci_high_pct") >= INCONCLUSIVE_HIGH_PCT
    )
    out = (
        indexed.join(tested, on="_i", how="left")
        .sort("_i")
        .with_columns(
            pl.when(pl.col("q").is_null())
            .then(pl.lit("insufficient_data"))
            .when(pl.col("q") <= settings.fdr)
            .then(pl.lit("significant"))
            .when(inconclusive.fill_null(False))
            .then(pl.lit("inconclusive"))
            .otherwise(pl.lit("not_significant"))
            .alias("status")
        )
        .drop("_i")
    )
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


def per_person_ols(data: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Per-person OLS of y on x for every (person, marker, feature, window) in `data`
    (an `analysis_frame`); q and status are left to `add_fdr_and_status`."""
    keys = ["person_id", "marker", "feature", "window_days"]
    if data.height == 0:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    xu = pl.when(pl.col("use")).then(pl.col("x"))
    yu = pl.when(pl.col("use")).then(pl.col("y"))
    # Centre on the group means before summing squares: raw sums of kcal^2 lose precision.
    sums = (
        data.with_columns(
            (xu - xu.mean().over(keys)).alias("_dx"),
            (yu - yu.mean().over(keys)).alias("_dy"),
            xu.alias("_x"),
        )
        .group_by(keys)
        .agg(
            pl.col("use").sum().cast(pl.Int64).alias("n"),
            pl.col("_x").mean().alias("_mx"),
            pl.col("_x").std().alias("sd_feature"),
            (pl.col("_dx") ** 2).sum().alias("_sxx"),
            (pl.col("_dx") * pl.col("_dy")).sum().alias("_sxy"),
            (pl.col("_dy") ** 2).sum().alias("_syy"),
        )
        .sort(keys)
    )
    n = sums["n"].to_numpy().astype(float)
    mx = sums["_mx"].fill_null(0.0).to_numpy()
    sd = sums["sd_feature"].fill_null(0.0).to_numpy()
    sxx = sums["_sxx"].to_numpy()
    sxy = sums["_sxy"].to_numpy()
    syy = sums["_syy"].to_numpy()
    enough = n >= max(settings.min_n_person, 3)
    varies = sd > 1e-6 * np.maximum(1.0, np.abs(mx))
    ok = enough & varies
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.where(ok, sxy / sxx, np.nan)
        rss = np.maximum(syy - beta * sxy, 0.0)
        se = np.where(ok, np.sqrt(rss / (n - 2.0) / sxx), np.nan)
    eff = _effects(beta, se, np.where(ok, n - 2.0, np.nan))
    notes = (
        pl.when(~pl.Series(enough))
        .then(
            pl.format("{} complete windows; at least {} needed", "n", pl.lit(settings.min_n_person))
        )
        .when(~pl.Series(varies))
        .then(pl.lit("the feature did not vary across these windows"))
        .alias("note")
    )
    out = sums.select([*keys, "n", "sd_feature"]).with_columns(
        pl.lit("person").alias("scope"),
        pl.lit("ols_log_linear").alias("method"),
        pl.lit(1, dtype=pl.Int64).alias("n_persons"),
        pl.Series("beta", beta).fill_nan(None),
        pl.Series("se", se).fill_nan(None),
        *[pl.Series(k, np.where(ok, v, np.nan)).fill_nan(None) for k, v in eff.items()],
        pl.lit(None, dtype=pl.Float64).alias("q"),
        pl.lit(None, dtype=pl.String).alias("status"),
        notes,
        pl.concat_str([pl.col("marker"), pl.lit("|person:"), pl.col("person_id")]).alias("family"),
        pl.lit(None, dtype=pl.String).alias("covariates"),
    )
    return out.select([pl.col(c).cast(t) for c, t in RESULT_SCHEMA.items()])


# --------------------------------------------------------------------------------------------------
# Random-intercept mixed model (profiled REML) and fallbacks


@dataclass
class MixedFit:
    """A random-intercept mixed model fit: fixed effects, their covariance, variance parts."""

    params: np.ndarray
    cov: np.ndarray
    sigma2: float  # residual variance
    tau2: float  # random-intercept variance
    converged: bool


def fit_random_intercept(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> MixedFit:
    """REML fit of y = X b + u[group] + e, u ~ N(0, tau2), e ~ N(0, sigma2).

    With gamma = tau2 / sigma2, every quantity REML needs reduces to per-group sums (V_i^-1 =
    (I - c_i J) / sigma2 with c_i = gamma / (1 + n_i gamma)), so the profile likelihood in gamma is
    cheap to evaluate and minimised in one dimension. `groups` are integer codes 0..G-1.
    """
    n_obs, n_par = X.shape
    n_groups = int(groups.max()) + 1
    n_g = np.bincount(groups, minlength=n_groups).astype(float)
    S = np.column_stack(
        [np.bincount(groups, weights=X[:, j], minlength=n_groups) for j in range(n_par)]
    )
    T = np.bincount(groups, weights=y, minlength=n_groups)
    XtX, Xty, yty = X.T @ X, X.T @ y, float(y @ y)
    dof = n_obs - n_par
    if dof <= 0:
        raise np.linalg.LinAlgError("no residual degrees of freedom")
    if np.linalg.matrix_rank(X) < n_par:
        raise np.linalg.LinAlgError("collinear fixed effects")

    def parts(gamma: float) -> tuple[np.ndarray, np.ndarray, float]:
        c = gamma / (1.0 + n_g * gamma)
        A = XtX - (S.T * c) @ S
        b = Xty - (S.T * c) @ T
        sol = np.linalg.solve(A, b)
        rss = yty - float(c @ (T * T)) - float(b @ sol)
        return A, sol, rss

    def objective(gamma: float) -> float:
        try:
            A, _, rss = parts(gamma)
        except np.linalg.LinAlgError:
            return math.inf
        sign, logdet = np.linalg.slogdet(A)
        if sign <= 0 or rss <= 0:
            return math.inf
        return dof * math.log(rss / dof) + float(np.log1p(n_g * gamma).sum()) + logdet

    with np.errstate(all="ignore"), warnings.catch_warnings():
        # Infinite objective values (a singular corner of gamma) are part of the search.
        warnings.simplefilter("ignore", RuntimeWarning)
        res = optimize.minimize_scalar(
            lambda lg: objective(math.exp(lg)), bounds=(-12.0, 10.0), method="bounded"
        )
    gamma = math.exp(res.x)
    # The optimum can sit on the boundary tau2 = 0 (no spread between persons beyond the fixed
    # effects), which the log-scale search only approaches.
    if objective(0.0) <= objective(gamma):
        gamma = 0.0
    if not math.isfinite(objective(gamma)):
        raise np.linalg.LinAlgError("REML objective is not finite")
    A, sol, rss = parts(gamma)
    sigma2 = rss / dof
    cov = sigma2 * np.linalg.inv(A)
    return MixedFit(sol, cov, sigma2, gamma * sigma2, bool(res.success))


def _fit_statsmodels(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> MixedFit:
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # Boundary (tau2 = 0) and Hessian warnings are routine with few persons; convergence is
        # checked on the result instead.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        res = sm.MixedLM(y, X, groups=groups).fit(reml=True)
    k = X.shape[1]
    cov = np.asarray(res.cov_params())[:k, :k]
    return MixedFit(
        np.asarray(res.fe_params),
        cov,
        float(res.scale),
        float(np.asarray(res.cov_re)[0, 0]),
        bool(res.converged),
    )


def _fixed_effects(
    y: np.ndarray, W: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Within (person fixed-effects) OLS of demeaned y on demeaned columns W: beta, cov, df."""
    n_groups = int(groups.max()) + 1
    n_g = np.bincount(groups, minlength=n_groups)
    y_w = y - (np.bincount(groups, weights=y, minlength=n_groups) / n_g)[groups]
    beta, *_ = np.linalg.lstsq(W, y_w, rcond=None)
    dof = len(y) - n_groups - W.shape[1]
    resid = y_w - W @ beta
    sigma2 = float(resid @ resid) / dof
    cov = sigma2 * np.linalg.inv(W.T @ W)
    return beta, cov, dof


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


def _mixed_test(
    y: np.ndarray,
    x: np.ndarray,
    groups: np.ndarray,
    energy: np.ndarray | None,
    person_cols: list[np.ndarray],
    adjusted: list[str],
    engine: Engine,
) -> dict[str, Any]:
    n_groups = int(groups.max()) + 1
    n_g = np.bincount(groups, minlength=n_groups)

    def split(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = (np.bincount(groups, weights=v, minlength=n_groups) / n_g)[groups]
        return v - mean, mean

    x_w, x_b = split(x)
    within = [x_w]
    between = [x_b]
    if energy is not None:
        e_w, e_b = split(energy)
        within.append(e_w)
        between.append(e_b)
    if float(x_w @ x_w) <= 1e-12 * max(1.0, float(x @ x)):
        return _insufficient("the feature did not vary within persons")
    k_w = len(within)
    dof_w = len(y) - n_groups - k_w
    if dof_w < 1:
        return _insufficient("too few repeated draws per person for a within-person estimate")
    X = np.column_stack([*within, np.ones_like(x), *between, *person_cols])
    # Unit-free columns keep the REML algebra well conditioned when kcal sits next to servings.
    scale = X.std(axis=0)
    scale[(scale == 0) | ~np.isfinite(scale)] = 1.0
    X = X / scale
    i_b = k_w + 1  # column of the person mean of the feature
    p_between = X.shape[1] - k_w
    note_parts = ["within-person effect (random intercept per person, REML)"]
    method = "mixedlm_within"
    try:
        fit = (fit_random_intercept if engine == "reml" else _fit_statsmodels)(y, X, groups)
        if not (fit.converged and np.all(np.isfinite(np.diag(fit.cov))) and fit.cov[0, 0] > 0):
            raise np.linalg.LinAlgError("did not converge")
        beta, se = float(fit.params[0]) / scale[0], math.sqrt(fit.cov[0, 0]) / scale[0]
        if n_groups - p_between >= 2 and fit.cov[i_b, i_b] > 0:
            b = _effects(
                fit.params[i_b] / scale[i_b],
                math.sqrt(fit.cov[i_b, i_b]) / scale[i_b],
                n_groups - p_between,
            )
            note_parts.append(
                f"between persons: {b['effect_pct']:+.1f}% per unit of the person's mean "
                f"(95% CI {b['ci_low_pct']:+.1f} to {b['ci_high_pct']:+.1f})"
            )
        else:
            note_parts.append("too few persons for a between-person estimate")
    except (np.linalg.LinAlgError, ValueError):
        method = "ols_fixed_effects"
        note_parts = [
            "within-person effect (person fixed effects; the mixed model did not converge)"
        ]
        try:
            fe_beta, fe_cov, _ = _fixed_effects(y, np.column_stack(within), groups)
        except np.linalg.LinAlgError:
            return _insufficient("the within-person model could not be fitted")
        beta, se = float(fe_beta[0]), math.sqrt(fe_cov[0, 0])
    if adjusted:
        note_parts.append("adjusted for " + ", ".join(adjusted))
    return {"method": method, "beta": beta, "se": se, "df": dof_w, "note": "; ".join(note_parts)}


def _cohort_row(
    td: _TestData, feature: str, settings: Settings, engine: Engine, energy_adjust: bool
) -> dict[str, Any]:
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
    repeated = np.bincount(groups).max() > 1
    if repeated:
        fit = _mixed_test(y, x_all, groups, energy, person_cols, adjusted, engine)
    else:
        fit = _between_test(
            y, x_all, ([energy] if energy is not None else []) + person_cols, adjusted
        )
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


def cohort_models(
    data: pl.DataFrame,
    persons: pl.DataFrame | None,
    settings: Settings,
    *,
    engine: Engine = "reml",
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """Cohort scope for every (marker, feature, window) in `data` (an `analysis_frame`).

    Only markers measured in at least 2 persons get cohort rows."""
    keys = ["marker", "feature", "window_days"]
    markers = (
        data.group_by("marker").agg(pl.col("_pid").n_unique().alias("k")).filter(pl.col("k") >= 2)
    )["marker"].to_list()
    data = data.filter(pl.col("marker").is_in(markers))
    if data.height == 0:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    used = data.filter(pl.col("use"))
    energy = used.filter(pl.col("feature") == ENERGY).select(
        "_draw", "window_days", pl.col("x").alias("energy")
    )
    used = used.join(energy, on=["_draw", "window_days"], how="left")
    age, sex = _person_arrays(data, persons)
    arrays = dict(_iter_tests(used, keys, age, sex))
    none = _TestData(pid=np.array([], dtype=np.int64), x=np.array([]), y=np.array([]))
    rows = []
    for key in data.select(keys).unique().sort(keys).iter_rows():
        marker, feature, window = key
        row = _cohort_row(arrays.get(key, none), feature, settings, engine, energy_adjust)
        rows.append(
            row
            | {
                "scope": "cohort",
                "person_id": None,
                "marker": marker,
                "feature": feature,
                "window_days": window,
                "method": row.get("method", "mixedlm_within"),
                "family": f"{marker}|cohort",
            }
        )
    return _finish(rows)


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
    engine: Engine = "reml",
    energy_adjust: bool = True,
) -> pl.DataFrame:
    """Per-person and cohort associations (columns of RESULT_SCHEMA), with q-values and status.

    Cohort rows are produced for markers measured in at least 2 persons.
    """
    data = analysis_frame(draws, windows)
    if data.height == 0:
        return pl.DataFrame(schema=RESULT_SCHEMA)
    results = pl.concat(
        [
            per_person_ols(data, settings),
            cohort_models(data, persons, settings, engine=engine, energy_adjust=energy_adjust),
        ]
    )
    return add_fdr_and_status(results, settings)


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
        row = _cohort_row(td, feature, settings, "reml", energy_adjust)
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
