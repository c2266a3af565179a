"""Batch reading of every CSV format besides Cronometer servings (test_batch_parse.py has that one
and the shared machinery, `parse_csv_batch`).

Each format's `parse_batch` runs its table transform once per stack of files with the same header,
so whatever the transform does per file (person ids from folders, day sums, duplicate dates or
persons, the CRP method decided per file, dates refused per file) must give a stack exactly what it
gives each file alone. The tests write many files (the fixtures the adapter tests use, the fuzz
cases' samples, shortened copies, several files per person folder with the same days, files that
fail) and compare `Format.parse_batch` with `parse_each` over `Format.parse`.
"""

from __future__ import annotations

import random
import tempfile
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.adapters import FORMATS, AdapterError
from pipelines.adapters._csv import CsvTable, TableTransform
from pipelines.adapters._csv import batch as csv_batch
from pipelines.adapters._csv.read import split_lines
from pipelines.adapters.base import FILE_INDEX
from pipelines.config import PersonSpec, SourceConfig
from tests.test_batch_parse import assert_batch_equals_each
from tests.test_diet_adapters import DIARY_COLUMNS
from tests.test_fuzz_adapters import CSV_CASES, csv_files
from tests.test_labs import DEMO_COLUMNS

FIXTURES = Path(__file__).parent / "fixtures"
DIET = FIXTURES / "diet_adapters"
FOLDERS = PersonSpec(from_folder=True)
# The same mappings as the adapters' own tests.
LAB_COLUMNS = DEMO_COLUMNS
FUZZ = {case.id: case for case in CSV_CASES}


def src(fmt: str, kind: str, person: PersonSpec = FOLDERS, **overrides: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": "batch",
        "kind": kind,
        "format": fmt,
        "path": "*/*.csv",
        "person": person,
    }
    values.update(overrides)
    return SourceConfig(**values)  # type: ignore[arg-type]


# (id, source, files as bytes): the fixtures of the adapter tests with the settings they are read
# with there, and the fuzz cases' samples (formats without a fixture of their own).
CASES: list[tuple[str, SourceConfig, list[bytes]]] = [
    (
        "daily_summary",
        src("cronometer_daily_summary", "diet"),
        [
            (DIET / name).read_bytes()
            for name in (
                "cronometer_dailysummary.csv",
                "cronometer_dailysummary_2019.csv",
                "dailysummary_completed_false.csv",
                "dailysummary_groups.csv",
            )
        ],
    ),
    (
        "daily_summary_spreadsheet",
        src("cronometer_daily_summary", "diet", date_format="%m/%d/%Y"),
        [(DIET / "dailysummary_spreadsheet.csv").read_bytes()],
    ),
    (
        "biometrics",
        src("cronometer_biometrics", "diet"),
        [(DIET / "cronometer_biometrics.csv").read_bytes()],
    ),
    (
        "myfitnesspal",
        src("myfitnesspal", "diet"),
        [(DIET / "Nutrition-Summary-2026-01-01-to-2026-01-03.csv").read_bytes()],
    ),
    (
        "myfitnesspal_custom_meals",
        src("myfitnesspal", "diet", date_format="%m/%d/%Y"),
        [(DIET / "mfp_custom_meals.csv").read_bytes()],
    ),
    (
        "myfitnesspal_entries",
        src("myfitnesspal", "diet", options={"level": "entries"}),
        [FUZZ["myfitnesspal_entries"].sample.encode()],
    ),
    (
        "csv_diet_entries",
        src(
            "csv",
            "diet",
            columns=DIARY_COLUMNS,
            date_format="%d.%m.%Y",
            delimiter=";",
            decimal=",",
            encoding="latin-1",
            options={"scale": {"caffeine_mg": 1000}},
        ),
        [(DIET / "diary_semicolon_latin1.csv").read_bytes()],
    ),
    (
        "csv_diet_entries_person_column",
        FUZZ["csv_diet_entries"].source,
        [FUZZ["csv_diet_entries"].sample.encode()],
    ),
    (
        "csv_diet_totals",
        replace(FUZZ["csv_diet_totals"].source, person=FOLDERS),
        [FUZZ["csv_diet_totals"].sample.encode()],
    ),
    (
        "csv_labs",
        src(
            "csv",
            "labs",
            PersonSpec(column="Patient"),
            columns=LAB_COLUMNS,
            datetime_format="%Y-%m-%d %H:%M",
        ),
        [(FIXTURES / "adapters" / "labs_portal.csv").read_bytes()],
    ),
    (
        "csv_labs_from_folder",
        src("csv", "labs", columns=LAB_COLUMNS),
        [(FIXTURES / "adapters" / "labs_portal.csv").read_bytes()],
    ),
    (
        "csv_persons",
        src("csv", "persons", PersonSpec(column="participant")),
        [(FIXTURES / "persons" / "covariates.csv").read_bytes()],
    ),
    (
        "csv_persons_nhanes",
        src(
            "csv",
            "persons",
            PersonSpec(column="SEQN"),
            decimal=",",
            options={"sex_codes": {9: None}},
        ),
        [(FIXTURES / "persons" / "nhanes_demo.csv").read_bytes()],
    ),
    (
        "csv_persons_synthea",
        src("csv", "persons", PersonSpec(column="Id")),
        [(FIXTURES / "persons" / "synthea_patients.csv").read_bytes()],
    ),
]
CASES += [
    (
        "synthea_observations" + ("_from_folder" if person.from_folder else ""),
        src("synthea_observations", "labs", person),
        [(FIXTURES / "synthea" / name).read_bytes() for name in ("observations.csv",)],
    )
    for person in (PersonSpec(column="PATIENT"), FOLDERS)
] + [
    (
        "synthea_observations_no_category",
        src("synthea_observations", "labs", PersonSpec(column="PATIENT")),
        [(FIXTURES / "synthea" / "observations_no_category.csv").read_bytes()],
    )
]
BROKEN = {"empty.csv": b"", "other_header.csv": b"Foo,Bar\nx,y\n"}


def shortened(content: bytes, rng: random.Random) -> bytes:
    """The header and a random run of the data lines: another file of the same layout (a stack
    with the original), with fewer rows. Only for files without quoted line breaks."""
    lines = content.split(b"\n")
    if content.count(b'"') % 2 or len(lines) < 3:
        return content
    start = rng.randint(1, len(lines) - 1)
    return b"\n".join([lines[0], *lines[start : rng.randint(start, len(lines))]])


def write_batch(root: Path, files: list[bytes], rng: random.Random) -> tuple[list[Path], set[int]]:
    """Each file in several person folders, whole and shortened, several files per folder (so one
    person's files repeat the same days), in shuffled order, with broken files among them; and the
    indexes of the broken ones."""
    contents = [c for c in files for _ in range(3)] + [shortened(c, rng) for c in files * 4]
    rng.shuffle(contents)
    paths = []
    for i, content in enumerate(contents):
        path = root / f"p{i % 4}" / f"f{i:03d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        paths.append(path)
    broken: set[int] = set()
    # Two files of a layout no transform accepts, so they also fail as a stack.
    for n, (name, content) in enumerate(
        [*BROKEN.items(), ("other_again.csv", BROKEN["other_header.csv"])]
    ):
        path = root / f"p{n}" / name
        path.write_bytes(content)
        at = rng.randint(0, len(paths))
        paths.insert(at, path)
        broken = {i + 1 if i >= at else i for i in broken} | {at}
    return paths, broken


@pytest.mark.parametrize(("case_id", "source", "files"), CASES, ids=[c[0] for c in CASES])
def test_many_fixture_files_match_parse_each(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    case_id: str,
    source: SourceConfig,
    files: list[bytes],
) -> None:
    rng = random.Random(case_id)
    paths, broken = write_batch(tmp_path, files, rng)
    fmt = FORMATS[source.format]
    assert fmt.batch is not None, "every CSV format has a batch reader"
    calls = 0
    wrapped: set[TableTransform] = set()
    real = csv_batch._transform_group

    def counting(tables: dict, transform: TableTransform, *args: object) -> list:
        if transform in wrapped:  # a split stack's parts: the transform is counted already
            return real(tables, transform, *args)  # type: ignore[arg-type]

        def counted(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
            nonlocal calls
            calls += 1
            return transform(table)

        wrapped.add(counted)
        return real(tables, counted, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(csv_batch, "_transform_group", counting)
    result = assert_batch_equals_each(paths, source)
    # Really batched: one transform run per layout, and three for the broken pair (the stack,
    # then each file for its own message); a stack that failed and was split would need more.
    readable = [p for i, p in enumerate(paths) if i not in broken]
    layouts = {(r.headers, r.delimiter) for r in map(lambda p: split_lines(p, source), readable)}
    assert calls == len(layouts) + 3
    assert set(result.errors) == broken
    assert all(isinstance(exc, AdapterError) for exc in result.errors.values())
    # Each error names its own file, though the two 'Foo,Bar' files were stacked.
    assert all(str(paths[i]) in str(exc) for i, exc in result.errors.items())
    assert result.rows.height > 0 and result.rows.schema[FILE_INDEX] == pl.Int64
    assert set(result.rows[FILE_INDEX].unique()) <= set(range(len(paths))) - broken


def test_crp_method_is_decided_per_file(tmp_path: Path) -> None:
    """A CRP test without a method is read as hs-CRP when its file shows a high-sensitivity assay
    (results below 1 mg/L with two decimals). Two files with the same test, unit and range, in
    one stack, must each be decided on their own rows."""
    header = "Collected,Test,Result,Units"
    texts = {
        "hs.csv": f"{header}\n2025-01-02,CRP,0.42,mg/L\n2025-02-02,CRP,2.5,mg/L\n",
        "standard.csv": f"{header}\n2025-01-03,CRP,5.1,mg/L\n2025-02-03,CRP,12,mg/L\n",
    }
    paths = []
    for i in range(6):
        name = list(texts)[i % 2]
        path = tmp_path / f"p{i}" / name
        path.parent.mkdir()
        path.write_text(texts[name])
        paths.append(path)
    result = assert_batch_equals_each(paths, src("csv", "labs"))
    markers = result.rows.group_by(FILE_INDEX).agg(pl.col("marker").unique()).sort(FILE_INDEX)
    assert [m.to_list() for m in markers["marker"]] == [["hscrp"], ["crp"]] * 3


def test_config_errors_name_every_file(tmp_path: Path) -> None:
    """A setting the transform refuses (here an unknown `columns` key) fails every file, each with
    its own path, exactly as file by file."""
    content = (FIXTURES / "adapters" / "labs_portal.csv").read_bytes()
    paths = []
    for i in range(5):
        path = tmp_path / f"p{i}" / "labs.csv"
        path.parent.mkdir()
        path.write_bytes(content)
        paths.append(path)
    source = src("csv", "labs", columns={**LAB_COLUMNS, "patient": "Patient"})
    result = assert_batch_equals_each(paths, source)
    assert set(result.errors) == set(range(5))
    assert all(str(paths[i]) in str(exc) for i, exc in result.errors.items())


# ------------------------------------------------------------------------------------------------
# Hostile files (the fuzzing strategy of test_fuzz_adapters), several per batch
# ------------------------------------------------------------------------------------------------

BATCHED = [
    case
    for case in CSV_CASES
    if case.id != "cronometer_servings" and FORMATS[case.source.format].batch is not None
]


@pytest.mark.parametrize("case", BATCHED, ids=lambda c: c.id)
def test_hostile_batches_match_parse_each(case: object) -> None:
    @settings(
        max_examples=15,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        files = data.draw(st.lists(csv_files(case), min_size=2, max_size=6))  # type: ignore[arg-type]
        source = files[0][1]
        if source.person.column is None:
            source = replace(source, person=data.draw(st.sampled_from([FOLDERS, source.person])))
        with tempfile.TemporaryDirectory() as tmp:
            paths = []
            for i, (content, _) in enumerate(files):
                if i and data.draw(st.booleans()):
                    # A copy of an earlier file: same header, so the batch makes a stack.
                    content = files[data.draw(st.integers(0, i - 1))][0]
                path = Path(tmp) / f"p{i % 2}" / f"f{i}.csv"
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(content)
                paths.append(path)
            assert_batch_equals_each(paths, source)

    run()
