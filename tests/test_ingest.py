"""Ingest of one source: overlapping exports, identical copies, unreadable files, accounting."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest import ingest_source

HEADER = "Day,Time,Group,Food Name,Amount,Energy (kcal),Fiber (g),Category\n"


def export(path: Path, rows: list[str], mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(r + "\n" for r in rows), encoding="utf-8")
    os.utime(path, (mtime, mtime))


SOURCE = SourceConfig(
    name="cm",
    kind="diet",
    format="cronometer_servings",
    path="cm/*/*.csv",
    person=PersonSpec(from_folder=True),
)


def test_overlapping_exports_newest_wins_and_nothing_is_double_counted(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    export(
        raw / "cm" / "alice" / "jan.csv",
        [
            '2025-01-01,,Breakfast,"Oats, Rolled, Dry",80.00 g,300,8,Cereal Grains and Pasta',
            "2025-01-02,,Lunch,Kimchi,100.00 g,20,2,Vegetables and Vegetable Products",
            "2025-01-02,,Dinner,Apple Raw,100.00 g,50,2,Fruits and Fruit Juices",
        ],
        mtime=1_700_000_000,
    )
    export(
        raw / "cm" / "alice" / "feb.csv",
        [
            # 2025-01-02 again, corrected: the kimchi was 150 g and the apple was deleted
            "2025-01-02,,Lunch,Kimchi,150.00 g,30,3,Vegetables and Vegetable Products",
            "2025-01-03,,Lunch,Lentils Boiled,200.00 g,230,16,Legumes and Legume Products",
            "not-a-date,,Lunch,Lentils Boiled,200.00 g,230,16,Legumes and Legume Products",
        ],
        mtime=1_700_100_000,
    )
    result = ingest_source(SOURCE, raw)
    rows = result.rows.sort("day")
    assert rows["day"].cast(pl.String).to_list() == ["2025-01-01", "2025-01-02", "2025-01-03"]
    assert rows.filter(pl.col("food") == "Kimchi")["grams"].to_list() == [150.0]
    assert (rows["person_id"] == "alice").all()

    files = {r["path"]: r for r in result.files.iter_rows(named=True)}
    jan, feb = files["cm/alice/jan.csv"], files["cm/alice/feb.csv"]
    assert (jan["rows_read"], jan["rows_loaded"], jan["rows_duplicate"]) == (3, 1, 2)
    assert (feb["rows_read"], feb["rows_loaded"], feb["rows_rejected"]) == (3, 2, 1)
    reject = result.rejects.row(0, named=True)
    assert reject["path"] == "cm/alice/feb.csv" and reject["line"] == 4
    assert reject["column"] == "Day"


def test_identical_copy_counts_as_duplicate(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    rows = ["2025-01-01,,Breakfast,Kefir,250.00 g,150,0,Dairy and Egg Products"]
    export(raw / "cm" / "bob" / "a.csv", rows, mtime=1_700_000_000)
    export(raw / "cm" / "bob" / "copy.csv", rows, mtime=1_700_000_500)
    result = ingest_source(SOURCE, raw)
    assert result.rows.height == 1
    statuses = dict(result.files.select("path", "status").iter_rows())
    assert statuses == {"cm/bob/a.csv": "loaded", "cm/bob/copy.csv": "duplicate_file"}
    copy = result.files.filter(pl.col("status") == "duplicate_file").row(0, named=True)
    assert copy["rows_read"] == copy["rows_duplicate"] == 1


def test_unreadable_file_is_recorded_and_the_rest_loads(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    export(
        raw / "cm" / "carol" / "good.csv",
        ["2025-01-01,,Breakfast,Kefir,250.00 g,150,0,Dairy and Egg Products"],
        mtime=1_700_000_000,
    )
    broken = raw / "cm" / "carol" / "broken.csv"
    broken.write_text("Date,Something\n2025-01-01,1\n", encoding="utf-8")
    result = ingest_source(SOURCE, raw)
    assert result.rows.height == 1
    error = result.files.filter(pl.col("status") == "error").row(0, named=True)
    assert error["path"] == "cm/carol/broken.csv"
    assert "broken.csv" in error["error"] and "Food Name" in error["error"]


def test_same_files_twice_give_the_same_result(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    export(
        raw / "cm" / "dan" / "a.csv",
        ["2025-01-01,,Breakfast,Kefir,250.00 g,150,0,Dairy and Egg Products"],
        mtime=1_700_000_000,
    )
    first, second = ingest_source(SOURCE, raw), ingest_source(SOURCE, raw)
    assert first.rows.equals(second.rows)
    assert first.files.drop("ingested_at").equals(second.files.drop("ingested_at"))


def test_a_result_repeated_within_one_file_counts_as_duplicate(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "labs").mkdir(parents=True)
    (raw / "labs" / "portal.csv").write_text(
        "Patient,Collected,Test,Result,Units\n"
        "ann,2025-03-01 08:00,CRP,1.2,mg/L\n"
        "ann,2025-03-01 08:00,C-Reactive Protein,1.2,mg/L\n"
        "ann,2025-04-01 08:00,CRP,0.9,mg/L\n",
        encoding="utf-8",
    )
    result = ingest_source(LABS, raw)
    assert result.rows.height == 2
    record = result.files.row(0, named=True)
    assert (record["rows_read"], record["rows_loaded"], record["rows_duplicate"]) == (3, 2, 1)


def test_nightly_run_parses_only_new_or_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.adapters import FORMATS, Format, cronometer_servings

    calls: list[str] = []

    def counting_parse(path: Path, source: SourceConfig):  # type: ignore[no-untyped-def]
        calls.append(path.name)
        return cronometer_servings.parse(path, source)

    fmt = FORMATS["cronometer_servings"]
    monkeypatch.setitem(FORMATS, "cronometer_servings", Format(fmt.kinds, counting_parse))
    raw, cache = tmp_path / "raw", tmp_path / "cache"
    for month in (1, 2, 3):
        export(
            raw / "cm" / "eve" / f"2025-0{month}.csv",
            [f"2025-0{month}-01,,Lunch,Kimchi,100.00 g,20,2,Vegetables and Vegetable Products"],
            mtime=1_700_000_000 + month,
        )
    first = ingest_source(SOURCE, raw, cache_dir=cache)
    assert sorted(calls) == ["2025-01.csv", "2025-02.csv", "2025-03.csv"]
    assert first.files_parsed == 3

    calls.clear()
    export(
        raw / "cm" / "eve" / "2025-04.csv",
        ["2025-04-01,,Lunch,Kimchi,100.00 g,20,2,Vegetables and Vegetable Products"],
        mtime=1_700_000_004,
    )
    second = ingest_source(SOURCE, raw, cache_dir=cache)
    assert calls == ["2025-04.csv"]  # only the new file is parsed
    assert second.files_parsed == 1
    assert second.rows.height == 4
    # the cached result is the same as a fresh parse
    fresh = ingest_source(SOURCE, raw)
    assert second.rows.sort("day").equals(fresh.rows.sort("day"))

    calls.clear()
    export(
        raw / "cm" / "eve" / "2025-02.csv",
        ["2025-02-01,,Lunch,Kimchi,150.00 g,30,3,Vegetables and Vegetable Products"],
        mtime=1_700_000_010,
    )
    third = ingest_source(SOURCE, raw, cache_dir=cache)
    assert calls == ["2025-02.csv"]  # a changed file is parsed again
    assert third.rows.filter(pl.col("day").dt.month() == 2)["grams"].to_list() == [150.0]


# A lab portal's CSV export, one row per result, the patient in a column.
LABS = SourceConfig(
    name="labs",
    kind="labs",
    format="csv",
    path="labs/*.csv",
    person=PersonSpec(column="Patient"),
    columns={"collected_at": "Collected", "marker": "Test", "value": "Result", "unit": "Units"},
    datetime_format="%Y-%m-%d %H:%M",
)

FIXTURES = Path(__file__).parent / "fixtures" / "diet_adapters"

REAL_SHAPES_YAML = """
sources:
  - name: cm_daily
    kind: diet
    format: cronometer_daily_summary
    path: cronometer/*/dailysummary.csv
    person: {from_folder: true}
  - name: mfp
    kind: diet
    format: myfitnesspal
    path: mfp/*.csv
    person: bob
    date_format: "%m/%d/%Y"
"""


def test_real_shaped_exports_reach_diet_daily(tmp_path: Path) -> None:
    """File -> warehouse -> diet_daily -> person page, through `gutsignal run`, on the shapes
    real users' exports have (issue 15): Daily Nutrition with Completed false on every day, with
    a Group column, a Servings file named dailysummary.csv, an MFP summary with custom meals."""
    from pipelines.cli import main
    from pipelines.project import Project

    project = Project(tmp_path)
    project.ensure_dirs()
    project.sources_yaml.write_text(REAL_SHAPES_YAML, encoding="utf-8")
    files = {
        "cronometer/alice/dailysummary.csv": FIXTURES / "dailysummary_groups.csv",
        "cronometer/carol/dailysummary.csv": FIXTURES / "dailysummary_completed_false.csv",
        "cronometer/dave/dailysummary.csv": (
            FIXTURES / "servings_named_dailysummary" / "dailysummary.csv"
        ),
        "mfp/Nutrition-Summary-2024-03-01-to-2024-03-03.csv": FIXTURES / "mfp_custom_meals.csv",
    }
    for rel, fixture in files.items():
        (project.raw_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (project.raw_dir / rel).write_bytes(fixture.read_bytes())

    assert main(["run", "--project-dir", str(tmp_path)]) == 0
    wh = project.warehouse()

    # Every input line is loaded, rejected with a reason or a duplicate, per file.
    ingest = {r["path"]: r for r in wh.query("SELECT * FROM ingest_files").iter_rows(named=True)}
    counts = {
        path: (r["rows_read"], r["rows_loaded"], r["rows_rejected"], r["rows_duplicate"])
        for path, r in ingest.items()
    }
    assert counts == {
        "cronometer/alice/dailysummary.csv": (14, 13, 1, 0),  # 4 days from 13 lines
        "cronometer/carol/dailysummary.csv": (5, 4, 1, 0),
        "cronometer/dave/dailysummary.csv": (0, 0, 0, 0),
        "mfp/Nutrition-Summary-2024-03-01-to-2024-03-03.csv": (11, 8, 3, 0),
    }
    rejected = dict(
        wh.query("SELECT path, count(*) AS n FROM rejected_rows GROUP BY path").iter_rows()
    )
    for path, r in ingest.items():
        assert rejected.get(path, 0) == r["rows_rejected"], path
    dave = ingest["cronometer/dave/dailysummary.csv"]
    assert dave["status"] == "error" and "Set `format: cronometer_servings`" in dave["error"]

    daily = wh.query(
        "SELECT person_id, CAST(day AS VARCHAR) AS day, energy_kcal, logged, logged_rule "
        "FROM diet_daily ORDER BY person_id, day"
    )
    energy = "daily total (energy at least 800 kcal)"
    assert daily.rows() == [
        # The Total rows' kcal (the groups' sum on 03-04), not each date's first row.
        ("alice", "2024-03-01", 2000.0, True, energy),
        ("alice", "2024-03-02", 1400.0, True, energy),
        ("alice", "2024-03-04", 1200.0, True, energy),
        ("alice", "2024-03-05", 300.0, False, energy),  # breakfast only
        ("bob", "2024-03-01", 2200.0, True, energy),
        ("bob", "2024-03-02", 1600.0, True, energy),
        # Completed false on every day, as in real exports: 3 of 4 days logged, not 0.
        ("carol", "2024-03-01", 1850.2, True, energy),
        ("carol", "2024-03-02", 2210.0, True, energy),
        ("carol", "2024-03-04", 640.5, False, energy),
        ("carol", "2024-03-05", 1999.9, True, energy),
    ]

    # The person page says how a day's status was decided, next to the days logged.
    page = (project.dashboards_dir / "person_carol.html").read_text(encoding="utf-8")
    # In the Data coverage card (under "3 / 5 days logged") and the data-quality table.
    assert page.count("daily total (energy at least 800 kcal): 3 of 4 days") == 2
    assert "3 / 5 days logged" in page  # 03-01 to 03-05; 03-03 was a zero row
    assert "judged by its energy" in page


MFP_HEADER = "Date,Meal,Calories,Fat (g),Carbohydrates (g),Fiber,Protein (g),Note\n"


def test_summed_days_count_their_lines_as_duplicates_and_rejects(tmp_path: Path) -> None:
    """A day summed from several meal rows counts each line: as a duplicate when a newer export
    owns the day, and as a reject (one rejected_rows row per line) when the day is implausible."""
    raw = tmp_path / "raw"
    (raw / "mfp").mkdir(parents=True)
    old, new = raw / "mfp" / "jan.csv", raw / "mfp" / "feb.csv"
    old.write_text(
        MFP_HEADER + "2025-01-01,Breakfast,400,10,50,5,20,\n"
        "2025-01-01,Lunch,700,20,80,8,35,\n"
        "2025-01-01,Lunch,200,5,30,2,5,\n"
        "2025-01-02,Dinner,900,30,90,9,40,\n",
        encoding="utf-8",
    )
    new.write_text(
        MFP_HEADER + "2025-01-02,Dinner,950,30,95,9,42,\n"  # corrects 01-02
        "2025-01-02,Snacks,150,5,20,1,2,\n"
        "2099-01-01,Breakfast,300,10,40,4,10,\n"  # in the future: 2 lines, one day
        "2099-01-01,Dinner,600,20,60,6,30,\n",
        encoding="utf-8",
    )
    os.utime(old, (1_700_000_000, 1_700_000_000))
    os.utime(new, (1_700_100_000, 1_700_100_000))
    source = SourceConfig(
        name="mfp", kind="diet", format="myfitnesspal", path="mfp/*.csv", person=PersonSpec("ann")
    )
    result = ingest_source(source, raw)
    files = {r["path"]: r for r in result.files.iter_rows(named=True)}
    jan, feb = files["mfp/jan.csv"], files["mfp/feb.csv"]
    # jan: 3 lines of 01-01 loaded, the 1 line of 01-02 a duplicate of feb's day
    assert (jan["rows_read"], jan["rows_loaded"], jan["rows_rejected"], jan["rows_duplicate"]) == (
        4,
        3,
        0,
        1,
    )
    assert (feb["rows_read"], feb["rows_loaded"], feb["rows_rejected"], feb["rows_duplicate"]) == (
        4,
        2,
        2,
        0,
    )
    assert result.rows.sort("day")["energy_kcal"].to_list() == [1300.0, 1100.0]
    future = result.rejects.filter(pl.col("path") == "mfp/feb.csv")
    assert future.height == 2
    assert future["reason"].str.starts_with("date in the future").all()
    assert future["reason"].str.contains("another input line of the same day").sum() == 1
