"""Batch reading of FHIR JSON (`fhir.parse_batch`): many files, one marker mapping.

Portal downloads and Apple Health's clinical records come as many small files (one resource or
one report each), so ingest reads FHIR in batches. As for the CSV formats (test_batch_parse.py,
test_batch_formats.py), the contract is equality: for any list of files the batch must give
exactly what `parse_each(fhir.parse, ...)` gives, with every file's errors naming that file.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.adapters import FORMATS, AdapterError, fhir
from pipelines.adapters.base import FILE_INDEX
from pipelines.config import PersonSpec, SourceConfig
from tests.test_batch_parse import assert_batch_equals_each
from tests.test_fuzz_adapters import fhir_files

FHIR = Path(__file__).parent / "fixtures" / "fhir"
# Every shape of formats.md: a portal Bundle, the MII Bundle (LOINC only, /nL), NDJSON from a bulk
# export, Apple Health's one resource per file, Observations with a code and no name.
FIXTURES = sorted(FHIR.iterdir())
BROKEN = {
    "empty.json": b"",
    "cut_short.json": b'{"resourceType": "Bundle", "entry": [',
    "not_fhir.json": b'{"hello": "world"}',
    "not_resources.json": b"[1, 2, 3]",
}


def source(person: PersonSpec, **overrides: Any) -> SourceConfig:
    values: dict[str, Any] = {
        "name": "batch_fhir",
        "kind": "labs",
        "format": "fhir",
        "path": "*/*",
        "person": person,
    }
    values.update(overrides)
    return SourceConfig(**values)


def write_files(root: Path, contents: list[tuple[str, bytes]]) -> list[Path]:
    paths = []
    for i, (name, content) in enumerate(contents):
        path = root / f"p{i % 3}" / f"{i:03d}_{name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        paths.append(path)
    return paths


def test_registered_with_a_batch_reader() -> None:
    assert FORMATS["fhir"].parse is fhir.parse
    assert FORMATS["fhir"].batch is fhir.parse_batch


@pytest.mark.parametrize(
    "person",
    [PersonSpec(column="subject"), PersonSpec(from_folder=True), PersonSpec(fixed="alice")],
    ids=["subject", "from_folder", "fixed"],
)
def test_many_fixture_files_match_parse_each(tmp_path: Path, person: PersonSpec) -> None:
    """Each fixture several times, in person folders, shuffled, with broken files among them."""
    rng = random.Random(person.column or str(person.from_folder))
    contents = [(p.name, p.read_bytes()) for p in FIXTURES for _ in range(3)]
    contents += list(BROKEN.items())
    rng.shuffle(contents)
    paths = write_files(tmp_path, contents)
    result = assert_batch_equals_each(paths, source(person))
    broken = {i for i, p in enumerate(paths) if p.name[4:] in BROKEN}
    assert set(result.errors) == broken
    assert all(isinstance(exc, AdapterError) for exc in result.errors.values())
    assert all(str(paths[i]) in str(exc) for i, exc in result.errors.items())
    assert result.rows.height > 0 and result.rows.schema[FILE_INDEX] == pl.Int64
    assert result.rejects.height > 0  # the fixtures' rejects (cancelled, no value, ...) kept


def _crp(value: float, day: str) -> dict[str, Any]:
    """A CRP result named only by text: its method is decided from its file's evidence."""
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "CRP"},
        "subject": {"reference": "Patient/9"},
        "effectiveDateTime": day,
        "valueQuantity": {"value": value, "unit": "mg/L"},
    }


def test_crp_method_is_decided_per_file(tmp_path: Path) -> None:
    """The same test and unit in two files of one batch: a file with results below 1 mg/L with
    two decimals is hs-CRP, the other standard CRP, exactly as each file alone."""
    hs = {"resourceType": "Bundle", "entry": [{"resource": _crp(0.42, "2025-01-02")}]}
    standard = "\n".join(json.dumps(_crp(v, f"2025-02-0{i + 1}")) for i, v in enumerate((5, 12)))
    contents = [("hs.json", json.dumps(hs).encode()), ("standard.ndjson", standard.encode())] * 3
    result = assert_batch_equals_each(write_files(tmp_path, contents), source(PersonSpec()))
    markers = result.rows.group_by(FILE_INDEX).agg(pl.col("marker").unique()).sort(FILE_INDEX)
    assert [m.to_list() for m in markers["marker"]] == [["hscrp"], ["crp"]] * 3


def test_config_errors_name_every_file(tmp_path: Path) -> None:
    contents = [(FIXTURES[0].name, FIXTURES[0].read_bytes())] * 4
    paths = write_files(tmp_path, contents)
    result = assert_batch_equals_each(paths, source(PersonSpec(), columns={"value": "x"}))
    assert set(result.errors) == set(range(4))
    assert all(str(paths[i]) in str(exc) for i, exc in result.errors.items())
    assert result.rows.width == 0 and result.rejects.width == 0


def test_hostile_batches_match_parse_each() -> None:
    """The fuzz tests' hostile FHIR files (bad values, damaged bytes, other shapes), several per
    batch, some repeated."""

    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(files=st.lists(fhir_files(), min_size=2, max_size=6), folders=st.booleans())
    def run(files: list[bytes], folders: bool) -> None:
        person = PersonSpec(from_folder=True) if folders else PersonSpec()
        with tempfile.TemporaryDirectory() as tmp:
            paths = write_files(Path(tmp), [("f.json", content) for content in files])
            assert_batch_equals_each(paths, source(person))

    run()


def _observation(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "30522-7"}]},
        "subject": {"reference": f"Patient/{subject}"},
        "effectiveDateTime": "2025-01-02",
        "valueQuantity": {"value": 1.5, "unit": "mg/L"},
    }


@pytest.mark.parametrize("where", ["reading", "marker mapping"])
def test_a_bug_on_one_file_stays_with_that_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """An unexpected error (a bug) while reading one file's Observations, or while mapping the
    markers of a batch that holds it, fails that file alone, with the error `parse` gives it;
    the other files of the batch load."""
    subjects = ["a", "b", "bad", "c", "d"]
    contents = [(f"{s}.json", json.dumps(_observation(s)).encode()) for s in subjects]
    paths = write_files(tmp_path, contents)
    if where == "reading":
        real_observation = fhir.observation

        def observation(res: dict[str, Any], *args: Any) -> dict[str, Any]:
            if res["subject"]["reference"] == "Patient/bad":
                raise RuntimeError("boom")
            return real_observation(res, *args)

        monkeypatch.setattr(fhir, "observation", observation)
    else:
        real_normalise = fhir.normalise_lab_rows

        def normalise(df: pl.DataFrame, *args: Any, **kwargs: Any) -> Any:
            if "bad" in df["person_id"].to_list():
                raise RuntimeError("boom")
            return real_normalise(df, *args, **kwargs)

        monkeypatch.setattr(fhir, "normalise_lab_rows", normalise)
    result = assert_batch_equals_each(paths, source(PersonSpec()))
    assert list(result.errors) == [2] and str(result.errors[2]) == "boom"
    assert result.rows["person_id"].to_list() == ["a", "b", "c", "d"]
