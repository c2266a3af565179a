"""Calibration of the association methods: the scaled-down `gutsignal check-methods`.

Each scenario of pipelines/analysis/calibration.py runs through the real analysis code (the same
calls the Dagster assets make) on small cohorts, and each (scenario, scope, target) is one case:
the family-wise false-positive rate must not be credibly above 5%, and the 95% CIs must cover the
truth 93-97% of the time (the planted effects, and zero for the foods without one, apart).
"Credibly" is a one-sided binomial test at 1% on the effective sample size (replicates cluster the
families and CIs), so the small study's own Monte Carlo noise does not fail a case, and a method
that misses a target by a wide margin does.

Cases that today's methods still miss are marked xfail(strict=True) with the figure measured at
this size: when the models improve they start passing, the strict mark turns that into a
failure, and the mark must go.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.analysis import calibration as cal
from pipelines.analysis.draws import build_marker_draws
from pipelines.analysis.windows import build_exposure_windows
from pipelines.cli import main
from pipelines.config import Settings
from pipelines.schema import LAB_RESULT_SCHEMA, PERSON_SCHEMA

SIZE = cal.SCALES["small"]
SEED = 16


@cache
def measured(name: str) -> dict[str, cal.ScopeSummary]:
    return {r.scope: r for r in cal.run_scenario(name, SIZE, seed=SEED, workers=2)}


# Targets the methods still miss at SIZE with seed 16, and the figure measured:
# (scenario, scope, target) -> reason. Remove an entry when its case starts passing. None today:
# the last (cohort FWER 21-33% under slow drift, person slopes and shared items) went with
# Holm's procedure as the default, CR2 errors with Bell-McCaffrey degrees of freedom and the
# core-food twin rule.
KNOWN_MISSES: dict[tuple[str, str, str], str] = {}


def cases() -> list[object]:
    out: list[object] = []
    for s in cal.SCENARIOS:
        for scope in ("cohort", "person"):
            for target in ("fwer", "coverage", "coverage_null"):
                if target == "coverage" and not s.planted:
                    continue
                reason = KNOWN_MISSES.get((s.name, scope, target))
                marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
                out.append(
                    pytest.param(
                        s.name, scope, target, marks=marks, id=f"{s.name}-{scope}-{target}"
                    )
                )
    return out


@pytest.mark.parametrize(("scenario", "scope", "target"), cases())
def test_methods_meet_the_targets(scenario: str, scope: str, target: str) -> None:
    row = measured(scenario)[scope]
    if target == "fwer":
        assert row.fwer.n >= SIZE.replicates, "every replicate gives at least one family"
        assert not cal.exceeds(row.fwer, cal.FWER_MAX), (
            f"{scenario}/{scope}: family-wise false-positive rate {row.fwer.text()} "
            f"over {row.fwer.n} families, target <= 5%"
        )
    else:
        low, high = cal.COVERAGE_RANGE
        est: cal.Estimate = getattr(row, target)
        assert est.n > 0
        assert not cal.below(est, low) and not cal.exceeds(est, high), (
            f"{scenario}/{scope}: 95% CI coverage of the "
            f"{'planted effects' if target == 'coverage' else 'null foods'} {est.text()} over "
            f"{est.n} CIs, target 93-97%"
        )


def test_planted_effects_are_found_in_the_cohort() -> None:
    """The instrument can see an effect at all: +50% per serving is found in most replicates.

    At this size (12 people) a valid test finds it about two times in three (66% over 300
    cohorts; 100% at the README's 40 people): the 86% that t(G - 1) gave came with a family-wise
    error of 7.7%."""
    row = measured("independent")["cohort"]
    assert row.power50.n == SIZE.replicates
    assert row.power50.value >= 0.5, row.power50.text()
    assert math.isnan(measured("null")["cohort"].power50.value)


# --------------------------------------------------------------------------------------------------
# The generator writes what it says it writes


def simulate(name: str, persons: int = 30, draws: int = 12, seed: int = 1) -> cal.Cohort:
    size = cal.Size(persons=persons, draws=draws, replicates=1)
    return cal.simulate_cohort(cal.BY_NAME[name], size, np.random.default_rng(seed), Settings())


def test_cohort_frames_have_the_pipeline_shapes_and_every_draw_is_analysed() -> None:
    cohort = simulate("independent", persons=10, draws=8)
    assert cohort.lab_results.schema == pl.Schema(LAB_RESULT_SCHEMA)
    assert cohort.persons.schema == pl.Schema(PERSON_SCHEMA)
    assert cohort.lab_results.height == 80
    assert cohort.lab_results["person_id"].n_unique() == 10
    daily = cohort.diet_daily
    assert daily.select(pl.struct("person_id", "day").is_duplicated().any()).item() is False
    assert {"fermented_servings", "legumes_servings", "energy_kcal", "caffeine_mg"} <= set(
        daily.columns
    )
    settings = Settings()
    draws = build_marker_draws(cohort.lab_results, settings)
    # Draws are far enough apart never to merge into a visit, and the diary covers every window.
    assert draws.height == 80
    chronic = draws.filter(pl.col("excluded_reason").is_null())
    assert chronic.height >= 78  # at most an odd acute draw (> 10 mg/L) and its washout
    windows = build_exposure_windows(daily, draws, settings)
    assert windows.filter(~pl.col("complete")).height == 0


def window_mean(cohort: cal.Cohort, feature: str) -> pl.DataFrame:
    """The planted feature's mean over the primary window before each draw, with ln CRP."""
    settings = Settings()
    draws = build_marker_draws(cohort.lab_results, settings).filter(
        pl.col("excluded_reason").is_null()
    )
    windows = build_exposure_windows(cohort.diet_daily, draws, settings, [feature])
    return windows.filter(pl.col("window_days") == cal.PRIMARY_WINDOW).join(
        draws.select("person_id", "collected_at", "log_value"), on=["person_id", "collected_at"]
    )


def test_planted_effect_is_recovered_from_the_frames_by_plain_least_squares() -> None:
    """Within-person least squares on the pipeline's own windows recovers the planted -20%."""
    planted = cal.Scenario("fermented", "", planted={"fermented_servings": -20.0})
    cohort = cal.simulate_cohort(planted, cal.Size(60, 12, 1), np.random.default_rng(2), Settings())
    data = window_mean(cohort, "fermented_servings").with_columns(
        (pl.col("value") - pl.col("value").mean().over("person_id")).alias("x"),
        (pl.col("log_value") - pl.col("log_value").mean().over("person_id")).alias("y"),
    )
    beta = float((data["x"] * data["y"]).sum() / (data["x"] ** 2).sum())
    assert 100 * math.expm1(beta) == pytest.approx(-20.0, abs=5.0)


def test_ou_residuals_drift_with_the_stated_sd_and_time_constant() -> None:
    rng = np.random.default_rng(7)
    steps = np.full((4000, 60), 30.0)
    path = cal._ou(rng, (4000, 60), steps, 60.0)
    assert path.std() == pytest.approx(1.0, abs=0.02)
    lag1 = np.corrcoef(path[:, 1:].ravel(), path[:, :-1].ravel())[0, 1]
    assert lag1 == pytest.approx(math.exp(-30 / 60), abs=0.02)
    # Null cohort: ln CRP within a person varies by the total residual SD (0.385).
    for name in ("null",):
        cohort = simulate(name, persons=200, draws=12, seed=3)
        logs = cohort.lab_results.with_columns(pl.col("value").log().alias("y"))
        within = logs.with_columns(pl.col("y") - pl.col("y").mean().over("person_id"))
        sd = float(within["y"].std() or 0.0) * math.sqrt(12 / 11)
        assert sd == pytest.approx(cal.RESIDUAL_SD, abs=0.02)


def test_shared_items_tie_foods_together_only_in_the_shared_scenario() -> None:
    def correlation(cohort: cal.Cohort, a: str, b: str) -> float:
        d = cohort.diet_daily.with_columns(
            (pl.col(c) - pl.col(c).mean().over("person_id")) for c in (a, b)
        )
        return float(np.corrcoef(d[a].to_numpy(), d[b].to_numpy())[0, 1])

    apart, shared = simulate("independent"), simulate("shared")
    for other, least in (
        ("legumes_servings", 0.1),
        ("vegetables_servings", 0.1),
        ("caffeine_mg", 0.02),
    ):
        assert abs(correlation(apart, "fermented_servings", other)) < 0.05
        assert correlation(shared, "fermented_servings", other) > least
    assert correlation(shared, "ultra_processed_servings", "sugars_g") > 0.3
    # Only the planted foods carry an effect: a food that shares items with one is null.
    assert shared.truth[(None, "legumes_servings")] == 0.0
    assert shared.truth[(None, "fermented_servings")] == pytest.approx(math.log(0.8))


def test_person_slopes_vary_around_the_population_effect() -> None:
    cohort = simulate("slopes", persons=400)
    slopes = np.array(
        [v for (p, f), v in cohort.truth.items() if p is not None and f == "fermented_servings"]
    )
    assert slopes.mean() == pytest.approx(math.log(0.8), abs=0.03)
    assert slopes.std() == pytest.approx(0.15, abs=0.02)


# --------------------------------------------------------------------------------------------------
# Scoring and Monte Carlo error


def test_score_counts_a_food_once_and_null_foods_as_false() -> None:
    cohort = simulate("independent", persons=2, draws=8)

    def row(feature: str, window: int, status: str, low: float, high: float) -> dict[str, object]:
        return {
            "scope": "cohort",
            "person_id": None,
            "feature": feature,
            "window_days": window,
            "p": 0.01,
            "status": status,
            "ci_low_pct": low,
            "ci_high_pct": high,
            "family": "hscrp|cohort",
        }

    results = pl.DataFrame(
        [
            row("fermented_servings", 14, "significant", -30, -10),
            row("fermented_servings", 28, "significant", -25, -15),  # covers -20
            row("legumes_servings", 28, "significant", 2, 9),  # null, misses 0
            row("legumes_servings", 56, "significant", 1, 9),
            row("fruit_servings", 28, "not_significant", -3, 4),
        ]
    )
    counts = cal.score(results, cohort)["cohort"]
    assert counts["families"] == [1.0] and counts["fwer"] == [1.0]
    assert counts["fdp"] == [0.5]  # fermented and legumes found (each once), legumes false
    assert counts["ci"] == [1.0] and counts["covered"] == [1.0]  # fermented at 28 days
    assert counts["ci_null"] == [2.0] and counts["covered_null"] == [1.0]  # legumes missed 0
    assert counts["power20"] == [1.0] and counts["power20_n"] == [1.0]


def test_monte_carlo_error_and_the_binomial_bounds() -> None:
    # One family per replicate: the SE is the binomial one.
    est = cal.ratio_estimate([1.0] * 10 + [0.0] * 90, [1.0] * 100)
    assert est.value == pytest.approx(0.10)
    assert est.mcse == pytest.approx(math.sqrt(0.1 * 0.9 / 100), rel=0.02)
    assert cal.exceeds(est, 0.05) is False  # 10/100 is not credibly above 5% at the 1% level
    assert cal.exceeds(cal.ratio_estimate([1.0] * 14 + [0.0] * 86, [1.0] * 100), 0.05) is True
    # 90 of 100 CIs cover: credibly below 93%? No. 85 of 100: yes.
    assert cal.below(cal.ratio_estimate([0.9] * 10, [1.0] * 10), 0.93) is False
    cov = cal.ratio_estimate([85.0], [100.0])
    assert cal.below(cov, 0.93) is True
    # Clustered CIs: the effective sample size shrinks when replicates disagree.
    clustered = cal.ratio_estimate([10.0, 0.0, 10.0, 0.0], [10.0] * 4)
    assert clustered.n == 40 and clustered.n_eff < 10


# --------------------------------------------------------------------------------------------------
# The command


def test_check_methods_writes_the_table_between_the_readme_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{cal.README_START}\nold\n{cal.README_END}\nafter\n")
    docs = tmp_path / "docs" / "calibration.md"
    code = main(
        [
            "check-methods",
            "--scale",
            "small",
            "--replicates",
            "2",
            "--scenario",
            "null",
            "--workers",
            "1",
            "--readme",
            str(readme),
            "--docs",
            str(docs),
        ]
    )
    assert code == 0
    text = readme.read_text()
    assert "old" not in text and text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert "| null cohort (no effect) | cohort |" in text
    assert "2 replicates per scenario" in text and "on commit " in text
    assert "null cohort (no effect)" in docs.read_text()


def test_check_methods_refuses_a_readme_without_markers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    code = main(
        [
            *("check-methods", "--scale", "small", "--replicates", "2", "--scenario", "null"),
            *("--workers", "1", "--readme", str(readme), "--docs", str(tmp_path / "c.md")),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert str(readme) in err and cal.README_START in err
    assert readme.read_text() == "# no markers\n"


def test_check_methods_names_the_known_scenarios_for_an_unknown_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["check-methods", "--scenario", "ou90", "--no-write"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--scenario: unknown ou90" in err and "ou60" in err


def test_a_feature_that_is_a_core_food_under_another_name_is_not_a_finding() -> None:
    """In the shared-items cohort the packaged snack brings most of the energy that varies within
    a person, so energy moves with ultra-processed food (|r| >= 0.95): the cohort cannot tell the
    two apart, and only the pre-specified core food is tested (energy was a false finding)."""
    cohort = cal.simulate_cohort(
        cal.BY_NAME["shared"], SIZE, cal._rng(SEED, "shared", 16), Settings()
    )
    everyone = cal.analyse(cohort, Settings()).filter(pl.col("window_days") == cal.PRIMARY_WINDOW)
    # Per person the same rule, decided on each person's own draws: some people's energy moves
    # with ultra-processed food that closely, others' does not.
    person = everyone.filter((pl.col("scope") == "person") & (pl.col("feature") == "energy_kcal"))
    twins = person.filter(pl.col("note").str.starts_with("moves with ultra-processed food"))
    assert 0 < twins.height < person.height
    assert (twins["status"] == "insufficient_data").all() and twins["p"].is_null().all()
    results = everyone.filter(pl.col("scope") == "cohort")
    energy = results.filter(pl.col("feature") == "energy_kcal").row(0, named=True)
    assert energy["status"] == "insufficient_data" and energy["p"] is None
    assert energy["note"].startswith("moves with ultra-processed food within persons")
    upf = results.filter(pl.col("feature") == "ultra_processed_servings").row(0, named=True)
    # Ultra-processed food itself is tested, without energy beside it (the planted +50% is
    # found about two times in three at this size, see the power test).
    assert upf["p"] is not None and upf["effect_pct"] > 0
    assert "not adjusted for energy" in upf["note"]
