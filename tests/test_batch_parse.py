"""Batch reading of Cronometer servings exports (`cronometer_servings.parse_batch`) and of the
shared machinery (`parse_csv_batch`); the other CSV formats are in test_batch_formats.py.

The batch reader exists only for speed, so its whole contract is equality: for any list of files
it must return exactly what `parse_each(cronometer_servings.parse, ...)` returns (same rows in the
same order with the same dtypes, same rejects, same counts, same errors on the same files). Every
test here writes real files and compares the two; a few also check the batch really runs the
transform once per header layout rather than once per file.
"""

from __future__ import annotations

import csv
import io
import random
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from pipelines.adapters import FORMATS, AdapterError, cronometer_servings
from pipelines.adapters._csv import (
    RAW,
    CsvTable,
    parse_csv_batch,
    read_csv_table,
    stack_tables,
)
from pipelines.adapters._csv import batch as csv_batch
from pipelines.adapters._csv import read as csv_read
from pipelines.adapters.base import FILE_INDEX, BatchResult, ParseResult, parse_each
from pipelines.config import PersonSpec, SourceConfig
from pipelines.demo import SERVINGS_HEADER
from pipelines.schema import DIET_ENTRY_SCHEMA, REJECT_SCHEMA
from tests.test_fuzz_adapters import CSV_CASES, csv_files

FOODS: tuple[tuple[str, str, str], ...] = (
    ("Oats, rolled", "40.00 g", "Cereal Grains and Pasta"),
    ("Coffee", "8.00 fl oz", "Beverages"),
    ("Egg", "2 large", "Dairy and Egg Products"),
    ("Kimchi", "50.00 g", "Vegetables and Vegetable Products"),
    ("Beef steak", "0.2 kg", "Beef Products"),
    ('Yogurt "Greek", plain', "150 ml", "Dairy and Egg Products"),
    ("Sauerkraut", "1.00 full recipe", "Vegetables and Vegetable Products"),
)
NUTRIENT_HEADERS = [h for h in SERVINGS_HEADER if "(" in h]


def source(person: PersonSpec | None = None, **overrides: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": "batch_cronometer",
        "kind": "diet",
        "format": "cronometer_servings",
        "path": "*/*.csv",
        "person": person or PersonSpec(from_folder=True),
    }
    values.update(overrides)
    return SourceConfig(**values)  # type: ignore[arg-type]


def entries(rng: random.Random, day: str, n: int) -> list[dict[str, str]]:
    """`n` plausible diary rows for `day`, keyed by header (so a test can drop or reorder them)."""
    rows = []
    for _ in range(n):
        food, amount, category = rng.choice(FOODS)
        row = {
            "Day": day,
            "Time": rng.choice(["", "7:17 AM", "12:30 PM", "19:05"]),
            "Group": rng.choice(["Breakfast", "Lunch", "Dinner", "Snacks"]),
            "Food Name": food,
            "Amount": amount,
            "Category": category,
        }
        for header in NUTRIENT_HEADERS:
            # A sliver of blank cells, as entries from other food databases have.
            row[header] = "" if rng.random() < 0.05 else f"{rng.uniform(0, 300):.2f}"
        rows.append(row)
    return rows


def write_servings(
    path: Path,
    rows: Iterable[Mapping[str, str]],
    header: Sequence[str] = SERVINGS_HEADER,
    delimiter: str = ",",
    bom: bool = True,
) -> Path:
    """A file as Cronometer exports it (BOM, CRLF, quotes only where needed)."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([row.get(h, "") for h in header])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((("\ufeff" if bom else "") + buf.getvalue()).encode("utf-8"))
    return path


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def assert_batch_equals_each(paths: Sequence[Path], src: SourceConfig) -> BatchResult:
    """The batch through the registry, as ingest calls it, against the per-file reference (the
    source's format: tests/test_batch_formats.py uses this for the other CSV formats)."""
    fmt = FORMATS[src.format]
    expected = parse_each(fmt.parse, paths, src)
    actual = fmt.parse_batch(paths, src)
    assert_frame_equal(actual.rows, expected.rows, check_exact=True)
    assert_frame_equal(actual.rejects, expected.rejects, check_exact=True)
    assert actual.rows_read == expected.rows_read
    assert describe(actual.errors) == describe(expected.errors)
    return actual


def describe(errors: Mapping[int, BaseException]) -> dict[int, tuple[type, str]]:
    return {i: (type(exc), str(exc)) for i, exc in errors.items()}


def test_registered_with_a_batch_reader() -> None:
    fmt = FORMATS["cronometer_servings"]
    assert fmt.parse is cronometer_servings.parse
    assert fmt.batch is cronometer_servings.parse_batch


def test_many_person_folders_match_parse_each(tmp_path: Path) -> None:
    rng = random.Random(7)
    paths = []
    for person in range(40):
        folder = tmp_path / f"p{person:03d}"
        # A month of history for some, one small next-day file for everyone.
        if person % 4 == 0:
            rows = [r for d in range(1, 29) for r in entries(rng, f"2025-02-{d:02d}", 25)]
            paths.append(write_servings(folder / "servings_2025-02.csv", rows))
        paths.append(
            write_servings(folder / "servings_2025-03-01.csv", entries(rng, "2025-03-01", 30))
        )
    result = assert_batch_equals_each(paths, source())
    assert not result.errors
    assert result.rows.height == sum(result.rows_read) > 1_000
    # Each row carries its own file's folder as person, even though all files ran in one stack.
    persons = result.rows.select(FILE_INDEX, "person_id").unique().sort(FILE_INDEX)
    assert persons["person_id"].to_list() == [paths[i].parent.name for i in persons[FILE_INDEX]]
    assert result.rows.schema == pl.Schema({**DIET_ENTRY_SCHEMA, FILE_INDEX: pl.Int64})


def test_files_whose_headers_differ_match_parse_each(tmp_path: Path) -> None:
    rng = random.Random(11)
    full = list(SERVINGS_HEADER)
    layouts: list[tuple[list[str], str]] = [
        (full, ","),
        ([h for h in full if h not in ("Time", "Sodium (mg)", "Category")], ","),
        ([*full[:5], "Notes", *full[5:], "Vitamin D (IU)", "Water (g)"], ","),
        (list(reversed(full)), ","),
        # Other spelling and case: a layout of its own, matched by header_key.
        (["DAY", " Food ", "amount", "Meal", "Energy (kcal)", "Fiber (g)"], ","),
        (full, ";"),
        (full, "\t"),
        # The same nutrient twice: only the first column is read.
        ([*full, "Fiber (g)"], ","),
    ]
    paths = []
    # Layouts interleave, so the stacks' outputs must be put back in file order.
    for i in range(3 * len(layouts)):
        header, delimiter = layouts[i % len(layouts)]
        rows = entries(rng, f"2025-01-{i % 28 + 1:02d}", rng.randint(0, 12))
        for row in rows:
            row.update({"DAY": row["Day"], " Food ": row["Food Name"], "amount": row["Amount"]})
            row.update({"Meal": row["Group"], "Notes": rng.choice(["", "felt fine"])})
        name = f"p{i % 5}/servings_{i:02d}.csv"
        paths.append(write_servings(tmp_path / name, rows, header, delimiter, bom=i % 2 == 0))
    result = assert_batch_equals_each(paths, source())
    assert not result.errors
    assert result.rows["meal"].null_count() < result.rows.height


def test_rejects_match_parse_each(tmp_path: Path) -> None:
    rng = random.Random(3)
    header = ",".join(SERVINGS_HEADER)

    def line(day: str, food: str, fiber: str = "4.0", sodium: str = "12") -> str:
        cells = {"Day": day, "Food Name": food, "Amount": "100.00 g", "Fiber (g)": fiber}
        cells |= {"Sodium (mg)": sodium, "Energy (kcal)": "120"}
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow([cells.get(h, "") for h in SERVINGS_HEADER])
        return out.getvalue()

    bad_lines = [
        line("2025-01-06", "Rice", fiber="abc"),  # not a number
        line("2025-01-06", "Rice", fiber="1,5"),  # the other decimal separator
        line("2025-01-32", "Rice"),  # not a date
        line("06/01/2025", "Rice"),  # not ISO, and no date_format
        line("", "Rice"),  # blank day
        line("2025-01-06", ""),  # blank food
        line("2025-01-06", "Rice", fiber="-2"),  # negative nutrient
        line("2025-01-06", "Rice", fiber="-2", sodium="x"),  # two problems: first one wins
        line("2025-01-06", "Rice") + ",surplus,fields",  # more fields than the header
        line("2025-01-06", "Rice", fiber="1e999"),  # overflows
        ",,,,,,,,,,,,,,,",  # all blank: not a row at all
        "",
    ]
    paths = []
    for i in range(24):
        good = [line(f"2025-01-{d:02d}", "Kefir") for d in range(1, rng.randint(2, 6))]
        bad = rng.sample(bad_lines, rng.randint(0, 4))
        body = good + bad
        rng.shuffle(body)
        if i % 6 == 0:
            # A quoted field spanning lines sends the file through the csv module's reader.
            body.append('2025-01-09,,,"Lentil soup\n(homemade)",1 bowl,300,,,,,,,,,,')
        paths.append(write_text(tmp_path / f"p{i % 3}" / f"s{i}.csv", "\n".join([header, *body])))
    result = assert_batch_equals_each(paths, source())
    assert not result.errors
    reasons = " | ".join(result.rejects["reason"].to_list())
    for expected in ("not a number", "decimal separator", "not a valid date", "not an ISO 8601"):
        assert expected in reasons
    for expected in ("is blank", "negative amount", "more fields than the header"):
        assert expected in reasons
    assert result.rejects.schema == pl.Schema({**REJECT_SCHEMA, FILE_INDEX: pl.Int64})


def test_bad_files_fail_alone(tmp_path: Path) -> None:
    rng = random.Random(5)
    no_day = [h for h in SERVINGS_HEADER if h != "Day"]
    bad = {
        1: write_text(tmp_path / "p1" / "empty.csv", ""),
        3: write_text(tmp_path / "p1" / "blank.csv", "\n  \n\n"),
        4: write_servings(tmp_path / "p2" / "no_day_a.csv", entries(rng, "2025-01-01", 3), no_day),
        6: write_servings(tmp_path / "p3" / "no_day_b.csv", entries(rng, "2025-01-02", 2), no_day),
        7: write_text(
            tmp_path / "p4" / "latin1.csv",
            "Day,Food Name,Amount\n2025-01-01,Caf\xe9,1 g\n",
            "latin-1",
        ),
        9: write_text(tmp_path / "p5" / "nul.csv", "Day,Food Name,Amount\n2025-01-01,X\x00,1 g\n"),
        10: write_text(
            tmp_path / "p6" / "quotes.csv",
            'Day,Food Name,Amount\n2025-01-01,"Oats" x,1 g\n"open,1,2\n',
        ),
        12: tmp_path / "p7" / "missing.csv",
    }
    paths = []
    for i in range(14):
        day = f"2025-01-{i + 1:02d}"
        paths.append(
            bad.get(i) or write_servings(tmp_path / f"q{i}" / "ok.csv", entries(rng, day, 5))
        )
    result = assert_batch_equals_each(paths, source())
    assert set(result.errors) == set(bad)
    assert all(isinstance(exc, AdapterError) for exc in result.errors.values())
    # The two files missing 'Day' share a layout (so a stack): each error names its own file.
    assert str(paths[4]) in str(result.errors[4]) and str(paths[6]) in str(result.errors[6])
    assert set(result.rows[FILE_INDEX].unique()) == set(range(14)) - set(bad)
    assert [result.rows_read[i] for i in bad] == [0] * len(bad)


def test_person_from_a_column(tmp_path: Path) -> None:
    rng = random.Random(9)
    header = ["Person", *SERVINGS_HEADER]
    paths = []
    for i in range(12):
        rows = entries(rng, f"2025-02-{i + 1:02d}", 6)
        for row in rows:
            row["Person"] = rng.choice(["alice", "bob", "", " carol "])
        paths.append(write_servings(tmp_path / "shared" / f"export_{i}.csv", rows, header))
    # A configured person column missing from some files fails those files only.
    paths.insert(
        3, write_servings(tmp_path / "shared" / "old_a.csv", entries(rng, "2025-01-01", 4))
    )
    paths.insert(
        8, write_servings(tmp_path / "shared" / "old_b.csv", entries(rng, "2025-01-02", 4))
    )
    result = assert_batch_equals_each(paths, source(PersonSpec(column="Person")))
    assert set(result.errors) == {3, 8}
    assert "'Person'" in str(result.errors[8]) and "old_b.csv" in str(result.errors[8])
    assert set(result.rows["person_id"]) == {"alice", "bob", "carol"}
    assert "person id is blank" in " ".join(result.rejects["reason"])


@pytest.mark.parametrize("person", [PersonSpec(fixed="alice"), PersonSpec(from_folder=True)])
def test_date_format_and_decimal_comma(tmp_path: Path, person: PersonSpec) -> None:
    src = source(person, date_format="%d/%m/%Y", decimal=",", delimiter=";")
    paths = []
    for i in range(10):
        day = f"{i + 1:02d}/03/2025"
        text = "\n".join(
            [
                "Day;Food Name;Amount;Energy (kcal);Fiber (g);Sodium (mg)",
                f"{day};Kefir;250 ml;120,5;0;45,25",
                f"{day};Bread;67,48 g;1.234,5;1,8;330",  # grouped thousands
                f"{day};Rice;100 g;130;0.4;1",  # '.' decimal: rejected with a hint
                f"2025-03-{i + 1:02d};Oats;40 g;150;4;2",  # ISO is always accepted
                # A day above 12 confirms the day-first format, so the month-first date below
                # is a typo, rejected on its own (without it the file would be refused whole).
                f"{i + 13:02d}/03/2025;Tea;250 ml;2;0;1",
                f"03/{i + 13:02d}/2025;Egg;2 large;143;0;142",  # month first: not this format
                f"{day};Soup;1 bowl;-5;2;3",
            ]
        )
        paths.append(write_text(tmp_path / f"p{i % 4}" / f"s{i}.csv", text))
    result = assert_batch_equals_each(paths, src)
    assert not result.errors
    assert result.rows.filter(pl.col("food") == "Kefir")["sodium_mg"].to_list() == [45.25] * 10
    assert "decimal separator" in " ".join(result.rejects["reason"])


def test_empty_and_all_failing_batches(tmp_path: Path) -> None:
    assert_batch_equals_each([], source())
    bad = [write_text(tmp_path / "p" / f"{i}.csv", "") for i in range(3)]
    result = assert_batch_equals_each(bad, source())
    assert result.rows.width == 0 and set(result.errors) == {0, 1, 2}
    only_header = [
        write_text(tmp_path / "q" / f"{i}.csv", ",".join(SERVINGS_HEADER)) for i in range(3)
    ]
    result = assert_batch_equals_each(only_header, source())
    assert result.rows.height == 0 and result.rows_read == [0, 0, 0]


def test_transform_runs_once_per_header_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(13)
    short = [h for h in SERVINGS_HEADER if h != "Category"]
    layouts = (SERVINGS_HEADER, short, list(reversed(SERVINGS_HEADER)))
    paths = [
        write_servings(tmp_path / f"p{i}" / "s.csv", entries(rng, "2025-01-01", 8), layouts[i % 3])
        for i in range(30)
    ]
    heights: list[int] = []
    real = cronometer_servings._entries

    def counting(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
        heights.append(table.frame.height)
        return real(table)

    monkeypatch.setattr(cronometer_servings, "_entries", counting)
    batch = cronometer_servings.parse_batch(paths, source())
    assert heights == [10 * 8] * 3  # one run per layout, each over its ten files
    heights.clear()
    each = parse_each(cronometer_servings.parse, paths, source())
    assert len(heights) == 30
    assert_frame_equal(batch.rows, each.rows, check_exact=True)


def parse_with(transform: Callable[[CsvTable], tuple[pl.DataFrame, pl.DataFrame]]) -> Callable:
    """The per-file reference for a transform, as `cronometer_servings.parse` is for `_entries`."""

    def parse(path: Path, src: SourceConfig) -> ParseResult:
        table = read_csv_table(path, src)
        rows, rejects = transform(table)
        return ParseResult(rows, rejects, table.rows_read)

    return parse


@pytest.mark.parametrize(
    "failure",
    [ZeroDivisionError("boom"), pl.exceptions.PanicException("assertion failed: i < len")],
    ids=["exception", "panic"],
)
def test_an_unexpected_failure_stays_on_its_file(tmp_path: Path, failure: BaseException) -> None:
    """A bug that one file's data triggers in the transform (here: any row containing BOOM) must
    not cost the files stacked with it their rows, and must land on that file."""
    rng = random.Random(17)
    paths = []
    for i in range(64):
        rows = entries(rng, "2025-01-01", 4)
        if i in (5, 41):
            rows[1]["Food Name"] = "BOOM"
        paths.append(write_servings(tmp_path / f"p{i}" / "s.csv", rows))
    calls = 0

    def fragile(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
        nonlocal calls
        calls += 1
        if table.frame[RAW].str.contains("BOOM").any():
            raise failure
        return cronometer_servings._entries(table)

    src = source()
    batch = parse_csv_batch(paths, src, fragile)
    batch_calls = calls
    each = parse_each(parse_with(fragile), paths, src)
    assert_frame_equal(batch.rows, each.rows, check_exact=True)
    assert_frame_equal(batch.rejects, each.rejects, check_exact=True)
    assert batch.rows_read == each.rows_read
    assert describe(batch.errors) == describe(each.errors)
    assert set(batch.errors) == {5, 41}
    # Halving finds the two files in a few runs, well short of one run per file.
    assert batch_calls < 30


# ------------------------------------------------------------------------------------------------
# Hostile files (the fuzzing strategy of test_fuzz_adapters), several per batch
# ------------------------------------------------------------------------------------------------

SERVINGS_CASE = next(c for c in CSV_CASES if c.id == "cronometer_servings")
PERSONS = (PersonSpec(from_folder=True), PersonSpec(fixed="alice"), PersonSpec(column="Group"))


@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hostile_batches_match_parse_each(data: st.DataObject) -> None:
    files = data.draw(st.lists(csv_files(SERVINGS_CASE), min_size=2, max_size=6))
    # One source for the batch, as in a real run; the other drawn configs only shaped the bytes.
    src = replace(files[0][1], person=data.draw(st.sampled_from(PERSONS)))
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (content, _) in enumerate(files):
            if i and data.draw(st.booleans()):
                # A copy of an earlier file: same header, so the batch makes a stack even when
                # mutations gave every drawn file its own header.
                content = files[data.draw(st.integers(0, i - 1))][0]
            path = Path(tmp) / f"p{i % 3}" / f"f{i}.csv"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(content)
            paths.append(path)
        assert_batch_equals_each(paths, src)


# ------------------------------------------------------------------------------------------------
# Reading a layout's small files in one Polars read (`_csv.batch._read_stack`)
# ------------------------------------------------------------------------------------------------


def messy_servings(rng: random.Random, day: str) -> str:
    """A small export with what `_csv.read.clean` and the line numbers must get right: blank and
    all-blank rows, cells with spaces around them, a row with surplus fields, a quoted comma."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(SERVINGS_HEADER)
    for row in entries(rng, day, rng.randint(0, 5)):
        cells = [row.get(h, "") for h in SERVINGS_HEADER]
        if rng.random() < 0.3:
            cells[3] = f"  {cells[3]} "
        writer.writerow(cells)
        if rng.random() < 0.2:
            buf.write("\r\n" if rng.random() < 0.5 else "," * (len(SERVINGS_HEADER) - 1) + "\r\n")
        if rng.random() < 0.1:
            writer.writerow([*cells, "surplus"])
    return "\ufeff" + buf.getvalue()


def test_one_read_per_layout_gives_each_files_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stacked read must give every file exactly the table `read_csv_table` gives it, and the
    stack exactly what `stack_tables` makes of those tables; and it must really be one read."""
    rng = random.Random(23)
    paths = [
        write_text(
            tmp_path / f"p{i:02d}" / "s.csv", messy_servings(rng, f"2025-04-{i % 28 + 1:02d}")
        )
        for i in range(60)
    ]
    reads: list[int] = []
    real = csv_batch.polars_cells

    def counting(data_lines: list[str], *args: object) -> pl.DataFrame | None:
        reads.append(len(data_lines))
        return real(data_lines, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(csv_batch, "polars_cells", counting)
    group = {i: csv_read.split_lines(p, source()) for i, p in enumerate(paths)}
    errors: dict[int, BaseException] = {}
    tables, stack = csv_batch._read_group(group, errors)
    assert len(reads) == 1 and not errors and stack is not None
    monkeypatch.setattr(csv_batch, "polars_cells", real)
    for i, path in enumerate(paths):
        expected = read_csv_table(path, source())
        assert_frame_equal(tables[i].frame, expected.frame, check_exact=True)
        assert (tables[i].path, tables[i].headers) == (expected.path, expected.headers)
    assert_frame_equal(stack.frame, stack_tables(tables).frame, check_exact=True)
    assert stack.files == {i: p for i, p in enumerate(paths)}
    assert_batch_equals_each(paths, source())


def test_files_a_stacked_read_cannot_take_are_read_alone(tmp_path: Path) -> None:
    """A quoted field over two lines, or a quote in mid-field that makes Polars see fewer records
    than lines, must not shift any other file's cells or line numbers: the group falls back to one
    read per file, and the result is still exactly the per-file one."""
    rng = random.Random(29)
    header = ",".join(SERVINGS_HEADER)
    paths = [
        write_text(tmp_path / f"p{i}" / "s.csv", messy_servings(rng, f"2025-05-{i + 1:02d}"))
        for i in range(12)
    ]
    # Quotes in mid-field: an odd number (read as maybe multi-line, by the csv module), and an even
    # number that Polars reads as a field left open (fewer records than lines) and the csv module
    # refuses. A quoted field over two lines.
    odd = {
        4: f'{header}\n2025-05-20,,,Oat"s "big",1 g\n',
        7: f'{header}\n2025-05-20,,,Oat"s,"1 g\n',
        10: f'{header}\n2025-05-21,,,"Soup,\nthick",1 bowl\n',
    }
    for i, text in odd.items():
        paths.insert(i, write_text(tmp_path / f"q{i}" / "s.csv", text))
    group = {i: csv_read.split_lines(p, source()) for i, p in enumerate(paths)}
    assert [i for i, r in group.items() if r.spans is not None] == [4, 10]
    errors: dict[int, BaseException] = {}
    tables, stack = csv_batch._read_group(group, errors)
    assert stack is None and set(errors) == {7}
    with pytest.raises(AdapterError, match="malformed quoting") as refused:
        read_csv_table(paths[7], source())
    assert str(errors[7]) == str(refused.value)
    for i, table in tables.items():
        expected = read_csv_table(paths[i], source()).frame
        assert_frame_equal(table.frame, expected, check_exact=True)
    assert tables[4].frame["c3"].to_list() == ['Oat"s "big"']
    assert csv_batch._read_stack({i: r for i, r in group.items() if r.spans is None}) is None
    assert_batch_equals_each(paths, source())


def test_a_failing_stacked_read_falls_back_to_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error in the one-pass read (a bug, a Polars panic) must not cost the batch:
    the files are read one by one, exactly as `parse_each` reads them."""
    rng = random.Random(31)
    paths = [
        write_text(tmp_path / f"p{i}" / "s.csv", messy_servings(rng, f"2025-06-{i + 1:02d}"))
        for i in range(8)
    ]

    def broken(group: object) -> None:
        raise pl.exceptions.PanicException("index out of bounds")

    monkeypatch.setattr(csv_batch, "_read_stack", broken)
    result = assert_batch_equals_each(paths, source())
    assert not result.errors and result.rows.height > 0
