"""Least squares with standard errors that survive dependence between draws (pure NumPy).

CRP drifts slowly: residuals of draws a month apart are correlated, and the windows themselves
overlap. Ordinary OLS standard errors assume independent draws and are too narrow (a 95% CI
covers the truth ~90% of the time with an Ornstein-Uhlenbeck residual of time constant 60 days).
Two sandwich estimators fix that, each written for many small fits at once and checked against
statsmodels in tests/test_analysis_robust.py:

- `batched_ols_hac`: one OLS per group (a person's draws of one marker and window), all groups
  in one set of array operations, with a Newey-West (Bartlett kernel) covariance over the
  draws in time order and maxlags `hac_maxlags(n)`; equals statsmodels
  `OLS(...).fit(cov_type="HAC", cov_kwds={"maxlags": L, "use_correction": True})`. With ~20
  draws Newey-West alone is too narrow (95% CIs covered ~90% under an OU residual of 60 days),
  so its CI uses the fixed-b critical value (`fixed_b_critical`, Kiefer & Vogelsang 2005) and
  the SE used is never below the classical OLS SE (measured: 0.94 coverage under that drift,
  0.97 without it).
- `within_fit`: the person fixed-effects (within) estimator of a cohort with either a
  cluster-robust covariance by person, valid under any within-person dependence and under
  slopes that differ between persons, or, with too few persons to cluster on, the panel
  Newey-West covariance (statsmodels `cov_type="hac-panel"`, `use_correction="hac"`), again
  never below the classical within-person SE. The cluster-robust covariance is CR2 with the
  Bell-McCaffrey degrees of freedom (Bell & McCaffrey 2002; Imbens & Kolesar 2016; Pustejovsky
  & Tipton 2018, with the fixed effects absorbed): each person's residuals are scaled up by
  (I - H_gg)^(-1/2), which makes the variance exactly unbiased under independent errors, and
  the t reference has the Satterthwaite degrees of freedom of that variance, at most G - 1.
  Those fall far below G - 1 when a few persons, whose diets vary much more than the rest,
  carry most of the information (median about 16 for 40 people in the calibration study, 3 to
  35 across cohorts). Checked in tests against a dense construction from the dummy-variable
  design's residual maker (statsmodels) and scipy's matrix square root. The fit and the CR2
  variance with its degrees of freedom need only k x k statistics per person (`CrossProducts`,
  `fit_within`), so the cohort computes them a group of people at a time
  (`pipelines.analysis.person_stats`); only the panel Newey-West branch reads the rows.
  Why not simpler: the plain sandwich (CR1, statsmodels `cov_type="cluster"`) is too narrow
  with a few dozen persons (null CIs covered 92.3%); the cluster jackknife (CR3) with
  t(G - 1) covers 95% but is too thin in the far tail that Holm's procedure reads: over 1,000
  simulated cohorts of 40 people per scenario, null foods reached p < 0.005 1.3-1.5 times as
  often as they should, for a family-wise error of 5.8-6.5%; CR3 with these degrees of freedom
  overshoots the other way (power for +50% at 12 people fell from 86% to 45%). CR2 with them
  gives p < 0.005 0.8-1.1 times and p < 0.001 0.3-1.0 times the nominal rate, and a
  family-wise error of 3.3-4.7%, in every scenario of the study.

HAC assumes roughly equally spaced observations; routine draws every 2 to 6 weeks are close
enough for the few lags used, and the cluster-robust estimator assumes nothing about spacing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

# Below this many persons a cluster-robust covariance is too unstable (and t(G - 1) too wide) to
# be useful; the cohort then uses the panel Newey-West covariance instead.
MIN_CLUSTERS = 10


def hac_maxlags(n: np.ndarray | int) -> np.ndarray:
    """floor(sqrt(n)), at least 1: more lags than the Newey-West (1994) rule floor(4 (n/100)^(2/9))
    (2 for 20 draws), which missed most of a 60-day drift between monthly draws."""
    n_arr = np.asarray(n, dtype=float)
    return np.maximum(1, np.floor(np.sqrt(np.maximum(n_arr, 1.0)))).astype(int)


def fixed_b_critical(b: np.ndarray | float) -> np.ndarray:
    """Two-sided 5% critical value of a Bartlett-kernel HAC t statistic under fixed-b
    asymptotics (Kiefer & Vogelsang 2005, Econometric Theory 21:1130, their fitted polynomial):
    1.96 + 2.9694 b + 0.4160 b^2 - 0.5324 b^3 with b = lags / n. With ~20 draws and 4 lags
    (b = 0.2) it is 2.57, not 1.96: the HAC variance is itself estimated from few draws."""
    bb: np.ndarray = np.clip(np.asarray(b, dtype=float), 0.0, 1.0)
    return 1.959963984540054 + 2.9694 * bb + 0.4160 * bb**2 - 0.5324 * bb**3


def _bartlett_sum(v: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """sum_t v_t^2 + 2 sum_{l<=L} (1 - l/(L+1)) sum_t v_t v_{t-l} along the last axis, with a
    per-row L (`lags`, broadcast against v's leading axes); v holds zeros past each series."""
    total = (v * v).sum(axis=-1)
    for lag in range(1, int(np.max(lags, initial=0)) + 1):
        weight = np.where(lag <= lags, 1.0 - lag / (lags + 1.0), 0.0)
        total = total + 2.0 * weight * (v[..., lag:] * v[..., :-lag]).sum(axis=-1)
    return total


@dataclass
class BatchFit:
    """Per-group results of `batched_ols_hac` for the column of interest (index 0 of X)."""

    beta: np.ndarray  # (G,) coefficient of column 0
    se: np.ndarray  # (G,) SE used: se_hac widened to its fixed-b CI, at least se_ols
    se_hac: np.ndarray  # (G,) Newey-West standard error
    se_ols: np.ndarray  # (G,) classical OLS standard error
    df: np.ndarray  # (G,) residual degrees of freedom (n - 1 - k)
    n: np.ndarray  # (G,) rows used
    vif: np.ndarray  # (G,) variance inflation of column 0 from the other columns
    coef: np.ndarray  # (G, k) all coefficients (0 for columns not used)
    ok: np.ndarray  # (G,) the fit is defined


def batched_ols_hac(
    y: np.ndarray,
    X: np.ndarray,
    mask: np.ndarray,
    use_col: np.ndarray,
    maxlags: np.ndarray | None = None,
    calendar: bool = False,
) -> BatchFit:
    """OLS with an intercept of y on the used columns of X, separately in each group.

    y: (G, T) rows in time order; X: (G, T, k); mask: (G, T) rows used; use_col: (G, k) columns
    used (column 0 is the coefficient reported and must be used). Columns are centred in each
    group (the intercept), and unused columns are zeroed with a unit diagonal so every group is
    one k x k solve whose unused coefficients come out as 0. `maxlags` (G,): the Newey-West
    lags, `hac_maxlags(n)` by default. `calendar`: the T positions are equally spaced times
    (days) and lags count positions, unused rows contributing nothing (the amplitude-modulated
    series of Datta & Du 2012); by default lags count the rows used.
    """
    k = X.shape[2]
    m = mask.astype(float)
    n = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Used rows first, in time order, so that lags count draws actually used.
        order = (
            np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
            if calendar
            else np.argsort(~mask, axis=1, kind="stable")
        )
        y = np.take_along_axis(np.where(mask, y, 0.0), order, axis=1)
        X = np.take_along_axis(np.where(mask[..., None], X, 0.0), order[..., None], axis=1)
        m = np.take_along_axis(m, order, axis=1)
        cols = use_col.astype(float)
        nn = np.maximum(n, 1.0)
        yc = (y - (y.sum(axis=1) / nn)[:, None]) * m
        Xc = (X - (X.sum(axis=1) / nn[:, None])[:, None, :]) * m[..., None] * cols[:, None, :]
        scale = np.sqrt((Xc * Xc).sum(axis=1))
        scale = np.where(scale > 0, scale, 1.0)
        Xs = Xc / scale[:, None, :]
        A = np.matmul(Xs.transpose(0, 2, 1), Xs)
        A = A + np.eye(k)[None] * (1.0 - cols)[:, None, :]
        b = np.matmul(Xs.transpose(0, 2, 1), yc[..., None])[..., 0]
        k_used = cols.sum(axis=1)
        df = n - 1.0 - k_used
        ok = (df >= 1) & (scale[:, 0] > 0) & (A[:, 0, 0] > 1e-12)
        A_safe = np.where(ok[:, None, None], A, np.eye(k)[None])
        cond_ok = np.linalg.cond(A_safe) < 1e10
        ok &= cond_ok
        A_safe = np.where(ok[:, None, None], A_safe, np.eye(k)[None])
        Ainv = np.linalg.inv(A_safe)
        coef_s = np.einsum("gkl,gl->gk", Ainv, b)
        resid = (yc - np.matmul(Xs, coef_s[..., None])[..., 0]) * m
        # Sandwich for coefficient 0: a = row 0 of A^-1, v_t = (x_t . a) e_t.
        v = np.matmul(Xs, Ainv[:, 0, :, None])[..., 0] * resid
        lags = hac_maxlags(n) if maxlags is None else np.asarray(maxlags)
        var = _bartlett_sum(v, lags) * n / np.maximum(n - k_used - 1.0, 1.0)
        var_ols = (resid * resid).sum(axis=1) / np.maximum(df, 1.0) * Ainv[:, 0, 0]
        beta = coef_s[:, 0] / scale[:, 0]
        se_hac = np.sqrt(np.maximum(var, 0.0)) / scale[:, 0]
        se_ols = np.sqrt(np.maximum(var_ols, 0.0)) / scale[:, 0]
        # Newey-West is too narrow with ~20 draws (95% CIs cover ~89% without autocorrelation):
        # its CI uses the fixed-b critical value, expressed as an SE for the t(df) the caller
        # uses, and never narrower than plain OLS. (`special.stdtrit(df, q)` is `stats.t.ppf(q,
        # df)` without its argument checks, as in `model_frame.t_inference`.)
        widen = fixed_b_critical(lags / np.maximum(n, 1.0)) / special.stdtrit(
            np.maximum(df, 1.0), 0.975
        )
        se = np.maximum(se_hac * widen, se_ols)
        vif = A[:, 0, 0] * Ainv[:, 0, 0]
        coef = coef_s / scale
    nan = np.nan
    return BatchFit(
        beta=np.where(ok, beta, nan),
        se=np.where(ok & (se > 0), se, nan),
        se_hac=np.where(ok, se_hac, nan),
        se_ols=np.where(ok, se_ols, nan),
        df=np.where(ok, df, nan),
        n=n,
        vif=np.where(ok, vif, nan),
        coef=np.where(ok[:, None], coef * cols, nan),
        ok=ok & (se > 0),
    )


@dataclass
class WithinFit:
    """A cohort within-person fit for the column of interest (index 0 of X)."""

    beta: float
    se: float
    df: float
    vif: float
    coef: np.ndarray
    cov_type: str  # "cluster" or "hac-panel"


def demean(v: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """v minus its mean within each group (v may be 1-D or 2-D with rows as observations)."""
    counts = np.bincount(groups, minlength=n_groups).astype(float)
    if v.ndim == 1:
        return v - (np.bincount(groups, weights=v, minlength=n_groups) / counts)[groups]
    means = (
        np.column_stack(
            [np.bincount(groups, weights=v[:, j], minlength=n_groups) for j in range(v.shape[1])]
        )
        / counts[:, None]
    )
    return v - means[groups]


@dataclass(frozen=True)
class CrossProducts:
    """Per-person sufficient statistics of a within-person fit (issue 19): over each person's
    rows, of the columns z (regressors, and the response last), the row count, the column means,
    the centred cross-products sum (z - mean)(z - mean)' (the person-demeaned X'X, X'y and y'y)
    and each column's largest |z| (the scale of `fit_within`'s "does not vary" check). A column
    with a missing value in a person's rows has a NaN mean (and NaN cross-products) there.

    They are all the cluster-robust fit needs, so persons' statistics can be computed apart (a
    shard of persons at a time) and stacked; only the panel Newey-West covariance of fewer than
    MIN_CLUSTERS persons needs the rows themselves (its lagged products of residuals depend on
    the pooled coefficients)."""

    n: np.ndarray  # (G,) rows
    mean: np.ndarray  # (G, p)
    cross: np.ndarray  # (G, p, p)
    absmax: np.ndarray  # (G, p)


def cross_products(z: np.ndarray, groups: np.ndarray) -> CrossProducts:
    """The `CrossProducts` of rows `z` (N, p) of persons `groups` (codes 0..G-1, every code
    present, rows in any order)."""
    n_groups = int(groups.max()) + 1
    p = z.shape[1]
    counts = np.bincount(groups, minlength=n_groups)
    mean = (
        np.column_stack(
            [np.bincount(groups, weights=z[:, j], minlength=n_groups) for j in range(p)]
        )
        / counts[:, None]
    )
    centred = z - mean[groups]
    cross = np.empty((n_groups, p, p))
    for i in range(p):
        for j in range(i + 1):
            cross[:, i, j] = cross[:, j, i] = np.bincount(
                groups, weights=centred[:, i] * centred[:, j], minlength=n_groups
            )
    order = np.argsort(groups, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return CrossProducts(counts, mean, cross, np.maximum.reduceat(np.abs(z[order]), starts, axis=0))


def _cluster_variance(Q: np.ndarray, score: np.ndarray, Ainv: np.ndarray) -> tuple[float, float]:
    """CR2 variance of the first coefficient and its Bell-McCaffrey degrees of freedom (module
    docstring) from each person's k x k terms: Q[g] = X_g'X_g and score[g] = X_g'e_g of the
    within-person (demeaned, scaled) design, A = sum Q[g].

    Person g contributes (u_g' e_g)^2 with u_g = (I - H_gg)^(-1/2) X_g a (a = Ainv[0], H_gg =
    X_g Ainv X_g' the hat matrix of g's draws). The adjustment undoes the shrinking of a
    person's residuals by their own leverage, which makes the variance exactly unbiased under
    independent errors. For any function f of the spectrum, X_g' f(H_gg) = f(Q_g Ainv) X_g', and
    Q_g Ainv = Ainv^(-1/2) R_g Ainv^(1/2) with R_g = Ainv^(1/2) Q_g Ainv^(1/2) symmetric (the
    nonzero eigenvalues of H_gg): so with f(r) = (1 - r)^(-1/2) (0 where 1 - r vanishes, the
    pseudo-inverse of Pustejovsky & Tipton), u_g' e_g = c' f(R_g) Ainv^(1/2) score[g] with
    c = Ainv^(-1/2) a, and the same k x k algebra gives what the degrees of freedom need."""
    lam, vec = np.linalg.eigh(Ainv)
    half = (vec * np.sqrt(lam)) @ vec.T
    neg_half = (vec / np.sqrt(lam)) @ vec.T
    R = half @ Q @ half
    if R.shape[1] == 1:  # one column: R_g is its own eigenvalue
        r, w = R[:, :, 0], np.ones_like(R)
    else:
        r, w = np.linalg.eigh(R)  # R_g = w diag(r) w'
    f = np.where(1.0 - r > 1e-10, 1.0 / np.sqrt(np.maximum(1.0 - r, 1e-10)), 0.0)
    c = np.einsum("gkl,k->gl", w, neg_half @ Ainv[0])  # w' c, per person
    e = np.einsum("gkl,gk->gl", w, score @ half)  # w' Ainv^(1/2) score[g]
    shifts = (f * c * e).sum(axis=1)
    # u_g'u_g = c' f(R)^2 R c, and X_g'u_g = Ainv^(-1/2) f(R) R c.
    uu = (f * f * r * c * c).sum(axis=1)
    z = np.einsum("gkl,gl->gk", w, f * r * c) @ neg_half
    return float(shifts @ shifts), _satterthwaite_df(uu, z, Ainv)


def _satterthwaite_df(uu: np.ndarray, z: np.ndarray, Ainv: np.ndarray) -> float:
    """Degrees of freedom of sum_g (u_g' e_g)^2 (Bell & McCaffrey 2002). Under independent
    errors e = M eps, it is a quadratic form in eps whose weights are the eigenvalues of
    Gamma[g, h] = u_g' M_gh u_h, and Satterthwaite's approximation is
    df = tr(Gamma)^2 / tr(Gamma^2). With person fixed effects M_gh = [g = h] (I - J / n_g) -
    X_g Ainv X_h', so Gamma = D - Z Ainv Z' with D diagonal, d_g = u_g'u_g - (1'u_g)^2 / n_g,
    and Z's row g = X_g' u_g (`z`): both traces follow from K x K products, without the G x G
    matrix. 1'u_g = 0: X_g is demeaned, so 1 lies in the null space of H_gg, where
    (I - H_gg)^(-1/2) is the identity, and 1'u_g = 1'X_g a = 0; d_g = u_g'u_g (`uu`)."""
    leverage = np.einsum("gk,kl,gl->g", z, Ainv, z)  # z_g' Ainv z_g
    cross = Ainv @ (z.T @ z)
    trace = float(uu.sum() - leverage.sum())
    trace_sq = float(uu @ uu - 2.0 * (uu @ leverage) + np.trace(cross @ cross))
    return trace**2 / trace_sq


# The rows of a within fit, for the panel Newey-West covariance: X, y and person codes, sorted by
# person and, within a person, by time.
Rows = tuple[np.ndarray, np.ndarray, np.ndarray]


def within_fit(y: np.ndarray, X: np.ndarray, groups: np.ndarray, time: np.ndarray) -> WithinFit:
    """Person fixed-effects OLS of y on X (column 0 reported) with a dependence-robust SE:
    `fit_within` of the rows' `cross_products`.

    groups: integer person codes; time: sort key within a person (draw time). Raises
    LinAlgError when X is collinear."""
    order = np.lexsort((time, groups))
    y, X, groups = y[order], X[order], groups[order]
    _, groups = np.unique(groups, return_inverse=True)
    stats = cross_products(np.column_stack([X, y]), groups)
    return fit_within(stats, list(range(X.shape[1])), lambda: (X, y, groups))


def fit_within(
    stats: CrossProducts, cols: list[int], rows: Callable[[], Rows] | None = None
) -> WithinFit:
    """Person fixed-effects OLS of the response (the last column of `stats`) on the columns
    `cols` of `stats` (cols[0] reported) with a dependence-robust SE, from the persons'
    `CrossProducts` (every person with rows, including those with one).

    With at least MIN_CLUSTERS persons the covariance is cluster-robust by person (CR2) with
    Bell-McCaffrey degrees of freedom, from the statistics alone; below that, panel Newey-West
    with maxlags from the median person's number of draws and t(N - G - K), which reads the
    `rows` (the columns `cols` as X). Raises LinAlgError when the columns are collinear."""
    n_groups = int(stats.n.size)
    W = stats.cross[:, cols][:, :, cols]
    wy = stats.cross[:, cols, -1]
    scale = np.sqrt(W.sum(axis=0).diagonal())
    if np.any(scale <= 1e-12 * max(1.0, float(stats.absmax[:, cols].max(initial=0.0)))):
        raise np.linalg.LinAlgError("a column does not vary within persons")
    # The within-person design scaled to unit column norms: Q[g] = X_g'X_g, X_g'y_g.
    Q = W / np.outer(scale, scale)
    xy = wy / scale
    A = Q.sum(axis=0)
    if np.linalg.cond(A) > 1e10:
        raise np.linalg.LinAlgError("collinear columns")
    Ainv = np.linalg.inv(A)
    coef = Ainv @ xy.sum(axis=0)
    if n_groups >= MIN_CLUSTERS:
        var, df = _cluster_variance(Q, xy - Q @ coef, Ainv)
        df = min(df, n_groups - 1.0)
        cov_type = "cluster"
    else:
        if rows is None:
            raise ValueError(f"fewer than {MIN_CLUSTERS} persons: the fit needs the rows")
        var, df = _panel_newey_west(*rows(), stats.n, coef, scale, Ainv)
        cov_type = "hac-panel"
    if df < 1 or var <= 0:
        raise np.linalg.LinAlgError("no degrees of freedom left")
    return WithinFit(
        beta=float(coef[0] / scale[0]),
        se=math.sqrt(var) / float(scale[0]),
        df=df,
        vif=float(A[0, 0] * Ainv[0, 0]),
        coef=coef / scale,
        cov_type=cov_type,
    )


def _panel_newey_west(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    counts: np.ndarray,
    coef: np.ndarray,
    scale: np.ndarray,
    Ainv: np.ndarray,
) -> tuple[float, float]:
    """The panel Newey-West variance of the first (scaled) coefficient and its t degrees of
    freedom, from the rows (sorted by person, then time) and the pooled fit."""
    n_groups = int(counts.size)
    n_obs, k = X.shape
    Xs = demean(X, groups, n_groups) / scale
    resid = demean(y, groups, n_groups) - Xs @ coef
    v = (Xs @ Ainv[0]) * resid  # each draw's share of the first coefficient's score
    lags = int(hac_maxlags(int(np.median(counts))))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    padded = np.zeros((n_groups, int(counts.max())))
    padded[groups, np.arange(n_obs) - starts[groups]] = v
    var_hac = float(_bartlett_sum(padded, np.full(n_groups, lags)).sum()) * n_obs / (n_obs - k)
    df = float(n_obs - n_groups - k)
    # As in batched_ols_hac: a fixed-b critical value, never narrower than the classical
    # within-person SE. The panel variance averages G persons' independent HAC sums, so its own
    # sampling noise, which the fixed-b correction pays for and which grows linearly in b for
    # small b, is about G times smaller: b / G.
    b = lags / float(np.median(counts)) / n_groups
    widen = float(fixed_b_critical(b)) / special.stdtrit(max(df, 1.0), 0.975)
    return max(var_hac * widen**2, float(resid @ resid) / max(df, 1.0) * Ainv[0, 0]), df
