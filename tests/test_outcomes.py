"""Daily outcomes (kind `outcomes`): the generic CSV, stable measure names, scales kept apart,
plausibility of wearable measures, overlapping exports and configuration errors."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import store
from pipelines.adapters import FORMATS, AdapterError
from pipelines.config import ConfigError, PersonSpec, SourceConfig, parse_project_config
from pipelines.ingest import ingest_source, sync_source, target_table
from pipelines.ingest.parse import plausible
from pipelines.schema import BIOMETRIC_SCHEMA
from pipelines.steps.canonical import build_canonical_table, sources_feeding

SYMPTOMS = Path(__file__).parent / "fixtures" / "outcomes" / "symptoms.csv"
TODAY = date(2026, 2, 1)


def source(**overrides: object) -> SourceConfig:
    fields: dict = dict(
        name="sym", kind="outcomes", format="csv", path="sym/*/*.csv", person=PersonSpec("alice")
    )
    fields.update(overrides)
    return SourceConfig(**fields)


def read(path: Path, src: SourceConfig | None = None):
    src = src or source()
    return plausible(target_table(src), FORMATS[src.format].parse(path, src), TODAY)


def value(rows: pl.DataFrame, day: str, metric: str) -> list[float]:
    on_day = rows.filter((pl.col("day").cast(pl.String) == day) & (pl.col("metric") == metric))
    return on_day["value"].to_list()


def test_generic_csv_loads_readings_with_stable_names_units_and_scales() -> None:
    result = read(SYMPTOMS)
    rows = result.rows
    assert target_table(source()) == "biometrics"
    assert rows.schema == pl.Schema(BIOMETRIC_SCHEMA)
    # 11 lines: 7 loaded, 4 rejected, nothing lost.
    assert (result.rows_read, rows.height, result.rejects.height) == (11, 7, 4)
    assert sorted(rows["day"].unique().cast(pl.String).to_list()) == [
        "2026-01-05",
        "2026-01-06",
        "2026-01-07",
    ]
    assert value(rows, "2026-01-05", "resting_hr") == [58.0]
    assert value(rows, "2026-01-05", "bristol_stool") == [4.0]
    assert value(rows, "2026-01-06", "urgency") == [1.0]  # "yes"
    assert value(rows, "2026-01-06", "sleep_duration") == [7.5]  # 450 min
    sleep = rows.filter(pl.col("metric") == "sleep_duration").row(0, named=True)
    assert (sleep["unit"], sleep["scale"], sleep["value_raw"]) == ("h", "unit", "450")
    # A timestamp's time of day is kept.
    assert rows.filter(pl.col("line") == 10)["time"].to_list() == ["21:30"]


def test_two_scales_for_one_measure_stay_distinguishable() -> None:
    bloating = read(SYMPTOMS).rows.filter(pl.col("metric") == "bloating")
    # "Bloating" on 0-10 and "Bloated" on 0-4: one measure name, two scales, never mixed.
    assert sorted(bloating.select("scale", "value").iter_rows()) == [("0-10", 6.0), ("0-4", 3.0)]


def test_rejects_name_line_column_and_reason() -> None:
    rejects = {r["line"]: r for r in read(SYMPTOMS).rejects.iter_rows(named=True)}
    assert sorted(rejects) == [7, 9, 11, 12]
    assert (rejects[7]["column"], rejects[7]["reason"]) == ("value", "value outside its scale 0-10")
    assert (rejects[9]["column"], rejects[9]["reason"]) == ("Value", "not a number")
    assert rejects[11]["reason"] == "hrv_rmssd is always on scale unit"
    assert rejects[12]["reason"].startswith("no scale for fatigue")


def test_source_scale_option_gives_unscaled_ratings_their_scale(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Date,Symptom,Rating\n2026-01-05,Fatigue,3\n2026-01-06,Fatigue,9\n")
    result = read(path, source(options={"scale": "0 - 4"}))
    assert result.rows.select("scale", "value").rows() == [("0-4", 3.0)]
    assert result.rejects["reason"].to_list() == ["value outside its scale 0-4"]
    with pytest.raises(AdapterError, match=r"options\.scale.*'often'"):
        read(path, source(options={"scale": "often"}))


@pytest.mark.parametrize(
    ("measure", "raw", "unit", "reason"),
    [
        ("Resting Heart Rate", "7", "bpm", "implausible resting_hr: outside 20-200 bpm"),
        ("HRV", "0", "ms", "implausible hrv_rmssd: outside 1-300 ms"),
        ("Temperature Deviation", "36.6", "°C", "implausible skin_temp_dev: outside -5 to +5 °C"),
        # Seconds written without a unit are read as hours: 27,000 h is refused.
        ("Total Sleep Time", "27000", "", "implausible sleep_duration: outside 0-24 h"),
        ("Bristol", "8", "", "value outside its scale bristol_1-7"),
    ],
)
def test_wearable_and_bristol_values_are_bounded(
    tmp_path: Path, measure: str, raw: str, unit: str, reason: str
) -> None:
    path = tmp_path / "w.csv"
    path.write_text(f"Date,Measure,Value,Unit\n2026-01-05,{measure},{raw},{unit}\n")
    result = read(path)
    assert result.rows.height == 0
    assert result.rejects["reason"].to_list() == [reason]


def test_fahrenheit_deviation_converts_without_offset(tmp_path: Path) -> None:
    path = tmp_path / "w.csv"
    path.write_text("Date,Measure,Value,Unit\n2026-01-05,Temperature Deviation,0.9,°F\n")
    assert read(path).rows["value"].round(6).to_list() == [0.5]


def _export(path: Path, lines: list[str], mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("Date,Measure,Value,Scale\n" + "".join(f"{x}\n" for x in lines))
    os.utime(path, (mtime, mtime))


def test_overlapping_re_export_is_settled_by_day_and_measure(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _export(
        raw / "sym" / "alice" / "jan.csv",
        ["2026-01-05,Bloating,6,0-10", "2026-01-06,Bloating,5,0-10", "2026-01-06,Pain,2,0-10"],
        mtime=1_700_000_000,
    )
    # The re-export covers 2026-01-06 again with the corrected bloating and adds a day.
    _export(
        raw / "sym" / "alice" / "feb.csv",
        ["2026-01-06,Bloating,4,0-10", "2026-01-07,Bloating,3,0-10", "2026-01-07,Bloating,11,0-10"],
        mtime=1_700_100_000,
    )
    result = ingest_source(source(person=PersonSpec(from_folder=True)), raw)
    rows = result.rows
    assert value(rows, "2026-01-06", "bloating") == [4.0]
    assert value(rows, "2026-01-06", "pain") == [2.0]  # not in the re-export: kept
    assert rows.filter(pl.col("metric") == "bloating").height == 3
    files = {r["path"]: r for r in result.files.iter_rows(named=True)}
    jan, feb = files["sym/alice/jan.csv"], files["sym/alice/feb.csv"]
    assert (jan["rows_read"], jan["rows_loaded"], jan["rows_duplicate"]) == (3, 2, 1)
    assert (feb["rows_read"], feb["rows_loaded"], feb["rows_rejected"]) == (3, 2, 1)
    reject = result.rejects.row(0, named=True)
    assert (reject["path"], reject["line"]) == ("sym/alice/feb.csv", 4)


def test_an_outcomes_source_with_a_diet_format_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(
        "sources:\n  - {name: oura, kind: outcomes, format: cronometer_servings, path: a/*.csv}\n"
    )
    with pytest.raises(ConfigError, match=r"source 'oura', key 'kind'.*not 'outcomes'"):
        parse_project_config(path, FORMATS)


def test_generic_csv_maps_columns_and_refuses_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("When,What,How much\n2026-01-05T08:15,Urgency,no\n")
    src = source(columns={"day": "When", "measure": "What", "value": "How much"})
    rows = read(path, src).rows
    assert rows.select("time", "metric", "value", "scale").rows() == [
        ("08:15", "urgency", 0.0, "yes_no")
    ]
    with pytest.raises(AdapterError, match=r"unknown key\(s\) \['symptom'\]"):
        read(path, source(columns={"symptom": "What"}))


# ---- Generic CSV, wide: a day column and one column per measure --------------------------------

WIDE = Path(__file__).parent / "fixtures" / "outcomes" / "diary_wide.csv"
WIDE_OPTIONS: dict = {
    "measures": {
        "bloating": "Bloating",
        "bristol_stool": "Stool",
        "urgency": "Urgent",
        "Resting Heart Rate": "RHR",  # given its stable name like a cell
        "sleep_duration": "Sleep (min)",
    },
    "scales": {"bloating": "0-10", "urgency": "yes/no"},
    "units": {"sleep_duration": "min"},
}


def wide(**options: object) -> SourceConfig:
    return source(name="wide", columns={"day": "Date"}, options={**WIDE_OPTIONS, **options})


def test_wide_csv_reads_each_measure_column_with_the_mappings_scale() -> None:
    result = read(WIDE, wide())
    rows = result.rows
    # Accounting per reading: 19 non-blank cells of the 5 mapped columns, 12 loaded, 7 rejected.
    assert (result.rows_read, rows.height, result.rejects.height) == (19, 12, 7)
    stool = rows.filter(pl.col("metric") == "bristol_stool")
    assert stool["day"].cast(pl.String).to_list() == ["2026-01-05", "2026-01-07"]
    assert value(rows, "2026-01-07", "bristol_stool") == [5.0]
    assert value(rows, "2026-01-06", "urgency") == [1.0]  # "yes"
    assert value(rows, "2026-01-06", "sleep_duration") == [7.0]  # 420 min
    assert value(rows, "2026-01-08", "resting_hr") == [59.0]
    scales = dict(rows.select("metric", "scale").unique().iter_rows())
    assert scales == {
        "bloating": "0-10",
        "bristol_stool": "bristol_1-7",
        "urgency": "yes_no",
        "resting_hr": "unit",
        "sleep_duration": "unit",
    }
    rejects = [(r["line"], r["column"], r["reason"]) for r in result.rejects.iter_rows(named=True)]
    assert rejects[:3] == [
        (4, "Bloating", "value outside its scale 0-10"),  # Bloating 11
        (5, "Stool", "not a number"),
        (5, "Urgent", "not a number"),  # "maybe" in a yes/no column
    ]
    # A date in another order rejects each of the line's 4 readings, naming the date column.
    assert [(line, column) for line, column, _ in rejects[3:]] == [(6, "Date")] * 4


def test_wide_csv_implausible_readings_name_their_column_and_cell(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(
        "Date,Bloating,Sleep (min),RHR\n2026-01-05,11,1500,58\n2026-01-06,3,420,250\n",
        encoding="utf-8",
    )
    measures = {"bloating": "Bloating", "resting_hr": "RHR", "sleep_duration": "Sleep (min)"}
    options = {"scales": {"bloating": "0-10"}, "units": {"sleep_duration": "min"}}
    src = source(name="wide", columns={"day": "Date"}, options={"measures": measures, **options})
    result = read(path, src)
    rejects = result.rejects.select("line", "column", "reason", "value").rows()
    assert rejects == [
        (2, "Bloating", "value outside its scale 0-10", "11"),
        (2, "Sleep (min)", "implausible sleep_duration: outside 0-24 h", "1500"),
        (3, "RHR", "implausible resting_hr: outside 20-200 bpm", "250"),
    ]
    assert (result.rows_read, result.rows.height) == (6, 3)


def test_wide_csv_batch_counts_readings_as_parse_does() -> None:
    batch = FORMATS["csv"].batch(2 * [WIDE], wide())
    assert batch.rows_read == [19, 19]
    assert batch.rows.height == 2 * FORMATS["csv"].parse(WIDE, wide()).rows.height


def test_wide_csv_re_export_settles_per_reading(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    first = raw / "wide" / "alice" / "jan.csv"
    first.parent.mkdir(parents=True)
    first.write_bytes(WIDE.read_bytes())
    os.utime(first, (1_700_000_000, 1_700_000_000))
    later = raw / "wide" / "alice" / "feb.csv"
    later.write_text("Date,Bloating,Stool,Urgent,RHR,Sleep (min)\n2026-01-05,5,3,no,57,460\n")
    os.utime(later, (1_700_100_000, 1_700_100_000))
    src = source(
        name="wide",
        path="wide/*/*.csv",
        person=PersonSpec(from_folder=True),
        columns={"day": "Date"},
        options=WIDE_OPTIONS,
    )
    result = ingest_source(src, raw)
    assert value(result.rows, "2026-01-05", "bristol_stool") == [3.0]
    files = {r["path"]: r for r in result.files.iter_rows(named=True)}
    counts = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")
    # The first file's 5 readings of 2026-01-05 are superseded by the later file's 5.
    assert tuple(files["wide/alice/jan.csv"][c] for c in counts) == (19, 7, 7, 5)
    assert tuple(files["wide/alice/feb.csv"][c] for c in counts) == (5, 5, 0, 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scales": {"urgency": "yes/no"}}, r"no scale for bloating \(column 'Bloating'\)"),
        (
            {"scales": {"bloating": "0-10", "urgency": "yes/no", "resting_hr": "0-10"}},
            r"options\.scales\.resting_hr.*always on scale unit",
        ),
        (
            {"scales": {"bloating": "often", "urgency": "yes/no"}},
            r"options\.scales\.bloating.*'often'",
        ),
        (
            {"units": {"sleep_duration": "fortnights"}},
            r"options\.units\.sleep_duration.*'fortnights'",
        ),
        (
            {"measures": {"bloating": "Bloat"}, "scales": {}, "units": {}},
            r"required column 'Bloat' not found",
        ),
        ({"scales": {"fatigue": "0-4"}}, r"options\.scales.*\['fatigue'\] not among"),
        (
            {"measures": {"bloating": "Bloating", "Bloated": "Stool"}, "units": {}},
            r"options\.measures.*name one measure twice",
        ),
        ({"scale_default": "0-10"}, r"unknown option\(s\) \['scale_default'\]"),
    ],
)
def test_wide_csv_mapping_that_does_not_say_stops_the_file(change: dict, message: str) -> None:
    with pytest.raises(AdapterError, match=message):
        FORMATS["csv"].parse(WIDE, wide(**change))


def test_wide_csv_columns_names_only_day_and_time() -> None:
    src = source(columns={"day": "Date", "value": "Bloating"}, options=WIDE_OPTIONS)
    with pytest.raises(AdapterError, match=r"\['value'\] in 'columns'.*\['day', 'time'\]"):
        FORMATS["csv"].parse(WIDE, src)


# ---- Oura trends export --------------------------------------------------------------------------

OURA = Path(__file__).parent / "fixtures" / "outcomes" / "oura_2026-01-08_trends.csv"
OURA_HEADER = OURA.read_text(encoding="utf-8").splitlines()[0]


def oura(**overrides: object) -> SourceConfig:
    return source(name="oura", format="oura_trends", path="oura/*/*.csv", **overrides)


def test_oura_trends_reads_each_measure_of_each_day() -> None:
    result = read(OURA, oura())
    rows = result.rows
    # 4 days; 2026-01-07 was a day without the ring (only steps), 2026-01-08 has "n/a" for HRV.
    per_day = dict(rows.group_by("day").len().sort("day").iter_rows())
    assert [(d.isoformat(), n) for d, n in per_day.items()] == [
        ("2026-01-05", 9),
        ("2026-01-06", 9),
        ("2026-01-07", 1),
        ("2026-01-08", 7),
    ]
    # Accounting per reading: 27 non-blank cells of the columns read, 26 loaded, 1 rejected.
    assert (result.rows_read, rows.height, result.rejects.height) == (27, 26, 1)
    assert value(rows, "2026-01-05", "resting_hr") == [56.2]
    assert value(rows, "2026-01-05", "hrv_rmssd") == [48.0]
    assert value(rows, "2026-01-06", "skin_temp_dev") == [0.35]
    assert value(rows, "2026-01-05", "sleep_duration") == [7.5]  # 27000 s
    score = rows.filter(pl.col("metric") == "oura_sleep_score").row(0, named=True)
    assert (score["scale"], score["unit"]) == ("0-100", None)
    reject = result.rejects.row(0, named=True)
    assert (reject["line"], reject["column"], reject["reason"], reject["value"]) == (
        5,
        "Average HRV",
        "not a number",
        "n/a",
    )


def test_oura_implausible_reading_is_rejected_alone(tmp_path: Path) -> None:
    path = tmp_path / "oura.csv"
    path.write_text(
        OURA_HEADER + "\n2026-01-05,82,85,29700,27000,2700,91,56,51,48,36.4,14,88,9012,84\n"
    )
    result = read(path, oura())
    assert result.rows_read == 9
    # Rejected by the wide reader, naming the column and showing the cell as in the file.
    assert result.rejects.select("line", "column", "reason", "value").rows() == [
        (2, "Temperature Deviation (°C)", "implausible skin_temp_dev: outside -5 to +5 °C", "36.4")
    ]
    assert result.rows.height == 8
    assert value(result.rows, "2026-01-05", "resting_hr") == [56.0]


def test_oura_re_export_replaces_the_partial_last_day(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    first = raw / "oura" / "alice" / "oura_2026-01-08_trends.csv"
    first.parent.mkdir(parents=True)
    first.write_text(OURA.read_text(encoding="utf-8"), encoding="utf-8")
    os.utime(first, (1_700_000_000, 1_700_000_000))
    # The next export has 2026-01-08 complete (HRV now measured) and one more day.
    later = raw / "oura" / "alice" / "oura_2026-01-09_trends.csv"
    later.write_text(
        OURA_HEADER
        + "\n2026-01-08,68,70,28800,24300,4500,84,61.5,55,39,1.4,15.8,66,7000,61"
        + "\n2026-01-09,80,81,28800,26100,2700,90,57.0,52,47,0.1,14.9,75,8000,79\n",
        encoding="utf-8",
    )
    os.utime(later, (1_700_100_000, 1_700_100_000))
    result = ingest_source(oura(person=PersonSpec(from_folder=True)), raw)
    rows = result.rows
    assert value(rows, "2026-01-08", "hrv_rmssd") == [39.0]
    assert value(rows, "2026-01-08", "steps") == [7000.0]
    assert value(rows, "2026-01-05", "resting_hr") == [56.2]  # only in the first export
    files = {r["path"]: r for r in result.files.iter_rows(named=True)}
    old, new = (
        files["oura/alice/oura_2026-01-08_trends.csv"],
        files["oura/alice/oura_2026-01-09_trends.csv"],
    )
    # The first export's 7 readings of 2026-01-08 are superseded by the later export's 9.
    assert (old["rows_read"], old["rows_loaded"], old["rows_rejected"], old["rows_duplicate"]) == (
        27,
        19,
        1,
        7,
    )
    assert (new["rows_read"], new["rows_loaded"]) == (18, 18)


def test_an_oura_export_under_another_format_is_refused_naming_oura_trends() -> None:
    src = source(format="cronometer_biometrics")
    with pytest.raises(AdapterError, match="format: oura_trends with kind: outcomes"):
        FORMATS["cronometer_biometrics"].parse(OURA, src)


# ---- Bearable export -----------------------------------------------------------------------------

BEARABLE = (
    Path(__file__).parent
    / "fixtures"
    / "outcomes"
    / ("Bearable App - Data Export. Generated 10-01-2026.csv")
)


def test_bearable_reads_symptoms_mood_energy_and_sleep() -> None:
    src = source(name="bearable", format="bearable")
    result = read(BEARABLE, src)
    rows = result.rows
    # 10 lines: 7 loaded; a Factors line, a bloating of 5 on 0-4 and a sleep "about 7h" rejected.
    assert (result.rows_read, rows.height, result.rejects.height) == (10, 7, 3)
    # Bloating logged twice on one day: both entries load, with their time of day.
    bloating = rows.filter(pl.col("metric") == "bloating").select("day", "time", "value", "scale")
    assert [(d.isoformat(), t, v, s) for d, t, v, s in bloating.rows()] == [
        ("2026-01-05", "am", 2.0, "0-4"),
        ("2026-01-05", "pm", 3.0, "0-4"),
    ]
    assert value(rows, "2026-01-05", "abdominal_pain") == [1.0]  # "Stomach pain (Mild)"
    assert value(rows, "2026-01-05", "mood") == [7.0]
    assert value(rows, "2026-01-06", "sleep_duration") == [7.5]  # 7:30
    rejects = {r["line"]: (r["column"], r["reason"]) for r in result.rejects.iter_rows(named=True)}
    assert rejects == {
        7: ("category", "category not read as an outcome"),
        9: ("value", "value outside its scale 0-4"),
        11: ("rating/amount", "sleep not written as a duration H:MM"),
    }


BEARABLE_GUT = BEARABLE.with_name("Bearable App - Data Export. Generated 12-01-2026.csv")


def bearable(**overrides: object) -> SourceConfig:
    return source(name="bearable", format="bearable", path="bearable/*/*.csv", **overrides)


def test_bearable_reads_bowel_movements_on_the_bristol_scale_and_sleep_quality() -> None:
    result = read(BEARABLE_GUT, bearable())
    rows = result.rows
    # 10 lines: 6 loaded, 4 rejected (two bowel movements without a type, a Bristol 8 and a
    # sleep quality of 6 on 1-5), nothing lost.
    assert (result.rows_read, rows.height, result.rejects.height) == (10, 6, 4)
    stool = rows.filter(pl.col("metric") == "bristol_stool")
    assert sorted(set(stool["day"].cast(pl.String).to_list())) == ["2026-01-08", "2026-01-09"]
    assert set(stool["scale"].to_list()) == {"bristol_1-7"}
    # Two movements on one day: both readings, each with its time.
    assert stool.filter(pl.col("day") == date(2026, 1, 8)).select("time", "value").rows() == [
        ("07:40", 4.0),
        ("13:05", 6.0),
    ]
    assert value(rows, "2026-01-09", "bristol_stool") == [3.0]  # "Type 3"
    quality = rows.filter(pl.col("metric") == "sleep_quality")
    assert quality.select("day", "value", "scale").rows() == [
        (date(2026, 1, 8), 4.0, "1-5"),
        (date(2026, 1, 9), 2.0, "1-5"),
    ]
    rejects = {
        r["line"]: (r["column"], r["reason"], r["value"])
        for r in result.rejects.iter_rows(named=True)
    }
    assert rejects == {
        7: ("rating/amount", "bowel movement without a Bristol type (1-7)", "None"),
        8: ("value", "value outside its scale bristol_1-7", "8.0"),
        10: ("rating/amount", "bowel movement without a Bristol type (1-7)", "4.5"),
        11: ("value", "value outside its scale 1-5", "6.0"),
    }


def test_bearable_re_export_replaces_a_days_bowel_movements_as_a_set(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    first = raw / "bearable" / "alice" / "first.csv"
    first.parent.mkdir(parents=True)
    first.write_bytes(BEARABLE_GUT.read_bytes())
    os.utime(first, (1_700_000_000, 1_700_000_000))
    # The later export has 2026-01-09 with a second movement logged after the first export.
    later = raw / "bearable" / "alice" / "later.csv"
    later.write_text(
        BEARABLE_GUT.read_text(encoding="utf-8").splitlines()[0]
        + "\n2026-01-09T08:10:00.000Z,2026-01-09,Friday,08:10,Bowel Movements,3,,"
        + "\n2026-01-09T18:30:00.000Z,2026-01-09,Friday,18:30,Bowel Movements,5,,\n",
        encoding="utf-8",
    )
    os.utime(later, (1_700_100_000, 1_700_100_000))
    result = ingest_source(bearable(person=PersonSpec(from_folder=True)), raw)
    rows = result.rows
    assert value(rows, "2026-01-09", "bristol_stool") == [3.0, 5.0]
    assert value(rows, "2026-01-08", "bristol_stool") == [4.0, 6.0]  # only in the first export
    files = {r["path"]: r for r in result.files.iter_rows(named=True)}
    old, new = files["bearable/alice/first.csv"], files["bearable/alice/later.csv"]
    counts = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate")
    # The first export's one movement of 2026-01-09 is superseded by the later export's two.
    assert tuple(old[c] for c in counts) == (10, 5, 4, 1)
    assert tuple(new[c] for c in counts) == (2, 2, 0, 0)


def test_an_older_bearable_export_without_date_formatted_is_refused(tmp_path: Path) -> None:
    # The 2021 shape: `date` written "9th May 2021", no `date formatted`; never a guessed date.
    path = tmp_path / "Bearable_Export_20210728.csv"
    path.write_text(
        "date,weekday,time of day,category,rating/amount,detail,notes\n"
        '"9th May 2021","Sunday","14:39","Bowel Movements","None","",""\n'
    )
    with pytest.raises(AdapterError, match="required column 'date formatted' not found"):
        FORMATS["bearable"].parse(path, bearable())


def test_a_bearable_export_under_the_oura_format_is_refused_naming_bearable() -> None:
    with pytest.raises(AdapterError, match="format: bearable with kind: outcomes"):
        FORMATS["oura_trends"].parse(BEARABLE, oura())


# ---- End to end: every outcome source into the one `biometrics` table ---------------------------


def test_outcome_sources_meet_cronometer_biometrics_in_one_warehouse_table(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    copies = {
        "oura/alice/oura.csv": OURA,
        "bearable/alice/bearable.csv": BEARABLE,
        "diary/alice/symptoms.csv": SYMPTOMS,
        "cronometer/alice/biometrics.csv": Path(__file__).parent
        / "fixtures"
        / "diet_adapters"
        / "cronometer_biometrics.csv",
    }
    for name, fixture in copies.items():
        (raw / name).parent.mkdir(parents=True, exist_ok=True)
        (raw / name).write_bytes(fixture.read_bytes())
    folder = PersonSpec(from_folder=True)
    sources = [
        source(name="oura", format="oura_trends", path="oura/*/*.csv", person=folder),
        source(name="bearable", format="bearable", path="bearable/*/*.csv", person=folder),
        source(name="diary", path="diary/*/*.csv", person=folder),
        source(
            name="cronometer",
            kind="diet",
            format="cronometer_biometrics",
            path="cronometer/*/*.csv",
            person=folder,
        ),
    ]
    with duckdb.connect() as conn:
        store.attach(conn, tmp_path / "store", read_only=False)
        for src in sources:
            sync_source(conn, src, raw, today=TODAY)
        build_canonical_table(conn, "biometrics", sources_feeding(sources, "biometrics"))
        by_source = dict(
            conn.execute("SELECT source, count(*) FROM biometrics GROUP BY ALL").fetchall()
        )
        assert by_source.pop("cronometer") > 0  # weight, blood pressure, ...
        assert by_source == {"oura": 26, "bearable": 7, "diary": 7}
        # Bloating from two trackers: one measure name, two scales, each its own series.
        bloating = conn.execute(
            "SELECT scale, count(*) FROM biometrics WHERE metric = 'bloating' GROUP BY ALL "
            "ORDER BY scale"
        ).fetchall()
        assert bloating == [("0-10", 1), ("0-4", 3)]
        hr = conn.execute(
            "SELECT day, source, value FROM biometrics WHERE metric = 'resting_hr' "
            "ORDER BY day, source"
        ).fetchall()
        assert [(d.isoformat(), s, v) for d, s, v in hr] == [
            ("2026-01-05", "diary", 58.0),
            ("2026-01-05", "oura", 56.2),
            ("2026-01-06", "oura", 58.9),
            ("2026-01-08", "oura", 61.5),
        ]
        files = conn.execute(
            "SELECT source, rows_read, rows_loaded, rows_rejected, rows_duplicate "
            "FROM ingest_files WHERE source IN ('oura', 'bearable', 'diary') ORDER BY source"
        ).fetchall()
        assert files == [("bearable", 10, 7, 3, 0), ("diary", 11, 7, 4, 0), ("oura", 27, 26, 1, 0)]


def test_a_row_with_a_unit_is_physical_whatever_the_source_scale(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("Date,Measure,Value,Unit\n2026-01-05,Waist,81,cm\n2026-01-05,Nausea,2,\n")
    rows = read(path, source(options={"scale": "0-4"})).rows
    assert rows.select("metric", "value", "unit", "scale").rows() == [
        ("waist", 81.0, "cm", "unit"),
        ("nausea", 2.0, None, "0-4"),
    ]
