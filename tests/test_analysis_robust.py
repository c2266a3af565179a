"""The dependence-robust estimators equal statsmodels and keep coverage where OLS does not."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import linalg, stats

from pipelines.analysis.robust import (
    MIN_CLUSTERS,
    batched_ols_hac,
    demean,
    fixed_b_critical,
    hac_maxlags,
    within_fit,
)


def test_batched_ols_hac_equals_statsmodels_per_group() -> None:
    rng = np.random.default_rng(1)
    G, T, k = 5, 25, 3
    X = rng.normal(size=(G, T, k))
    y = rng.normal(size=(G, T)) + 0.3 * X[..., 0]
    mask = np.ones((G, T), bool)
    mask[1, [3, 10]] = False  # a gap inside the series: lags count the draws used
    mask[2, 20:] = False
    use = np.ones((G, k), bool)
    use[3, 2] = False  # a covariate left out for one group
    fit = batched_ols_hac(y, X, mask, use)
    for g in range(G):
        m, cols = mask[g], [j for j in range(k) if use[g, j]]
        design = sm.add_constant(X[g][m][:, cols])
        lags = int(hac_maxlags(int(m.sum())))
        hac = sm.OLS(y[g][m], design).fit(
            cov_type="HAC", cov_kwds={"maxlags": lags, "use_correction": True}
        )
        ols = sm.OLS(y[g][m], design).fit()
        assert fit.beta[g] == pytest.approx(hac.params[1], rel=1e-9)
        assert fit.se_hac[g] == pytest.approx(hac.bse[1], rel=1e-9)
        assert fit.se_ols[g] == pytest.approx(ols.bse[1], rel=1e-9)
        widen = float(fixed_b_critical(lags / m.sum())) / stats.t.ppf(0.975, ols.df_resid)
        assert fit.se[g] == pytest.approx(max(hac.bse[1] * widen, ols.bse[1]), rel=1e-9)
        assert fit.df[g] == ols.df_resid
        # VIF of column 0 from the others, as statsmodels computes it.
        from statsmodels.stats.outliers_influence import variance_inflation_factor

        assert fit.vif[g] == pytest.approx(variance_inflation_factor(design, 1), rel=1e-6)
    assert np.all(fit.coef[3, 2] == 0.0)


@pytest.mark.parametrize("n_persons", [5, 15])
def test_within_fit_equals_statsmodels(n_persons: int) -> None:
    rng = np.random.default_rng(n_persons)
    groups = np.repeat(np.arange(n_persons), 12)
    time = np.tile(np.arange(12), n_persons)
    X = rng.normal(size=(groups.size, 3)) + rng.normal(size=(n_persons, 1))[groups]
    y = 0.2 * X[:, 0] + rng.normal(size=groups.size) + rng.normal(size=n_persons)[groups]
    fit = within_fit(y, X, groups, time)
    yd, Xd = demean(y, groups, n_persons), demean(X, groups, n_persons)
    if n_persons >= MIN_CLUSTERS:
        # People with different numbers of draws (the variance pads them to one width).
        keep = np.arange(groups.size) % 12 < 4 + groups % 9
        groups, time, X, y = groups[keep], time[keep], X[keep], y[keep]
        fit = within_fit(y, X, groups, time)
        assert fit.cov_type == "cluster" and 1 <= fit.df <= n_persons - 1
        assert fit.se**2 == pytest.approx(cr2_dense(y, X, groups)[0], rel=1e-9)
    else:
        lags = int(hac_maxlags(12))
        ref = sm.OLS(yd, Xd).fit(
            cov_type="hac-panel",
            cov_kwds={"groups": groups, "maxlags": lags, "use_correction": "hac"},
        )
        classical = math.sqrt(
            float(((yd - Xd @ ref.params) ** 2).sum())
            / (groups.size - n_persons - 3)
            * np.linalg.inv(Xd.T @ Xd)[0, 0]
        )
        widen = float(fixed_b_critical(lags / 12 / n_persons)) / stats.t.ppf(
            0.975, groups.size - n_persons - 3
        )
        assert fit.cov_type == "hac-panel"
        assert fit.se == pytest.approx(max(ref.bse[0] * widen, classical), rel=1e-9)
    # The within estimate is the person fixed-effects (dummy variable) estimate.
    dummies = (groups[:, None] == np.arange(n_persons)).astype(float)
    lsdv = sm.OLS(y, np.column_stack([X, dummies])).fit()
    assert fit.beta == pytest.approx(lsdv.params[0], rel=1e-9)


def _ou(rng: np.random.Generator, days: np.ndarray, sd: float, tau: float) -> np.ndarray:
    out = np.empty(days.size)
    out[0] = rng.normal(0, sd)
    for i in range(1, days.size):
        a = math.exp(-(days[i] - days[i - 1]) / tau)
        out[i] = a * out[i - 1] + rng.normal(0, sd * math.sqrt(1 - a * a))
    return out


def cr2_dense(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> tuple[float, np.ndarray]:
    """CR2 variance of coefficient 0 the long way, and the matrix B with variance = y'By.

    The residual maker M of the dummy-variable (LSDV) design comes from statsmodels' OLS (its
    pseudo-inverse); person g's adjustment (I - H_gg)^(-1/2) from scipy's matrix square root."""
    n_persons = int(groups.max()) + 1
    dummies = (groups[:, None] == np.arange(n_persons)).astype(float)
    design = np.column_stack([X, dummies])
    M = np.eye(groups.size) - design @ sm.OLS(np.eye(groups.size), design).fit().params
    Xd = demean(X, groups, n_persons)
    Ainv = np.linalg.inv(Xd.T @ Xd)
    rows = []  # person g's term u_g' e_g as r_g' y, e = M y
    for g in range(n_persons):
        idx = np.flatnonzero(groups == g)
        H_gg = Xd[idx] @ Ainv @ Xd[idx].T
        u = np.real(linalg.inv(linalg.sqrtm(np.eye(idx.size) - H_gg))) @ (Xd[idx] @ Ainv[0])
        rows.append(M[idx].T @ u)
    R = np.array(rows)
    B = R.T @ R
    return float(y @ B @ y), B


def skewed_cohort(
    seed: int, n_persons: int, skew: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unequal draws per person and a few people whose diets vary far more than the rest."""
    rng = np.random.default_rng(seed)
    sizes = 5 + rng.integers(0, 6, size=n_persons)
    groups = np.repeat(np.arange(n_persons), sizes)
    time = np.concatenate([np.arange(n) for n in sizes]).astype(float)
    spread = rng.lognormal(0.0, skew, size=n_persons)[groups]
    X = rng.normal(size=(groups.size, 3)) * spread[:, None]
    return groups, time, X


def test_cluster_variance_is_cr2_with_bell_mccaffrey_degrees_of_freedom() -> None:
    groups, time, X = skewed_cohort(7, 14)
    rng = np.random.default_rng(8)
    y = 0.3 * X[:, 0] + rng.normal(size=groups.size) + rng.normal(size=14)[groups]
    fit = within_fit(y, X, groups, time)
    variance, B = cr2_dense(y, X, groups)
    assert fit.cov_type == "cluster"
    assert fit.se**2 == pytest.approx(variance, rel=1e-9)
    # CR2's defining property: under independent errors of variance 1, E[y'By] = tr(B) equals
    # the true variance of the estimate, Ainv[0, 0] of the within design.
    Xd = demean(X, groups, 14)
    assert np.trace(B) == pytest.approx(np.linalg.inv(Xd.T @ Xd)[0, 0], rel=1e-9)
    # Satterthwaite: a quadratic form in independent normals has df = tr(B)^2 / tr(B^2).
    expected_df = float(np.trace(B) ** 2 / np.trace(B @ B))
    assert fit.df == pytest.approx(min(expected_df, 13), rel=1e-9)
    assert fit.df < 13 - 3  # the skewed design costs degrees of freedom


def test_bell_mccaffrey_keeps_the_tail_where_t_g_minus_1_does_not() -> None:
    """Null t statistics on a skewed design (30 people, df about 9) exceed t(df)'s critical
    values about as often as they should; t(G - 1), what the cohort used before, lets through
    nearly twice as many at 1%. (With df below about 4, t(df) errs on the safe side.)"""
    groups, time, X = skewed_cohort(5, 30, skew=0.7)
    rng = np.random.default_rng(4)
    sims = 4000
    t_stats = np.empty(sims)
    for i in range(sims):
        fit = within_fit(rng.normal(size=groups.size), X, groups, time)
        t_stats[i] = abs(fit.beta / fit.se)
    assert 5 < fit.df < 15
    for alpha in (0.05, 0.01):
        noise = 3 * math.sqrt(alpha * (1 - alpha) / sims)
        exceed_bm = float((t_stats > stats.t.ppf(1 - alpha / 2, fit.df)).mean())
        assert abs(exceed_bm - alpha) <= noise, (alpha, exceed_bm)
    exceed_naive = float((t_stats > stats.t.ppf(0.995, 29)).mean())
    assert exceed_naive > 0.01 + 3 * math.sqrt(0.01 * 0.99 / sims), exceed_naive


def test_cluster_robust_cohort_covers_under_drift_and_slope_heterogeneity() -> None:
    # 20 persons x 20 monthly draws; exposure in habit phases; residual = OU (SD 0.30, 60 days)
    # plus noise (total SD 0.385); person slopes vary with SD 0.15 around -0.22. The 95% CI of
    # the within-person estimate must cover the population slope about 95% of the time, where
    # the classical fixed-effects CI does not.
    rng = np.random.default_rng(16)
    beta, n_sets, covered, covered_naive = -0.22, 150, 0, 0
    for _ in range(n_sets):
        ys, xs, gs, ts = [], [], [], []
        for p in range(20):
            days = np.cumsum(rng.integers(15, 43, 20)).astype(float)
            phase = rng.choice([0.0, 0.5, 1.2, 2.0, 3.0], 8)[np.minimum(days // 90, 7).astype(int)]
            x = phase + rng.normal(0, 0.3, days.size)
            e = _ou(rng, days, 0.30, 60.0) + rng.normal(0, math.sqrt(0.385**2 - 0.09), days.size)
            ys.append(1.0 + (beta + rng.normal(0, 0.15)) * x + e)
            xs.append(x)
            gs.append(np.full(days.size, p))
            ts.append(days)
        y, x, g, t = (np.concatenate(v) for v in (ys, xs, gs, ts))
        fit = within_fit(y, x[:, None], g, t)
        half = stats.t.ppf(0.975, fit.df) * fit.se
        covered += abs(fit.beta - beta) <= half
        xd, yd = demean(x, g, 20), demean(y, g, 20)
        b = float(xd @ yd / (xd @ xd))
        df = y.size - 20 - 1
        se = math.sqrt(float(((yd - b * xd) ** 2).sum()) / df / float(xd @ xd))
        covered_naive += abs(b - beta) <= stats.t.ppf(0.975, df) * se
    assert 0.91 <= covered / n_sets <= 0.99
    assert covered_naive / n_sets < 0.85


def test_fixed_b_critical_values() -> None:
    # Kiefer & Vogelsang (2005): 1.96 at b = 0, growing with the share of draws in the kernel.
    assert float(fixed_b_critical(0.0)) == pytest.approx(1.96, abs=1e-3)
    assert float(fixed_b_critical(0.2)) == pytest.approx(2.566, abs=1e-3)
    assert float(fixed_b_critical(0.1)) < float(fixed_b_critical(0.2))


def test_person_newey_west_covers_under_slow_drift() -> None:
    # 300 single-person series of 20 draws 15-42 days apart; residual = OU (SD 0.30, 60 days)
    # plus noise (total SD 0.385); exposure in habit phases. Plain OLS CIs cover the true slope
    # about 90% of the time; the fixed-b Newey-West CI about 95%.
    rng = np.random.default_rng(60)
    n_sets, n, beta = 300, 20, -0.22
    y = np.empty((n_sets, n))
    x = np.empty((n_sets, n))
    for i in range(n_sets):
        days = np.cumsum(rng.integers(15, 43, n)).astype(float)
        x[i] = rng.choice([0.0, 0.5, 1.2, 2.0, 3.0], 12)[(days // 60).astype(int)]
        x[i] += rng.normal(0, 0.3, n)
        e = _ou(rng, days, 0.30, 60.0) + rng.normal(0, math.sqrt(0.385**2 - 0.09), n)
        y[i] = 1.0 + beta * x[i] + e
    fit = batched_ols_hac(y, x[..., None], np.ones((n_sets, n), bool), np.ones((n_sets, 1), bool))
    half = stats.t.ppf(0.975, fit.df)
    covered = np.abs(fit.beta - beta) <= half * fit.se
    covered_ols = np.abs(fit.beta - beta) <= half * fit.se_ols
    assert 0.92 <= covered.mean() <= 0.99
    assert covered_ols.mean() < covered.mean()
