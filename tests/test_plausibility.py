"""Plausibility rules (pipelines/transforms/plausibility.py): each rule with a row that passes and
a row that is rejected, and the accounting through ingest_source."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest import ingest_source
from pipelines.schema import (
    BIOMETRIC_SCHEMA,
    DIET_ENTRY_SCHEMA,
    DIET_REPORTED_SCHEMA,
    LAB_RESULT_SCHEMA,
    PERSON_SCHEMA,
    REJECT_SCHEMA,
    TARGET_SCHEMAS,
    conform,
)
from pipelines.transforms.plausibility import apply_plausibility
from tests.test_nhanes_xpt import write_xpt

TODAY = date(2026, 3, 15)


def frame(target: str, rows: list[dict[str, Any]]) -> pl.DataFrame:
    rows = [{"line": i + 2, **r} for i, r in enumerate(rows)]
    return conform(pl.DataFrame(rows, infer_schema_length=None), TARGET_SCHEMAS[target])


def outcome(target: str, **row: Any) -> str | None:
    """The reason `row` is rejected for, or None when it is kept."""
    kept, rejects = apply_plausibility(target, frame(target, [row]), TODAY)
    assert kept.height + rejects.height == 1
    assert kept.schema == pl.Schema(TARGET_SCHEMAS[target])
    assert rejects.schema == pl.Schema(REJECT_SCHEMA)
    if kept.height:
        return None
    reject = rejects.row(0, named=True)
    assert reject["line"] == 2 and reject["column"] and reject["reason"]
    json.loads(reject["raw"])
    return str(reject["reason"])


def day(d: date) -> dict[str, Any]:
    return {"person_id": "alice", "day": d}


# ---- dates -------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["diet_entries", "diet_daily_reported", "biometrics"])
def test_diary_days_before_1950_or_after_tomorrow_are_rejected(target: str) -> None:
    assert outcome(target, **day(date(1950, 1, 1))) is None
    assert outcome(target, **day(TODAY + timedelta(days=1))) is None
    early = outcome(target, **day(date(1949, 12, 31)))
    assert early is not None and early.startswith("date before 1950")
    late = outcome(target, **day(TODAY + timedelta(days=2)))
    assert late is not None and late.startswith("date in the future")
    assert outcome(target, **day(date(1900, 1, 1))) is not None


def test_lab_collection_dates_before_1950_or_after_tomorrow_are_rejected() -> None:
    def lab(at: datetime | None) -> str | None:
        return outcome("lab_results", person_id="p", marker="crp", value=1.0, collected_at=at)

    assert lab(datetime(1950, 1, 1, 0, 0)) is None
    assert lab(datetime.combine(TODAY + timedelta(days=1), datetime.max.time())) is None
    assert lab(None) is None  # cross-sectional (NHANES): no date at all
    assert str(lab(datetime(1949, 12, 31, 23, 59))).startswith("date before 1950")
    assert str(lab(datetime.combine(TODAY + timedelta(days=2), datetime.min.time()))).startswith(
        "date in the future"
    )


# ---- diet --------------------------------------------------------------------------------------


def test_one_food_above_10000_kcal_or_10_kg_is_rejected() -> None:
    food = {**day(TODAY), "food": "Pizza"}
    assert outcome("diet_entries", **food, energy_kcal=10_000.0, grams=10_000.0) is None
    kcal = outcome("diet_entries", **food, energy_kcal=50_000.0)
    assert kcal is not None and "implausible energy" in kcal
    grams = outcome("diet_entries", **food, grams=100_000.0)
    assert grams is not None and "implausible amount" in grams


def test_a_day_total_above_10000_kcal_is_not_rejected_row_wise() -> None:
    # Flagging such days is diet_daily's job; the reported total itself is kept.
    assert outcome("diet_daily_reported", **day(TODAY), energy_kcal=12_000.0) is None


@pytest.mark.parametrize("target", ["diet_entries", "diet_daily_reported"])
def test_negative_nutrients_are_rejected(target: str) -> None:
    assert outcome(target, **day(TODAY), fiber_g=0.0, energy_kcal=0.0) is None
    reason = outcome(target, **day(TODAY), fiber_g=-1.0)
    assert reason is not None and "negative" in reason


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_rejected_in_every_table(bad: float) -> None:
    assert "not a finite number" in str(outcome("diet_entries", **day(TODAY), protein_g=bad))
    assert "not a finite number" in str(
        outcome("lab_results", person_id="p", marker="il6", value=bad)
    )
    assert "not a finite number" in str(outcome("persons", person_id="p", age=bad))


# ---- labs --------------------------------------------------------------------------------------


def test_negative_lab_values_are_rejected() -> None:
    assert outcome("lab_results", person_id="p", marker="crp", value=0.0) is None
    reason = outcome("lab_results", person_id="p", marker="crp", value=-0.5)
    assert reason is not None and reason.startswith("negative result")


def test_crp_above_1000_mg_l_is_rejected_other_markers_are_not() -> None:
    assert outcome("lab_results", person_id="p", marker="crp", value=1000.0) is None
    reason = outcome("lab_results", person_id="p", marker="crp", value=1500.0)
    assert reason is not None and reason.startswith("implausible CRP")
    # Ferritin in the thousands happens (hemochromatosis); only CRP has this ceiling.
    assert outcome("lab_results", person_id="p", marker="ferritin", value=5000.0) is None


# ---- persons and biometrics --------------------------------------------------------------------


def test_age_outside_0_to_120_is_rejected() -> None:
    for ok in (0.0, 34.5, 120.0):
        assert outcome("persons", person_id="p", age=ok) is None
    for bad in (-1.0, 121.0, 150.0):
        assert str(outcome("persons", person_id="p", age=bad)).startswith("implausible age")
    assert outcome("persons", person_id="p", sex="female") is None  # unknown age passes


def test_birth_year_outside_1880_to_this_year_is_rejected() -> None:
    assert outcome("persons", person_id="p", birth_year=1880) is None
    assert outcome("persons", person_id="p", birth_year=TODAY.year) is None
    assert outcome("persons", person_id="p", birth_year=1879) is not None
    assert outcome("persons", person_id="p", birth_year=TODAY.year + 1) is not None


def test_weight_outside_2_to_400_kg_is_rejected() -> None:
    def weight(value: float, unit: str = "kg", metric: str = "weight") -> str | None:
        return outcome("biometrics", **day(TODAY), metric=metric, value=value, unit=unit)

    assert weight(2.0) is None and weight(400.0) is None and weight(80.0) is None
    assert str(weight(1.5)).startswith("implausible weight")
    assert str(weight(964.0)).startswith("implausible weight")  # 2125 lbs: a typo
    assert weight(964.0, unit="kilos") is None  # not converted to kg: scale unknown, left alone
    assert weight(964.0, metric="body_fat", unit="%") is None


def test_every_row_fails_for_its_first_rule_only() -> None:
    rows = frame(
        "diet_entries",
        [
            {**day(date(1900, 1, 1)), "food": "x", "energy_kcal": 50_000.0},
            {**day(TODAY), "food": "fine", "energy_kcal": 100.0},
        ],
    )
    kept, rejects = apply_plausibility("diet_entries", rows, TODAY)
    assert kept["food"].to_list() == ["fine"]
    assert rejects.height == 1 and rejects["column"].to_list() == ["day"]
    assert json.loads(rejects["raw"][0])["energy_kcal"] == 50_000.0


@pytest.mark.parametrize(
    "schema",
    [DIET_ENTRY_SCHEMA, DIET_REPORTED_SCHEMA, LAB_RESULT_SCHEMA, PERSON_SCHEMA, BIOMETRIC_SCHEMA],
)
def test_empty_frames_pass_through(schema: dict) -> None:
    target = next(t for t, s in TARGET_SCHEMAS.items() if s is schema)
    kept, rejects = apply_plausibility(target, pl.DataFrame(schema=schema), TODAY)
    assert kept.height == 0 and rejects.schema == pl.Schema(REJECT_SCHEMA)


# ---- through ingest_source ---------------------------------------------------------------------

SERVINGS_HEADER = "Day,Time,Group,Food Name,Amount,Energy (kcal),Fiber (g),Category\n"


def write(path: Path, text: str, mtime: float = 1_700_000_000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.utime(path, (mtime, mtime))
    return path


def check_accounting(files: pl.DataFrame) -> None:
    balance = files["rows_loaded"] + files["rows_rejected"] + files["rows_duplicate"]
    assert (files["rows_read"] == balance).all()


def test_ingest_rejects_implausible_diet_rows_with_file_and_line(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    tomorrow, later = TODAY + timedelta(days=1), TODAY + timedelta(days=30)
    write(
        raw / "cm" / "alice" / "servings.csv",
        SERVINGS_HEADER
        + "2026-03-01,,Lunch,Lentils,200 g,230,16,Legumes\n"  # line 2: fine
        + "1900-01-01,,Lunch,Lentils,200 g,230,16,Legumes\n"  # line 3: spreadsheet day 0
        + f"{later},,Lunch,Lentils,200 g,230,16,Legumes\n"  # line 4: future
        + f"{tomorrow},,Breakfast,Oats,40 g,150,4,Grains\n"  # line 5: tomorrow is fine
        + "2026-03-02,,Dinner,Pizza,300 g,50000,3,Fast Food\n"  # line 6: 50,000 kcal
        + "2026-03-02,,Dinner,Rice,100 kg,130,0,Grains\n"  # line 7: a food of 100 kg
        + '2026-03-02,,Snack,"=HYPERLINK(""http://x"",""y"")",10 g,5,0,\n'  # line 8: kept as text
        + "2026-03-02,,Snack,@SUM(1),10 g,5,0,\n"
        + "2026-03-02,,Snack,+cmd,10 g,5,0,\n"
        + "2026-03-02,,Snack,-2+3,10 g,5,0,\n",
    )
    source = SourceConfig(
        name="cm",
        kind="diet",
        format="cronometer_servings",
        path="cm/*/*.csv",
        person=PersonSpec(from_folder=True),
    )
    result = ingest_source(source, raw, today=TODAY)
    check_accounting(result.files)
    record = result.files.row(0, named=True)
    assert (record["rows_read"], record["rows_loaded"], record["rows_rejected"]) == (10, 6, 4)
    rejects = result.rejects.sort("line")
    assert rejects["line"].to_list() == [3, 4, 6, 7]
    assert rejects["column"].to_list() == ["day", "day", "energy_kcal", "grams"]
    assert rejects["reason"][0].startswith("date before 1950")
    assert rejects["reason"][1].startswith("date in the future")
    assert (rejects["path"] == "cm/alice/servings.csv").all()
    assert rejects["file_id"].to_list() == [record["file_id"]] * 4
    # Formula-like text is data: loaded exactly as written, never evaluated or altered.
    foods = result.rows["food"].to_list()
    assert {'=HYPERLINK("http://x","y")', "@SUM(1)", "+cmd", "-2+3"} <= set(foods)


def test_ingest_rejects_negative_and_absurd_crp(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(
        raw / "labs" / "alice.csv",
        "Patient,Collected,Test,Result,Units\n"
        "alice,2025-02-03,CRP,1.4,mg/L\n"
        "alice,2025-03-03,CRP,-0.5,mg/L\n"
        "alice,2025-04-03,CRP,150,mg/dL\n"  # 1,500 mg/L after conversion
        "alice,2025-05-03,CRP,150,mg/L\n",  # high but real: acute, kept
    )
    source = SourceConfig(
        name="labs",
        kind="labs",
        format="csv",
        path="labs/*.csv",
        person=PersonSpec(column="Patient"),
    )
    result = ingest_source(source, raw, today=TODAY)
    check_accounting(result.files)
    assert result.rows["value"].sort().to_list() == [1.4, 150.0]
    reasons = result.rejects.sort("line")["reason"].to_list()
    assert reasons[0].startswith("negative result") and reasons[1].startswith("implausible CRP")


def test_ingest_rejects_nhanes_ages_outside_0_to_120(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "nhanes").mkdir(parents=True)
    write_xpt(
        raw / "nhanes" / "DEMO_J.XPT",
        "DEMO_J",
        {"SEQN": [1.0, 2.0, 3.0], "RIAGENDR": [1.0, 2.0, 1.0], "RIDAGEYR": [34.0, 150.0, -2.0]},
    )
    source = SourceConfig(
        name="demo",
        kind="persons",
        format="nhanes_xpt",
        path="nhanes/*.XPT",
        person=PersonSpec(column="SEQN"),
    )
    result = ingest_source(source, raw, today=TODAY)
    check_accounting(result.files)
    assert result.rows["person_id"].to_list() == ["1"]
    assert result.rejects["line"].to_list() == [2, 3]
    assert (result.rejects["column"] == "age").all()


def test_a_day_in_the_future_is_read_again_when_it_has_come(tmp_path: Path) -> None:
    """A stored parse must not freeze "today": a file with a row rejected as in the future is read
    again on a later day, and the row loads once its day has come; other files are not re-read."""
    raw = tmp_path / "raw"
    soon = TODAY + timedelta(days=5)
    write(
        raw / "cm" / "alice" / "servings.csv",
        SERVINGS_HEADER + f"{soon},,Lunch,Lentils,200 g,230,16,Legumes\n",
    )
    write(
        raw / "cm" / "bob" / "servings.csv",
        SERVINGS_HEADER + f"{TODAY},,Lunch,Lentils,200 g,230,16,Legumes\n",
    )
    source = SourceConfig(
        name="cm",
        kind="diet",
        format="cronometer_servings",
        path="cm/*/*.csv",
        person=PersonSpec(from_folder=True),
    )
    cache = tmp_path / "cache"
    first = ingest_source(source, raw, cache_dir=cache, today=TODAY)
    assert first.rows["person_id"].to_list() == ["bob"]
    assert sorted(first.files["rows_rejected"].to_list()) == [0, 1]
    same_day = ingest_source(source, raw, cache_dir=cache, today=TODAY)
    assert same_day.files_parsed == 0  # nothing changed, not even the date
    later = ingest_source(source, raw, cache_dir=cache, today=soon)
    assert later.files_parsed == 1  # alice's file only: bob's had nothing to wait for
    assert sorted(later.rows["person_id"].to_list()) == ["alice", "bob"]
    assert later.files["rows_rejected"].to_list() == [0, 0]
    check_accounting(later.files)


def test_a_crp_that_ingest_accepts_never_fails_the_units_check(tmp_path: Path) -> None:
    """The lab_results check and the plausibility rule share one CRP ceiling: a sepsis-level
    800 mg/L is kept by ingest, so the check must not call it implausible."""
    from pipelines.defs.warehouse.checks import lab_results_plausible_units
    from pipelines.project import Project
    from pipelines.transforms.plausibility import MAX_CRP_MG_L

    project = Project(tmp_path)
    project.ensure_dirs()
    with project.warehouse().write() as conn:
        conn.execute("CREATE TABLE lab_results (marker VARCHAR, unit VARCHAR, value DOUBLE)")
        conn.execute("INSERT INTO lab_results VALUES ('crp', 'mg/L', 800), ('hscrp', 'mg/L', 2)")
        assert 800 < MAX_CRP_MG_L
        assert lab_results_plausible_units(conn, []).passed
        conn.execute("INSERT INTO lab_results VALUES ('crp', 'mg/L', ?)", [MAX_CRP_MG_L * 2])
        result = lab_results_plausible_units(conn, [])
    assert not result.passed and result.metadata["implausible_results"].value == 1
