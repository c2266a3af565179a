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
  never below the classical within-person SE. The cluster-robust covariance is the cluster
  jackknife (CR3, MacKinnon, Nielsen & Webb 2023): (G - 1) / G times the sum over persons of
  (estimate without that person - full estimate) squared, computed in closed form and checked
  against leave-one-person-out statsmodels fits; inference with t(G - 1). The plain sandwich
  (CR1, statsmodels `cov_type="cluster"`) is too narrow with a few dozen persons: in the
  calibration study (40 people, 60 replicates, one food at a time at alpha 0.05/9) its null
  CIs covered 92.3% and person-specific slopes pushed the cohort's family-wise error to 13%;
  with CR3 93.5% and 10%.

HAC assumes roughly equally spaced observations; routine draws every 2 to 6 weeks are close
enough for the few lags used, and the cluster-robust estimator assumes nothing about spacing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

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
    y: np.ndarray, X: np.ndarray, mask: np.ndarray, use_col: np.ndarray
) -> BatchFit:
    """OLS with an intercept of y on the used columns of X, separately in each group.

    y: (G, T) rows in time order; X: (G, T, k); mask: (G, T) rows used; use_col: (G, k) columns
    used (column 0 is the coefficient reported and must be used). Columns are centred in each
    group (the intercept), and unused columns are zeroed with a unit diagonal so every group is
    one k x k solve whose unused coefficients come out as 0.
    """
    k = X.shape[2]
    m = mask.astype(float)
    n = m.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        # Used rows first, in time order, so that lags count draws actually used.
        order = np.argsort(~mask, axis=1, kind="stable")
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
        lags = hac_maxlags(n)
        var = _bartlett_sum(v, lags) * n / np.maximum(n - k_used - 1.0, 1.0)
        var_ols = (resid * resid).sum(axis=1) / np.maximum(df, 1.0) * Ainv[:, 0, 0]
        beta = coef_s[:, 0] / scale[:, 0]
        se_hac = np.sqrt(np.maximum(var, 0.0)) / scale[:, 0]
        se_ols = np.sqrt(np.maximum(var_ols, 0.0)) / scale[:, 0]
        # Newey-West is too narrow with ~20 draws (95% CIs cover ~89% without autocorrelation):
        # its CI uses the fixed-b critical value, expressed as an SE for the t(df) the caller
        # uses, and never narrower than plain OLS.
        widen = fixed_b_critical(lags / np.maximum(n, 1.0)) / stats.t.ppf(
            0.975, np.maximum(df, 1.0)
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


def _jackknife_variance(
    Xs: np.ndarray, resid: np.ndarray, Ainv: np.ndarray, groups: np.ndarray, n_groups: int
) -> float:
    """CR3 variance of the first coefficient: leaving person g out moves the estimate by
    Ainv X_g' (I - H_gg)^-1 e_g (H_gg: the hat matrix of g's draws), so the jackknife needs one
    small solve per person instead of G refits, all solved at once. Rows are sorted by person."""
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(groups.size) - starts[groups]
    width = int(counts.max())
    # Each person's draws in one zero-padded block: padding rows have no design and no residual,
    # so they add nothing to the hat matrix or to the shift.
    Xp = np.zeros((n_groups, width, Xs.shape[1]))
    ep = np.zeros((n_groups, width))
    Xp[groups, slot] = Xs
    ep[groups, slot] = resid
    hat = Xp @ Ainv @ Xp.transpose(0, 2, 1)
    eg = np.linalg.solve(np.eye(width) - hat, ep[..., None])[..., 0]
    shifts = np.einsum("gtk,gt->gk", Xp, eg) @ Ainv[0]
    return (n_groups - 1.0) / n_groups * float(shifts @ shifts)


def within_fit(y: np.ndarray, X: np.ndarray, groups: np.ndarray, time: np.ndarray) -> WithinFit:
    """Person fixed-effects OLS of y on X (column 0 reported) with a dependence-robust SE.

    groups: integer person codes 0..G-1; time: sort key within a person (draw time). With at
    least MIN_CLUSTERS persons the covariance is the cluster jackknife by person (CR3) with
    t(G - 1); below that, panel Newey-West with maxlags from the
    median person's number of draws and t(N - G - K). Raises LinAlgError when X is collinear.
    """
    order = np.lexsort((time, groups))
    y, X, groups = y[order], X[order], groups[order]
    _, groups = np.unique(groups, return_inverse=True)
    n_groups = int(groups.max()) + 1
    n_obs, k = X.shape
    yw = demean(y, groups, n_groups)
    Xw = demean(X, groups, n_groups)
    scale = np.sqrt((Xw * Xw).sum(axis=0))
    if np.any(scale <= 1e-12 * max(1.0, float(np.abs(X).max(initial=0.0)))):
        raise np.linalg.LinAlgError("a column does not vary within persons")
    Xs = Xw / scale
    A = Xs.T @ Xs
    if np.linalg.cond(A) > 1e10:
        raise np.linalg.LinAlgError("collinear columns")
    Ainv = np.linalg.inv(A)
    coef = Ainv @ (Xs.T @ yw)
    resid = yw - Xs @ coef
    v = (Xs @ Ainv[0]) * resid  # each draw's share of the first coefficient's score
    if n_groups >= MIN_CLUSTERS:
        var = _jackknife_variance(Xs, resid, Ainv, groups, n_groups)
        df = n_groups - 1.0
        cov_type = "cluster"
    else:
        counts = np.bincount(groups, minlength=n_groups)
        lags = int(hac_maxlags(int(np.median(counts))))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        padded = np.zeros((n_groups, int(counts.max())))
        padded[groups, np.arange(n_obs) - starts[groups]] = v
        var_hac = float(_bartlett_sum(padded, np.full(n_groups, lags)).sum()) * n_obs / (n_obs - k)
        df = float(n_obs - n_groups - k)
        # As in batched_ols_hac: a fixed-b critical value, never narrower than the classical
        # within-person SE. The panel variance averages G persons' independent HAC sums, so
        # its own sampling noise, which the fixed-b correction pays for and which grows
        # linearly in b for small b, is about G times smaller: b / G.
        b = lags / float(np.median(counts)) / n_groups
        widen = float(fixed_b_critical(b)) / stats.t.ppf(0.975, max(df, 1.0))
        var = max(var_hac * widen**2, float(resid @ resid) / max(df, 1.0) * Ainv[0, 0])
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
