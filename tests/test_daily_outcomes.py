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
