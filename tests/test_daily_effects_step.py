"""The `daily_effects` table: daily outcomes against the diary, written by the pipeline.

A small project (two people's Cronometer diaries and a symptom log with a planted lag-1 effect of
yoghurt on bloating, plus Cronometer weights that are no daily outcome) goes through the real
refresh_all job into a DuckDB file. The table equals `daily_outcome_effects` run directly on the
same inputs; a night with nothing new keeps it and says so; a new day for one person refits that
person only, and the table is then still the analysis of the inputs, as a first run's is.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.analysis.daily_outcomes import DailySettings, daily_outcome_effects
from pipelines.config import ConfigError, DailyOutcomeSettings, Settings
from pipelines.project import Project, load_project_config
from pipelines.schema import DAILY_EFFECTS_SCHEMA
from pipelines.steps.daily import OUTCOMES_SQL, daily_settings, update_daily_effects
from pipelines.store import attach as attach_store
from tests.conftest import refresh_all

FIRST_DAY = date(2026, 1, 5)
DAYS = 70
FOODS = ["dairy_servings", "gluten_grains_servings"]
SOURCES_YAML = f"""\
settings:
  daily_outcomes: {{foods: {FOODS}, min_days: 30, min_df: 10}}
sources:
  - name: diary
    kind: diet
    format: cronometer_servings
    path: diary/*/servings.csv
    person: {{from_folder: true}}
  - name: weights
    kind: diet
    format: cronometer_biometrics
    path: diary/*/biometrics.csv
    person: {{from_folder: true}}
  - name: symptoms
    kind: outcomes
    format: csv
    path: symptoms/*/*.csv
    person: {{from_folder: true}}
    options: {{scale: "0-10"}}
"""
REPORT = {"daily_effects": "refit", "diet_daily": "people_recomputed"}


def day(i: int) -> str:
    return (FIRST_DAY + timedelta(days=i)).isoformat()


def diary_line(i: int, yoghurt: int, bread: int) -> list[list[object]]:
    """A logged day: yoghurt and bread in servings-sized grams, and enough else to count."""
    rows: list[list[object]] = [
        [day(i), "08:00", "Breakfast", "Oats, rolled", "80 g", 300],
        [day(i), "13:00", "Lunch", "Lentil soup", "400 g", 400],
        [day(i), "19:00", "Dinner", "Olive Oil", "20 g", 180],
    ]
    if yoghurt:
        rows.append([day(i), "10:00", "Snacks", "Yogurt, Greek, Plain, Whole Milk", "170 g", 165])
    rows += [[day(i), "19:00", "Dinner", "White Bread", "60 g", 160]] * bread
    return rows


def write_person(raw: Path, person: str, seed: int, days: int = DAYS) -> None:
    """`days` days of diary and bloating (0-10) with bloating up 2 points the day after yoghurt.
    The first `days` of a longer history are the same days."""
    rng = np.random.default_rng(seed)
    yoghurt = rng.integers(0, 2, DAYS + 1)
    bread = rng.integers(0, 3, DAYS + 1)
    noise = rng.normal(0, 0.7, DAYS + 1)
    diary, symptoms = io.StringIO(), io.StringIO()
    writer = csv.writer(diary, lineterminator="\n")
    writer.writerow(["Day", "Time", "Group", "Food Name", "Amount", "Energy (kcal)"])
    for i in range(days):
        writer.writerows(diary_line(i, int(yoghurt[i]), int(bread[i])))
    symptoms.write("Date,Measure,Value\n")
    for i in range(1, days):
        bloating = np.clip(3 + 2 * yoghurt[i - 1] + noise[i], 0, 10)
        symptoms.write(f"{day(i)},Bloating,{bloating:.1f}\n")
    for folder, name, text in (
        ("diary", "servings.csv", diary.getvalue()),
        ("symptoms", "bloating.csv", symptoms.getvalue()),
        # Weight is a biometric, not a daily outcome: it has no scale and stays out.
        ("diary", "biometrics.csv", f"Day,Metric,Unit,Amount\n{day(3)},Weight,kg,70\n"),
    ):
        (raw / folder / person).mkdir(parents=True, exist_ok=True)
        (raw / folder / person / name).write_text(text, encoding="utf-8")


def make_project(root: Path) -> Project:
    project = Project(root)
    project.ensure_dirs()
    project.sources_yaml.write_text(SOURCES_YAML, encoding="utf-8")
    write_person(project.raw_dir, "alice", seed=1)
    write_person(project.raw_dir, "bob", seed=2)
    return project


def direct(project: Project) -> pl.DataFrame:
    """`daily_outcome_effects` on the warehouse's daily outcomes and whole diet_daily."""
    settings = daily_settings(project.config().settings)
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        outcomes = conn.execute(f"{OUTCOMES_SQL} ORDER BY ALL").pl()
        diet = conn.execute("SELECT * FROM diet_daily ORDER BY ALL").pl()
    return daily_outcome_effects(outcomes, diet, settings)


def table(project: Project) -> pl.DataFrame:
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        return conn.execute("SELECT * FROM daily_effects").pl()


def readings(project: Project, person: str) -> list[tuple[str, float]]:
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        rows = conn.execute(
            f"SELECT day, value FROM ({OUTCOMES_SQL}) WHERE person_id = ? ORDER BY day", [person]
        ).fetchall()
    return [(d.isoformat(), v) for d, v in rows]


def by_key(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort(df.columns, nulls_last=True)


def test_the_table_is_the_analysis_of_the_warehouses_outcomes_and_refits_only_what_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "nightly")
    assert refresh_all(project.root, monkeypatch, REPORT) == {
        "daily_effects": True,
        "diet_daily": "all",
    }
    got = table(project)
    assert got.schema == pl.Schema(DAILY_EFFECTS_SCHEMA)
    assert_frame_equal(by_key(got), by_key(direct(project)))
    # Only bloating is a daily outcome (the weights have no scale); both people are fitted and
    # the planted effect is found at its lag, in each person's own family.
    assert got.select("person_id", "measure", "scale").unique().sort("person_id").rows() == [
        ("alice", "bloating", "0-10"),
        ("bob", "bloating", "0-10"),
    ]
    found = got.filter(pl.col("status") == "significant", pl.col("window_role") == "primary")
    assert found.select("person_id", "feature").sort("person_id").rows() == [
        ("alice", "dairy_servings"),
        ("bob", "dairy_servings"),
    ]
    lag1 = got.filter(pl.col("feature") == "dairy_servings", pl.col("lag") == "1")
    assert (lag1["ci_low"] > 0).all()

    # Nothing new: the table is kept, and the metadata says so.
    before = table(project)
    assert refresh_all(project.root, monkeypatch, REPORT) == {
        "daily_effects": False,
        "diet_daily": 0,
    }
    assert_frame_equal(table(project), before)

    # A new day (diary and bloating) for alice: alice alone is refitted.
    old_readings = readings(project, "alice")
    write_person(project.raw_dir, "alice", seed=1, days=DAYS + 1)
    for path in (project.raw_dir / folder / "alice" for folder in ("diary", "symptoms")):
        for file in path.iterdir():
            os.utime(file, (file.stat().st_atime, file.stat().st_mtime + 60))
    metadata = refresh_all(project.root, monkeypatch, {**REPORT, "daily_effects": "people_refit"})
    assert metadata == {"daily_effects": 1, "diet_daily": 1}
    # ... one new reading, the others as they were:
    assert readings(project, "alice")[:-1] == old_readings
    assert readings(project, "alice")[-1][0] == day(DAYS)
    after = table(project)
    assert (
        after.filter(pl.col("person_id") == "alice")["n_days"].min()
        > before.filter(pl.col("person_id") == "alice")["n_days"].min()
    )
    assert_frame_equal(
        by_key(after.filter(pl.col("person_id") == "bob")),
        by_key(before.filter(pl.col("person_id") == "bob")),
    )

    # ... and the table is still the analysis of the warehouse's inputs (as a first run's is).
    assert_frame_equal(by_key(after), by_key(direct(project)))


def test_a_diary_day_after_the_last_reading_refits_nobody(tmp_path: Path) -> None:
    """The diet rows the fit reads end at a person's last reading: a later diary day changes no
    input, so the step keeps its table; a new reading refits that person."""
    conn = duckdb.connect()
    attach_store(conn, tmp_path / "store", read_only=False)
    conn.execute(
        "CREATE TABLE diet_daily AS SELECT p AS person_id, DATE '2026-01-01' + i::INTEGER AS day, "
        "true AS logged, (i % 3)::DOUBLE AS dairy_servings, (i % 2)::DOUBLE AS alcohol_servings "
        "FROM range(40) t(i), (VALUES ('a'), ('b')) v(p)"
    )
    conn.execute(
        "CREATE TABLE biometrics AS SELECT p AS person_id, DATE '2026-01-12' + i::INTEGER AS day, "
        "'bloating' AS metric, (i % 5)::DOUBLE AS value, NULL::VARCHAR AS unit, "
        "'0-10' AS scale FROM range(20) t(i), (VALUES ('a'), ('b')) v(p) "
        "UNION ALL SELECT 'a', DATE '2026-01-12', 'weight', 70, 'kg', NULL"
    )
    settings = Settings(daily_outcomes=DailyOutcomeSettings(min_days=5, min_df=1))
    assert update_daily_effects(conn, settings).everyone
    kept = conn.execute("SELECT * FROM daily_effects ORDER BY ALL").pl()
    assert set(kept["measure"]) == {"bloating"} and set(kept["person_id"]) == {"a", "b"}

    conn.execute("INSERT INTO diet_daily VALUES ('a', DATE '2026-02-10', true, 1, 0)")
    plan = update_daily_effects(conn, settings)
    assert (plan.everyone, plan.touched) == (False, [])
    assert_frame_equal(conn.execute("SELECT * FROM daily_effects ORDER BY ALL").pl(), kept)

    conn.execute(
        "INSERT INTO biometrics VALUES ('b', DATE '2026-02-01', 'bloating', 3, NULL, '0-10')"
    )
    assert update_daily_effects(conn, settings).touched == ["b"]
    # A changed setting refits everyone.
    other = Settings(daily_outcomes=DailyOutcomeSettings(min_days=5, min_df=1, lags=(0, 1)))
    assert update_daily_effects(conn, other).everyone


def test_a_project_without_outcomes_keeps_its_empty_table_night_after_night(
    tmp_path: Path,
) -> None:
    conn = duckdb.connect()
    attach_store(conn, tmp_path / "store", read_only=False)
    conn.execute(
        "CREATE TABLE diet_daily AS SELECT 'a' AS person_id, DATE '2026-01-01' AS day, "
        "true AS logged, 1::DOUBLE AS dairy_servings"
    )
    conn.execute(
        "CREATE TABLE biometrics AS SELECT 'a' AS person_id, DATE '2026-01-01' AS day, "
        "'weight' AS metric, 70::DOUBLE AS value, 'kg' AS unit, NULL::VARCHAR AS scale"
    )
    assert update_daily_effects(conn, Settings()).everyone
    quiet = update_daily_effects(conn, Settings())
    assert (quiet.everyone, quiet.touched) == (False, [])
    assert conn.execute("SELECT count(*) FROM daily_effects").fetchone() == (0,)


def test_daily_settings_defaults_are_the_analysis_defaults() -> None:
    assert daily_settings(Settings()) == DailySettings()


def test_foods_missing_from_diet_daily_name_the_key() -> None:
    conn = duckdb.connect()
    conn.execute("CREATE TABLE diet_daily (person_id VARCHAR, day DATE, logged BOOLEAN)")
    conn.execute(
        "CREATE TABLE biometrics (person_id VARCHAR, day DATE, metric VARCHAR, value DOUBLE, "
        "unit VARCHAR, scale VARCHAR)"
    )
    settings = Settings(daily_outcomes=DailyOutcomeSettings(foods=("kale_servings",)))
    with pytest.raises(ValueError, match=r"'settings.daily_outcomes.foods': \['kale_servings'\]"):
        update_daily_effects(conn, settings)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("{lags: [0, 2, 1]}", "'settings.daily_outcomes.lags': [0, 2, 1] is not increasing"),
        ("{lags: [0, -1]}", "'settings.daily_outcomes.lags', item 2: -1 must be at least 0"),
        ("{lags: []}", "'settings.daily_outcomes.lags': [] is empty"),
        ("{lags: 3}", "'settings.daily_outcomes.lags': 3 is not a list"),
        ("{foods: []}", "'settings.daily_outcomes.foods': [] names no food"),
        ("{window_days: 0}", "'settings.daily_outcomes.window_days': 0 must be greater than 0"),
        ("{min_logged_fraction: 1.5}", "'settings.daily_outcomes.min_logged_fraction': 1.5 must"),
        ("{min_days: 8.5}", "'settings.daily_outcomes.min_days': 8.5 is not a whole number"),
        ("{min_df: 0}", "'settings.daily_outcomes.min_df': 0 must be greater than 0"),
        ("{multiple_testing: bonferroni}", "'settings.daily_outcomes.multiple_testing': 'bonf"),
        ("{fdr: 1}", "'settings.daily_outcomes.fdr': 1 must be less than 1"),
        ("{hac_lag_rule: andrews}", "'settings.daily_outcomes.hac_lag_rule': 'andrews' is not"),
        ("{lag: [0]}", "'settings.daily_outcomes': unknown key(s) ['lag']"),
        ("[0, 1]", "'settings.daily_outcomes': [0, 1] is not a mapping"),
    ],
)
def test_bad_daily_outcome_settings_name_the_key(tmp_path: Path, block: str, expected: str) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(f"settings:\n  daily_outcomes: {block}\nsources: []\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_project_config(path)
    assert f"{path}, key {expected}" in str(err.value)


def test_daily_outcome_settings_load(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "settings:\n  daily_outcomes: {foods: [dairy_servings], lags: [0, 1], min_days: 28,"
        " multiple_testing: holm, hac_lag_rule: newey_west}\nsources: []\n",
        encoding="utf-8",
    )
    loaded = daily_settings(load_project_config(path).settings)
    assert loaded == DailySettings(
        foods=("dairy_servings",),
        lags=(0, 1),
        min_days=28,
        multiple_testing="holm",
        hac_lag_rule="newey_west",
    )
