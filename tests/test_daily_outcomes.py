"""The daily-outcome statistics against simulated truth (pipelines/analysis/daily_outcomes.py)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from pipelines.analysis.daily_outcomes import DailySettings, daily_outcome_effects

START = date(2026, 1, 5)
FOODS = ("fermented_servings", "dairy_servings", "alcohol_servings")
SETTINGS = DailySettings(foods=FOODS)


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float = 1.0) -> np.ndarray:
    """A stationary AR(1) series with marginal SD `sd`."""
    e = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for t in range(1, n):
        out[t] = phi * out[t - 1] + e[t]
    return out


def simulate(
    rng: np.random.Generator,
    person: str,
    days: int,
    phi: float,
    effect: float = 0.0,
    effect_lag: int = 1,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """One person's diary and daily bloating. Fermented food and dairy share items (yoghurt,
    kefir: a shared component), correlation ~0.6; only fermented food acts, `effect` points of
    bloating per serving `effect_lag` days later; weekend bloating is 0.5 higher; AR(1) noise."""
    burn = 14
    total = days + burn
    shared = rng.gamma(3.0, 0.5, total)
    fermented = shared + rng.gamma(2.0, 0.5, total)
    dairy = shared + rng.gamma(2.0, 0.5, total)
    alcohol = rng.poisson(0.7, total).astype(float)
    day = [START + timedelta(days=i - burn) for i in range(total)]
    weekend = np.array([d.weekday() >= 5 for d in day], dtype=float)
    lagged = np.roll(fermented, effect_lag)
    bloating = 3.0 + effect * lagged + 0.5 * weekend + ar1(rng, total, phi)
    diet = pl.DataFrame(
        {
            "person_id": person,
            "day": day,
            "logged": True,
            "fermented_servings": fermented,
            "dairy_servings": dairy,
            "alcohol_servings": alcohol,
        }
    )
    outcomes = pl.DataFrame(
        {
            "person_id": person,
            "day": day[burn:],
            "metric": "bloating",
            "value": bloating[burn:],
            "unit": None,
            "scale": "0-10",
        },
        schema_overrides={"unit": pl.String},
    )
    return outcomes, diet


def cohort(seed: int, persons: int, days: int, phi: float, effect: float, lag: int = 1):
    rng = np.random.default_rng(seed)
    parts = [simulate(rng, f"p{i:03d}", days, phi, effect, lag) for i in range(persons)]
    return pl.concat([o for o, _ in parts]), pl.concat([d for _, d in parts])


def test_planted_effect_found_at_its_lag_and_co_occurring_food_is_not() -> None:
    # One person; over 200 such persons (seed 7) the lag-1 estimate averaged 0.81 (SD 0.09, mean
    # SE 0.10, CI coverage 0.965) and the food's one test found it in 77% of them; seed 1 is one
    # of the 23% (estimate 0.60, 2.1 SE low), this seed is a typical person.
    outcomes, diet = cohort(2, 1, 180, 0.5, 0.8)
    rows = daily_outcome_effects(outcomes, diet, SETTINGS)
    assert rows.height == len(FOODS) * 6 and rows["note"].null_count() == rows.height

    def row(food: str, lag: str) -> dict:
        return rows.filter((pl.col("feature") == food) & (pl.col("lag") == lag)).row(0, named=True)

    lag1 = row("fermented_servings", "1")
    assert lag1["status"] == "significant"
    assert lag1["ci_low"] <= 0.8 <= lag1["ci_high"]
    primary = row("fermented_servings", "0-3")
    assert primary["window_role"] == "primary" and primary["status"] == "significant"
    assert primary["ci_low"] <= 0.8 <= primary["ci_high"]
    for lag in ("0", "2", "3"):
        assert row("fermented_servings", lag)["status"] != "significant"
    # Lag-shape rows are gated by their food's one test: their q is never below it.
    gated = rows.join(
        rows.filter(pl.col("window_role") == "primary").select("feature", pl.col("q").alias("q0")),
        on="feature",
    )
    assert (gated["q"] >= gated["q0"]).all()
    # BH over the family's three primary rows.
    prim = rows.filter(pl.col("window_role") == "primary").sort("p")
    assert prim["q"][0] == pytest.approx(
        min(1.0, prim["p"][0] * 3, prim["p"][1] * 1.5, prim["p"][2])
    )
    # Dairy shares items with fermented food (r ~ 0.6) and has no effect of its own.
    assert np.corrcoef(diet["fermented_servings"], diet["dairy_servings"])[0, 1] > 0.5
    assert row("dairy_servings", "0-3")["status"] == "not_significant"
    assert (
        rows.filter(pl.col("feature") == "dairy_servings")["status"]
        .is_in(["not_significant"])
        .all()
    )


def _covers(rows: pl.DataFrame, truth: float) -> float:
    return float(((rows["ci_low"] <= truth) & (rows["ci_high"] >= truth)).mean())


def test_false_positive_rate_and_coverage_under_autocorrelated_noise() -> None:
    # 200 persons x 3 foods = 600 one-per-food tests, 120 days each, AR(1) residuals phi 0.6.
    outcomes, diet = cohort(10, 200, 120, 0.6, 0.0)
    null = daily_outcome_effects(outcomes, diet, SETTINGS)
    primary = null.filter(pl.col("window_role") == "primary")
    assert primary.height == 600 and primary["p"].null_count() == 0
    fpr = float((primary["p"] < 0.05).mean())
    assert 0.02 <= fpr <= 0.08, fpr
    assert float((null["p"] < 0.05).mean()) <= 0.08
    assert _covers(primary, 0.0) >= 0.92

    outcomes, diet = cohort(20, 200, 120, 0.6, 0.5, lag=1)
    planted = daily_outcome_effects(outcomes, diet, SETTINGS).filter(
        pl.col("feature") == "fermented_servings"
    )
    assert 0.91 <= _covers(planted.filter(pl.col("lag") == "0-3"), 0.5) <= 0.99
    assert 0.91 <= _covers(planted.filter(pl.col("lag") == "1"), 0.5) <= 0.99
    assert _covers(planted.filter(pl.col("lag") == "2"), 0.0) >= 0.9


def test_insufficient_data_and_constant_food_give_reasons() -> None:
    outcomes, diet = cohort(3, 2, 120, 0.5, 0.8)
    short = outcomes.filter((pl.col("person_id") == "p001") & (pl.col("day") < date(2026, 2, 9)))
    outcomes = pl.concat([outcomes.filter(pl.col("person_id") == "p000"), short])
    diet = diet.with_columns(
        pl.when(pl.col("person_id") == "p000")
        .then(1.0)
        .otherwise(pl.col("alcohol_servings"))
        .alias("alcohol_servings")
    )
    rows = daily_outcome_effects(outcomes, diet, SETTINGS)
    few = rows.filter(pl.col("person_id") == "p001")
    assert (few["status"] == "insufficient_data").all()
    assert few["estimate"].null_count() == few.height
    # 35 days, the first of which has no previous day to quasi-difference against.
    assert few["note"].str.contains("34 usable days").all()
    const = rows.filter((pl.col("person_id") == "p000") & (pl.col("feature") == "alcohol_servings"))
    assert (const["status"] == "insufficient_data").all()
    assert (const["note"] == "the food did not vary over the usable days").all()
    # The other foods are still fitted, without the constant one.
    other = rows.filter((pl.col("person_id") == "p000") & (pl.col("feature") != "alcohol_servings"))
    assert other["estimate"].null_count() == 0


def test_unlogged_days_are_missing_not_zero() -> None:
    outcomes, diet = cohort(4, 1, 150, 0.5, 0.8)
    gaps = diet.with_columns(
        (pl.col("day").dt.ordinal_day() % 11 != 0).alias("logged"),
    )
    rows = daily_outcome_effects(outcomes, gaps, SETTINGS)
    full = daily_outcome_effects(outcomes, diet, SETTINGS)
    # A gap removes its day and the 3 days after it (lags), not a zero intake.
    assert rows["n_days"][0] < full["n_days"][0] - 30
    lag1 = rows.filter((pl.col("feature") == "fermented_servings") & (pl.col("lag") == "1"))
    assert lag1["ci_low"][0] <= 0.8 <= lag1["ci_high"][0]


def test_same_input_same_output() -> None:
    outcomes, diet = cohort(5, 3, 100, 0.5, 0.8)
    first = daily_outcome_effects(outcomes, diet, SETTINGS)
    again = daily_outcome_effects(
        outcomes.reverse(), diet.sample(fraction=1.0, shuffle=True, seed=1), SETTINGS
    )
    assert first.equals(again)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="lags"):
        DailySettings(lags=(1, 0))
    outcomes, diet = cohort(6, 1, 60, 0.5, 0.0)
    with pytest.raises(ValueError, match="no column"):
        daily_outcome_effects(outcomes, diet, DailySettings(foods=("kimchi_servings",)))
