"""Associations: planted effects recovered, nulls stay null, 95% coverage, honest small n."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from scipy import stats
from statsmodels.stats.multitest import fdrcorrection, multipletests

from pipelines.analysis.associations import association_parts, compute_associations
from pipelines.analysis.between import cross_sectional
from pipelines.analysis.draws import build_marker_draws
from pipelines.analysis.model_frame import TAUTOLOGICAL, PeopleGroups
from pipelines.analysis.multiple_testing import add_fdr_and_status, bh_qvalues
from pipelines.analysis.person_models import per_person_ols
from pipelines.analysis.windows import build_exposure_windows
from pipelines.config import Settings
from pipelines.schema import LAB_RESULT_SCHEMA, RESULT_SCHEMA, conform

SETTINGS = Settings()
BH = Settings(multiple_testing="bh")
NOISE_SD = 0.385  # within-person SD of ln CRP (science.md 3.1: ~0.41 including analytical error)
T0 = datetime(2024, 1, 1, 8)
NULLS = list("CDEFGH")
PLANTED = {"A": math.log(0.80), "B": math.log(1.15)}  # -20% and +15% per unit


def simulate_cohort(
    seed: int, n_persons: int = 5, n_draws: int = 20, effects: dict[str, float] = PLANTED
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Draws and complete 7-day windows for features A..H with planted within-person effects."""
    rng = np.random.default_rng(seed)
    feats = ["A", "B", *NULLS]
    draws, windows = [], []
    for p in range(n_persons):
        level = rng.normal(0.7, 0.6)  # persons differ in their chronic CRP level
        means = {f: rng.normal(3.0, 1.0) for f in feats}  # ... and in their usual diet
        for k in range(n_draws):
            at = T0 + timedelta(days=21 * k)
            x = {f: means[f] + rng.normal(0.0, 1.0) for f in feats}
            y = level + sum(effects.get(f, 0.0) * x[f] for f in feats) + rng.normal(0, NOISE_SD)
            draws.append(
                {"person_id": f"p{p}", "marker": "crp", "collected_at": at, "log_value": y}
            )
            windows += [
                {
                    "person_id": f"p{p}",
                    "marker": "crp",
                    "collected_at": at,
                    "window_days": 7,
                    "feature": f,
                    "value": x[f],
                    "days_logged": 7,
                    "days_in_window": 7,
                    "complete": True,
                }
                for f in feats
            ]
    draws_df = pl.DataFrame(draws).with_columns(
        pl.lit(None, dtype=pl.String).alias("excluded_reason")
    )
    return draws_df, pl.DataFrame(windows)


def cohort_row(res: pl.DataFrame, feature: str) -> dict:
    return res.filter((pl.col("scope") == "cohort") & (pl.col("feature") == feature)).row(
        0, named=True
    )


def test_result_columns() -> None:
    draws, windows = simulate_cohort(0)
    res = compute_associations(draws, windows, None, SETTINGS)
    assert res.columns == list(RESULT_SCHEMA)
    assert res.filter(pl.col("scope") == "person").height == 5 * 8
    assert res.filter(pl.col("scope") == "cohort").height == 8
    person = res.filter(pl.col("scope") == "person").row(0, named=True)
    assert person["family"] == f"crp|person:{person['person_id']}"
    assert cohort_row(res, "A")["family"] == "crp|cohort"
    assert cohort_row(res, "A")["person_id"] is None


def test_cohort_recovers_planted_effects_and_keeps_nulls_null() -> None:
    # 5 persons x 20 draws. Each single-feature model leaves the other planted effect in the noise,
    # and with 5 persons the errors are Newey-West with a fixed-b critical value (robust to CRP
    # drift, a little conservative without it), so the power for +15% is only about 60%: check
    # it over 10 datasets rather than trust one.
    a_effects, b_significant, significant_nulls = [], 0, 0
    for seed in range(10):
        draws, windows = simulate_cohort(seed)
        res = compute_associations(draws, windows, None, SETTINGS)
        a, b = cohort_row(res, "A"), cohort_row(res, "B")
        assert a["method"] == "fe_within_robust" and a["n"] == 100 and a["n_persons"] == 5
        assert a["status"] == "significant" and a["ci_high_pct"] < 0
        assert a["ci_low_pct"] < a["effect_pct"] < a["ci_high_pct"]
        assert "within-person effect" in a["note"]
        assert b["effect_pct"] > 0
        a_effects.append(a["effect_pct"])
        b_significant += b["status"] == "significant"
        significant_nulls += sum(cohort_row(res, f)["status"] == "significant" for f in NULLS)
    assert float(np.mean(a_effects)) == pytest.approx(-20.0, abs=4.0)
    assert b_significant >= 5
    # 60 null tests at FDR 5%: a stray false positive is possible, a pattern is not.
    assert significant_nulls <= 3


def test_per_person_ci_covers_true_effect_about_95_percent() -> None:
    # 200 simulated single-person datasets of 20 draws, fitted in one vectorised call.
    rng = np.random.default_rng(2024)
    n_sets, n = 200, 20
    beta = math.log(0.8)
    x = rng.normal(3.0, 1.0, (n_sets, n))
    y = 0.5 + beta * x + rng.normal(0, NOISE_SD, (n_sets, n))
    data = pl.DataFrame(
        {
            "person_id": np.repeat([f"s{i:03d}" for i in range(n_sets)], n),
            "marker": "crp",
            "feature": "A",
            "window_days": 7,
            "x": x.ravel(),
            "y": y.ravel(),
            "use": True,
        }
    )
    res = per_person_ols(data, SETTINGS)
    assert res.height == n_sets
    covered = ((res["ci_low_pct"] <= -20.0) & (res["ci_high_pct"] >= -20.0)).mean()
    assert 0.90 <= covered <= 0.99
    # The batched fit equals a textbook OLS fit; its SE is the larger of the classical and the
    # Newey-West SE (statsmodels) widened to its fixed-b critical value, so never below OLS.
    import statsmodels.api as sm

    from pipelines.analysis.robust import fixed_b_critical, hac_maxlags

    first = data.filter(pl.col("person_id") == "s000")
    lr = stats.linregress(first["x"].to_numpy(), first["y"].to_numpy())
    hac = (
        sm.OLS(first["y"].to_numpy(), sm.add_constant(first["x"].to_numpy()))
        .fit(cov_type="HAC", cov_kwds={"maxlags": int(hac_maxlags(n)), "use_correction": True})
        .bse[1]
    )
    row = res.filter(pl.col("person_id") == "s000").row(0, named=True)
    assert row["beta"] == pytest.approx(lr.slope)
    widen = float(fixed_b_critical(hac_maxlags(n) / n)) / stats.t.ppf(0.975, n - 2)
    assert row["se"] == pytest.approx(max(lr.stderr, hac * widen))
    assert row["effect_pct"] == pytest.approx(100 * math.expm1(lr.slope))


def test_bh_q_values_match_hand_computation() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    # sorted 0.005, 0.01, 0.03, 0.04 with m = 4 -> 0.02, 0.02, 0.04, 0.04
    q = bh_qvalues(p)
    np.testing.assert_allclose(q[:4], [0.02, 0.04, 0.04, 0.02])
    assert np.isnan(q[4])
    # Step-up: a larger p can pull a smaller one's q down (0.04 -> min(0.04, 0.03)).
    np.testing.assert_allclose(bh_qvalues(np.array([0.02, 0.03])), [0.03, 0.03])
    rand = np.random.default_rng(1).uniform(0, 0.2, 40)
    np.testing.assert_allclose(bh_qvalues(rand), fdrcorrection(rand)[1])


def results_frame(rows: list[dict]) -> pl.DataFrame:
    base = {c: None for c in RESULT_SCHEMA}
    return pl.DataFrame([base | r for r in rows], schema=RESULT_SCHEMA)


def test_fdr_is_per_family_and_status_rules() -> None:
    res = add_fdr_and_status(
        results_frame(
            [
                {
                    "family": "f1",
                    "p": 0.01,
                    "ci_low_pct": -30.0,
                    "ci_high_pct": -5.0,
                    "sd_feature": 1.0,
                },
                {
                    "family": "f1",
                    "p": 0.04,
                    "ci_low_pct": -5.0,
                    "ci_high_pct": 5.0,
                    "sd_feature": 1.0,
                },
                {
                    "family": "f2",
                    "p": 0.04,
                    "ci_low_pct": -1.0,
                    "ci_high_pct": 30.0,
                    "sd_feature": 1.0,
                },
                {
                    "family": "f2",
                    "p": 0.5,
                    "ci_low_pct": -35.0,
                    "ci_high_pct": 45.0,
                    "sd_feature": 1.0,
                },
                # Per unit narrow, but per SD (10 units) wide: inconclusive.
                {
                    "family": "f2",
                    "p": 0.6,
                    "ci_low_pct": -3.0,
                    "ci_high_pct": 3.0,
                    "sd_feature": 10.0,
                },
                {"family": "f2", "p": None, "note": "too few"},
            ]
        ),
        BH,
    )
    assert res["q"].to_list()[:2] == pytest.approx([0.02, 0.04])
    assert res["q"].to_list()[2:5] == pytest.approx([0.12, 0.6, 0.6])
    assert res["q"][5] is None
    assert res["status"].to_list() == [
        "significant",
        "significant",
        "not_significant",
        "inconclusive",
        "inconclusive",
        "insufficient_data",
    ]


def test_insufficient_data_below_minimum_n_and_without_variation() -> None:
    draws, windows = simulate_cohort(1, n_persons=1, n_draws=5)
    res = compute_associations(draws, windows, None, SETTINGS)
    assert res.filter(pl.col("scope") == "cohort").height == 0  # one person: no cohort rows
    assert set(res["status"]) == {"insufficient_data"}
    row = res.row(0, named=True)
    assert row["effect_pct"] is None and row["p"] is None and row["q"] is None
    assert row["n"] == 5 and "5 complete windows" in row["note"] and "8 needed" in row["note"]

    # Enough draws but a feature that never changes.
    draws, windows = simulate_cohort(1, n_persons=1, n_draws=12)
    windows = windows.with_columns(
        pl.when(pl.col("feature") == "C").then(2.0).otherwise(pl.col("value")).alias("value")
    )
    res = compute_associations(draws, windows, None, SETTINGS)
    c = res.filter(pl.col("feature") == "C").row(0, named=True)
    assert c["status"] == "insufficient_data" and "did not vary" in c["note"]
    assert res.filter(pl.col("feature") == "A")["p"][0] is not None

    # Incomplete windows do not count toward n.
    draws, windows = simulate_cohort(1, n_persons=3, n_draws=10)
    windows = windows.with_columns(
        (pl.col("collected_at") < T0 + timedelta(days=21 * 3)).alias("complete")
    )
    res = compute_associations(draws, windows, None, SETTINGS)
    person = res.filter(pl.col("scope") == "person")
    assert set(person["n"]) == {3} and set(person["status"]) == {"insufficient_data"}
    cohort = res.filter(pl.col("scope") == "cohort").row(0, named=True)
    assert (
        cohort["n"] == 9
        and cohort["status"] == "insufficient_data"
        and "20 needed" in cohort["note"]
    )


def test_energy_adjustment_skips_tautological_pairs() -> None:
    assert ("ultra_processed_energy_pct", "energy_kcal") in TAUTOLOGICAL
    assert ("fiber_g", "carbs_g") in TAUTOLOGICAL
    draws, windows = simulate_cohort(5)
    renamed = windows.with_columns(
        pl.col("feature").replace(
            {"C": "energy_kcal", "D": "ultra_processed_energy_pct", "E": "fiber_g"}
        )
    ).with_columns(
        pl.when(pl.col("feature") == "energy_kcal")
        .then(pl.col("value") * 500)
        .otherwise(pl.col("value"))
        .alias("value")
    )
    res = compute_associations(draws, renamed, None, SETTINGS)
    assert "energy" in cohort_row(res, "fiber_g")["note"]
    assert "energy" not in cohort_row(res, "energy_kcal")["note"]
    assert "energy" not in cohort_row(res, "ultra_processed_energy_pct")["note"]
    # Within-person energy is independent of A here, so adjusting leaves A's estimate nearly alone.
    plain = compute_associations(draws, renamed, None, SETTINGS, energy_adjust=False)
    assert cohort_row(res, "A")["effect_pct"] == pytest.approx(
        cohort_row(plain, "A")["effect_pct"], abs=3
    )


def lab_frame(person: str, days: list[int], values: list[float]) -> pl.DataFrame:
    return conform(
        pl.DataFrame(
            {
                "person_id": person,
                "collected_at": [T0 + timedelta(days=d) for d in days],
                "marker": "crp",
                "value": values,
            }
        ),
        LAB_RESULT_SCHEMA,
    )


def test_leaving_acute_spikes_in_biases_the_estimate() -> None:
    # No true effect of fibre. The person is ill (CRP 30-60 mg/L) exactly when they ate little
    # fibre, as people do when unwell. With acute draws excluded, the estimate is compatible with
    # zero; left in, they fake a strong protective effect.
    rng = np.random.default_rng(8)
    n_days = 620
    fiber = rng.normal(22.0, 6.0, n_days)
    diet = pl.DataFrame(
        {
            "person_id": "a",
            "day": [date(2024, 1, 1) + timedelta(days=k) for k in range(n_days)],
            "logged": True,
            "fiber_g": fiber,
        }
    )
    draw_days = list(range(14, n_days, 21))
    week_mean = np.array([fiber[d - 7 : d].mean() for d in draw_days])
    crp = np.exp(math.log(2.0) + rng.normal(0, NOISE_SD, len(draw_days)))
    ill = np.argsort(week_mean)[:5]
    crp[ill] = rng.uniform(30, 60, ill.size)
    settings = Settings(windows=(7,))
    draws = build_marker_draws(lab_frame("a", draw_days, crp.tolist()), settings)
    assert draws.filter(pl.col("acute")).height == 5

    def fibre_effect(d: pl.DataFrame) -> dict:
        windows = build_exposure_windows(diet, d, settings, features=["fiber_g"])
        res = compute_associations(d, windows, None, settings)
        return res.filter(pl.col("scope") == "person").row(0, named=True)

    clean = fibre_effect(draws)
    naive = fibre_effect(
        draws.with_columns(
            pl.when(pl.col("acute"))
            .then(None)
            .otherwise(pl.col("excluded_reason"))
            .alias("excluded_reason")
        )
    )
    assert naive["n"] == clean["n"] + 5
    assert clean["ci_low_pct"] < 0 < clean["ci_high_pct"]
    assert naive["ci_high_pct"] < 0 and naive["status"] == "significant"
    assert naive["effect_pct"] < clean["effect_pct"] - 5


def test_cross_sectional_between_person_model_with_covariates() -> None:
    # One draw per person; age raises CRP and lowers fibre, so without adjustment fibre looks
    # more protective than it is.
    rng = np.random.default_rng(12)
    n = 600
    age = rng.uniform(20, 80, n)
    sex = rng.choice(["male", "female"], n)
    fiber = 25 - 0.15 * (age - 50) + rng.normal(0, 5, n)
    beta = math.log(0.97)  # -3% per g/day
    log_crp = (
        0.2 + 0.02 * (age - 50) + 0.3 * (sex == "female") + beta * fiber + rng.normal(0, 0.8, n)
    )
    ids = [f"n{i}" for i in range(n)]
    draws = pl.DataFrame({"person_id": ids, "marker": "crp", "value": np.exp(log_crp)})
    features = pl.DataFrame({"person_id": ids, "fiber_g": fiber, "noise": rng.normal(size=n)})
    persons = pl.DataFrame({"person_id": ids, "sex": sex, "age": age})
    res = cross_sectional(draws, features, persons, SETTINGS)
    fib = res.filter(pl.col("feature") == "fiber_g").row(0, named=True)
    assert (
        fib["method"] == "ols_between" and fib["scope"] == "cohort" and fib["window_days"] is None
    )
    assert fib["n"] == n and "age" in fib["note"] and "sex" in fib["note"]
    assert fib["ci_low_pct"] < -3.0 < fib["ci_high_pct"]
    assert fib["status"] == "significant"
    assert res.filter(pl.col("feature") == "noise")["status"][0] != "significant"
    crude = cross_sectional(draws, features, None, SETTINGS).filter(pl.col("feature") == "fiber_g")
    assert crude["effect_pct"][0] < fib["effect_pct"] - 1.0
    assert crude["note"][0] == "between persons (one draw each)"

    # compute_associations uses the same between-person model when nobody has repeated draws.
    at = [T0 + timedelta(days=int(d)) for d in rng.integers(0, 300, n)]
    draws_t = draws.with_columns(
        pl.Series("collected_at", at),
        pl.col("value").log().alias("log_value"),
        pl.lit(None, dtype=pl.String).alias("excluded_reason"),
    )
    windows = pl.DataFrame(
        {
            "person_id": ids,
            "marker": "crp",
            "collected_at": at,
            "window_days": 28,
            "feature": "fiber_g",
            "value": fiber,
            "complete": True,
        }
    )
    res2 = compute_associations(draws_t, windows, persons, SETTINGS)
    row = res2.filter(pl.col("scope") == "cohort").row(0, named=True)
    assert row["method"] == "ols_between"
    assert row["effect_pct"] == pytest.approx(fib["effect_pct"])


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_adjusted_p_values_per_family_equal_statsmodels(method: str) -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.1, 30)
    fam = np.array(["x", "y", "z"])[rng.integers(0, 3, 30)]
    res = add_fdr_and_status(
        results_frame(
            [{"family": f, "p": float(v), "sd_feature": 1.0} for f, v in zip(fam, p, strict=True)]
        ),
        Settings(multiple_testing=method),
    )
    for f in ("x", "y", "z"):
        expected = multipletests(p[fam == f], method="fdr_bh" if method == "bh" else "holm")[1]
        np.testing.assert_allclose(res.filter(pl.col("family") == f)["q"].to_numpy(), expected)
        if method == "bh":
            np.testing.assert_allclose(expected, bh_qvalues(p[fam == f]))


def test_holm_is_the_default_and_stricter_than_bh_beside_real_effects() -> None:
    # Two strong effects and a food at p = 0.012 among 10 foods: BH's step-up lets the third
    # through once the first two are found (q = 10 * 0.012 / 3 = 0.04), Holm does not.
    p = [0.0001, 0.0002, 0.012] + [0.5] * 7
    frame = results_frame(
        [{"family": "f", "feature": f"food{i}", "p": v, "sd_feature": 1.0} for i, v in enumerate(p)]
    )
    holm = add_fdr_and_status(frame, SETTINGS)
    bh = add_fdr_and_status(frame, BH)
    assert Settings().multiple_testing == "holm"
    assert holm["q"][2] == pytest.approx(8 * 0.012)  # (m - rank + 1) p at rank 3
    assert bh["q"][2] == pytest.approx(10 * 0.012 / 3)
    assert holm["status"].to_list()[:3] == ["significant", "significant", "not_significant"]
    assert bh["status"].to_list()[:3] == ["significant"] * 3


def test_cohort_ci_covers_true_effect_about_95_percent() -> None:
    # The pooled within-person model, over 120 simulated cohorts of 4 people x 15 draws with a
    # planted -20% per unit effect: its 95% CI must cover -20% about 95% of the time.
    covered = 0
    n_sets = 120
    for seed in range(n_sets):
        draws, windows = simulate_cohort(
            1000 + seed, n_persons=4, n_draws=15, effects={"A": math.log(0.8)}
        )
        res = compute_associations(draws, windows.filter(pl.col("feature") == "A"), None, SETTINGS)
        a = cohort_row(res, "A")
        covered += a["ci_low_pct"] <= -20.0 <= a["ci_high_pct"]
    assert 0.89 <= covered / n_sets <= 0.99


def test_hs_and_standard_crp_are_tested_apart() -> None:
    # The same people have hs-CRP (with planted effects) and, less often, a standard CRP (no
    # effect). Every association row is one marker's: its n counts only that marker's draws.
    hs_draws, hs_windows = simulate_cohort(11, n_draws=20)
    std_draws, std_windows = simulate_cohort(12, n_draws=10, effects={})
    std_draws = std_draws.with_columns(
        pl.lit("crp").alias("marker"), pl.col("collected_at") + timedelta(days=3)
    )
    std_windows = std_windows.with_columns(
        pl.lit("crp").alias("marker"), pl.col("collected_at") + timedelta(days=3)
    )
    hs_draws = hs_draws.with_columns(pl.lit("hscrp").alias("marker"))
    hs_windows = hs_windows.with_columns(pl.lit("hscrp").alias("marker"))
    res = compute_associations(
        pl.concat([hs_draws, std_draws]), pl.concat([hs_windows, std_windows]), None, SETTINGS
    )
    assert set(res["marker"]) == {"hscrp", "crp"}
    cohort = res.filter((pl.col("scope") == "cohort") & (pl.col("feature") == "A"))
    n = dict(cohort.select("marker", "n").rows())
    assert n == {"hscrp": 5 * 20, "crp": 5 * 10}
    person = res.filter(
        (pl.col("scope") == "person") & (pl.col("person_id") == "p0") & (pl.col("feature") == "A")
    )
    assert dict(person.select("marker", "n").rows()) == {"hscrp": 20, "crp": 10}
    status = dict(cohort.select("marker", "status").rows())
    assert status["hscrp"] == "significant"
    assert status["crp"] != "significant"


# --------------------------------------------------------------------------------------------------
# Issue 16: foods adjusted for each other, one test per food, partial pooling

# Items and the categories each counts in (tempeh is fermented and a legume, sauerkraut fermented
# and a vegetable, kombucha fermented and caffeinated, cola ultra-processed and sugary).
ITEMS = {
    "kefir": {"fermented_servings": 1.0},
    "tempeh": {"fermented_servings": 1.0, "legumes_servings": 1.0, "protein_g": 19.0},
    "sauerkraut": {"fermented_servings": 1.0, "vegetables_servings": 1.0},
    "kombucha": {"fermented_servings": 1.0, "caffeine_mg": 15.0},
    "lentils": {"legumes_servings": 1.0, "protein_g": 9.0},
    "broccoli": {"vegetables_servings": 1.0},
    "coffee": {"caffeine_mg": 95.0},
    "cola": {"ultra_processed_servings": 1.0, "sugars_g": 35.0, "caffeine_mg": 30.0},
    "crisps": {"ultra_processed_servings": 1.0},
    "fruit": {"sugars_g": 12.0},
    "beans": {"legumes_servings": 1.0, "protein_g": 7.0},
}
SHARED_FEATURES = sorted({f for v in ITEMS.values() for f in v})


def simulate_shared_items(
    seed: int, n_persons: int = 12, n_draws: int = 20, windows: tuple[int, ...] = (28,)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fermented food lowers CRP (-25%/serving), ultra-processed raises it (+25%); nothing else
    acts, but legumes, vegetables, caffeine, protein and sugars share items with the two."""
    rng = np.random.default_rng(seed)
    draws, rows = [], []
    for p in range(n_persons):
        level = rng.normal(0.5, 0.5)
        for k in range(n_draws):
            at = T0 + timedelta(days=30 * k)
            # Item habits change between draws; the fermented items move together (a "fermented
            # phase"), so the foods that share them co-vary with fermented food.
            phase = rng.choice([0.0, 0.4, 0.8, 1.2])
            eaten = {
                i: max(0.0, (phase if i in ("kefir", "tempeh", "sauerkraut", "kombucha") else 0.6))
                * rng.gamma(4, 0.25)
                for i in ITEMS
            }
            x = {f: sum(eaten[i] * ITEMS[i].get(f, 0.0) for i in ITEMS) for f in SHARED_FEATURES}
            y = (
                level
                + math.log(0.75) * x["fermented_servings"]
                + math.log(1.25) * x["ultra_processed_servings"]
                + rng.normal(0, NOISE_SD)
            )
            draws.append(
                {"person_id": f"p{p}", "marker": "hscrp", "collected_at": at, "log_value": y}
            )
            for w in windows:
                # Shorter windows see a noisier version of the same intake.
                noise = 0.0 if w == 28 else 0.3
                rows += [
                    {
                        "person_id": f"p{p}",
                        "marker": "hscrp",
                        "collected_at": at,
                        "window_days": w,
                        "feature": f,
                        "value": v * float(rng.lognormal(0, noise)) if noise else v,
                        "days_logged": w,
                        "days_in_window": w,
                        "complete": True,
                    }
                    for f, v in x.items()
                ]
    draws_df = pl.DataFrame(draws).with_columns(
        pl.lit(None, dtype=pl.String).alias("excluded_reason")
    )
    return draws_df, pl.DataFrame(rows)


def test_foods_that_share_items_are_explained_not_findings() -> None:
    draws, windows = simulate_shared_items(7)
    res = compute_associations(draws, windows, None, SETTINGS)
    cohort = res.filter(pl.col("scope") == "cohort")
    rows = {r["feature"]: r for r in cohort.iter_rows(named=True)}
    assert rows["fermented_servings"]["status"] == "significant"
    assert rows["ultra_processed_servings"]["status"] == "significant"
    assert rows["fermented_servings"]["effect_pct"] == pytest.approx(-25.0, abs=8.0)
    for null in ("legumes_servings", "vegetables_servings", "caffeine_mg", "protein_g", "sugars_g"):
        assert rows[null]["status"] != "significant", rows[null]
    # Crude, vegetables (sauerkraut) look protective; adjusted for fermented food they do not,
    # and the note names what explains them.
    veg = rows["vegetables_servings"]
    assert veg["crude_p"] < 0.001 and veg["crude_effect_pct"] < -10
    assert veg["status"] == "explained"
    assert "fermented" in veg["note"] and "explained by" in veg["note"]
    assert "fermented food" in veg["adjusted_for"]
    assert "ultra-processed food" in veg["adjusted_for"]
    # Every row carries the crude estimate beside the adjusted one, and the collinearity.
    tested = cohort.filter(pl.col("p").is_not_null())
    for col in ("crude_effect_pct", "crude_ci_low_pct", "crude_ci_high_pct", "crude_p"):
        assert tested[col].null_count() == 0, col
    assert (tested["collinearity_vif"] >= 1.0 - 1e-9).all()
    # Per person (20 draws each) the FDR is controlled within each person's family, so among
    # 12 people a stray false finding can happen; a pattern of them cannot.
    person = res.filter((pl.col("scope") == "person") & (pl.col("status") == "significant"))
    planted = pl.col("feature").is_in(["fermented_servings", "ultra_processed_servings"])
    assert person.filter(planted).height >= 8
    assert person.filter(~planted).height <= 2


def test_energy_adjusted_estimate_says_so_in_words() -> None:
    draws, windows = simulate_shared_items(8, n_persons=4)
    rng = np.random.default_rng(0)
    sugars = windows.filter(pl.col("feature") == "sugars_g")
    energy = sugars.with_columns(
        pl.lit("energy_kcal").alias("feature"),
        (2000 + 4 * pl.col("value") + pl.Series(rng.normal(0, 150, sugars.height))).alias("value"),
    )
    res = compute_associations(draws, pl.concat([windows, energy]), None, SETTINGS)
    row = cohort_row(res, "fermented_servings")
    assert "energy (kcal)" in row["adjusted_for"]
    assert "at the same energy intake" in row["note"]


def test_duplicate_features_collapse_to_one() -> None:
    draws, windows = simulate_cohort(3)
    dup = pl.concat(
        [
            windows,
            windows.filter(pl.col("feature") == "C").with_columns(
                pl.lit("alcohol_servings").alias("feature")
            ),
            windows.filter(pl.col("feature") == "C").with_columns(
                pl.lit("alcohol_g").alias("feature"), pl.col("value") * 14.0
            ),
        ]
    )
    res = compute_associations(draws, dup, None, SETTINGS)
    assert "alcohol_servings" in set(res["feature"])
    assert "alcohol_g" not in set(res["feature"])
    # Without its twin, alcohol_g is tested under its own name.
    alone = compute_associations(
        draws, dup.filter(pl.col("feature") != "alcohol_servings"), None, SETTINGS
    )
    assert "alcohol_g" in set(alone["feature"])


def test_a_food_is_one_test_and_its_other_windows_describe_the_lag() -> None:
    draws, windows = simulate_shared_items(9, windows=(7, 28, 56))
    res = compute_associations(draws, windows, None, BH)
    cohort = res.filter(pl.col("scope") == "cohort")
    assert set(cohort["primary_window_days"]) == {28}
    primary = cohort.filter(pl.col("window_role") == "primary")
    assert set(primary["window_days"]) == {28}
    # BH counts one test per food: the primary q-values are BH over the primary p-values only.
    tested = primary.filter(pl.col("p").is_not_null()).sort("feature")
    np.testing.assert_allclose(tested["q"].to_numpy(), bh_qvalues(tested["p"].to_numpy()))
    # A lag-shape window is never more significant than its food, and never significant alone.
    lag = cohort.filter(pl.col("window_role") == "lag_shape").join(
        primary.select("feature", pl.col("q").alias("q_food"), pl.col("status").alias("s_food")),
        on="feature",
    )
    assert lag.height == 2 * primary.height
    assert (lag["q"] >= lag["q_food"] - 1e-12).all()
    assert lag.filter((pl.col("status") == "significant") & (pl.col("s_food") != "significant"))[
        "feature"
    ].is_empty()


def test_gatekeeping_by_hand() -> None:
    # One family, two foods. Food "a" passes at its primary window; food "b" does not, so its
    # other window stays not significant however small its own p.
    rows = [
        {"family": "f", "feature": "a", "window_role": "primary", "p": 0.001},
        {"family": "f", "feature": "a", "window_role": "lag_shape", "p": 0.02},
        {"family": "f", "feature": "a", "window_role": "lag_shape", "p": 0.04},
        {"family": "f", "feature": "b", "window_role": "primary", "p": 0.30},
        {"family": "f", "feature": "b", "window_role": "lag_shape", "p": 0.0001},
    ]
    res = add_fdr_and_status(
        results_frame([r | {"sd_feature": 1.0} for r in rows]).with_columns(
            pl.Series("window_role", [r["window_role"] for r in rows])
        ),
        SETTINGS,
    )
    q = res["q"].to_list()
    assert q[0] == pytest.approx(0.002)  # Holm over 2 foods (BH gives the same here)
    assert q[1] == pytest.approx(0.04)  # Holm over a's 2 other windows: 2 * 0.02
    assert q[2] == pytest.approx(0.04)  # max(1 * 0.04, 0.04)
    assert q[3] == pytest.approx(0.30)
    assert q[4] == pytest.approx(0.30)  # gated by b's primary q
    assert res["status"].to_list()[:5] == [
        "significant",
        "significant",
        "significant",
        "not_significant",
        "not_significant",
    ]


def test_person_estimates_are_pooled_toward_the_cohort() -> None:
    draws, windows = simulate_cohort(21, n_persons=8, n_draws=12)
    res = compute_associations(draws, windows, None, SETTINGS)
    a = res.filter(pl.col("feature") == "A")
    cohort = a.filter(pl.col("scope") == "cohort").row(0, named=True)
    person = a.filter(pl.col("scope") == "person")
    b, s = person["beta"].to_numpy(), person["se"].to_numpy()
    # DerSimonian-Laird by hand.
    w = 1 / s**2
    mean = (w * b).sum() / w.sum()
    q_stat = (w * (b - mean) ** 2).sum()
    tau2 = max(0.0, (q_stat - (b.size - 1)) / (w.sum() - (w**2).sum() / w.sum()))
    shrink = tau2 / (tau2 + s**2)
    expected = cohort["beta"] + shrink * (b - cohort["beta"])
    np.testing.assert_allclose(
        person["pooled_effect_pct"].to_numpy(), 100 * np.expm1(expected), rtol=1e-9
    )
    # Each pooled estimate lies between the person's own and the cohort's, and its CI is
    # narrower than the person's own.
    lo = np.minimum(person["effect_pct"].to_numpy(), cohort["effect_pct"])
    hi = np.maximum(person["effect_pct"].to_numpy(), cohort["effect_pct"])
    pooled = person["pooled_effect_pct"].to_numpy()
    assert np.all((pooled >= lo - 1e-9) & (pooled <= hi + 1e-9))
    width = person["ci_high_pct"] - person["ci_low_pct"]
    pooled_width = person["pooled_ci_high_pct"] - person["pooled_ci_low_pct"]
    assert (pooled_width < width).all()


def _three_designs() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, list[str]]:
    """Draws, windows and persons of six people: crp with repeated draws (within-person), il6
    with one draw each (between-person) and tnf, which only p4 measured repeatedly."""
    draws, windows = simulate_cohort(3, n_persons=6, n_draws=12)
    rng = np.random.default_rng(4)
    ids = [f"p{p}" for p in range(6)]
    extra_draws, extra_windows = [], []
    for marker, repeats in (("il6", {}), ("tnf", {"p4": 3})):
        for p in ids:
            for k in range(repeats.get(p, 1)):
                at = T0 + timedelta(days=int(rng.integers(0, 200)) + 300 * k)
                extra_draws.append(
                    {
                        "person_id": p,
                        "marker": marker,
                        "collected_at": at,
                        "log_value": rng.normal(),
                    }
                )
                extra_windows += [
                    {
                        "person_id": p,
                        "marker": marker,
                        "collected_at": at,
                        "window_days": w,
                        "feature": f,
                        "value": rng.normal(3.0, 1.0),
                        "days_logged": w,
                        "days_in_window": w,
                        "complete": True,
                    }
                    for f in ["A", "B", "C"]
                    for w in (7, 28)
                ]
    draws = pl.concat(
        [
            draws,
            pl.DataFrame(extra_draws).with_columns(
                pl.lit(None, dtype=pl.String).alias("excluded_reason")
            ),
        ],
        how="diagonal_relaxed",
    )
    windows = pl.concat([windows, pl.DataFrame(extra_windows)], how="diagonal_relaxed")
    persons = pl.DataFrame({"person_id": ids, "age": [30.0 + 7 * i for i in range(6)]})
    return draws, windows, persons, ids


def test_windows_read_a_group_of_people_at_a_time_give_the_same_table() -> None:
    """`PeopleGroups` (the step's way: a group of people's windows at a time, issue 19) gives the
    same associations, bit for bit and in the same row order, as one frame of everyone, for
    repeated draws (within-person), one draw each (between-person) and a marker only one person
    measured repeatedly (within-person, though most groups see one draw a person)."""
    draws, windows, persons, ids = _three_designs()
    whole = compute_associations(draws, windows, persons, SETTINGS)
    assert set(whole.filter(pl.col("scope") == "cohort")["method"]) == {
        "fe_within_robust",
        "ols_between",
    }

    groups = [ids[:1], ids[1:4], ids[4:]]
    grouped = compute_associations(
        draws,
        PeopleGroups(
            count=len(groups),
            # In any row order: the model frame must not depend on it.
            read=lambda i: windows.filter(pl.col("person_id").is_in(groups[i])).sample(
                fraction=1.0, shuffle=True, seed=i
            ),
            present=windows["feature"].unique().to_list(),
        ),
        persons,
        SETTINGS,
    )
    assert_frame_equal(grouped, whole, check_exact=True)


def test_the_models_read_the_wide_table_a_marker_and_window_at_a_time() -> None:
    """The wide table is kept by (marker, window) and group of windows (`WideParts`), each piece
    read back once, and the person rows kept a group of people and a (marker, window) at a time
    (issue 19: what the step holds does not grow with the cohort's draws); the rows are those
    of one fit of everyone, bit for bit."""
    draws, windows, persons, ids = _three_designs()
    loads: list[int] = []
    kept: list[pl.DataFrame] = []

    def stash(frame: pl.DataFrame) -> Callable[[], pl.DataFrame]:
        number = len(kept)
        kept.append(frame)

        def load() -> pl.DataFrame:
            loads.append(number)
            return kept[number]

        return load

    groups = [ids[:1], ids[1:4], ids[4:]]
    grouped = PeopleGroups(
        count=len(groups),
        read=lambda i: windows.filter(pl.col("person_id").is_in(groups[i])),
        present=windows["feature"].unique().to_list(),
    )
    parts = list(
        association_parts(draws, grouped, persons, SETTINGS, people_per_group=2, stash=stash)
    )
    # Each piece of each kind read back once.
    assert sorted(loads) == list(range(len(kept)))
    pieces = [f for f in kept if "_pid" in f.columns]
    fitted = [f for f in kept if "scope" in f.columns]
    assert len(pieces) + len(fitted) == len(kept)
    for piece in pieces:
        assert piece.select("marker", "window_days").n_unique() == 1
        # People of one group of windows.
        assert any(set(piece["person_id"]) <= set(g) for g in groups)
    for rows in fitted:
        assert rows.select("marker", "window_days").n_unique() == 1
        assert rows["person_id"].n_unique() <= 2
    # One part per group of two people, then the cohort's.
    assert [p["person_id"].drop_nulls().n_unique() for p in parts[:-1]] == [2, 2, 2]
    key = ["scope", "person_id", "marker", "feature", "window_days", "method"]
    assert_frame_equal(
        pl.concat(parts).sort(key, nulls_last=True),
        compute_associations(draws, windows, persons, SETTINGS).sort(key, nulls_last=True),
        check_exact=True,
    )
