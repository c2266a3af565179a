"""Diet adapters beyond Cronometer servings: Cronometer daily summary and biometrics, MyFitnessPal,
and the generic mapped diet CSV (including a real NHANES cross-sectional intake table)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.adapters import (
    FORMATS,
    AdapterError,
    ParseResult,
    cronometer_biometrics,
    cronometer_daily_summary,
    diet_csv,
    myfitnesspal,
)
from pipelines.adapters.base import lines_of
from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest import ingest_source, target_table
from pipelines.schema import (
    BIOMETRIC_SCHEMA,
    DIET_ENTRY_SCHEMA,
    DIET_REPORTED_SCHEMA,
    REJECT_SCHEMA,
    TARGET_SCHEMAS,
)

FIXTURES = Path(__file__).parent / "fixtures" / "diet_adapters"
DAILY = FIXTURES / "cronometer_dailysummary.csv"
BIOMETRICS = FIXTURES / "cronometer_biometrics.csv"
MFP = FIXTURES / "Nutrition-Summary-2026-01-01-to-2026-01-03.csv"
DIARY = FIXTURES / "diary_semicolon_latin1.csv"
# Real shapes seen in public Daily Nutrition exports (formats.md): `Completed` false on every
# day; a `Group` column with meal-group rows and a `Total` row per date; a spreadsheet re-save.
DAILY_FALSE = FIXTURES / "dailysummary_completed_false.csv"
DAILY_GROUPS = FIXTURES / "dailysummary_groups.csv"
DAILY_SPREADSHEET = FIXTURES / "dailysummary_spreadsheet.csv"
MFP_CUSTOM = FIXTURES / "mfp_custom_meals.csv"
NHANES = (
    Path(__file__).resolve().parents[2] / "shared/datasets/nhanes/nhanes_2011_2018_dii_intake.csv"
)
MFP_HEADER = (
    "Date,Meal,Calories,Fat (g),Saturated Fat,Polyunsaturated Fat,Monounsaturated Fat,Trans Fat,"
    "Cholesterol,Sodium (mg),Potassium,Carbohydrates (g),Fiber,Sugar,Protein (g),Vitamin A,"
    "Vitamin C,Calcium,Iron,Note"
)


def source(fmt: str, **overrides: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": "alice_diet",
        "kind": "diet",
        "format": fmt,
        "path": "*.csv",
        "person": PersonSpec(fixed="alice"),
    }
    values.update(overrides)
    return SourceConfig(**values)  # type: ignore[arg-type]


def parse(path: Path, fmt: str, **overrides: object) -> ParseResult:
    """Parse through the registry, as ingest does, and check the adapter contract."""
    src = source(fmt, **overrides)
    result = FORMATS[fmt].parse(path, src)
    assert result.rows.schema == pl.Schema(TARGET_SCHEMAS[target_table(src)])
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert result.rows_read == lines_of(result.rows) + result.rejects.height
    assert result.rejects["reason"].null_count() == 0
    assert result.rejects["line"].null_count() == 0
    return result


def write(tmp_path: Path, text: str, name: str = "data.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def reject_at(result: ParseResult, line: int) -> dict[str, object]:
    rows = result.rejects.filter(pl.col("line") == line).to_dicts()
    assert len(rows) == 1, f"line {line}: {result.rejects.to_dicts()}"
    return rows[0]


def row_at(result: ParseResult, line: int) -> dict[str, object]:
    rows = result.rows.filter(pl.col("line") == line).to_dicts()
    assert len(rows) == 1, f"line {line}: {result.rows.to_dicts()}"
    return rows[0]


def test_registry_targets() -> None:
    assert FORMATS["cronometer_daily_summary"].parse is cronometer_daily_summary.parse
    assert FORMATS["cronometer_biometrics"].parse is cronometer_biometrics.parse
    assert FORMATS["myfitnesspal"].parse is myfitnesspal.parse
    assert target_table(source("cronometer_daily_summary")) == "diet_daily_reported"
    assert target_table(source("cronometer_biometrics")) == "biometrics"
    assert target_table(source("myfitnesspal")) == "diet_daily_reported"
    assert target_table(source("myfitnesspal", options={"level": "entries"})) == "diet_entries"
    assert target_table(source("csv", columns={"food": "Food"})) == "diet_entries"
    assert target_table(source("csv", columns={"energy_kcal": "kcal"})) == "diet_daily_reported"


# ---- Cronometer daily summary --------------------------------------------------------------


def test_daily_summary_fixture_accounting() -> None:
    # BOM + CRLF file: 6 data rows; zeros, a bad number and a repeated date are rejected.
    assert DAILY.read_bytes().startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in DAILY.read_bytes()
    result = parse(DAILY, "cronometer_daily_summary")
    assert result.rows_read == 6
    assert result.rows["line"].to_list() == [2, 4, 7]
    assert result.rejects["line"].to_list() == [3, 5, 6]
    assert set(result.rows["period"]) == {"day"}
    assert set(result.rows["person_id"]) == {"alice"}


def test_daily_summary_values_blanks_and_completed() -> None:
    result = parse(DAILY, "cronometer_daily_summary")
    first = row_at(result, 2)
    assert first["day"].isoformat() == "2026-01-01"  # type: ignore[union-attr]
    assert first["energy_kcal"] == pytest.approx(2105.3)
    assert first["caffeine_mg"] == pytest.approx(95.0)
    assert first["trans_fat_g"] == pytest.approx(0.3)
    assert first["mufa_g"] == pytest.approx(30.1)
    assert first["completed"] is True
    blanks = row_at(result, 4)
    assert blanks["completed"] is False
    assert blanks["fiber_g"] is None  # blank = not reported, never zero
    assert blanks["alcohol_g"] is None
    assert blanks["energy_kcal"] == 1850
    assert row_at(result, 7)["completed"] is None


def test_daily_summary_unlogged_day_bad_number_and_duplicate() -> None:
    result = parse(DAILY, "cronometer_daily_summary")
    assert reject_at(result, 3)["reason"] == "day not logged (all nutrients zero)"
    bad = reject_at(result, 5)
    assert bad["column"] == "Energy (kcal)"
    assert (bad["reason"], bad["value"]) == ("not a number", "abc")
    dup = reject_at(result, 6)
    assert dup["reason"] == "duplicate date in file"
    assert dup["column"] == "Date"
    # The first line of a repeated date is the one loaded.
    assert row_at(result, 2)["energy_kcal"] == pytest.approx(2105.3)


def test_daily_summary_full_export_brings_every_dii_parameter_it_has() -> None:
    """A 2019 full Daily Nutrition export (the header of a real one: B vitamins with their names
    in brackets, carotenoids, Vitamin A in IU beside Retinol Activity Equivalent, Vitamin D in IU).
    It reports 27 of the DII's 45 parameters, and all 27 reach the DII."""
    from scipy.stats import norm

    from pipelines.transforms.dii import add_dii

    path = FIXTURES / "cronometer_dailysummary_2019.csv"
    assert path.read_bytes().startswith(b"\xef\xbb\xbf") and b"\r\n" in path.read_bytes()
    result = parse(path, "cronometer_daily_summary")
    assert result.rows_read == 3
    assert result.rows["line"].to_list() == [2, 4]
    assert result.rejects.select("line", "reason").rows() == [
        (3, "day not logged (all nutrients zero)")
    ]
    full = row_at(result, 2)
    assert (full["thiamin_mg"], full["riboflavin_mg"], full["niacin_mg"]) == (1.84, 2.07, 24.31)
    assert full["beta_carotene_ug"] == 6120.5
    assert full["vit_a_ug"] == 842.1  # RAE, not the 13,560 IU
    assert full["vit_d_ug"] == pytest.approx(6.0)  # 240 IU / 40
    assert full["folate_ug"] == 512.3 and full["folic_acid_ug"] is None
    # The third day left the B vitamins, beta-carotene and RAE blank: not reported, not zero.
    sparse = row_at(result, 4)
    assert sparse["thiamin_mg"] is None and sparse["vit_a_ug"] is None

    scored = add_dii(result.rows)
    assert scored["dii_params"].to_list() == [27, 22]
    # The B vitamins and beta-carotene count as Shivappa's formula says (the rest are common to
    # both the pipeline and this check, so a difference here is theirs).
    without = add_dii(
        result.rows.drop("thiamin_mg", "riboflavin_mg", "niacin_mg", "beta_carotene_ug")
    )
    table = {"Thiamin": (1.84, -0.098, 1.70, 0.66), "Riboflavin": (2.07, -0.068, 1.70, 0.79)}
    table |= {"Niacin": (24.31, -0.246, 25.90, 11.77), "Carotene": (6120.5, -0.584, 3718, 1720)}
    four = sum((2 * norm.cdf((x - m) / sd) - 1) * e for x, e, m, sd in table.values())
    assert scored["dii"][0] - without["dii"][0] == pytest.approx(four, abs=1e-12)
    assert scored["dii"][1] == pytest.approx(without["dii"][1], abs=1e-12)


def test_daily_summary_without_completed_and_with_summary_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Date,Energy (kcal),Fiber (g)\n"
        "2026-02-01,2000,25\n"
        "2026-02-02,,\n"
        "Average,2000,25\n"
        "2026-02-30,1800,20\n"
        "02/03/2026,1800,20\n"
        "2026-02-04,1900,yes\n",
    )
    result = parse(path, "cronometer_daily_summary")
    assert result.rows["line"].to_list() == [2]
    assert result.rows["completed"].to_list() == [None]
    assert reject_at(result, 3)["reason"] == "day not logged (all nutrients blank)"
    assert reject_at(result, 4)["reason"] == "summary row"
    assert "not a valid date" in str(reject_at(result, 5)["reason"])
    assert "date_format" in str(reject_at(result, 6)["reason"])
    assert reject_at(result, 7)["column"] == "Fiber (g)"


def test_daily_summary_completed_must_be_boolean(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Energy (kcal),Completed\n2026-02-01,2000,maybe\n")
    result = parse(path, "cronometer_daily_summary")
    assert reject_at(result, 2)["column"] == "Completed"


def test_daily_summary_missing_columns_are_errors(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match=r"required column 'Date'"):
        parse(write(tmp_path, "Day2,Energy (kcal)\nx,1\n"), "cronometer_daily_summary")
    with pytest.raises(AdapterError, match="no nutrient column recognised"):
        parse(write(tmp_path, "Date,Foo\n2026-01-01,1\n"), "cronometer_daily_summary")


def test_daily_summary_person_column_keeps_people_apart(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Client,Date,Energy (kcal)\nann,2026-01-01,1900\nbob,2026-01-01,2100\nann,2026-01-01,5\n",
    )
    result = parse(path, "cronometer_daily_summary", person=PersonSpec(column="Client"))
    assert result.rows.select("person_id", "line").rows() == [("ann", 2), ("bob", 3)]
    assert reject_at(result, 4)["reason"] == "duplicate date in file"


def test_daily_summary_completed_false_everywhere_loads_every_day() -> None:
    # Every real export seen has Completed false on every day: false is loaded as a flag, never
    # as a reason to drop the day. Only the all-zero day (line 4) is rejected.
    raw = DAILY_FALSE.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    result = parse(DAILY_FALSE, "cronometer_daily_summary")
    assert result.rows_read == 5
    assert result.rows["day"].cast(pl.String).to_list() == [
        "2024-03-01",
        "2024-03-02",
        "2024-03-04",
        "2024-03-05",
    ]
    assert result.rows["completed"].to_list() == [False] * 4
    assert result.rows["energy_kcal"].to_list() == pytest.approx([1850.2, 2210.0, 640.5, 1999.9])
    assert reject_at(result, 4)["reason"] == "day not logged (all nutrients zero)"


def test_daily_summary_spreadsheet_resave_us_dates_and_upper_case_false() -> None:
    result = parse(DAILY_SPREADSHEET, "cronometer_daily_summary", date_format="%m/%d/%Y")
    assert result.rows.select(pl.col("day").cast(pl.String), "completed", "energy_kcal").rows() == [
        ("2024-03-09", False, 1720.4),
        ("2024-03-11", False, 2050.0),
    ]
    assert reject_at(result, 3)["reason"] == "day not logged (all nutrients zero)"


def test_daily_summary_with_group_column_loads_the_total_rows() -> None:
    # 14 data lines: 4 meal groups + Total (2024-03-01), Total first then 3 groups, one named by
    # the user (03-02), an empty day as a Total row with blank nutrients (03-03), two groups and
    # no Total (03-04: their sum), a breakfast-only day with its Total (03-05).
    result = parse(DAILY_GROUPS, "cronometer_daily_summary")
    days = result.rows.select(
        pl.col("day").cast(pl.String), "energy_kcal", "fiber_g", "line", "input_lines"
    )
    assert days.rows() == [
        ("2024-03-01", 2000.0, 27.0, 6, 5),
        ("2024-03-02", 1400.0, 18.5, 7, 4),
        ("2024-03-04", 1200.0, 15.0, 12, 2),
        ("2024-03-05", 300.0, 4.0, 15, 2),
    ]
    # kcal loaded equals the Total rows (plus the groups' sum where a date has none), not the
    # first row of each date (420 + 1400 + 500 + 300 kcal before).
    assert result.rows["energy_kcal"].sum() == pytest.approx(2000 + 1400 + 1200 + 300)
    assert result.rejects.select("line", "reason").rows() == [
        (11, "day not logged (all nutrients blank)")
    ]
    # Every line accounted for: 13 lines loaded as 4 days, 1 rejected.
    assert result.rows_read == 14 == lines_of(result.rows) + result.rejects.height


def test_daily_summary_without_groups_a_repeated_date_keeps_its_first_usable_line(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        "Date,Energy (kcal),Fiber (g),Completed\n"
        "2024-04-01,0,0,false\n"  # the unlogged row Cronometer writes, then the real one
        "2024-04-01,1800,20,false\n"
        "2024-04-02,abc,5,false\n"
        "2024-04-02,1700,18,false\n"
        "2024-04-02,1600,15,false\n",
    )
    result = parse(path, "cronometer_daily_summary")
    assert result.rows.select("line", "energy_kcal", "input_lines").rows() == [
        (3, 1800.0, 1),
        (5, 1700.0, 1),
    ]
    assert result.rejects.select("line", "reason").rows()[0] == (
        2,
        "day not logged (all nutrients zero)",
    )
    assert reject_at(result, 6)["reason"] == "duplicate date in file"


def test_daily_summary_groups_bad_numbers_and_repeats(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Date,Group,Energy (kcal),Fiber (g),Completed\n"
        "2024-04-01,Breakfast,400,5,false\n"
        "2024-04-01,Lunch,x,5,false\n"  # bad group row under a good Total: rejected alone
        "2024-04-01,Total,1500,20,false\n"
        "2024-04-02,Breakfast,400,5,false\n"
        "2024-04-02,Dinner,-3,5,false\n"  # bad group row, no Total: the day goes
        "2024-04-03,Dinner,900,9,false\n"
        "2024-04-03,Dinner,100,1,false\n"  # the same date and group again
        "2024-04-04,,700,7,false\n",
    )
    result = parse(path, "cronometer_daily_summary")
    assert result.rows.select(
        pl.col("day").cast(pl.String), "energy_kcal", "input_lines"
    ).rows() == [
        ("2024-04-01", 1500.0, 2),
        ("2024-04-03", 900.0, 1),
    ]
    assert reject_at(result, 3)["column"] == "Energy (kcal)"
    assert reject_at(result, 5)["reason"] == (
        "day not loaded: another row of this day was rejected (line 6)"
    )
    assert reject_at(result, 6)["column"] == "Energy (kcal)"
    assert reject_at(result, 8)["reason"] == "duplicate date and group in file"
    assert reject_at(result, 9)["reason"] == "Group is blank"
    assert result.rows_read == 8


# ---- Cronometer biometrics -------------------------------------------------------------------


def test_biometrics_fixture() -> None:
    result = parse(BIOMETRICS, "cronometer_biometrics")
    assert result.rows_read == 7
    assert result.rows["line"].to_list() == [2, 3, 4, 5, 8]
    weight = row_at(result, 2)
    assert weight["metric"] == "weight"
    assert weight["value"] == pytest.approx(212.5 * 0.45359237)
    assert (weight["unit"], weight["unit_raw"], weight["value_raw"]) == ("kg", "lbs", "212.5")
    assert weight["time"] == "07:30"
    assert row_at(result, 5)["value"] == pytest.approx(95.0)
    fat = row_at(result, 4)
    assert (fat["metric"], fat["value"], fat["unit"], fat["time"]) == ("body_fat", 24.5, "%", None)
    assert row_at(result, 8)["metric"] == "heart_rate"


def test_blood_pressure_is_one_row_with_the_diastolic_in_value_raw() -> None:
    result = parse(BIOMETRICS, "cronometer_biometrics")
    bp = row_at(result, 3)
    assert bp["metric"] == "blood_pressure_systolic"
    assert bp["value"] == 120
    assert bp["value_raw"] == "120/80"
    assert bp["unit"] == "mmHg"
    assert "systolic/diastolic" in str(reject_at(result, 7)["reason"])


def test_biometrics_non_numeric_is_rejected() -> None:
    result = parse(BIOMETRICS, "cronometer_biometrics")
    bad = reject_at(result, 6)
    assert bad["column"] == "Amount"
    assert (bad["reason"], bad["value"]) == ("not a number", "heavy")


def test_biometrics_decimal_comma_and_fahrenheit(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Day;Metric;Unit;Amount\n2026-01-01;Body Temperature;°F;98,6\n2026-01-01;Weight;kg;80,5\n",
    )
    result = parse(path, "cronometer_biometrics", decimal=",")
    assert row_at(result, 2)["value"] == pytest.approx(37.0)
    assert row_at(result, 2)["unit"] == "°C"
    assert row_at(result, 3)["value"] == pytest.approx(80.5)


# ---- MyFitnessPal ----------------------------------------------------------------------------


def test_mfp_meals_are_summed_per_day_with_day_accounting() -> None:
    result = parse(MFP, "myfitnesspal")
    # Loaded: 2026-01-01 (3 meals) and 2026-01-03 (2 meals); rejected: the 2 meal rows of
    # 2026-01-02 (one bad), a note-only row and the Total line. Accounting is per input line:
    # the two days stand for their 5 meal lines.
    assert result.rows["day"].cast(pl.String).to_list() == ["2026-01-01", "2026-01-03"]
    assert result.rows["line"].to_list() == [2, 8]
    assert result.rows["input_lines"].to_list() == [3, 2]
    assert result.rows_read == 5 + 4
    assert set(result.rows["period"]) == {"day"}
    first = row_at(result, 2)
    assert first["energy_kcal"] == pytest.approx(450 + 700 + 1234)  # "1,234" in quotes
    assert first["fat_g"] == pytest.approx(80)
    assert first["sodium_mg"] == pytest.approx(2500)
    assert first["trans_fat_g"] == pytest.approx(0.5)
    assert first["completed"] is None
    third = row_at(result, 8)
    assert third["energy_kcal"] == pytest.approx(1400)
    assert third["carbs_g"] == pytest.approx(160)
    assert third["fat_g"] == pytest.approx(20)  # the dinner's blank fat adds nothing


def test_mfp_custom_meals_several_rows_per_meal_accounts_per_line(tmp_path: Path) -> None:
    # US dates, meal names of the user's own, two Lunch rows on one day, a quoted note with a
    # line break, and a day (3/3) whose bad Calories cell rejects its three rows.
    result = parse(MFP_CUSTOM, "myfitnesspal", date_format="%m/%d/%Y")
    assert result.rows.select(
        pl.col("day").cast(pl.String), "energy_kcal", "input_lines"
    ).rows() == [
        ("2024-03-01", 410 + 150 + 520 + 230 + 890, 5),
        ("2024-03-02", 380 + 200 + 1020, 3),
    ]
    assert result.rejects["line"].to_list() == [11, 12, 13]
    assert result.rows_read == 11  # data lines, not days

    raw = tmp_path / "raw"
    (raw / "alice").mkdir(parents=True)
    (raw / "alice" / MFP_CUSTOM.name).write_bytes(MFP_CUSTOM.read_bytes())
    src = source(
        "myfitnesspal", path="*/*.csv", person=PersonSpec(from_folder=True), date_format="%m/%d/%Y"
    )
    record = ingest_source(src, raw).files.row(0, named=True)
    assert (
        record["rows_read"],
        record["rows_loaded"],
        record["rows_rejected"],
        record["rows_duplicate"],
    ) == (11, 8, 3, 0)


def test_mfp_rejects_keep_their_own_lines() -> None:
    result = parse(MFP, "myfitnesspal")
    assert result.rejects["line"].to_list() == [6, 7, 10, 11]
    assert reject_at(result, 7)["column"] == "Calories"
    assert (reject_at(result, 7)["reason"], reject_at(result, 7)["value"]) == (
        "not a number",
        "abc",
    )
    assert reject_at(result, 6)["reason"] == (
        "day not loaded: another meal row of this day was rejected"
    )
    assert reject_at(result, 6)["value"] == "line 7"
    assert reject_at(result, 10)["reason"] == "note row (no nutrient values)"
    assert reject_at(result, 11)["reason"] == "summary row"


def test_mfp_percent_daily_value_columns_are_not_loaded() -> None:
    result = parse(MFP, "myfitnesspal")
    for column in ("vit_a_ug", "vit_c_mg", "iron_mg"):
        assert result.rows[column].null_count() == result.rows.height


def test_mfp_ingest_accounting(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "alice").mkdir(parents=True)
    (raw / "alice" / MFP.name).write_bytes(MFP.read_bytes())
    src = source("myfitnesspal", path="*/*.csv", person=PersonSpec(from_folder=True))
    ingest = ingest_source(src, raw)
    record = ingest.files.row(0, named=True)
    assert record["status"] == "loaded"
    # Input lines, not days: 5 meal lines loaded (as 2 days), 4 rejected.
    assert (record["rows_read"], record["rows_loaded"], record["rows_rejected"]) == (9, 5, 4)
    assert ingest.rows.height == 2
    assert set(ingest.rows["person_id"]) == {"alice"}


def test_mfp_date_format_and_thousands(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Date,Meal,Calories,Protein (g),Note\n"
        '01/31/2026,Dinner,"2,100.5",30,\n'
        "01/31/2026,Lunch,100,,\n"
        "2026-02-01,Lunch,500,10,\n"
        "13/01/2026,Lunch,500,10,\n",
    )
    result = parse(path, "myfitnesspal", date_format="%m/%d/%Y")
    assert result.rows.select(pl.col("day").cast(pl.String), "energy_kcal", "protein_g").rows() == [
        ("2026-01-31", 2200.5, 30.0),
        ("2026-02-01", 500.0, 10.0),
    ]
    assert "%m/%d/%Y" in str(reject_at(result, 5)["reason"])


def test_mfp_entries_level(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Date,Meal,Food,Calories,Fat (g),Carbohydrates (g),Fiber,Protein (g),Sodium (mg)\n"
        '2026-01-01,Breakfast,"Oats, rolled",150,3,27,4,5,2\n'
        "2026-01-01,Breakfast,Kefir,110,,12,0,9,\n"
        "2026-01-01,Lunch,,100,1,1,1,1,1\n"
        "2026-01-01,Lunch,Soup,x,1,1,1,1,1\n",
    )
    result = parse(path, "myfitnesspal", options={"level": "entries"})
    assert result.rows.schema == pl.Schema(DIET_ENTRY_SCHEMA)
    assert result.rows.select("food", "meal", "energy_kcal").rows() == [
        ("Oats, rolled", "Breakfast", 150.0),
        ("Kefir", "Breakfast", 110.0),
    ]
    assert result.rows["grams"].null_count() == 2
    assert row_at(result, 3)["fat_g"] is None
    assert reject_at(result, 4)["column"] == "Food"
    assert reject_at(result, 5)["column"] == "Calories"


def test_mfp_errors(tmp_path: Path) -> None:
    path = write(tmp_path, f"{MFP_HEADER}\n")
    with pytest.raises(AdapterError, match="Food"):
        parse(path, "myfitnesspal", options={"level": "entries"})
    with pytest.raises(AdapterError, match=r"options\.level"):
        parse(path, "myfitnesspal", options={"level": "weekly"})
    empty = parse(path, "myfitnesspal")
    assert (empty.rows_read, empty.rows.height) == (0, 0)


# ---- generic diet CSV ------------------------------------------------------------------------

DIARY_COLUMNS = {
    "day": "Datum",
    "time": "Zeit",
    "meal": "Mahlzeit",
    "food": "Lebensmittel",
    "amount": "Menge",
    "category": "Kategorie",
    "energy_kcal": "kcal",
    "fiber_g": "Ballaststoffe (g)",
    "caffeine_mg": "Koffein (g)",
}


def parse_diary(**overrides: object) -> ParseResult:
    values: dict[str, object] = {
        "columns": DIARY_COLUMNS,
        "date_format": "%d.%m.%Y",
        "delimiter": ";",
        "decimal": ",",
        "encoding": "latin-1",
        "options": {"scale": {"caffeine_mg": 1000}},
    }
    values.update(overrides)
    return parse(DIARY, "csv", **values)


def test_csv_entries_semicolon_decimal_comma_latin1() -> None:
    result = parse_diary()
    assert result.rows_read == 9
    assert result.rows["line"].to_list() == [2, 3, 4, 5, 10]
    oats = row_at(result, 2)
    assert oats["food"] == "Haferflocken; kernig"
    assert oats["meal"] == "Frühstück"
    assert oats["time"] == "08:00"
    assert oats["category_raw"] == "Getreide"
    assert oats["energy_kcal"] == pytest.approx(185.5)
    assert oats["grams"] == pytest.approx(50)
    assert oats["caffeine_mg"] is None
    assert row_at(result, 3)["caffeine_mg"] == pytest.approx(80)  # 0,08 g scaled to mg
    assert row_at(result, 3)["grams"] == pytest.approx(250)  # 250 ml at water density
    assert row_at(result, 4)["grams"] is None  # "1 Teller": no grams rather than a guess
    assert row_at(result, 4)["day"].isoformat() == "2026-01-08"  # type: ignore[union-attr]
    assert row_at(result, 5)["day"].isoformat() == "2026-01-09"  # ISO is always accepted
    assert row_at(result, 10)["grams"] == pytest.approx(1234.5)


def test_csv_rejects_ambiguous_dates_summary_rows_and_wrong_decimals() -> None:
    result = parse_diary()
    date = reject_at(result, 6)
    assert date["column"] == "Datum"
    assert "%d.%m.%Y" in str(date["reason"])
    assert reject_at(result, 7)["reason"] == "summary row"  # "Summe"
    assert reject_at(result, 8)["reason"] == "summary row"  # blank date, a note in the row
    wrong = reject_at(result, 9)
    assert wrong["column"] == "kcal"
    assert "decimal" in str(wrong["reason"])


def test_csv_without_date_format_never_guesses(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Food,kcal\n03/04/2026,Apple,52\n2026-04-03,Pear,57\n")
    result = parse(path, "csv", columns={"day": "Date", "food": "Food", "energy_kcal": "kcal"})
    assert result.rows["food"].to_list() == ["Pear"]
    reason = str(reject_at(result, 2)["reason"])
    assert "never guessed" in reason
    assert "date_format" in reason


def test_csv_daily_totals_with_summary_rows_and_duplicates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "\ufeffDate,Calories,Fiber (g),Done\r\n"
        "2026-03-01,2000,30,yes\r\n"
        "2026-03-02,1800,,no\r\n"
        "TOTAL:,3800,30,\r\n"
        "Average,1900,30,\r\n"
        ",3800,30,\r\n"
        "2026-03-01,999,1,\r\n"
        "2026-03-03,-5,1,\r\n",
    )
    result = parse(
        path,
        "csv",
        columns={
            "day": "Date",
            "energy_kcal": "Calories",
            "fiber_g": "Fiber (g)",
            "completed": "Done",
        },
    )
    assert result.rows.schema == pl.Schema(DIET_REPORTED_SCHEMA)
    assert result.rows.select(
        pl.col("day").cast(pl.String), "period", "completed", "energy_kcal", "fiber_g"
    ).rows() == [
        ("2026-03-01", "day", True, 2000.0, 30.0),
        ("2026-03-02", "day", False, 1800.0, None),
    ]
    assert [reject_at(result, n)["reason"] for n in (4, 5, 6)] == ["summary row"] * 3
    assert reject_at(result, 7)["reason"] == "duplicate date in file"
    assert "negative" in str(reject_at(result, 8)["reason"])


def test_csv_cross_sectional_synthetic(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "SEQN,Energy,Caffeine ,Extra\n"
        "62161.0,2000,0.1,x\n"
        "62162,1800,,y\n"
        "Mean,1900,0.05,\n"
        "62161,1,1,\n"
        ",5,5,\n",
    )
    result = parse(
        path,
        "csv",
        person=PersonSpec(column="SEQN"),
        columns={"energy_kcal": "Energy", "caffeine_mg": "Caffeine"},
        options={"scale": {"caffeine_mg": 1000}},
    )
    assert result.rows.select(
        "person_id", "day", "period", "energy_kcal", "caffeine_mg"
    ).rows() == [
        ("62161", None, "summary", 2000.0, 100.0),
        ("62162", None, "summary", 1800.0, None),
    ]
    assert reject_at(result, 4)["reason"] == "summary row"
    assert str(reject_at(result, 5)["reason"]).startswith("duplicate person in file")
    assert "person id is blank" in str(reject_at(result, 6)["reason"])


@pytest.mark.skipif(not NHANES.exists(), reason="../shared/datasets is not beside the repo")
def test_csv_real_nhanes_cross_sectional_table() -> None:
    columns = {
        "energy_kcal": "Energy",
        "fiber_g": "Fiber",
        "protein_g": "Protein",
        "carbs_g": "Carbohydrate",
        "fat_g": "Total fat",
        "sat_fat_g": "Saturated fat",
        "alcohol_g": "Alcohol",
        "caffeine_mg": "Caffeine",
        "cholesterol_mg": "Cholesterol",  # the header is "Cholesterol " with a trailing space
    }
    result = parse(
        NHANES,
        "csv",
        person=PersonSpec(column="SEQN"),
        columns=columns,
        options={"scale": {"caffeine_mg": 1000}, "period": "recall_mean_2d"},
    )
    assert result.rows_read == 13_580
    assert result.rows.height == 13_580
    assert result.rejects.height == 0
    assert result.rows["person_id"].n_unique() == 13_580
    assert not result.rows["person_id"].str.contains(r"\.").any()
    assert result.rows["day"].null_count() == 13_580
    assert set(result.rows["period"]) == {"recall_mean_2d"}
    first = result.rows.row(0, named=True)
    assert first["person_id"] == "1"
    assert first["caffeine_mg"] == pytest.approx(8.05 * 1000)  # file has grams
    assert first["cholesterol_mg"] == pytest.approx(279.4)
    assert first["energy_kcal"] == pytest.approx(2056.0)
    row = result.rows.filter(pl.col("person_id") == "62161").row(0, named=True)
    assert row["caffeine_mg"] == pytest.approx(20.0)
    assert row["line"] == 5
    assert result.rows["fat_g"].null_count() == 0


def test_csv_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path, "Date,Food,kcal\n2026-01-01,Apple,52\n")
    with pytest.raises(AdapterError, match="unknown key"):
        parse(path, "csv", columns={"day": "Date", "person": "Who"})
    with pytest.raises(AdapterError, match=r"'Calories'.*not found"):
        parse(path, "csv", columns={"day": "Date", "energy_kcal": "Calories"})
    with pytest.raises(AdapterError, match="no nutrient column"):
        parse(path, "csv", columns={"day": "Date"})
    with pytest.raises(AdapterError, match="need a date"):
        parse(path, "csv", columns={"food": "Food"})
    with pytest.raises(AdapterError, match=r"options\.scale"):
        parse(
            path, "csv", columns={"day": "Date", "energy_kcal": "kcal"}, options={"scale": {"x": 2}}
        )
    with pytest.raises(AdapterError, match="unknown option"):
        parse(path, "csv", columns={"day": "Date", "energy_kcal": "kcal"}, options={"lvl": 1})
    with pytest.raises(AdapterError, match="'meal' but not 'food'"):
        parse(path, "csv", columns={"day": "Date", "meal": "Food", "energy_kcal": "kcal"})


def test_csv_grams_column_and_embedded_newline(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'Date,Food,g,kcal\n2026-01-01,"Kimchi,\nhomemade",80,12\n2026-01-01,Rice,abc,130\n'
        "2026-01-02,Miso,20,\n",
    )
    result = parse(
        path, "csv", columns={"day": "Date", "food": "Food", "grams": "g", "energy_kcal": "kcal"}
    )
    assert result.rows.select("food", "grams", "energy_kcal", "line").rows() == [
        ("Kimchi,\nhomemade", 80.0, 12.0, 2),
        ("Miso", 20.0, None, 5),
    ]
    assert reject_at(result, 4)["column"] == "g"


def test_every_adapter_handles_a_header_only_file(tmp_path: Path) -> None:
    cases = {
        "cronometer_daily_summary": ("Date,Energy (kcal)\n", {}),
        "cronometer_biometrics": ("Day,Metric,Unit,Amount\n", {}),
        "myfitnesspal": (f"{MFP_HEADER}\n", {}),
        "csv": ("Date,kcal\n", {"columns": {"day": "Date", "energy_kcal": "kcal"}}),
    }
    for fmt, (text, overrides) in cases.items():
        result = parse(write(tmp_path, text, name=f"{fmt}.csv"), fmt, **overrides)
        assert result.rows_read == 0
        assert result.rows.height == 0


def test_schemas_are_the_contract() -> None:
    assert parse(BIOMETRICS, "cronometer_biometrics").rows.schema == pl.Schema(BIOMETRIC_SCHEMA)
    assert diet_csv.SUMMARY_REASON == "summary row"
