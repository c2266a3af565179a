"""The covariates adapter (format csv, kind persons): ids, sex codes, age, birth year."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.adapters import FORMATS, AdapterError, ParseResult, persons_csv
from pipelines.config import PersonSpec, SourceConfig
from pipelines.schema import PERSON_SCHEMA, REJECT_SCHEMA

FIXTURES = Path(__file__).parent / "fixtures" / "persons"
COVARIATES = FIXTURES / "covariates.csv"
NHANES = FIXTURES / "nhanes_demo.csv"
SYNTHEA_PATIENTS = FIXTURES / "synthea_patients.csv"


def source(column: str | None = "participant", **overrides: Any) -> SourceConfig:
    values: dict[str, Any] = {
        "name": "cohort",
        "kind": "persons",
        "format": "csv",
        "path": "*.csv",
        "person": PersonSpec(column=column),
    }
    values.update(overrides)
    return SourceConfig(**values)


def parse(path: Path, **overrides: Any) -> ParseResult:
    # Through the registry, as the ingest step calls it.
    result = FORMATS["csv"].parse(path, source(**overrides))
    assert result.rows.schema == pl.Schema(PERSON_SCHEMA)
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert result.rows_read == result.rows.height + result.rejects.height
    assert result.rejects["reason"].null_count() == 0
    assert result.rejects["line"].null_count() == 0
    return result


def person(result: ParseResult, pid: str) -> dict[str, Any]:
    rows = result.rows.filter(pl.col("person_id") == pid).to_dicts()
    assert len(rows) == 1, f"{pid}: {result.rows.to_dicts()}"
    # A covariates CSV carries no survey design: those columns stay null.
    survey = ("weight", "weight_var", "stratum", "psu", "race_eth", "income_poverty")
    assert all(rows[0].pop(c) is None for c in survey)
    return rows[0]


def reject_at(result: ParseResult, line: int) -> dict[str, Any]:
    rows = result.rejects.filter(pl.col("line") == line).to_dicts()
    assert len(rows) == 1, f"line {line}: {result.rejects.to_dicts()}"
    return rows[0]


def write(tmp_path: Path, content: str | bytes, name: str = "people.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def test_covariates_accounting_and_values() -> None:
    result = parse(COVARIATES)
    assert result.rows_read == 13
    assert result.rows["person_id"].to_list() == ["P001", "P002", "P003", "P004", "P005", "P009"]
    assert person(result, "P001") == {
        "person_id": "P001",
        "sex": "female",
        "age": 34.0,
        "birth_year": 1990,
        "line": 2,
    }
    assert (person(result, "P002")["sex"], person(result, "P002")["age"]) == ("male", 41.5)
    # NHANES-style numeric codes: 1 = male, 2 = female; German "weiblich".
    assert person(result, "P003")["sex"] == "female"
    assert person(result, "P004")["sex"] == "male"
    assert person(result, "P005")["sex"] == "female"
    # Blank covariates are unknown, not errors.
    assert person(result, "P009") == {
        "person_id": "P009",
        "sex": None,
        "age": None,
        "birth_year": None,
        "line": 10,
    }


def test_covariates_rejects() -> None:
    result = parse(COVARIATES)
    assert result.rejects["line"].to_list() == [7, 8, 9, 11, 12, 13, 14]
    sex = reject_at(result, 7)
    assert sex["column"] == "Sex" and sex["value"] == "x" and "sex_codes" in sex["reason"]
    age = reject_at(result, 8)
    assert (age["reason"], age["value"]) == ("age is outside 0-120 years", "130")
    assert reject_at(result, 9)["reason"] == "age is not a number"
    assert reject_at(result, 9)["value"] == "abc"
    assert reject_at(result, 11)["column"] == "participant"  # blank id
    dupe = reject_at(result, 12)
    assert dupe["column"] == "participant"
    assert dupe["reason"] == "duplicate person id (the first row of that id loads)"
    assert dupe["value"] == "P002"
    assert dupe["raw"] == "P002,F,41,,later row"
    assert reject_at(result, 13)["column"] == "Birth Year"  # 1890.5 is not a year
    assert reject_at(result, 14)["column"] == "Birth Year"  # 1850 is implausible


def test_nhanes_codes_decimal_comma_and_configured_sex_codes() -> None:
    result = parse(NHANES, column="SEQN", decimal=",", options={"sex_codes": {9: None}})
    assert result.rows["person_id"].to_list() == ["73557", "73558", "73559", "73560"]
    assert result.rows["sex"].to_list() == ["male", "male", "female", None]  # "1.0" is 1
    assert reject_at(result, 6)["column"] == "RIAGENDR"
    # Codes can be redefined for a cohort that numbers the other way round.
    flipped = parse(
        NHANES, column="SEQN", decimal=",", options={"sex_codes": {"1": "Female", "2": "male"}}
    )
    assert flipped.rows["sex"].to_list()[:3] == ["female", "female", "male"]


def test_explicit_column_mapping_and_birth_date(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Kennung;Geschlecht;Alter;Geburtsdatum\nk1;männlich;40,5;1984-02-29\nk2;W;33;\n",
    )
    result = parse(
        path,
        column="Kennung",
        decimal=",",
        columns={"sex": "Geschlecht", "age": "Alter", "birth_date": "Geburtsdatum"},
    )
    assert person(result, "k1") == {
        "person_id": "k1",
        "sex": "male",
        "age": 40.5,
        "birth_year": 1984,
        "line": 2,
    }
    assert person(result, "k2")["sex"] == "female"


def test_synthea_patients_birth_year_from_birth_date() -> None:
    result = parse(SYNTHEA_PATIENTS, column="Id")
    assert person(result, "b9c610cd-28a6-4636-ccb6-c7a0d2a4cb85")["birth_year"] == 1961
    assert person(result, "0a1b2c3d-0000-4000-8000-000000000002")["sex"] == "male"
    # 03/04/1950 could be March or April: never guessed, date_format says which.
    assert reject_at(result, 4)["column"] == "BIRTHDATE"
    configured = parse(SYNTHEA_PATIENTS, column="Id", date_format="%d/%m/%Y")
    assert person(configured, "c1")["birth_year"] == 1950


def test_fixed_person_file(tmp_path: Path) -> None:
    path = write(tmp_path, "sex,age\nF,41\nF,42\n")
    result = parse(path, column=None, person=PersonSpec(fixed="alice"))
    assert person(result, "alice")["age"] == 41.0
    assert reject_at(result, 3)["reason"].startswith("duplicate person id")
    assert reject_at(result, 3)["value"] == "alice"


def test_configuration_problems_are_adapter_errors(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="sex_codes"):
        parse(COVARIATES, options={"sex_codes": {"1": "other"}})
    with pytest.raises(AdapterError, match="sex_codes"):
        parse(COVARIATES, options={"sex_codes": ["1", "2"]})
    with pytest.raises(AdapterError, match="weight"):
        parse(COVARIATES, columns={"weight": "Weight"})
    with pytest.raises(AdapterError, match="Gender"):
        parse(COVARIATES, columns={"sex": "Gender"})
    with pytest.raises(AdapterError, match="who"):
        parse(COVARIATES, column="who")
    with pytest.raises(AdapterError, match="no sex, age"):
        parse(write(tmp_path, "participant,height\nP1,180\n"))


@pytest.mark.parametrize(
    "content",
    [bytes(random.Random(5).getrandbits(8) for _ in range(1024)), b"", b"\x00\x01\x02"],
    ids=["random-bytes", "empty", "nul-bytes"],
)
def test_garbage_raises_only_adapter_error(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(AdapterError, match="people"):
        persons_csv.parse(write(tmp_path, content), source())
