"""Rejections people can act on (issue 15, items 4 and 7).

- A configured day/month order that the file's own dates disprove (a month above 12) refuses the
  whole file, with a message naming the file, column, line, value, the order the file uses and
  the exact `date_format:` line to write; nothing of it loads. Ambiguous files load as configured.
- A reject's `reason` is a stable category and the offending cell is in `value`, so one bad
  setting is one reason with a count: in `rejected_rows`, in `gutsignal validate` and in the
  dashboards' rejected-rows table. Older warehouses get the `value` column.
"""

from __future__ import annotations

import dataclasses
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest

from pipelines import store
from pipelines.adapters import FORMATS, AdapterError
from pipelines.cli import main
from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest import REJECTED_ROWS_SCHEMA, ingest_source, sync_source
from pipelines.reports.dashboards import DashboardInputs
from pipelines.reports.pages.common import _rejected_table
from pipelines.schema import REJECT_SCHEMA
from pipelines.steps.dashboards import _rejected_summary, _schema
from pipelines.transforms.plausibility import apply_plausibility
from pipelines.warehouse import create_table

TODAY = date(2026, 12, 1)
MFP_HEADER = (
    "Date,Meal,Calories,Fat (g),Saturated Fat,Polyunsaturated Fat,Monounsaturated Fat,Trans Fat,"
    "Cholesterol,Sodium (mg),Potassium,Carbohydrates (g),Fiber,Sugar,Protein (g),Vitamin A,"
    "Vitamin C,Calcium,Iron,Note"
)


def source(**values: Any) -> SourceConfig:
    base: dict[str, Any] = {
        "name": "src",
        "kind": "diet",
        "format": "csv",
        "path": "*.csv",
        "person": PersonSpec(fixed="alice"),
    }
    base.update(values)
    return SourceConfig(**base)


def write(path: Path, text: str, encoding: str = "utf-8", newline: str = "\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


def us_portal(days: list[tuple[int, int]]) -> str:
    """A US patient-portal CSV: month-first `11/07/2024 09:00 AM` dates, CRLF, a BOM."""
    lines = ["\ufeffPatient,Collected,Test,Result,Units,Reference Range"]
    for i, (month, day) in enumerate(days):
        hour = 9 if i % 2 == 0 else 2
        half = "AM" if i % 2 == 0 else "PM"
        lines.append(
            f"alice,{month:02d}/{day:02d}/2024 {hour:02d}:00 {half},hs-CRP,1.{i},mg/L,<3.0"
        )
    return "\n".join(lines) + "\n"


# ---- item 4: a configured day/month order the file disproves ----------------------------------


def test_us_lab_file_read_day_first_is_refused_whole(tmp_path: Path) -> None:
    # 11/07 and 03/05 read either way; 11/27 has no month 27, so the file is month-first.
    raw = tmp_path / "raw"
    write(
        raw / "labs" / "portal.csv",
        us_portal([(11, 7), (3, 5), (11, 27), (12, 30)]),
        "utf-8",
        "\r\n",
    )
    labs = source(
        name="portal",
        kind="labs",
        path="labs/*.csv",
        person=PersonSpec(column="Patient"),
        columns={
            "collected_at": "Collected",
            "marker": "Test",
            "value": "Result",
            "unit": "Units",
            "reference_range": "Reference Range",
        },
        date_format="%d/%m/%Y %H:%M",
    )
    ingest = ingest_source(labs, raw, today=TODAY)
    record = ingest.files.row(0, named=True)
    assert record["status"] == "error"
    assert (record["rows_read"], record["rows_loaded"], record["rows_rejected"]) == (0, 0, 0)
    assert ingest.rows.height == 0 and ingest.rejects.height == 0  # nothing partly loaded
    error = record["error"]
    assert "portal.csv" in error and "'Collected'" in error
    assert "line 4" in error and "'11/27/2024 09:00 AM'" in error
    assert "month-first" in error and "no month 27" in error
    # The exact line to put in sources.yaml reads every date of the file, AM/PM included.
    assert 'date_format: "%m/%d/%Y %I:%M %p"' in error
    fixed = dataclasses.replace(labs, date_format="%m/%d/%Y %I:%M %p")
    loaded = ingest_source(fixed, raw, today=TODAY)
    assert loaded.files.row(0, named=True)["rows_loaded"] == 4
    assert loaded.rows.sort("line")["collected_at"].to_list() == [
        datetime(2024, 11, 7, 9, 0),
        datetime(2024, 3, 5, 14, 0),
        datetime(2024, 11, 27, 9, 0),
        datetime(2024, 12, 30, 14, 0),
    ]


def test_european_file_read_month_first_is_refused(tmp_path: Path) -> None:
    # The reverse: a day-first `07.11.2024` diary (semicolons, decimal commas, Latin-1) read with
    # a month-first format; 25.11.2024 has no month 25.
    text = (
        "Datum;Kalorien;Ballaststoffe (g)\n"
        "07.11.2024;2100,5;25,0\n"
        "08.11.2024;1980;22,5\n"
        "25.11.2024;2300;30\n"
    )
    path = write(tmp_path / "tagebuch.csv", text, "latin-1")
    diary = source(
        columns={"day": "Datum", "energy_kcal": "Kalorien", "fiber_g": "Ballaststoffe (g)"},
        date_format="%m.%d.%Y",
        delimiter=";",
        decimal=",",
        encoding="latin-1",
    )
    with pytest.raises(AdapterError) as info:
        FORMATS["csv"].parse(path, diary)
    message = str(info.value)
    assert "day-first" in message and "line 4" in message and "'25.11.2024'" in message
    assert 'date_format: "%d.%m.%Y"' in message
    right = FORMATS["csv"].parse(path, dataclasses.replace(diary, date_format="%d.%m.%Y"))
    assert right.rows["day"].to_list() == [date(2024, 11, 7), date(2024, 11, 8), date(2024, 11, 25)]
    assert right.rows["energy_kcal"].sum() == pytest.approx(6380.5)


@pytest.mark.parametrize(
    ("dates", "configured", "suggested"),
    [
        (["1/5/2026", "1/5/2026", "1/13/2026", "2/1/2026"], "%d/%m/%Y", "%m/%d/%Y"),
        (["1/5/26", "1/13/26", "2/1/26"], "%d/%m/%y", "%m/%d/%y"),  # two-digit years
    ],
)
def test_myfitnesspal_us_dates_read_day_first_are_refused(
    tmp_path: Path, dates: list[str], configured: str, suggested: str
) -> None:
    # MyFitnessPal from a US account writes M/D/YYYY; several meal rows per day.
    body = [
        f"{d},{meal},500,10,,,,,,200,,60,5,10,20,2,4,1,3,"
        for d, meal in zip(dates, ["Breakfast", "Lunch", "Dinner", "Snacks"], strict=False)
    ]
    path = write(
        tmp_path / "Nutrition-Summary-2026-01-01-to-2026-02-01.csv",
        "\n".join([MFP_HEADER, *body]) + "\n",
    )
    mfp = source(format="myfitnesspal", date_format=configured)
    with pytest.raises(AdapterError) as info:
        FORMATS["myfitnesspal"].parse(path, mfp)
    assert "month-first" in str(info.value) and "no month 13" in str(info.value)
    assert f'date_format: "{suggested}"' in str(info.value)
    loaded = FORMATS["myfitnesspal"].parse(
        path, source(format="myfitnesspal", date_format=suggested)
    )
    assert date(2026, 1, 13) in loaded.rows["day"].to_list()
    assert loaded.rejects.height == 0


def test_a_file_of_ambiguous_dates_loads_as_configured(tmp_path: Path) -> None:
    # Every day <= 12: nothing disproves day-first, so the configured order is the reading.
    text = "Date,Calories\r\n01/02/2024,2000\r\n03/04/2024,2100\r\n12/11/2024,1900\r\n"
    path = write(tmp_path / "diary.csv", text)
    diary = source(columns={"day": "Date", "energy_kcal": "Calories"}, date_format="%d/%m/%Y")
    result = FORMATS["csv"].parse(path, diary)
    assert result.rows["day"].to_list() == [date(2024, 2, 1), date(2024, 4, 3), date(2024, 11, 12)]
    assert result.rejects.height == 0


def test_a_date_confirming_the_order_makes_a_swapped_one_a_typo(tmp_path: Path) -> None:
    # 25/03 can only be day-first, so 03/25 is a typo: rejected on its own line, with its value.
    text = "Date,Calories\n01/03/2024,2000\n25/03/2024,2100\n03/26/2024,1900\n"
    path = write(tmp_path / "diary.csv", text)
    diary = source(columns={"day": "Date", "energy_kcal": "Calories"}, date_format="%d/%m/%Y")
    result = FORMATS["csv"].parse(path, diary)
    assert result.rows["day"].to_list() == [date(2024, 3, 1), date(2024, 3, 25)]
    assert result.rejects.select("line", "column", "value").rows() == [(4, "Date", "03/26/2024")]
    assert "date_format '%d/%m/%Y'" in result.rejects["reason"][0]


def test_in_a_batch_only_the_disproved_file_is_refused(tmp_path: Path) -> None:
    # Cronometer servings re-saved through a spreadsheet, read with date_format: one file per
    # person, batched together; bob's file is month-first, alice's confirms day-first.
    header = "Day,Time,Group,Food Name,Amount,Energy (kcal),Fiber (g),Category"
    raw = tmp_path / "raw"
    write(
        raw / "cronometer" / "alice" / "servings.csv",
        f'{header}\n13/01/2026,08:00,Breakfast,"Oats, rolled",40.00 g,150,4,Cereal\n'
        "02/01/2026,,Lunch,Kefir,250.00 ml,120,0,Dairy\n",
        newline="\r\n",
    )
    write(
        raw / "cronometer" / "bob" / "servings.csv",
        f"{header}\n01/02/2026,08:00,Breakfast,Kimchi,100.00 g,20,2,Vegetables\n"
        "01/13/2026,,Dinner,Lentils,200.00 g,230,16,Legumes\n",
        newline="\r\n",
    )
    servings = source(
        format="cronometer_servings",
        path="cronometer/*/servings.csv",
        person=PersonSpec(from_folder=True),
        date_format="%d/%m/%Y",
    )
    ingest = ingest_source(servings, raw, today=TODAY)
    files = {Path(r["path"]).parent.name: r for r in ingest.files.iter_rows(named=True)}
    assert (files["alice"]["status"], files["alice"]["rows_loaded"]) == ("loaded", 2)
    assert (files["bob"]["status"], files["bob"]["rows_loaded"]) == ("error", 0)
    assert 'date_format: "%m/%d/%Y"' in files["bob"]["error"]
    assert set(ingest.rows["person_id"]) == {"alice"}
    assert ingest.rows["day"].sort().to_list() == [date(2026, 1, 2), date(2026, 1, 13)]


def test_persons_birth_dates_disprove_the_order_too(tmp_path: Path) -> None:
    text = "id,sex,birth_date\np1,F,04/02/1960\np2,M,12/31/1975\n"
    path = write(tmp_path / "people.csv", text)
    persons = source(kind="persons", person=PersonSpec(column="id"), date_format="%d/%m/%Y")
    with pytest.raises(AdapterError, match=r'date_format: "%m/%d/%Y"'):
        FORMATS["csv"].parse(path, persons)


# ---- item 7: stable reasons, the cell in `value` ------------------------------------------------


def bad_diary(n: int) -> str:
    """A diary with `n` bad dates, `n` different non-numbers and `n` negative amounts."""
    lines = ["Date,Calories,Fibre (g)"]
    for i in range(n):
        lines.append(f"2024.{i % 12 + 1:02d}.{i % 28 + 1:02d},2000,20")  # not the format
        lines.append(f"2024-03-{i % 28 + 1:02d},abc{i},20")  # not a number
        lines.append(f"2024-04-{i % 28 + 1:02d},1900,-{i + 1}")  # negative
    lines.append("2024-05-01,1800,18")
    return "\r\n".join(lines) + "\r\n"


def test_reasons_are_few_and_the_cells_are_in_value(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "diary.csv", bad_diary(30))
    diary = source(
        columns={"day": "Date", "energy_kcal": "Calories", "fiber_g": "Fibre (g)"},
        date_format="%d/%m/%Y",
    )
    ingest = ingest_source(diary, raw, today=TODAY)
    record = ingest.files.row(0, named=True)
    assert (record["rows_read"], record["rows_loaded"], record["rows_rejected"]) == (91, 1, 90)
    assert ingest.rejects.columns == list(REJECTED_ROWS_SCHEMA)
    reasons = ingest.rejects.group_by("reason", "column").len().sort("column")
    # 90 rejects from 90 different cells: three reasons, one per kind of problem.
    assert reasons.height == 3
    assert reasons["len"].to_list() == [30, 30, 30]
    values = ingest.rejects.sort("line")["value"].to_list()
    assert values[:3] == ["2024.01.01", "abc0", "-1"]
    assert ingest.rejects["value"].n_unique() == 90
    assert not ingest.rejects["reason"].str.contains("abc|2024").any()


def test_plausibility_reasons_are_stable_and_keep_the_value() -> None:
    rows = pl.DataFrame(
        {
            "person_id": ["p"] * 3,
            "marker": ["crp"] * 3,
            "value": [-1.0, -2.5, 1500.0],
            "collected_at": [datetime(2024, 1, d) for d in (1, 2, 3)],
            "line": [2, 3, 4],
        }
    )
    _, rejects = apply_plausibility("lab_results", rows, TODAY)
    assert rejects.columns == list(REJECT_SCHEMA)
    assert rejects["reason"].n_unique() == 2
    assert rejects["value"].to_list() == ["-1.0 crp", "-2.5 crp", "1500.0"]


def test_validate_prints_each_reason_once_with_its_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "data" / "raw" / "diet" / "diary.csv", bad_diary(30))
    (tmp_path / "sources.yaml").write_text(
        "sources:\n"
        "  - name: diary\n    kind: diet\n    format: csv\n    path: diet/*.csv\n"
        "    person: alice\n"
        "    columns: {day: Date, energy_kcal: Calories, fiber_g: Fibre (g)}\n"
        '    date_format: "%d/%m/%Y"\n',
        encoding="utf-8",
    )
    path = tmp_path / "data" / "raw" / "diet" / "diary.csv"
    assert main(["validate", str(path), "--source", "diary", "--project-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "would reject:   90" in out
    date_reason = "not a date in the configured date_format '%d/%m/%Y'"
    assert out.count(date_reason) == 1
    line = next(x for x in out.splitlines() if date_reason in x)
    assert line.split("x")[0].strip() == "30"
    assert out.count("not a number") == 1 and out.count("negative amount") == 1
    # A few example lines with their values, not all thirty.
    assert "line 2: '2024.01.01'" in out and "line 5: '2024.02.02'" in out
    assert "2024.05.05" not in out


def test_an_older_warehouse_gets_the_value_column(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    write(raw / "diary.csv", "Date,Calories\n2024-01-01,abc\n2024-01-02,2000\n")
    diary = source(columns={"day": "Date", "energy_kcal": "Calories"})
    conn = duckdb.connect(str(tmp_path / "warehouse.duckdb"))
    store.attach(conn, tmp_path / "store", read_only=False)
    old = {k: v for k, v in REJECTED_ROWS_SCHEMA.items() if k != "value"}
    create_table(conn, "rejected_rows", old)
    conn.execute(
        "INSERT INTO rejected_rows VALUES ('f0', 'other', 'old.csv', 2, 'Day', "
        "'Day ''x'' is not a date', 'x')"
    )
    sync_source(conn, diary, raw, today=TODAY)
    columns = [r[0] for r in conn.execute("DESCRIBE rejected_rows").fetchall()]
    assert columns == [*old, "value"]
    rows = conn.execute(
        "SELECT source, reason, value FROM rejected_rows ORDER BY source"
    ).fetchall()
    assert rows == [("other", "Day 'x' is not a date", None), ("src", "not a number", "abc")]
    conn.close()


def test_dashboard_table_groups_by_source_reason_and_column() -> None:
    conn = duckdb.connect()
    create_table(conn, "rejected_rows", REJECTED_ROWS_SCHEMA)
    rows = [
        ("f1", "diary", "diet/d.csv", 2 + i, "Date", "not a date", f"2024.01.{i + 1:02d}", "r")
        for i in range(30)
    ] + [
        ("f1", "diary", "diet/d.csv", 40, "Calories", "not a number", "abc", "r"),
        ("f1", "diary", "diet/d.csv", 41, "Fibre", "not a number", "x" * 500, "r"),
        ("f2", "labs", "labs/l.csv", 7, "Test", "not a known marker", None, "r"),
    ]
    conn.executemany("INSERT INTO rejected_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    summary = _rejected_summary(conn, _schema(conn))
    assert summary.select("source", "reason", "column", "n").rows() == [
        ("diary", "not a date", "Date", 30),
        ("diary", "not a number", "Calories", 1),
        ("diary", "not a number", "Fibre", 1),
        ("labs", "not a known marker", "Test", 1),
    ]
    examples = summary["examples"].to_list()
    assert examples[0] == (
        'diet/d.csv line 2: "2024.01.01"; diet/d.csv line 3: "2024.01.02"; '
        'diet/d.csv line 4: "2024.01.03"'
    )
    assert examples[2].endswith("x" * 80 + '..."')  # a huge cell is cut
    assert examples[3] == "labs/l.csv line 7"
    html = _rejected_table(DashboardInputs(rejected_summary=summary))
    assert html.count("<tr>") == 5  # the header and one row per group, not 33 rows
    assert '<td>not a date</td><td>Date</td><td class="num">30</td>' in html
    assert "&quot;2024.01.03&quot;" in html and "2024.01.04" not in html
