"""The data-sufficiency advisor: sample sizes against a simulation and the textbook formula."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from scipy import stats

from pipelines.analysis.sufficiency import data_sufficiency, draws_per_period


def test_formula_matches_hand_computation() -> None:
    # sd 0.40, +20%: 2 * (1.95996 + 0.84162)^2 * 0.16 / ln(1.2)^2 = 75.5 -> 76 per period
    z = 1.959964 + 0.841621
    expected = math.ceil(2 * z**2 * 0.40**2 / math.log(1.2) ** 2)
    assert draws_per_period(0.40, 0.20) == expected
    assert draws_per_period(0.40, 0.50) < draws_per_period(0.40, 0.20)


def test_the_advised_sample_gives_about_80_percent_power() -> None:
    rng = np.random.default_rng(3)
    sd, change = 0.40, 0.50
    n = draws_per_period(sd, change)
    hits = 0
    for _ in range(2000):
        before = rng.normal(0.0, sd, n)
        after = rng.normal(math.log1p(change), sd, n)
        hits += stats.ttest_ind(before, after).pvalue < 0.05
    assert 0.75 <= hits / 2000 <= 0.88


def draws(person: str, logs: list[float], marker: str = "hscrp") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "person_id": person,
            "marker": marker,
            "log_value": logs,
            "excluded_reason": [None] * len(logs),
        },
        schema_overrides={"excluded_reason": pl.String},
    )


def test_uses_the_published_cv_until_there_are_enough_draws() -> None:
    few = data_sufficiency(draws("a", [0.1, 0.9]))
    row = few.row(0, named=True)
    assert row["sd_source"].startswith("published")
    assert row["sd_log"] == pytest.approx(math.sqrt(math.log1p(0.42**2)))
    assert row["more_draws_20pct"] == row["draws_needed_20pct"] - 2
    assert "more draws" in row["advice"]


def test_quiet_person_needs_fewer_draws_than_noisy_one() -> None:
    rng = np.random.default_rng(1)
    quiet = draws("quiet", list(rng.normal(0, 0.1, 12)))
    noisy = draws("noisy", list(rng.normal(0, 0.8, 12)))
    table = data_sufficiency(pl.concat([quiet, noisy])).sort("person_id")
    noisy_row, quiet_row = table.row(0, named=True), table.row(1, named=True)
    assert quiet_row["sd_source"] == "observed"
    assert quiet_row["draws_needed_50pct"] < noisy_row["draws_needed_50pct"]
    assert quiet_row["more_draws_50pct"] == 0
