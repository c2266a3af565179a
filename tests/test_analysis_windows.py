"""Exposure windows: the right days, logged days only, the draw day excluded, completeness."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from pipelines.analysis.windows import (
    EXPOSURE_WINDOWS_SCHEMA,
    build_exposure_windows,
    feature_columns,
    min_days_logged,
)
from pipelines.config import Settings
from pipelines.schema import CATEGORIES

D0 = date(2024, 1, 1)


def draw(person: str, day: date, marker: str = "crp", reason: str | None = None) -> dict:
    return {
        "person_id": person,
        "marker": marker,
        "collected_at": datetime.combine(day, datetime.min.time()) + timedelta(hours=8),
        "day": day,
        "excluded_reason": reason,
    }


def draws_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "person_id": pl.String,
            "marker": pl.String,
            "collected_at": pl.Datetime("us"),
            "day": pl.Date,
            "excluded_reason": pl.String,
        },
    )


def hand_diet() -> pl.DataFrame:
    """Person a, 1-11 January: fiber = day of month; 5 Jan not logged; 8 Jan absent; sodium
    missing on 9 Jan; the draw day (11 Jan) has a huge value that must never be counted."""
    rows = []
    for dom in range(1, 12):
        if dom == 8:
            continue
        rows.append(
            {
                "person_id": "a",
                "day": date(2024, 1, dom),
                "logged": dom != 5,
                "fiber_g": 1000.0 if dom == 11 else float(dom),
                "sodium_mg": None if dom == 9 else 100.0 * dom,
            }
        )
    return pl.DataFrame(rows)


def window(out: pl.DataFrame, w: int, feature: str, person: str = "a", marker: str = "crp") -> dict:
    return out.filter(
        (pl.col("person_id") == person)
        & (pl.col("marker") == marker)
        & (pl.col("window_days") == w)
        & (pl.col("feature") == feature)
    ).row(0, named=True)


def test_hand_computed_windows() -> None:
    settings = Settings(windows=(3, 5, 7))
    draws = draws_frame(
        [
            draw("a", date(2024, 1, 11)),
            draw("a", date(2024, 1, 11), marker="esr"),
            draw("a", date(2024, 1, 10), reason="acute"),
            draw("a", date(2024, 1, 9), reason="merged_into_visit"),
        ]
    )
    out = build_exposure_windows(hand_diet(), draws, settings, features=["fiber_g", "sodium_mg"])
    for col, dtype in EXPOSURE_WINDOWS_SCHEMA.items():
        assert out.schema[col] == dtype
    # Only the chronic draws (two markers on 11 Jan) x 3 windows x 2 features.
    assert out.height == 2 * 3 * 2
    assert out["collected_at"].unique().to_list() == [datetime(2024, 1, 11, 8)]

    # 3 days (8-10 Jan): 8 Jan absent -> 9 and 10 logged.
    w3 = window(out, 3, "fiber_g")
    assert w3["value"] == pytest.approx(9.5)
    assert (w3["days_logged"], w3["days_in_window"], w3["complete"]) == (2, 3, False)
    # 5 days (6-10 Jan): 6, 7, 9, 10 logged = 4 >= 0.8 * 5.
    w5 = window(out, 5, "fiber_g")
    assert w5["value"] == pytest.approx((6 + 7 + 9 + 10) / 4)
    assert (w5["days_logged"], w5["complete"]) == (4, True)
    # 7 days (4-10 Jan): 5 Jan not logged, 8 Jan absent -> 4, 6, 7, 9, 10 = 5 < 5.6.
    w7 = window(out, 7, "fiber_g")
    assert w7["value"] == pytest.approx((4 + 6 + 7 + 9 + 10) / 5)
    assert (w7["days_logged"], w7["complete"]) == (5, False)
    # A nutrient missing on a logged day counts neither in the mean nor in days_logged.
    s5 = window(out, 5, "sodium_mg")
    assert s5["value"] == pytest.approx(100.0 * (6 + 7 + 10) / 3)
    assert (s5["days_logged"], s5["complete"]) == (3, False)
    # Same numbers for the other marker drawn that day.
    assert window(out, 5, "fiber_g", marker="esr")["value"] == pytest.approx(8.0)


def test_person_without_diet_gets_empty_windows() -> None:
    out = build_exposure_windows(
        hand_diet(),
        draws_frame([draw("b", date(2024, 1, 11))]),
        Settings(windows=(7,)),
        features=["fiber_g"],
    )
    row = out.row(0, named=True)
    assert row["value"] is None and row["days_logged"] == 0 and row["complete"] is False


def test_completeness_threshold() -> None:
    assert [min_days_logged(w, 0.8) for w in (3, 5, 7, 14, 28, 56)] == [3, 4, 6, 12, 23, 45]
    assert min_days_logged(10, 1.0) == 10


def test_feature_columns_defaults() -> None:
    diet = pl.DataFrame(
        {
            "person_id": ["a"],
            "day": [D0],
            "logged": [True],
            "dii": pl.Series([None], dtype=pl.Float64),
            "fiber_g": [10.0],
            "sodium_mg": pl.Series([None], dtype=pl.Float64),
            **{f"{c}_servings": [0.0] for c in CATEGORIES},
            "ultra_processed_energy_pct": [20.0],
        }
    )
    feats = feature_columns(diet)
    assert "dii" not in feats and "sodium_mg" not in feats
    assert feats[0] == "fiber_g"
    assert all(f"{c}_servings" in feats for c in CATEGORIES)
    assert feats[-1] == "ultra_processed_energy_pct"
    with pytest.raises(ValueError, match="no column"):
        build_exposure_windows(
            diet, draws_frame([draw("a", D0)]), Settings(), features=["omega3_g"]
        )


def test_matches_a_brute_force_loop_on_random_data() -> None:
    rng = np.random.default_rng(11)
    rows = []
    for p in ("a", "b", "c"):
        for k in range(120):
            if rng.random() < 0.1:
                continue  # absent day
            rows.append(
                {
                    "person_id": p,
                    "day": D0 + timedelta(days=k),
                    "logged": bool(rng.random() < 0.85),
                    "x": float(rng.normal(5, 2)) if rng.random() < 0.95 else None,
                }
            )
    diet = pl.DataFrame(rows)
    draws = draws_frame(
        [
            draw(p, D0 + timedelta(days=int(k)))
            for p in ("a", "b", "c")
            for k in rng.integers(0, 130, 8)
        ]
    ).unique()
    settings = Settings(windows=(3, 7, 14, 28))
    out = build_exposure_windows(diet, draws, settings, features=["x"])
    logged = {
        (r["person_id"], r["day"]): r["x"] for r in rows if r["logged"] and r["x"] is not None
    }
    assert out.height == draws.height * 4
    for r in out.iter_rows(named=True):
        day = r["collected_at"].date()
        vals = [
            logged[(r["person_id"], day - timedelta(days=j))]
            for j in range(1, r["window_days"] + 1)
            if (r["person_id"], day - timedelta(days=j)) in logged
        ]
        assert r["days_logged"] == len(vals)
        assert r["complete"] == (len(vals) >= 0.8 * r["window_days"] - 1e-9)
        if vals:
            assert r["value"] == pytest.approx(float(np.mean(vals)))
        else:
            assert r["value"] is None


def test_no_chronic_draws_gives_empty_frame() -> None:
    out = build_exposure_windows(
        hand_diet(), draws_frame([draw("a", D0, reason="acute")]), Settings(), features=["fiber_g"]
    )
    assert out.height == 0 and out.columns == list(EXPOSURE_WINDOWS_SCHEMA)
