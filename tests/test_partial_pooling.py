"""Person estimates pooled toward the cohort, and the person-slope spread behind it, checked
against statsmodels: the DerSimonian-Laird random-effects model (`combine_effects`) for the
hand-written pooling, and a linear mixed model with random slopes (`MixedLM`) for the cohort
effect and the spread of people's slopes."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from statsmodels.stats.meta_analysis import combine_effects

from pipelines.analysis.pooling import partial_pooling
from pipelines.analysis.robust import within_fit
from pipelines.schema import RESULT_SCHEMA

Z = 1.959963984540054


def frame(rows: list[dict]) -> pl.DataFrame:
    base = {c: None for c in RESULT_SCHEMA}
    return pl.DataFrame([base | r for r in rows], schema=RESULT_SCHEMA)


def test_pooling_equals_the_dersimonian_laird_model() -> None:
    rng = np.random.default_rng(4)
    beta = rng.normal(-0.2, 0.15, 8)
    se = rng.uniform(0.03, 0.15, 8)
    b0, s0 = -0.18, 0.04
    key = {"marker": "hscrp", "feature": "fermented_servings", "window_days": 28}
    rows = [key | {"scope": "cohort", "beta": b0, "se": s0}] + [
        key | {"scope": "person", "person_id": f"p{i}", "beta": float(b), "se": float(s)}
        for i, (b, s) in enumerate(zip(beta, se, strict=True))
    ]
    out = partial_pooling(frame(rows)).filter(pl.col("scope") == "person")

    # statsmodels leaves a negative DerSimonian-Laird estimate as it is; a variance is >= 0.
    tau2 = max(combine_effects(beta, se**2, method_re="dl").tau2, 0.0)
    assert tau2 > 0  # the people differ: some estimates keep more of their own value
    shrink = tau2 / (tau2 + se**2)
    est = b0 + shrink * (beta - b0)
    sd = np.sqrt(shrink * se**2 + (1 - shrink) ** 2 * s0**2)
    np.testing.assert_allclose(out["pooled_effect_pct"], 100 * np.expm1(est), rtol=1e-9)
    np.testing.assert_allclose(out["pooled_ci_low_pct"], 100 * np.expm1(est - Z * sd), rtol=1e-9)
    np.testing.assert_allclose(out["pooled_ci_high_pct"], 100 * np.expm1(est + Z * sd), rtol=1e-9)
    # The noisiest person is pulled furthest toward the cohort.
    pull = np.abs(est - beta) / np.abs(b0 - beta)
    assert np.argmax(pull) == np.argmax(se)


def test_identical_people_are_pooled_to_the_cohort() -> None:
    key = {"marker": "hscrp", "feature": "fiber_g", "window_days": 28}
    rows = [key | {"scope": "cohort", "beta": 0.1, "se": 0.02}] + [
        key | {"scope": "person", "person_id": f"p{i}", "beta": 0.1, "se": 0.2} for i in range(5)
    ]
    out = partial_pooling(frame(rows)).filter(pl.col("scope") == "person")
    assert out["pooled_effect_pct"].to_list() == pytest.approx([100 * math.expm1(0.1)] * 5)


def test_cohort_effect_and_slope_spread_agree_with_a_random_slopes_model() -> None:
    # 40 people x 15 draws; each person's slope is -0.22 + N(0, 0.15) (the calibration's
    # "slopes" scenario). The pipeline's cohort estimate (within-person, cluster-robust CR2) and
    # its person-slope spread (DerSimonian-Laird over per-person OLS) must agree with a linear
    # mixed model with a random intercept and a random slope per person (REML).
    rng = np.random.default_rng(11)
    n_people, n_draws = 40, 15
    groups = np.repeat(np.arange(n_people), n_draws)
    time = np.tile(np.arange(n_draws, dtype=float), n_people)
    x = rng.normal(1.0, 0.6, groups.size) + rng.normal(0, 0.5, n_people)[groups]
    slopes = -0.22 + rng.normal(0, 0.15, n_people)
    y = rng.normal(0, 0.6, n_people)[groups] + slopes[groups] * x + rng.normal(0, 0.3, groups.size)

    fit = within_fit(y, x[:, None], groups, time)
    mixed = sm.MixedLM(y, sm.add_constant(x), groups=groups, exog_re=sm.add_constant(x)).fit(
        reml=True
    )
    assert abs(fit.beta - mixed.fe_params[1]) < 0.5 * mixed.bse_fe[1]
    # The cluster-robust SE is about the mixed model's (it does not assume the model).
    assert 0.7 < fit.se / mixed.bse_fe[1] < 1.5

    per_person = [
        sm.OLS(y[groups == g], sm.add_constant(x[groups == g])).fit() for g in range(n_people)
    ]
    b = np.array([r.params[1] for r in per_person])
    v = np.array([r.bse[1] ** 2 for r in per_person])
    tau_dl = math.sqrt(combine_effects(b, v, method_re="dl").tau2)
    tau_mixed = math.sqrt(np.asarray(mixed.cov_re)[1, 1])
    assert 0.1 < tau_mixed < 0.2 and 0.1 < tau_dl < 0.2
    assert abs(tau_dl - tau_mixed) < 0.05
