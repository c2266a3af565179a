"""The cohort within-person fit from per-person statistics equals the fit on the rows (issue 19)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import special

from pipelines.analysis.cohort_models import cohort_models
from pipelines.analysis.model_frame import prepare_wide
from pipelines.analysis.person_stats import STAT_COLUMNS, P, chunk_arrays, statistics_of
from pipelines.analysis.robust import (
    MIN_CLUSTERS,
    _bartlett_sum,
    cross_products,
    demean,
    fit_within,
    fixed_b_critical,
    hac_maxlags,
)
from pipelines.config import Settings


def dense_within(y: np.ndarray, X: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """The within fit on the rows, written out with each person's n_g x n_g hat matrix (the
    cohort's implementation before its statistics were per person): rows sorted by person and,
    within a person, by time; groups 0..G-1."""
    n_groups = int(groups.max()) + 1
    n_obs, k = X.shape
    yw, Xw = demean(y, groups, n_groups), demean(X, groups, n_groups)
    scale = np.sqrt((Xw * Xw).sum(axis=0))
    Xs = Xw / scale
    A = Xs.T @ Xs
    Ainv = np.linalg.inv(A)
    coef = Ainv @ (Xs.T @ yw)
    resid = yw - Xs @ coef
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(n_obs) - starts[groups]
    if n_groups >= MIN_CLUSTERS:
        width = int(counts.max())
        Xp = np.zeros((n_groups, width, k))
        ep = np.zeros((n_groups, width))
        Xp[groups, slot] = Xs
        ep[groups, slot] = resid
        lam, vec = np.linalg.eigh(np.eye(width) - Xp @ Ainv @ Xp.transpose(0, 2, 1))
        inv_sqrt = vec * np.where(lam > 1e-10, 1 / np.sqrt(np.maximum(lam, 1e-10)), 0)[:, None]
        inv_sqrt = inv_sqrt @ vec.transpose(0, 2, 1)
        u = np.einsum("gst,gt->gs", inv_sqrt, Xp @ Ainv[0])
        shifts = (u * ep).sum(axis=1)
        var = float(shifts @ shifts)
        d = (u * u).sum(axis=1) - u.sum(axis=1) ** 2 / counts
        z = np.einsum("gtk,gt->gk", Xp, u)
        leverage = np.einsum("gk,kl,gl->g", z, Ainv, z)
        cross = Ainv @ (z.T @ z)
        trace = float(d.sum() - leverage.sum())
        df = trace**2 / float(d @ d - 2 * (d @ leverage) + np.trace(cross @ cross))
        df = min(df, n_groups - 1.0)
    else:
        lags = int(hac_maxlags(int(np.median(counts))))
        padded = np.zeros((n_groups, int(counts.max())))
        padded[groups, slot] = (Xs @ Ainv[0]) * resid
        var_hac = float(_bartlett_sum(padded, np.full(n_groups, lags)).sum()) * n_obs / (n_obs - k)
        df = float(n_obs - n_groups - k)
        b = lags / float(np.median(counts)) / n_groups
        widen = float(fixed_b_critical(b)) / special.stdtrit(df, 0.975)
        var = max(var_hac * widen**2, float(resid @ resid) / df * Ainv[0, 0])
    se = math.sqrt(var) / scale[0]
    beta = coef[0] / scale[0]
    return {"beta": beta, "se": se, "df": df, "p": 2 * special.stdtr(df, -abs(beta / se))}


def panel(n_persons: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Person-sorted rows of an unbalanced panel (2 to 25 draws a person, one person with one):
    AR(1) residuals (rho 0.7), person effects, persons whose diets vary more than others', and
    a covariate that moves with the feature. Returns z = [x, c1, c2, y], groups, time."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 26, n_persons)
    sizes[0] = 1
    groups = np.repeat(np.arange(n_persons), sizes)
    time = np.concatenate([np.sort(rng.uniform(0, 400, n)) for n in sizes])
    spread = rng.lognormal(0.0, 0.8, n_persons)[groups]
    x = rng.normal(size=groups.size) * spread + rng.normal(size=n_persons)[groups]
    c1 = 0.5 * x + rng.normal(size=groups.size) * spread
    c2 = rng.normal(size=groups.size) + 70.0 + rng.normal(size=n_persons)[groups] * 5
    e = np.empty(groups.size)
    for g, n in enumerate(sizes):
        at = np.flatnonzero(groups == g)
        v = rng.normal(size=n)
        for t in range(1, n):
            v[t] += 0.7 * v[t - 1]
        e[at] = v
    y = 0.2 * x - 0.1 * c1 + rng.normal(size=n_persons)[groups] + e
    return np.column_stack([x, c1, c2, y]), groups, time


@pytest.mark.parametrize("n_persons", [4, 9, 12, 40])
@pytest.mark.parametrize("cols", [[0], [0, 1], [0, 1, 2]])
def test_fit_from_statistics_equals_the_fit_on_the_rows(n_persons: int, cols: list[int]) -> None:
    z, groups, _ = panel(n_persons, seed=n_persons + len(cols))
    stats = cross_products(z, groups)
    fit = fit_within(stats, cols, lambda: (z[:, cols], z[:, -1], groups))
    ref = dense_within(z[:, -1], z[:, cols], groups)
    assert fit.cov_type == ("cluster" if n_persons >= MIN_CLUSTERS else "hac-panel")
    p = 2 * special.stdtr(fit.df, -abs(fit.beta / fit.se))
    for name, value in {"beta": fit.beta, "se": fit.se, "df": fit.df, "p": p}.items():
        assert value == pytest.approx(ref[name], rel=1e-8), name
    if n_persons >= MIN_CLUSTERS:
        assert fit.df < n_persons - 1  # Bell-McCaffrey's df, not its cap, is compared


def test_statistics_of_people_apart_stack_to_everyones() -> None:
    """Persons' statistics do not depend on who else is in the frame, in what order: computed a
    shard of persons at a time, they give the fit of everyone's; a person left out changes it."""
    z, groups, _ = panel(30, seed=3)
    cols = [0, 1, 2]
    whole = fit_within(cross_products(z, groups), cols)
    shards = [cross_products(z[groups % 3 == s], groups[groups % 3 == s] // 3) for s in range(3)]
    stacked = [np.concatenate([getattr(s, a) for s in shards]) for a in ("n", "mean", "cross")]
    absmax = np.concatenate([s.absmax for s in shards])
    fit = fit_within(type(shards[0])(*stacked, absmax), cols)
    assert (fit.beta, fit.se, fit.df) == pytest.approx((whole.beta, whole.se, whole.df), rel=1e-10)
    less = type(shards[0])(*(np.delete(a, 1, axis=0) for a in (*stacked, absmax)))
    assert fit_within(less, cols).se != pytest.approx(whole.se, rel=1e-6)


def test_the_leverage_adjustment_is_in_the_compared_terms() -> None:
    """The equality above would not hold without CR2's per-person adjustment: the plain
    sandwich (no (I - H_gg)^(-1/2)) differs from it by far more than the tolerance."""
    z, groups, _ = panel(12, seed=5)
    fit = fit_within(cross_products(z, groups), [0, 1])
    xs = demean(z[:, :2], groups, 12)
    ys = demean(z[:, -1], groups, 12)
    Ainv = np.linalg.inv(xs.T @ xs)
    resid = ys - xs @ (Ainv @ (xs.T @ ys))
    scores = np.array([(xs[groups == g] @ Ainv[0]) @ resid[groups == g] for g in range(12)])
    assert fit.se / math.sqrt(scores @ scores) > 1.01


def test_a_column_missing_in_one_person_leaves_the_others_fits_alone() -> None:
    z, groups, _ = panel(15, seed=7)
    z[groups == 4, 2] = np.nan  # the covariate is missing in one person's rows
    stats = cross_products(z, groups)
    assert np.isnan(stats.mean[4, 2]) and np.isfinite(stats.mean[:, :2]).all()
    fit = fit_within(stats, [0, 1])
    ref = dense_within(z[:, -1], z[:, :2], groups)
    expected = (ref["beta"], ref["se"], ref["df"])
    assert (fit.beta, fit.se, fit.df) == pytest.approx(expected, rel=1e-8)


def test_collinear_columns_raise_as_on_the_rows() -> None:
    z, groups, _ = panel(12, seed=9)
    z = np.column_stack([z[:, :2], 2.0 * z[:, 0] - z[:, 1], z[:, -1]])
    with pytest.raises(np.linalg.LinAlgError):
        fit_within(cross_products(z, groups), [0, 1, 2])
    # A covariate constant within every person (age) does not vary within persons either.
    z[:, 2] = np.arange(12)[groups]
    with pytest.raises(np.linalg.LinAlgError):
        fit_within(cross_products(z, groups), [0, 2])


def _cohort_frame(n_persons: int, seed: int) -> pl.DataFrame:
    """A bare analysis frame: two features (one missing in some windows), one window."""
    z, groups, _ = panel(n_persons, seed)
    rng = np.random.default_rng(seed)
    fibre = np.where(rng.uniform(size=groups.size) < 0.1, None, z[:, 1]).tolist()
    rows = []
    for feature, values in (("fiber_g", fibre), ("nuts_servings", z[:, 0].tolist())):
        rows.append(
            pl.DataFrame(
                {
                    "person_id": [f"p{g:03d}" for g in groups],
                    "marker": "crp",
                    "feature": feature,
                    "window_days": 28,
                    "x": values,
                    "y": z[:, -1],
                    "use": True,
                },
                schema_overrides={"x": pl.Float64},
            )
        )
    return pl.concat(rows)


@pytest.mark.parametrize("n_persons", [6, 25])
def test_cohort_rows_from_statistics_of_groups_of_people(n_persons: int) -> None:
    """A test's statistics of groups of people are those of everyone's rows, person for person;
    each feature's test has its own complete cases; both branches give fitted rows."""
    data = _cohort_frame(n_persons, seed=n_persons)
    wide, features = prepare_wide(data)
    arrays = chunk_arrays(wide, features)
    for feature in features:
        test = statistics_of(arrays, feature)
        assert test is not None
        pid, whole = test
        for s in range(3):
            part = statistics_of(
                chunk_arrays(wide.filter(pl.col("_pid") % 3 == s), features), feature
            )
            assert part is not None
            at = np.searchsorted(pid, part[0])
            assert np.array_equal(pid[at], part[0])
            np.testing.assert_allclose(whole.cross[at], part[1].cross, rtol=1e-12, atol=1e-12)
            assert np.array_equal(whole.n[at], part[1].n)
    assert len(STAT_COLUMNS) == P and STAT_COLUMNS[0] == "x" and STAT_COLUMNS[-1] == "y"
    rows = cohort_models(data, None, Settings())
    fitted = rows.filter(pl.col("beta").is_not_null())
    assert fitted.height == 2
    assert (
        fitted["note"].str.contains("Newey-West" if n_persons < MIN_CLUSTERS else "cluster").all()
    )
    # The fibre feature's test has fewer rows: its complete cases are its own.
    n = dict(zip(rows["feature"], rows["n"], strict=True))
    assert n["fiber_g"] < n["nuts_servings"]
