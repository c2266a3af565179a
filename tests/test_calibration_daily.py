"""Calibration of the daily-outcome analysis: the scaled-down daily part of `check-methods`.

The scenarios of pipelines/analysis/calibration_daily.py run through `daily_outcome_effects` on
small cohorts (SIZE). The bounds are calibration.py's: a rate fails only when a one-sided
binomial test at 1% on its effective sample size says it is credibly above (or below) the
target, so the small study's own Monte Carlo noise does not fail a case and a method that misses
by a wide margin does.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.analysis import calibration as cal
from pipelines.analysis import calibration_daily as daily
from pipelines.cli import main

SIZE = daily.SCALES["small"]
SEED = 16


@cache
def measured(name: str) -> dict[str, daily.Summary]:
    return {r.measure: r for r in daily.run_scenario(name, SIZE, seed=SEED, workers=2)}


# Null foods' tests are positive 3.9% of the time at this size (2,832 tests; 4.6% over 400
# replicates), and the per-measure and per-food rates are held to the 5% target itself. The pooled
# point estimate is held under NULL_RATE_MAX, 2.3 Monte Carlo SEs above the long-run 4.6% (so
# another seed would rarely fail it) and below the 5.9% the analysis gave here when it estimated
# the day-to-day carry-over low (its denominator over every usable day, no correction for the
# design's bias: daily_outcomes.py docstring).
NULL_RATE_MAX = 0.055


@pytest.mark.parametrize("measure", [m.metric for m in daily.MEASURES])
def test_null_foods_are_not_above_five_percent(measure: str) -> None:
    row = measured("daily_null")[measure]
    # Nearly every person's four foods are tested (a few people lack the usable days).
    assert row.false_positive.n >= 0.9 * SIZE.replicates * SIZE.persons * len(daily.FOODS)
    assert not cal.exceeds(row.false_positive, cal.FWER_MAX), row.false_positive.text()
    for food, est in row.per_food.items():
        assert not cal.exceeds(est, cal.FWER_MAX), f"{food}: {est.text()}"
    low = cal.COVERAGE_RANGE[0]
    assert not cal.below(row.coverage_null, low), row.coverage_null.text()
    assert np.isnan(row.power.value)


def test_null_rate_pooled_over_the_measures_is_near_five_percent() -> None:
    """Over about 2,800 tests the point estimate itself stays under 5.5% (its Monte Carlo error is
    about 0.4 points). With the carry-over estimated low (the earlier phi) it is 5.9% at this
    size, and without the quasi-difference (OLS with Newey-West errors alone) 9.6%: both fail."""
    rows = measured("daily_null").values()
    hits = sum(r.false_positive.value * r.false_positive.n for r in rows)
    tests = sum(r.false_positive.n for r in rows)
    assert hits / tests < NULL_RATE_MAX, f"{hits:.0f} of {tests} null tests at p <= 0.05"


@pytest.mark.parametrize("measure", [m.metric for m in daily.MEASURES])
def test_the_planted_culprit_is_found_and_its_ci_covers_the_truth(measure: str) -> None:
    row = measured("daily_planted")[measure]
    assert row.power.n >= 0.9 * SIZE.replicates * SIZE.persons
    # One person's half year finds the culprit at the sum of lags 0-3 about a fifth (stool form)
    # to a half of the time (the README table; 19-46% at this size); far more often than the 5% a
    # null food is.
    assert row.power.value >= 0.15, row.power.text()
    assert row.power.value > 3 * row.false_positive.value
    low = cal.COVERAGE_RANGE[0]
    assert not cal.below(row.coverage, low), row.coverage.text()
    assert row.fdr.value < 0.10, row.fdr.text()


# --------------------------------------------------------------------------------------------------
# The generator writes what it says it writes


def cohort(name: str, persons: int = 40, seed: int = 1) -> daily.Cohort:
    size = daily.Size(persons=persons, days=180, replicates=1)
    return daily.simulate_cohort(daily.BY_NAME[name], size, np.random.default_rng(seed))


def test_culprit_and_bystander_share_meals_and_days_go_unlogged() -> None:
    c = cohort("daily_planted")
    diet = c.diet_daily
    assert diet.height == 40 * (180 + daily.LEAD_DAYS)
    logged = diet.filter(pl.col("logged"))
    r = np.corrcoef(logged[daily.CULPRIT], logged[daily.BYSTANDER])[0, 1]
    assert 0.35 < r < 0.65
    assert abs(np.corrcoef(logged[daily.CULPRIT], logged["alcohol_servings"])[0, 1]) < 0.1
    unlogged = 1 - diet["logged"].mean()
    assert daily.UNLOGGED < unlogged < daily.UNLOGGED + 0.05
    assert diet.filter(~pl.col("logged"))[daily.CULPRIT].null_count() == diet.height - logged.height
    # Alcohol follows the week: Friday and Saturday well above Monday.
    by_day = logged.group_by(pl.col("day").dt.weekday()).agg(pl.col("alcohol_servings").mean())
    week = dict(by_day.iter_rows())
    assert week[6] > 2 * week[1]


def test_outcomes_are_recorded_on_their_scales_with_the_truth_attenuated_at_the_floor() -> None:
    c = cohort("daily_planted")
    out = c.outcomes
    bloating = out.filter(pl.col("metric") == "bloating")["value"]
    stool = out.filter(pl.col("metric") == "bristol_stool")["value"]
    assert set(bloating.unique().to_list()) <= set(range(11))
    assert set(stool.unique().to_list()) <= set(range(1, 8))
    hr = out.filter(pl.col("metric") == "resting_hr")
    assert hr["unit"].unique().to_list() == ["bpm"] and hr["scale"].unique().to_list() == ["unit"]
    assert 50 < hr["value"].mean() < 70
    # Each person's own effect around the planted mean; on 0-10 the floor rarely bites.
    effects = np.array([v for (p, m), v in c.truth.items() if m == "bloating"])
    assert effects.mean() == pytest.approx(1.0, abs=0.15)
    assert effects.std() == pytest.approx(daily.EFFECT_CV, abs=0.12)
    floor = cohort("daily_floor")
    at_zero = floor.outcomes.filter(pl.col("metric") == "bloating")["value"].eq(0).mean()
    assert at_zero > 0.2
    floor_effects = np.array([v for (p, m), v in floor.truth.items() if m == "bloating"])
    assert floor_effects.mean() < effects.mean() - 0.1
    assert all(v == 0.0 for v in cohort("daily_null").truth.values())


def test_feedback_cuts_the_culprit_after_a_bad_day() -> None:
    def after_bad(name: str) -> float:
        c = cohort(name, persons=60, seed=3)
        bloat = c.outcomes.filter(pl.col("metric") == "bloating").select(
            "person_id", (pl.col("day") + pl.duration(days=1)).alias("day"), "value"
        )
        rows = bloat.join(c.diet_daily.filter(pl.col("logged")), on=["person_id", "day"])
        rows = rows.with_columns(
            (pl.col("value") - pl.col("value").mean().over("person_id") >= 2).alias("bad")
        )
        means = dict(rows.group_by("bad").agg(pl.col(daily.CULPRIT).mean()).iter_rows())
        return means[True] / means[False]

    assert after_bad("daily_feedback_null") < 0.75
    assert after_bad("daily_null") > 0.85


# --------------------------------------------------------------------------------------------------
# Scoring and the command


def test_score_counts_null_tests_power_and_coverage() -> None:
    c = cohort("daily_planted", persons=2)
    pid = "d000"
    true = c.truth[(pid, "bloating")]

    def row(food: str, p: float, status: str, low: float, high: float) -> dict[str, object]:
        return {
            "person_id": pid,
            "measure": "bloating",
            "feature": food,
            "window_role": "primary",
            "p": p,
            "status": status,
            "ci_low": low,
            "ci_high": high,
        }

    results = pl.DataFrame(
        [
            row(daily.CULPRIT, 0.001, "significant", true - 0.1, true + 0.1),
            row(daily.BYSTANDER, 0.01, "significant", 0.1, 0.9),  # a false positive, misses 0
            row("fermented_servings", 0.5, "not_significant", -1.0, 1.0),
            row("alcohol_servings", 0.2, "not_significant", -1.0, 1.0),
        ]
    )
    counts = daily.score(results, c)["bloating"]
    assert counts["families"] == [1.0] and counts["fdp"] == [0.5]
    assert counts["power"] == [1.0] and counts["covered"] == [1.0]
    assert counts["null_tests"] == [3.0] and counts["null_pos"] == [1.0]
    assert counts[f"pos:{daily.BYSTANDER}"] == [1.0] and counts["covered_null"] == [2.0]
    assert daily.score(results, c)["resting_hr"]["families"] == [0.0]


def test_check_methods_writes_the_daily_table_between_its_own_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n{cal.README_START}\nkeep\n{cal.README_END}\n"
        f"{daily.README_START}\nold\n{daily.README_END}\nafter\n"
    )
    code = main(
        [
            *("check-methods", "--scale", "small", "--replicates", "2"),
            *("--scenario", "daily_null", "--scenario", "daily_planted", "--workers", "1"),
            *("--readme", str(readme), "--docs", str(tmp_path / "calibration.md")),
        ]
    )
    assert code == 0
    text = readme.read_text()
    assert "keep" in text and "old" not in text and text.endswith("after\n")
    assert "| null (no food acts) | bloating |" in text
    assert "| culprit acts at lag 1 | resting_hr |" in text
    assert "2 replicates per scenario" in text
    assert not (tmp_path / "calibration.md").exists()  # the markers' page: not run, not written
