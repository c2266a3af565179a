"""The DII against the published validation vectors, hand-computed cases and unit traps."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
from scipy.stats import norm

from pipelines.transforms.dii import add_dii, dii_scores, dii_table

VALIDATION = (
    Path(__file__).resolve().parents[2] / "shared/datasets/dii-validation/DII_validation_raw.csv"
)


def _key(name: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    # the validation file's spellings of four parameters
    return {
        "fiber": "fibre",
        "n3fattyacid": "n3fattyacids",
        "n6fattyacid": "n6fattyacids",
        "flavonones": "flavonones" + "flavanones",
    }.get(key, key)


def test_reproduces_the_validation_vectors_to_1e9() -> None:
    vectors = pl.read_csv(VALIDATION)
    by_key = {_key(p): p for p in dii_table()["parameter"]}
    columns = {by_key[_key(c)]: c for c in vectors.columns[2:]}  # odd names, trailing spaces
    assert len(columns) == 45
    scores = dii_scores(vectors, columns)
    assert (scores["dii_params"] == 45).all()
    for got, expected in zip(scores["dii"], vectors["EXP_DII_ALL"], strict=True):
        assert got == pytest.approx(expected, abs=1e-9)


def test_hand_computed_two_parameters() -> None:
    intake = pl.DataFrame({"Fibre": [18.8 + 4.9], "Energy": [2056.0 - 338.0]})
    scores = dii_scores(intake, {"Fibre": "Fibre", "Energy": "Energy"})
    expected = (2 * norm.cdf(1.0) - 1) * -0.663 + (2 * norm.cdf(-1.0) - 1) * 0.180
    assert scores["dii"][0] == pytest.approx(expected, abs=1e-12)
    assert scores["dii_params"][0] == 2


def test_missing_intakes_are_not_counted_as_zero() -> None:
    intake = pl.DataFrame({"Fibre": [None, 18.8]}, schema={"Fibre": pl.Float64})
    scores = dii_scores(intake, {"Fibre": "Fibre"})
    assert scores["dii"][0] is None and scores["dii_params"][0] == 0
    assert scores["dii"][1] == pytest.approx(0.0)


def test_caffeine_mg_becomes_g_and_alcohol_split() -> None:
    daily = pl.DataFrame({"caffeine_mg": [8050.0], "alcohol_g": [13.98 + 3.72]})
    out = add_dii(daily)
    alcohol_part = (2 * norm.cdf(1.0) - 1) * -0.278
    # caffeine at exactly the global mean (8.05 g) contributes zero
    assert out["dii"][0] == pytest.approx(alcohol_part, abs=1e-12)
    assert out["dii_no_alcohol"][0] == pytest.approx(0.0, abs=1e-12)
    assert out["dii_params"][0] == 2


def test_window_dii_is_computed_on_the_mean_intake() -> None:
    from datetime import date, datetime, timedelta

    from pipelines.analysis.windows import build_exposure_windows
    from pipelines.config import Settings

    # Seven days before a draw on 8 January: fiber 18.8 + 4.9 g each day (one SD above the
    # global mean), energy at its global mean on six of them (missing on the 3rd), fruit.
    days = [date(2025, 1, d) for d in range(1, 8)]
    daily = pl.DataFrame(
        {
            "person_id": ["p"] * 7,
            "day": days,
            "logged": [True] * 7,
            "fiber_g": [18.8 + 4.9] * 7,
            "energy_kcal": [None if d.day == 3 else 2056.0 for d in days],
            "fruit_servings": [2.0] * 7,
        }
    )
    draws = pl.DataFrame(
        {
            "person_id": ["p"],
            "marker": ["crp"],
            "collected_at": [datetime(2025, 1, 8) + timedelta(hours=8)],
            "day": [date(2025, 1, 8)],
            "excluded_reason": [None],
        },
        schema_overrides={"excluded_reason": pl.String},
    )
    features = ["fiber_g", "energy_kcal", "fruit_servings"]
    settings = Settings(windows=(7,))
    plain = build_exposure_windows(daily, draws, settings, features)
    windows = build_exposure_windows(daily, draws, settings, features, window_dii=True)
    # The same rows, and one more a window, last.
    assert windows.head(plain.height).equals(plain) and windows.height == plain.height + 1
    out = windows.row(-1, named=True)
    assert out["feature"] == "dii_window" and out["window_days"] == 7
    assert out["value"] == pytest.approx((2 * norm.cdf(1.0) - 1) * -0.663, abs=1e-12)
    # The fewest days of a DII nutrient (energy's 6), complete as both nutrients' windows are.
    assert out["days_logged"] == 6 and out["days_in_window"] == 7 and out["complete"] is True
    # Without a DII nutrient among the features, no window DII.
    only_fruit = build_exposure_windows(daily, draws, settings, ["fruit_servings"], window_dii=True)
    assert set(only_fruit["feature"]) == {"fruit_servings"}


def test_runs_on_the_nhanes_intake_file_and_matches_its_confirmed_rows() -> None:
    path = VALIDATION.parents[1] / "nhanes" / "nhanes_2011_2018_dii_intake.csv"
    intake = pl.read_csv(path, infer_schema_length=None)
    by_key = {_key(p): p for p in dii_table()["parameter"]}
    columns = {
        by_key[_key(c)]: c
        for c in intake.columns[2:]
        if _key(c) in by_key and intake[c].null_count() < intake.height
    }
    scores = dii_scores(intake, columns)
    assert scores.height == 13580 and scores["dii"].null_count() == 0
    # SEQN 1-3 are the synthetic validation people (all 45 parameters); real people have 28.
    confirmed = intake["DII_Confirmed"].head(3).to_list()
    assert scores["dii"].head(3).to_list() == pytest.approx(confirmed, abs=1e-9)
    assert set(scores["dii_params"].tail(13577)) == {28}
    # Sanity range only: the average US diet scores mildly pro-inflammatory on 28 parameters.
    assert 0.0 < scores["dii"].tail(13577).mean() < 4.0  # type: ignore[operator]


def test_folic_acid_is_used_where_reported_and_total_folate_stands_in_otherwise() -> None:
    daily = pl.DataFrame(
        {"folic_acid_ug": [273.0 + 70.7, None], "folate_ug": [520.0, 273.0 - 70.7]},
        schema={"folic_acid_ug": pl.Float64, "folate_ug": pl.Float64},
    )
    out = add_dii(daily)
    one_sd = 2 * norm.cdf(1.0) - 1
    # One parameter per row, never both columns.
    assert out["dii_params"].to_list() == [1, 1]
    assert out["dii"].to_list() == pytest.approx([-0.190 * one_sd, 0.190 * one_sd], abs=1e-12)


def test_b_vitamins_and_beta_carotene_reach_the_dii() -> None:
    table = {r["parameter"]: r for r in dii_table().iter_rows(named=True)}
    columns = {
        "thiamin_mg": "Thiamin",
        "riboflavin_mg": "Riboflavin",
        "niacin_mg": "Niacin",
        "beta_carotene_ug": "beta-Carotene",
    }
    # Each at its global mean + 1 SD: each contributes (2 Phi(1) - 1) x its effect score.
    daily = pl.DataFrame(
        {c: [table[p]["global_mean"] + table[p]["global_sd"]] for c, p in columns.items()}
    )
    out = add_dii(daily)
    effects = sum(table[p]["effect_score"] for p in columns.values())
    assert out["dii_params"][0] == 4
    assert out["dii"][0] == pytest.approx((2 * norm.cdf(1.0) - 1) * effects, abs=1e-12)
