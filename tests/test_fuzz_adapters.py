"""Hostile input: property-based fuzzing of every registered format (issue 8).

Each format starts from a realistic file (its real header and a few real-looking rows) that
hypothesis then mutates: random bytes, files cut at a random byte, 1 MB cells, wrong encodings
(UTF-16 without a byte-order mark, Latin-1 bytes in a UTF-8 file), formula-like cells, absurd values
(negative CRP, 50,000 kcal, a 100 kg food, dates in 1900 and next year, NaN/inf text), blank lines,
extra columns, duplicated headers, header lines repeated mid-file, and structurally broken JSON
and XPT files.

The property, for every format: `FORMATS[fmt].parse(path, source)` either raises `AdapterError`
(and nothing else, ever) or returns a ParseResult whose counts balance
(`rows_read == lines_of(rows) + rejects.height`), whose rows have exactly the target table's schema
and whose rejects each carry a line and a non-empty reason. After the plausibility rules, loaded
rows hold only finite numbers. Through `ingest_source`, a directory with good and fuzzed files
keeps the per-file accounting identity, and the good files always load.

The runs are derandomized (the same examples on every machine, so CI is reproducible). Set
GUTSIGNAL_FUZZ_SCALE=10 (say) for a deeper local run. `FUZZ_EXAMPLES_BUDGET` is the number of
examples the file asks hypothesis for, and the total actually run is printed at the end of the
module (`fuzz examples run: N`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.adapters import FORMATS, AdapterError, ParseResult
from pipelines.adapters.base import lines_of
from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest import ingest_source
from pipelines.schema import REJECT_SCHEMA, TARGET_SCHEMAS
from pipelines.transforms.plausibility import apply_plausibility
from tests.conftest import report_line

SCALE = max(1, int(os.environ.get("GUTSIGNAL_FUZZ_SCALE", "1")))
TODAY = date.today()
NEXT_YEAR = TODAY.year + 1

# Examples per test (multiplied by SCALE); the budget below sums them over every parametrization.
CSV_EXAMPLES = 90 * SCALE
BYTES_EXAMPLES = 25 * SCALE
FHIR_EXAMPLES = 150 * SCALE
XPT_EXAMPLES = 60 * SCALE
INGEST_EXAMPLES = 6 * SCALE

EXAMPLES_RUN: dict[str, int] = {}


def _settings(n: int) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


# ------------------------------------------------------------------------------------------------
# The formats, each with a realistic file to mutate
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One registered format as a configured source, with a realistic file (`sample`, CSV text)."""

    id: str
    source: SourceConfig
    sample: str = ""

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(next(csv.reader(io.StringIO(self.sample)), []))

    @property
    def rows(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(r) for r in list(csv.reader(io.StringIO(self.sample)))[1:])


def _source(fmt: str, kind: str, person: PersonSpec, **kw: Any) -> SourceConfig:
    return SourceConfig(name="fuzz", kind=kind, format=fmt, path="**/*", person=person, **kw)


ALICE = PersonSpec(fixed="alice")

CSV_CASES: tuple[Case, ...] = (
    Case(
        "cronometer_servings",
        _source("cronometer_servings", "diet", ALICE),
        """\
Day,Time,Group,Food Name,Amount,Energy (kcal),Alcohol (g),Caffeine (mg),Carbs (g),Fiber (g),\
Sugars (g),Fat (g),Saturated (g),Protein (g),Sodium (mg),Vitamin D (IU),Water (g),Category
2025-01-06,08:00,Breakfast,"Oats, rolled",40.00 g,150.4,,,27.0,4.0,0.4,2.6,0.5,5.3,2.0,0,3.5,\
Cereal Grains and Pasta
2025-01-06,,Breakfast,"Kefir, plain",250 ml,,,,,,,,,,,100,,Dairy and Egg Products
2025-01-07,12:30 PM,Lunch,Lentil soup,1.00 full recipe,230,0,0,40,16,2,1,0.1,18,400,0,200,\
Legumes and Legume Products
""",
    ),
    Case(
        "cronometer_daily_summary",
        _source("cronometer_daily_summary", "diet", ALICE),
        """\
Date,Energy (kcal),Alcohol (g),Caffeine (mg),Water (g),Carbs (g),Fiber (g),Net Carbs (g),Fat (g),\
Monounsaturated (g),Saturated (g),Trans-Fats (g),Protein (g),Completed
2026-01-01,2105.3,0.0,95.0,2500.0,250.1,32.5,217.6,80.2,30.1,20.5,0.3,95.4,true
2026-01-02,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,0.00,false
2026-01-03,1850,,120,,200,,,70,,,,88,false
""",
    ),
    Case(
        "cronometer_biometrics",
        _source("cronometer_biometrics", "diet", ALICE),
        """\
Day,Time,Group,Metric,Unit,Amount
2026-01-05,07:30,Uncategorized,Weight,lbs,212.5
2026-01-05,07:31,Uncategorized,Blood Pressure,mmHg,120/80
2026-01-06,,Uncategorized,Weight,kg,80.1
""",
    ),
    Case(
        "myfitnesspal",
        _source("myfitnesspal", "diet", ALICE),
        """\
Date,Meal,Calories,Fat (g),Saturated Fat,Polyunsaturated Fat,Monounsaturated Fat,Trans Fat,\
Cholesterol,Sodium (mg),Potassium,Carbohydrates (g),Fiber,Sugar,Protein (g),Vitamin A,Vitamin C,\
Calcium,Iron,Note
2026-01-01,Breakfast,450,15,5,2,6,0,200,400,300,60,8,12,20,10,25,15,20,
2026-01-01,Lunch,700,25,8,4,10,0,80,900,600,80,10,8,40,20,50,10,30,"felt bloated, ate late"
2026-01-02,Dinner,"1,234",40,12,,,,,1100,,120,9,,55,,,,,
""",
    ),
    Case(
        "myfitnesspal_entries",
        _source("myfitnesspal", "diet", ALICE, options={"level": "entries"}),
        """\
Date,Meal,Food,Calories,Fat (g),Carbohydrates (g),Fiber,Protein (g),Sodium (mg)
2026-01-01,Breakfast,Greek yogurt,150,4,8,0,15,60
2026-01-01,Lunch,"Sauerkraut, canned",27,0.2,6,4,1.3,939
""",
    ),
    Case(
        "csv_diet_entries",
        _source(
            "csv",
            "diet",
            PersonSpec(column="person"),
            columns={
                "day": "Date",
                "food": "Food",
                "amount": "Amount",
                "meal": "Meal",
                "energy_kcal": "kcal",
                "fiber_g": "Fibre (g)",
                "caffeine_mg": "Caffeine (g)",
            },
            options={"scale": {"caffeine_mg": 1000}},
        ),
        """\
person,Date,Meal,Food,Amount,kcal,Fibre (g),Caffeine (g),Note
alice,2026-01-07,Breakfast,Oats; rolled,50 g,185.5,5.0,,
alice,2026-01-07,Breakfast,Coffee,250 ml,2,0,0.08,black
bob,2026-01-08,Lunch,Lentil soup,1 bowl,320,8.2,,
""",
    ),
    Case(
        "csv_diet_totals",
        _source(
            "csv",
            "diet",
            ALICE,
            columns={
                "day": "Date",
                "energy_kcal": "Calories",
                "fiber_g": "Fiber",
                "completed": "Done",
            },
        ),
        "Date,Calories,Fiber,Done\n2026-01-01,2100,30,yes\n2026-01-02,1800,,no\n",
    ),
    Case(
        "csv_labs",
        _source("csv", "labs", PersonSpec(column="Patient")),
        """\
Patient,Collected,Test,Result,Units,Reference Range,Flag
alice,2025-02-03 08:15,"C-Reactive Protein, High Sensitivity",1.42,mg/L,0.0-3.0,
alice,2025-03-03 08:20,CRP,<0.3,mg/L,<3.0,
alice,2025-04-07 08:05,CRP,0.62,mg/dL,0.0-0.5,H
alice,2025-04-07 08:05,Ferritin,85,ng/mL,15-150,
""",
    ),
    Case(
        "csv_persons",
        _source("csv", "persons", PersonSpec(column="participant")),
        "participant,Sex,Age (years),Birth Year,notes\nP001,F,34,1990,\nP002,male,41.5,,smoker\n",
    ),
    Case(
        "cronometer_biometrics_outcomes",
        _source("cronometer_biometrics", "outcomes", ALICE),
        "Day,Time,Group,Metric,Unit,Amount\n2026-01-05,07:30,,Heart Rate,bpm,58\n",
    ),
    Case(
        "csv_outcomes",
        _source("csv", "outcomes", ALICE, options={"scale": "0-10"}),
        """\
Date,Measure,Value,Unit,Scale
2026-01-05,Bloating,6,,0-10
2026-01-05 21:30,Stool form,4,,Bristol
2026-01-06,Resting Heart Rate,58,bpm,
2026-01-06,Urgency,yes,,
2026-01-06,Total Sleep Time,450,min,
""",
    ),
    Case(
        "csv_outcomes_wide",
        _source(
            "csv",
            "outcomes",
            ALICE,
            columns={"day": "Date"},
            options={
                "measures": {"bloating": "Bloating", "bristol_stool": "Stool", "urgency": "Urgent"},
                "scales": {"bloating": "0-10", "urgency": "yes/no"},
            },
        ),
        "Date,Bloating,Stool,Urgent,Notes\n2026-01-05,6,4,no,\n2026-01-06,3,,yes,late dinner\n",
    ),
    Case(
        "oura_trends",
        _source("oura_trends", "outcomes", ALICE),
        """\
date,Sleep Score,Total Sleep Time,Average Resting Heart Rate,Lowest Resting Heart Rate,\
Average HRV,Temperature Deviation (°C),Respiratory Rate,Steps,Readiness Score
2026-01-05,82,27000,56.2,51,48,-0.12,14.6,9012,84
2026-01-06,,,,,,,,4400,
""",
    ),
    Case(
        "bearable",
        _source("bearable", "outcomes", ALICE),
        """\
date,date formatted,weekday,time of day,category,rating/amount,detail,notes
2026-01-05T08:00:00.000Z,2026-01-05,Monday,am,Symptom,2,Bloating (Moderate),
2026-01-05T20:00:00.000Z,2026-01-05,Monday,pm,Mood,7,,"ate late, slept badly"
2026-01-06T07:00:00.000Z,2026-01-06,Tuesday,am,Sleep,7:30,Asleep 23:15 – 06:45,
2026-01-06T07:00:00.000Z,2026-01-06,Tuesday,am,Factors,,Coffee | Gluten,
2026-01-06T07:40:00.000Z,2026-01-06,Tuesday,07:40,Bowel Movements,4,,
2026-01-06T22:00:00.000Z,2026-01-06,Tuesday,,Sleep quality,4,Good,
""",
    ),
    Case(
        "synthea_observations",
        _source("synthea_observations", "labs", PersonSpec()),
        """\
DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE
2019-02-13T20:36:19Z,b9c610cd,e1,vital-signs,8302-2,Body Height,170.3,cm,numeric
2019-02-13T20:36:19Z,b9c610cd,e1,laboratory,1988-5,\
C reactive protein [Mass/volume] in Serum or Plasma,4.1,mg/L,numeric
2019-02-13T20:36:19Z,b9c610cd,e1,survey,72166-2,Tobacco smoking status,\
Never smoked tobacco (finding),,text
""",
    ),
)

FHIR_CASE = Case("fhir", _source("fhir", "labs", PersonSpec()))
XPT_CASES: tuple[Case, ...] = tuple(
    Case(f"nhanes_xpt_{kind}", _source("nhanes_xpt", kind, PersonSpec(column="SEQN")))
    for kind in ("labs", "persons", "diet")
)
ALL_CASES = (*CSV_CASES, FHIR_CASE, *XPT_CASES)


def test_every_registered_format_is_fuzzed() -> None:
    assert {c.source.format for c in ALL_CASES} == set(FORMATS)
    kinds = {(c.source.format, c.source.kind) for c in ALL_CASES}
    assert {(f, k) for f, fmt in FORMATS.items() for k in fmt.kinds} <= kinds


# ------------------------------------------------------------------------------------------------
# The property
# ------------------------------------------------------------------------------------------------


def check_parse(case: Case, path: Path, source: SourceConfig | None = None) -> ParseResult | None:
    """Parse `path` as the case's source and check the adapter contract; None on AdapterError."""
    EXAMPLES_RUN[case.id] = EXAMPLES_RUN.get(case.id, 0) + 1
    source = source or case.source
    try:
        result = FORMATS[source.format].parse(path, source)
    except AdapterError as exc:
        assert str(exc).strip(), "an AdapterError must say what is wrong"
        return None
    target = FORMATS[source.format].target(source)
    assert result.rows.schema == pl.Schema(TARGET_SCHEMAS[target])
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert result.rows_read == lines_of(result.rows) + result.rejects.height
    reasons = result.rejects["reason"]
    assert reasons.null_count() == 0
    assert (reasons.str.strip_chars().str.len_chars() > 0).all()
    assert result.rejects["line"].null_count() == 0
    assert result.rows["line"].null_count() == 0
    assert (result.rows["line"] >= 1).all() and (result.rejects["line"] >= 1).all()

    kept, implausible = apply_plausibility(target, result.rows, TODAY)
    assert kept.schema == result.rows.schema
    assert implausible.schema == pl.Schema(REJECT_SCHEMA)
    assert kept.height + implausible.height == result.rows.height
    assert implausible["reason"].null_count() == 0
    floats = [c for c, t in kept.schema.items() if t == pl.Float64]
    if floats and kept.height:
        finite = kept.select(
            pl.all_horizontal([pl.col(c).is_finite().fill_null(True) for c in floats])
        )
        assert finite.to_series().all(), "a loaded number is NaN or infinite"
    return result


# ------------------------------------------------------------------------------------------------
# Hostile CSV files
# ------------------------------------------------------------------------------------------------

FORMULAS = ('=HYPERLINK("http://x","y")', "+cmd", "@SUM(1)", "-2+3", "=1+1", "=cmd|' /C calc'!A0")
ABSURD = (
    "-5",
    "-0.3",
    "50000",
    "100000",
    "100 kg",
    "100000 g",
    "1e999",
    "-1e999",
    "1e-400",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "1900-01-01",
    f"{NEXT_YEAR}-06-01",
    f"{NEXT_YEAR}-06-01T08:00:00Z",
    "0001-01-01",
    "9999-12-31",
    "0000-00-00",
    "2024-02-30",
    "2024-13-01",
    "2024-01-01T25:00",
    "31/12/2024",
    "12/31/2024",
    "99999999999999999999999999",
    "1,234.5",
    "1.234,5",
    "0x10",
    "1_000",
    "١٢٣",  # Arabic-Indic digits
    "１２３",  # fullwidth digits
    "½",
    "<0.3",
    "> 150",
    "<=",
    "120/80",
    "٣/٢",
    "/",
    "TOTAL",
    "Average",
    "true",
    "maybe",
    "-",
    ".",
)
JUNK = (
    "",
    " ",
    '"',
    '""',
    'a"b',
    "a,b",
    "a;b",
    "a\tb",
    "line\nbreak",
    "cr\rinside",
    "\u2028",
    "\ufeff",
    "\u202e",
    "🥑",
    "Ä",
    "\\",
    "\x1a",
)


def cell_values(base: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(base or ("x",)),
        st.sampled_from(ABSURD),
        st.sampled_from(FORMULAS),
        st.sampled_from(JUNK),
        st.text(max_size=12),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
    )


def _join(cells: list[str], delimiter: str, quote: bool) -> str:
    if not quote:
        return delimiter.join(cells)
    out = io.StringIO()
    # The line terminator is what makes the writer quote cells with line breaks in them.
    csv.writer(out, delimiter=delimiter, lineterminator="\n").writerow(cells)
    return out.getvalue().removesuffix("\n")


TEXT_MUTATIONS = ("extra_column", "duplicate_header", "drop_column", "header_case", "repeat_header")
BYTE_MUTATIONS = (
    "truncate",
    "blank_lines",
    "utf16_no_bom",
    "utf16_bom",
    "latin1_bytes",
    "utf8_bom",
    "crlf",
    "cr_only",
    "flip_bytes",
    "no_final_newline",
)


@st.composite
def csv_files(draw: st.DrawFn, case: Case) -> tuple[bytes, SourceConfig]:
    """A mutated version of the case's realistic file, and the source config to read it with."""
    header = list(case.header)
    columns = [tuple(r[i] for r in case.rows) for i in range(len(header))]
    n_rows = draw(st.integers(min_value=0, max_value=6))
    rows: list[list[str]] = []
    for _ in range(n_rows):
        if draw(st.booleans()):
            # A realistic row with a few hostile cells.
            row = list(draw(st.sampled_from(case.rows)))
            for _ in range(draw(st.integers(min_value=1, max_value=3))):
                i = draw(st.integers(min_value=0, max_value=len(header) - 1))
                row[i] = draw(cell_values(columns[i]))
        else:
            row = [draw(cell_values(columns[i])) for i in range(len(header))]
        rows.append(row)

    for mutation in draw(st.lists(st.sampled_from(TEXT_MUTATIONS), max_size=2, unique=True)):
        if mutation == "extra_column":
            header.append(draw(st.sampled_from(("Extra", "", "Energy (kcal)", "Note 2"))))
            columns.append(("1",))
            for row in rows:
                row.append(draw(cell_values(columns[-1])))
        elif mutation == "duplicate_header":
            i = draw(st.integers(min_value=0, max_value=len(header) - 1))
            header.append(header[i])
            columns.append(columns[i])
            for row in rows:
                row.append(draw(cell_values(columns[i])))
        elif mutation == "drop_column" and len(header) > 1:
            i = draw(st.integers(min_value=0, max_value=len(header) - 1))
            del header[i], columns[i]
            for row in rows:
                del row[i]
        elif mutation == "header_case":
            header = [h.upper() if draw(st.booleans()) else f" {h} " for h in header]
        elif mutation == "repeat_header" and rows:
            rows.insert(draw(st.integers(min_value=0, max_value=len(rows))), list(header))
    # Ragged rows: a row loses trailing cells.
    if rows and draw(st.booleans()):
        i = draw(st.integers(min_value=0, max_value=len(rows) - 1))
        rows[i] = rows[i][: draw(st.integers(min_value=0, max_value=len(rows[i])))]

    delimiter = draw(st.sampled_from((",", ",", ",", ";", "\t", "|")))
    quote = draw(st.booleans())
    text = "\n".join(_join(r, delimiter, quote) for r in [header, *rows]) + "\n"

    source = case.source
    config: dict[str, Any] = {}
    if delimiter != "," or draw(st.booleans()):
        config["delimiter"] = draw(st.sampled_from((delimiter, delimiter, None)))
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        # sources.yaml accepts any one character: a wrong one must still fail politely.
        config["delimiter"] = draw(st.sampled_from(('"', " ", "é", "\x00", "\n", "0")))
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        config["decimal"] = ","
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        config["date_format"] = draw(st.sampled_from(("%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y")))
    encoding = draw(st.sampled_from(("utf-8", "utf-8", "utf-8", "latin-1", "utf-16", "cp1252")))
    config["encoding"] = encoding
    source = replace(source, **config)

    try:
        data = text.encode("utf-16" if encoding == "utf-16" else encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    for mutation in draw(st.lists(st.sampled_from(BYTE_MUTATIONS), max_size=2, unique=True)):
        data = _mutate_bytes(draw, mutation, data)
    return data, source


def _mutate_bytes(draw: st.DrawFn, mutation: str, data: bytes) -> bytes:
    if mutation == "truncate":
        return data[: draw(st.integers(min_value=0, max_value=len(data)))]
    if mutation == "blank_lines":
        lines = data.split(b"\n")
        for _ in range(draw(st.integers(min_value=1, max_value=3))):
            at = draw(st.integers(min_value=0, max_value=len(lines)))
            lines.insert(at, draw(st.sampled_from((b"", b"   ", b"\r", b",,,,", b";;", b"\t"))))
        return b"\n".join(lines)
    if mutation in ("utf16_no_bom", "utf16_bom"):
        text = data.decode("utf-8", errors="replace")
        encoded = text.encode("utf-16-le")
        return (b"\xff\xfe" + encoded) if mutation == "utf16_bom" else encoded
    if mutation == "latin1_bytes":
        at = draw(st.integers(min_value=0, max_value=len(data)))
        return (
            data[:at]
            + draw(st.sampled_from((b"\xe9", b"Fr\xfchst\xfcck", b"\xb5g", b"\xff")))
            + data[at:]
        )
    if mutation == "utf8_bom":
        return b"\xef\xbb\xbf" + data
    if mutation == "crlf":
        return data.replace(b"\n", b"\r\n")
    if mutation == "cr_only":
        return data.replace(b"\n", b"\r")
    if mutation == "flip_bytes" and data:
        out = bytearray(data)
        for _ in range(draw(st.integers(min_value=1, max_value=4))):
            out[draw(st.integers(min_value=0, max_value=len(out) - 1))] = draw(
                st.integers(min_value=0, max_value=255)
            )
        return bytes(out)
    if mutation == "no_final_newline":
        return data.rstrip(b"\n")
    return data


@pytest.fixture
def fuzz_path(tmp_path: Path) -> Iterator[Callable[[bytes, str], Path]]:
    def write(data: bytes, name: str = "fuzz.csv") -> Path:
        path = tmp_path / "alice" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    yield write


@pytest.mark.parametrize("case", CSV_CASES, ids=lambda c: c.id)
@_settings(CSV_EXAMPLES)
@given(data=st.data())
def test_csv_formats_survive_hostile_files(
    case: Case, data: st.DataObject, fuzz_path: Callable[[bytes, str], Path]
) -> None:
    content, source = data.draw(csv_files(case))
    check_parse(case, fuzz_path(content, "fuzz.csv"), source)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
@_settings(BYTES_EXAMPLES)
@given(content=st.binary(max_size=2000))
def test_every_format_survives_random_bytes(
    case: Case, content: bytes, fuzz_path: Callable[[bytes, str], Path]
) -> None:
    check_parse(case, fuzz_path(content, "random.bin"))


# ------------------------------------------------------------------------------------------------
# Huge fields: a 1 MB cell in every column of every CSV format
# ------------------------------------------------------------------------------------------------

MEGABYTE = 1 << 20


@pytest.mark.parametrize("case", CSV_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("shape", ["letters", "digits", "quoted_multiline"])
def test_csv_formats_survive_a_one_megabyte_cell(case: Case, shape: str, tmp_path: Path) -> None:
    huge = {
        "letters": "A" * MEGABYTE,
        "digits": "9" * MEGABYTE,
        # A quoted cell spanning lines sends the file through the csv module's reader.
        "quoted_multiline": "line\n" + "x" * MEGABYTE,
    }[shape]
    rows = [list(case.rows[0]) for _ in range(len(case.header))]
    for i, row in enumerate(rows):
        row[i] = huge
    text = "\n".join(_join(r, ",", True) for r in [list(case.header), *rows, list(case.rows[-1])])
    path = tmp_path / "alice" / "huge.csv"
    path.parent.mkdir()
    path.write_text(text + "\n", encoding="utf-8")
    result = check_parse(case, path)
    # One huge cell is a bad row at worst, never a reason to refuse the rest of the file.
    assert result is not None
    # Reasons quote the cell, cut short; the whole row stays in `raw`.
    assert (result.rejects["reason"].str.len_chars().max() or 0) < 2_000
    # Every format counts input lines (MyFitnessPal's summed days included), except Oura's trends
    # and the wide outcome CSV, which count readings: each of these lines has at least one.
    if case.id in ("oura_trends", "csv_outcomes_wide"):
        assert result.rows_read >= len(rows) + 1
    else:
        assert result.rows_read == len(rows) + 1


# ------------------------------------------------------------------------------------------------
# FHIR
# ------------------------------------------------------------------------------------------------


def _observation(i: int) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": f"crp-{i}",
        "status": "final",
        "code": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "1988-5",
                    "display": "C reactive protein [Mass/volume] in Serum or Plasma",
                }
            ],
            "text": "CRP",
        },
        "subject": {"reference": "Patient/123"},
        "effectiveDateTime": "2024-03-01T08:30:00+02:00",
        "valueQuantity": {
            "value": 12.4,
            "unit": "mg/L",
            "system": "http://unitsofmeasure.org",
            "code": "mg/L",
        },
        "referenceRange": [{"low": {"value": 0, "unit": "mg/L"}, "high": {"value": 5}}],
        "interpretation": [{"coding": [{"code": "H"}]}],
    }


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.sampled_from(ABSURD + FORMULAS + JUNK),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
# Paths (within an Observation) that hostile values replace.
FHIR_PATHS: tuple[tuple[str | int, ...], ...] = (
    ("status",),
    ("resourceType",),
    ("code",),
    ("code", "coding"),
    ("code", "coding", 0),
    ("code", "coding", 0, "code"),
    ("code", "coding", 0, "system"),
    ("code", "text"),
    ("subject",),
    ("subject", "reference"),
    ("effectiveDateTime",),
    ("effectivePeriod",),
    ("issued",),
    ("valueQuantity",),
    ("valueQuantity", "value"),
    ("valueQuantity", "comparator"),
    ("valueQuantity", "unit"),
    ("valueQuantity", "code"),
    ("valueQuantity", "system"),
    ("valueString",),
    ("valueInteger",),
    ("valueCodeableConcept",),
    ("dataAbsentReason",),
    ("referenceRange",),
    ("referenceRange", 0),
    ("referenceRange", 0, "low", "value"),
    ("referenceRange", 0, "high"),
    ("referenceRange", 0, "text"),
    ("interpretation",),
    ("interpretation", 0, "coding"),
)


def _set(doc: Any, path: tuple[str | int, ...], value: Any) -> None:
    """Set doc[path] = value where the path exists (or its last step can be added)."""
    for step in path[:-1]:
        if isinstance(doc, dict) and isinstance(step, str) and step in doc:
            doc = doc[step]
        elif isinstance(doc, list) and isinstance(step, int) and step < len(doc):
            doc = doc[step]
        else:
            return
    last = path[-1]
    if isinstance(doc, dict) and isinstance(last, str):
        doc[last] = value
    elif isinstance(doc, list) and isinstance(last, int) and last < len(doc):
        doc[last] = value


def _dumps(value: Any) -> str:
    """JSON text, also for huge ints (beyond Python's default int-to-str digit limit)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True)


FHIR_BYTE_MUTATIONS = (
    "truncate",
    "utf16_no_bom",
    "utf16_bom",
    "latin1_bytes",
    "utf8_bom",
    "crlf",
    "flip_bytes",
    "blank_lines",
)


@st.composite
def fhir_files(draw: st.DrawFn) -> bytes:
    observations: list[Any] = []
    for i in range(draw(st.integers(min_value=0, max_value=4))):
        obs = _observation(i)
        for path in draw(st.lists(st.sampled_from(FHIR_PATHS), max_size=3)):
            _set(obs, path, draw(JSON_VALUES))
        if draw(st.integers(min_value=0, max_value=5)) == 0:
            obs = draw(JSON_VALUES)  # not an Observation at all
        observations.append(obs)
    if draw(st.booleans()):
        observations.append({"resourceType": "Patient", "id": "123"})
    shape = draw(st.sampled_from(("bundle", "ndjson", "array", "single", "nested_bundle")))
    if shape == "bundle":
        entries: list[Any] = [{"resource": o} for o in observations]
        if draw(st.booleans()):
            entries.append(draw(JSON_VALUES))
        text = _dumps({"resourceType": "Bundle", "type": "collection", "entry": entries})
    elif shape == "nested_bundle":
        inner = {"resourceType": "Bundle", "entry": [{"resource": o} for o in observations]}
        text = _dumps({"resourceType": "Bundle", "entry": [{"resource": inner}]})
    elif shape == "ndjson":
        lines = [_dumps(o) for o in observations]
        if draw(st.booleans()):
            lines.insert(
                draw(st.integers(0, len(lines))), draw(st.sampled_from(("", "{", "[1]", "null")))
            )
        text = "\n".join(lines)
    elif shape == "array":
        text = _dumps(observations)
    else:
        text = _dumps(observations[0] if observations else _observation(0))
    data = text.encode("utf-8")
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        for mutation in draw(
            st.lists(st.sampled_from(FHIR_BYTE_MUTATIONS), max_size=2, unique=True)
        ):
            data = _mutate_bytes(draw, mutation, data)
    return data


@_settings(FHIR_EXAMPLES)
@given(content=fhir_files())
def test_fhir_survives_hostile_json(
    content: bytes, fuzz_path: Callable[[bytes, str], Path]
) -> None:
    check_parse(FHIR_CASE, fuzz_path(content, "fhir.json"))


def test_fhir_survives_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    for depth in (50, 300, 900, 5000):
        value = _observation(0)
        nested: Any = 1
        for _ in range(depth):
            nested = [nested]
        value["valueQuantity"] = nested
        path.write_text(_dumps(value) if depth < 900 else "[" * depth + "]" * depth)
        check_parse(FHIR_CASE, path)
        deep_bundle: Any = _observation(0)
        for _ in range(depth // 3):
            deep_bundle = {"resourceType": "Bundle", "entry": [{"resource": deep_bundle}]}
        try:
            text = _dumps(deep_bundle)
        except RecursionError:
            continue
        path.write_text(text)
        check_parse(FHIR_CASE, path)


# ------------------------------------------------------------------------------------------------
# NHANES XPT
# ------------------------------------------------------------------------------------------------


def _ibm(value: float | None) -> bytes:
    if value is None or math.isnan(value):
        return b"." + bytes(7)
    if value == 0:
        return bytes(8)
    sign = 0x80 if value < 0 else 0
    value = abs(value)
    _, exp2 = math.frexp(value)
    exp16 = math.ceil(exp2 / 4)
    fraction = round(math.ldexp(value, 56 - 4 * exp16))
    if fraction >= 1 << 56:
        fraction >>= 4
        exp16 += 1
    return bytes([sign | (exp16 + 64)]) + fraction.to_bytes(7, "big")


def _card(text: str | bytes) -> bytes:
    raw = text.encode("latin-1") if isinstance(text, str) else text
    return raw.ljust(80, b" ")


def xpt_bytes(columns: dict[str, list[Any]]) -> bytes:
    """XPORT v5 bytes for `columns` (name -> values; str values make a character variable)."""
    names = list(columns)
    nobs = len(next(iter(columns.values()))) if columns else 0
    layout: list[tuple[str, bool, int, int]] = []
    position = 0
    for name in names:
        values = columns[name]
        numeric = not any(isinstance(v, str) for v in values)
        length = 8 if numeric else max(1, *(len((v or "").encode()) for v in values))
        layout.append((name, numeric, length, position))
        position += length
    stamp = "01JAN24:00:00:00"
    out = bytearray()
    out += _card("HEADER RECORD*******LIBRARY HEADER RECORD!!!!!!!" + "0" * 30)
    out += _card("SAS     SAS     SASLIB  9.4     X64_10PR" + " " * 24 + stamp)
    out += _card(stamp)
    out += _card(
        "HEADER RECORD*******MEMBER  HEADER RECORD!!!!!!!" + "0" * 17 + "16" + "0" * 8 + "140"
    )
    out += _card("HEADER RECORD*******DSCRPTR HEADER RECORD!!!!!!!" + "0" * 30)
    out += _card("SAS     FUZZ    SASDATA 9.4     X64_10PR" + " " * 24 + stamp)
    out += _card(stamp)
    out += _card(
        f"HEADER RECORD*******NAMESTR HEADER RECORD!!!!!!!000000{len(names):04d}" + "0" * 20
    )
    namestrs = bytearray()
    for i, (name, numeric, length, pos) in enumerate(layout):
        namestrs += struct.pack(
            ">hhhh8s40s8shhh2s8shhl52s",
            1 if numeric else 2,
            0,
            length,
            i + 1,
            name.encode("latin-1")[:8].ljust(8),
            b"label".ljust(40),
            b" " * 8,
            0,
            0,
            0,
            b"  ",
            b" " * 8,
            0,
            0,
            pos,
            bytes(52),
        )
    out += namestrs.ljust(-(-len(namestrs) // 80) * 80, b" ")
    out += _card("HEADER RECORD*******OBS     HEADER RECORD!!!!!!!" + "0" * 30)
    body = bytearray()
    for row in range(nobs):
        for name, numeric, length, _ in layout:
            value = columns[name][row]
            body += _ibm(value) if numeric else (value or "").encode().ljust(length, b" ")
    out += body.ljust(-(-len(body) // 80) * 80, b" ")
    return bytes(out)


XPT_VARIABLES = {
    "nhanes_xpt_labs": ("SEQN", "LBXHSCRP", "LBDHRPLC", "LBXWBCSI"),
    "nhanes_xpt_persons": ("SEQN", "RIAGENDR", "RIDAGEYR"),
    "nhanes_xpt_diet": ("SEQN", "DR1DRSTZ", "DR1TKCAL", "DR1TPROT", "DR1TFIBE", "DR1TTFAT"),
}
XPT_REALISTIC = {
    "SEQN": (93703.0, 93704.0, 93705.0),
    "LBXHSCRP": (0.11, 1.4, 12.9),
    "LBDHRPLC": (0.0, 1.0),
    "LBXWBCSI": (5.6, 7.2),
    "RIAGENDR": (1.0, 2.0),
    "RIDAGEYR": (2.0, 34.0, 80.0),
    "DR1DRSTZ": (1.0, 2.0, 5.0),
    "DR1TKCAL": (1850.0, 2400.0),
    "DR1TPROT": (70.0, 95.5),
    "DR1TFIBE": (12.0, 30.2),
    "DR1TTFAT": (60.0, 88.0),
}
# Numbers an IBM float can hold (|x| from 16^-64 to 16^63).
XPT_NUMBERS = st.one_of(
    st.none(),
    st.just(0.0),
    st.floats(min_value=1e-60, max_value=1e70),
    st.floats(min_value=-1e70, max_value=-1e-60),
    st.sampled_from((-5.0, -0.5, 1500.0, 50000.0, 200.0, 9.0, 77.0, 1e70, 3.0, 1.5)),
)


@st.composite
def xpt_files(draw: st.DrawFn, case: Case) -> bytes:
    names = list(XPT_VARIABLES[case.id])
    extras = st.sampled_from(("seqn", "X", "RIDAGEYR", "DR1TKCAL", "LBXHSCRP", ""))
    for extra in draw(st.lists(extras, max_size=2, unique=True)):
        if extra not in names:
            names.append(extra)
    if draw(st.integers(min_value=0, max_value=5)) == 0:
        names.remove(draw(st.sampled_from(names)))
    n = draw(st.integers(min_value=0, max_value=6))
    text_column = draw(st.sampled_from([None, *names])) if names else None
    columns: dict[str, list[Any]] = {}
    for name in names:
        realistic = st.sampled_from(XPT_REALISTIC.get(name, (1.0,)))
        if name == text_column:
            values: list[Any] = draw(
                st.lists(st.text(max_size=6) | st.none(), min_size=n, max_size=n)
            )
        else:
            values = draw(st.lists(realistic | XPT_NUMBERS, min_size=n, max_size=n))
        columns[name] = values
    data = xpt_bytes(columns)
    for mutation in draw(
        st.lists(st.sampled_from(("truncate", "flip_bytes", "append")), max_size=2)
    ):
        if mutation == "append":
            data += draw(st.binary(max_size=200))
        else:
            data = _mutate_bytes(draw, mutation, data)
    return data


@pytest.mark.parametrize("case", XPT_CASES, ids=lambda c: c.id)
@_settings(XPT_EXAMPLES)
@given(data=st.data())
def test_nhanes_xpt_survives_hostile_files(
    case: Case, data: st.DataObject, fuzz_path: Callable[[bytes, str], Path]
) -> None:
    check_parse(case, fuzz_path(data.draw(xpt_files(case)), "FUZZ_J.XPT"))


# ------------------------------------------------------------------------------------------------
# Through ingest: accounting per file, and good files always load
# ------------------------------------------------------------------------------------------------


GOOD_SEQN = 123456789.0


def _good_file(case: Case) -> bytes:
    """A clean file whose rows all belong to person 'good', whom the fuzzing never produces."""
    if case.id == "fhir":
        obs = _observation(0)
        obs["subject"] = {"reference": "Patient/good"}
        return json.dumps(obs).encode()
    if case.id.startswith("nhanes_xpt"):
        columns = {n: [XPT_REALISTIC[n][0]] for n in XPT_VARIABLES[case.id]}
        columns["SEQN"] = [GOOD_SEQN]
        return xpt_bytes(columns)
    rows = [list(r) for r in case.rows]
    person = case.source.person.column or ("PATIENT" if "PATIENT" in case.header else None)
    if person is not None:
        i = [h.lower() for h in case.header].index(person.lower())
        for row in rows:
            row[i] = "good"
    return ("\n".join(_join(r, ",", True) for r in [list(case.header), *rows]) + "\n").encode()


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
@_settings(INGEST_EXAMPLES)
@given(data=st.data())
def test_ingest_accounting_holds_and_bad_files_never_stop_good_ones(
    case: Case, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    raw = tmp_path_factory.mktemp("raw")
    (raw / "good").mkdir()
    (raw / "good" / "good.dat").write_bytes(_good_file(case))
    person = case.source.person
    if person.fixed is not None:
        person = PersonSpec(from_folder=True)
    source = replace(case.source, path="*/*.dat", person=person)
    alone = ingest_source(source, raw, today=TODAY)
    good_rows = alone.files.row(0, named=True)["rows_loaded"]
    assert alone.files.row(0, named=True)["status"] == "loaded"
    assert good_rows > 0

    (raw / "alice").mkdir()
    n_bad = data.draw(st.integers(min_value=1, max_value=3))
    for i in range(n_bad):
        if case.id == "fhir":
            content = data.draw(fhir_files())
        elif case.id.startswith("nhanes_xpt"):
            content = data.draw(xpt_files(case))
        elif data.draw(st.integers(min_value=0, max_value=4)) == 0:
            content = data.draw(st.binary(max_size=500))
        else:
            content = data.draw(csv_files(case))[0]
        (raw / "alice" / f"bad{i}.dat").write_bytes(content)
        EXAMPLES_RUN[case.id] = EXAMPLES_RUN.get(case.id, 0) + 1
    result = ingest_source(source, raw, today=TODAY)

    files = result.files
    assert files.height == n_bad + 1
    balance = files["rows_loaded"] + files["rows_rejected"] + files["rows_duplicate"]
    assert (files["rows_read"] == balance).all()
    assert files["status"].is_in(["loaded", "error", "duplicate_file"]).all()
    assert (files.filter(pl.col("status") == "error")["error"].str.len_chars() > 0).all()
    good = files.filter(pl.col("path") == "good/good.dat").row(0, named=True)
    assert good["status"] == "loaded", good["error"]
    assert good["rows_loaded"] == good_rows
    good_ids = ("good", str(int(GOOD_SEQN)))
    assert lines_of(result.rows.filter(pl.col("person_id").is_in(good_ids))) == good_rows
    counts = dict(result.rejects.group_by("file_id").len().iter_rows())
    for row in files.iter_rows(named=True):
        if row["status"] == "loaded":
            assert counts.get(row["file_id"], 0) == row["rows_rejected"]


# ------------------------------------------------------------------------------------------------
# Regressions: each bug the fuzzing found, pinned by a plain example
# ------------------------------------------------------------------------------------------------


def _case(case_id: str) -> Case:
    return next(c for c in ALL_CASES if c.id == case_id)


def _write(tmp_path: Path, data: bytes | str, name: str = "f.csv") -> Path:
    path = tmp_path / "alice" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_bare_cr_inside_a_file_with_lf_lines_is_a_line_end(tmp_path: Path) -> None:
    # Was: csv.Error "new-line character seen in unquoted field" escaping the adapter.
    case = _case("csv_diet_totals")
    path = _write(
        tmp_path, "\nDate,Calories,Fiber,Done\r2026-01-01,2100,30,yes\r\n2026-01-02,1,,no\n"
    )
    result = check_parse(case, path)
    assert result is not None and result.rows["line"].to_list() == [3, 4]


def test_a_one_megabyte_note_spanning_lines_does_not_refuse_the_file(tmp_path: Path) -> None:
    # Was: AdapterError "field larger than field limit (131072)" for the whole file.
    case = _case("myfitnesspal_entries")
    note = '"' + "x" * MEGABYTE + '\nmore"'
    text = "Date,Meal,Food,Calories,Note\n2026-01-01,Lunch,Soup,100," + note + "\n"
    result = check_parse(case, _write(tmp_path, text + "2026-01-02,Lunch,Soup,120,\n"))
    assert result is not None and result.rows["line"].to_list() == [2, 4]


@pytest.mark.parametrize("cell", ["١٥٠", "１５０", "1e999", "-1e999"])
def test_non_ascii_digits_and_overflowing_numbers_are_rejected_not_nulled(
    cell: str, tmp_path: Path
) -> None:
    # Was: "١٥٠" matched \d, failed the cast and loaded as null (a value lost silently); "1e999"
    # loaded as infinity.
    case = _case("cronometer_servings")
    text = "Day,Food Name,Amount,Energy (kcal)\n2026-01-01,Soup,100 g," + cell + "\n"
    result = check_parse(case, _write(tmp_path, text))
    assert result is not None and result.rows.height == 0
    assert result.rejects.row(0, named=True)["column"] == "Energy (kcal)"


def test_blood_pressure_with_non_ascii_digits_is_rejected_not_a_crash(tmp_path: Path) -> None:
    # Was: a strict cast of "١٢٠" raising InvalidOperationError out of the adapter.
    case = _case("cronometer_biometrics")
    text = (
        "Day,Metric,Unit,Amount\n2026-01-05,Blood Pressure,mmHg,١٢٠/٨٠\n2026-01-06,Weight,kg,80\n"
    )
    result = check_parse(case, _write(tmp_path, text))
    assert result is not None and result.rows.height == 1 and result.rejects.height == 1


@pytest.mark.parametrize(
    "change",
    [
        {"valueQuantity": {"value": 10**400, "unit": "mg/L"}},
        {"valueQuantity": None, "valueInteger": 10**400},
        {"valueQuantity": {"value": "1e999", "unit": "mg/L"}},
        {"referenceRange": [{"low": {"value": 10**400}, "high": {"value": float("inf")}}]},
    ],
)
def test_fhir_huge_numbers_are_rejected_not_a_crash(change: dict[str, Any], tmp_path: Path) -> None:
    # Was: OverflowError (int too large to convert to float) escaping the adapter, and "1e999"
    # loading as infinity.
    obs = _observation(0)
    obs.update(change)
    if obs.get("valueQuantity") is None:
        obs.pop("valueQuantity")
    result = check_parse(FHIR_CASE, _write(tmp_path, _dumps(obs), "obs.json"))
    assert result is not None and result.rows_read == 1
    if "referenceRange" in change:  # context only: the result loads without limits
        assert result.rows["ref_low"].to_list() == [None]
    else:
        assert result.rejects.height == 1


def test_ndjson_line_with_a_unicode_line_separator_in_a_string_loads(tmp_path: Path) -> None:
    # Was: str.splitlines() cut the line at U+2028 and rejected both halves as invalid JSON.
    obs = _observation(0)
    obs["code"]["text"] = "CRP\u2028(serum)"
    text = _dumps(obs) + "\n" + _dumps(_observation(1)) + "\n"
    result = check_parse(FHIR_CASE, _write(tmp_path, text, "obs.ndjson"))
    assert result is not None and result.rows["line"].to_list() == [1, 2]


def test_nhanes_variable_names_differing_only_in_case_are_an_adapter_error(tmp_path: Path) -> None:
    # Was: polars DuplicateError when parse() upper-cased the names.
    data = xpt_bytes({"SEQN": [1.0], "seqn": [2.0], "RIDAGEYR": [30.0]})
    with pytest.raises(AdapterError, match="appears twice"):
        FORMATS["nhanes_xpt"].parse(
            _write(tmp_path, data, "D.XPT"), _case("nhanes_xpt_persons").source
        )


def test_nhanes_text_variable_where_a_number_belongs_is_an_adapter_error(tmp_path: Path) -> None:
    # Was: "rounding can only be used on numeric types" / "cannot compare string with numeric".
    data = xpt_bytes({"SEQN": [1.0], "LBXHSCRP": [1.2], "LBDHRPLC": ["0"]})
    with pytest.raises(AdapterError, match="LBDHRPLC"):
        FORMATS["nhanes_xpt"].parse(
            _write(tmp_path, data, "H.XPT"), _case("nhanes_xpt_labs").source
        )


def test_nhanes_corrupt_recall_status_is_rejected_not_a_crash(tmp_path: Path) -> None:
    # Was: a strict Int64 cast of 1e70 raising InvalidOperationError.
    data = xpt_bytes({"SEQN": [1.0, 2.0], "DR1DRSTZ": [1e70, 1.0], "DR1TKCAL": [2000.0, 1800.0]})
    result = check_parse(_case("nhanes_xpt_diet"), _write(tmp_path, data, "DR1TOT_J.XPT"))
    assert result is not None and result.rows["person_id"].to_list() == ["2"]
    assert "unknown status code" in result.rejects.row(0, named=True)["reason"]


def test_an_unexpected_adapter_error_fails_its_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in an adapter (any exception but AdapterError) fails its file; the rest load."""
    case = _case("csv_diet_totals")
    real = FORMATS["csv"]

    def flaky(path: Path, source: SourceConfig) -> ParseResult:
        if path.name == "bad.csv":
            raise ZeroDivisionError("boom")
        if path.name == "panic.csv":  # a Rust panic inside Polars is a BaseException
            raise pl.exceptions.PanicException("assertion failed: i < self.len()")
        return real.parse(path, source)

    # No batch reader, so ingest runs `flaky` file by file (the csv format's own batch reader
    # would not call it).
    monkeypatch.setitem(FORMATS, "csv", replace(real, parse=flaky, batch=None))
    raw = tmp_path / "raw"
    _write(raw, case.sample, "good.csv")
    _write(raw, case.sample + "\n", "bad.csv")
    _write(raw, case.sample + "\n\n", "panic.csv")
    result = ingest_source(replace(case.source, path="*/*.csv"), raw, today=TODAY)
    status = dict(result.files.select("path", "status").iter_rows())
    assert status == {
        "alice/bad.csv": "error",
        "alice/good.csv": "loaded",
        "alice/panic.csv": "error",
    }
    errors = result.files.filter(pl.col("status") == "error").sort("path")["error"].to_list()
    assert "ZeroDivisionError" in errors[0] and "bug" in errors[0]
    assert "PanicException" in errors[1]
    assert result.rows.height == 2


# ------------------------------------------------------------------------------------------------
# The examples run, for the README figure
# ------------------------------------------------------------------------------------------------

FUZZ_EXAMPLES_BUDGET = (
    CSV_EXAMPLES * len(CSV_CASES)
    + BYTES_EXAMPLES * len(ALL_CASES)
    + FHIR_EXAMPLES
    + XPT_EXAMPLES * len(XPT_CASES)
    + INGEST_EXAMPLES * len(ALL_CASES)
)


@pytest.fixture(autouse=True, scope="module")
def _report_examples(request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the number of fuzzed files parsed once the module is done (shown even with -q)."""
    yield
    report_line(
        request.config,
        f"fuzz examples run: {sum(EXAMPLES_RUN.values())} files parsed "
        f"(budget {FUZZ_EXAMPLES_BUDGET} examples, GUTSIGNAL_FUZZ_SCALE={SCALE})",
    )
