"""The demo's daily outcomes end to end: its Bearable and Oura exports through the real pipeline
into the warehouse, then the daily-outcome model, which must find the two planted food effects
(docs/DEMO.md "Daily outcomes") and nothing else for those measures.
"""

from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

from pipelines.adapters.oura_trends import COLUMNS as OURA_COLUMNS
from pipelines.analysis.daily_outcomes import DEFAULT_FOODS, DailySettings
from pipelines.demo import DEMO_PEOPLE, DEMO_TRUTH
from tests.conftest import DemoRun

OUTCOME_SOURCES = ("demo_bearable", "demo_oura")
EFFECTS = DEMO_TRUTH["daily_effects"]
# Carol drinks on one evening in ten: too few for the one-per-food test of alcohol to be sure.
ALCOHOL_DETECTABLE = ("alice", "bob")


@pytest.fixture(scope="module")
def daily_effects(demo_run: DemoRun) -> pl.DataFrame:
    # What the pipeline wrote: the `daily_effects` table of the demo's run.
    return demo_run.project.warehouse().table("daily_effects")


def raw_files(demo_run: DemoRun, source: str) -> list[Path]:
    folder = {"demo_bearable": "bearable", "demo_oura": "oura"}[source]
    return sorted((demo_run.project.raw_dir / "demo" / folder).glob("*/*.csv"))


def expected_rows_read(path: Path, source: str) -> int:
    """What the adapter must count as read: every Bearable entry, every non-blank Oura reading."""
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if source == "demo_bearable":
        return len(rows)
    read = [h for h in rows[0] if any(h.startswith(c.header) for c in OURA_COLUMNS)]
    return sum(1 for row in rows for h in read if row[h] != "")


def test_every_outcome_line_is_accounted_for(demo_run: DemoRun) -> None:
    wh = demo_run.project.warehouse()
    files = wh.table("ingest_files").filter(pl.col("source").is_in(OUTCOME_SOURCES))
    biometrics = wh.table("biometrics")
    for source in OUTCOME_SOURCES:
        mine = files.filter(pl.col("source") == source).sort("path")
        paths = raw_files(demo_run, source)
        assert mine.height == len(paths) == len(DEMO_PEOPLE)
        assert (mine["status"] == "loaded").all()
        for row, path in zip(mine.iter_rows(named=True), paths, strict=True):
            assert row["rows_read"] == expected_rows_read(path, source) > 0
            assert row["rows_read"] == (
                row["rows_loaded"] + row["rows_rejected"] + row["rows_duplicate"]
            )
            # The demo's exports are clean: nothing to reject, no overlapping export.
            assert row["rows_rejected"] == row["rows_duplicate"] == 0
        loaded = biometrics.filter(pl.col("source") == source).height
        assert loaded == mine["rows_loaded"].sum()


def test_biometrics_hold_the_measures_on_their_scales(demo_run: DemoRun) -> None:
    bio = demo_run.project.warehouse().table("biometrics")
    kinds = {
        (r["source"], r["metric"], r["scale"], r["unit"])
        for r in bio.select("source", "metric", "scale", "unit").unique().iter_rows(named=True)
    }
    assert {k for k in kinds if k[0] == "demo_bearable"} == {
        ("demo_bearable", "bloating", "0-4", None),
        ("demo_bearable", "abdominal_pain", "0-4", None),
        ("demo_bearable", "mood", "1-10", None),
        ("demo_bearable", "bristol_stool", "bristol_1-7", None),
    }
    assert {k for k in kinds if k[0] == "demo_oura"} == {
        ("demo_oura", "resting_hr", "unit", "bpm"),
        ("demo_oura", "resting_hr_lowest", "unit", "bpm"),
        ("demo_oura", "hrv_rmssd", "unit", "ms"),
        ("demo_oura", "skin_temp_dev", "unit", "°C"),
        ("demo_oura", "respiratory_rate", "unit", "/min"),
        ("demo_oura", "sleep_duration", "unit", "h"),
        ("demo_oura", "steps", "unit", "steps"),
        ("demo_oura", "oura_sleep_score", "0-100", None),
        ("demo_oura", "oura_readiness_score", "0-100", None),
    }
    ranges = (
        bio.group_by("metric")
        .agg(pl.col("value").min().alias("lo"), pl.col("value").max().alias("hi"))
        .rows_by_key("metric", unique=True)
    )
    # A symptom is a whole number on its scale, and the demo uses the whole 0-4 range.
    assert ranges["bloating"] == (0, 4)
    assert bio.filter(pl.col("metric") == "bloating")["value"].is_in([0, 1, 2, 3, 4]).all()
    assert 1 <= ranges["bristol_stool"][0] and ranges["bristol_stool"][1] <= 7
    assert 1 <= ranges["mood"][0] and ranges["mood"][1] <= 10
    assert 40 < ranges["resting_hr"][0] and ranges["resting_hr"][1] < 90
    assert 5 < ranges["sleep_duration"][0] and ranges["sleep_duration"][1] < 10


def test_the_truth_exposures_are_the_pipelines_servings_on_logged_days(demo_run: DemoRun) -> None:
    """The effects are planted in the units the model reads: diet_daily's servings."""
    diet = demo_run.project.warehouse().table("diet_daily").filter(pl.col("logged"))
    start = pl.lit(DEMO_TRUTH["period"][0]).str.to_date()
    for pid in DEMO_PEOPLE:
        truth = DEMO_TRUTH["people"][pid]["outcomes"]["true_servings"]
        mine = diet.filter(pl.col("person_id") == pid).with_columns(
            (pl.col("day") - start).dt.total_days().alias("i")
        )
        for category in ("high_fodmap", "alcohol"):
            true = pl.Series([truth[category][i] for i in mine["i"]])
            got = mine[f"{category}_servings"]
            assert (got - true).abs().max() < 1e-3, (pid, category)


@pytest.mark.parametrize("measure", list(EFFECTS))
def test_the_planted_daily_effects_are_recovered(daily_effects: pl.DataFrame, measure: str) -> None:
    planted = EFFECTS[measure]
    people = ALCOHOL_DETECTABLE if planted["feature"] == "alcohol_servings" else DEMO_PEOPLE
    primary = daily_effects.filter(
        (pl.col("measure") == measure)
        & (pl.col("scale") == planted["scale"])
        & (pl.col("window_role") == "primary")
    )
    for pid in people:
        mine = primary.filter(pl.col("person_id") == pid)
        assert mine.height == len(DEFAULT_FOODS)
        assert (mine["n_days"] >= DailySettings().min_days).all()
        row = mine.filter(pl.col("feature") == planted["feature"]).row(0, named=True)
        assert row["status"] == "significant", (pid, row)
        assert row["estimate"] > 0
        assert row["ci_low"] <= planted["primary"] <= row["ci_high"], (pid, row)
        # Every other food is adjusted for the planted one and found to do nothing.
        others = mine.filter(pl.col("feature") != planted["feature"])
        assert (others["status"] == "not_significant").all(), (pid, others)
        # The lag shape points at the day after, where most of the effect was planted.
        lag1 = daily_effects.filter(
            (pl.col("person_id") == pid)
            & (pl.col("measure") == measure)
            & (pl.col("feature") == planted["feature"])
            & (pl.col("lag") == "1")
        ).row(0, named=True)
        assert lag1["status"] == "significant" and lag1["estimate"] > 0


def test_a_food_with_no_planted_effect_is_not_found(daily_effects: pl.DataFrame) -> None:
    """The planted foods do nothing to the other planted measure."""
    crossed = daily_effects.filter(
        (pl.col("window_role") == "primary")
        & (
            ((pl.col("measure") == "bloating") & (pl.col("feature") == "alcohol_servings"))
            | ((pl.col("measure") == "resting_hr") & (pl.col("feature") == "high_fodmap_servings"))
        )
    )
    assert crossed.height == 2 * len(DEMO_PEOPLE)
    assert (crossed["status"] == "not_significant").all()
