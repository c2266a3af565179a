"""The FHIR and Synthea lab adapters: accounting, values, units, censoring, persons, bad input."""

from __future__ import annotations

import json
import random
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from pipelines.adapters import FORMATS, AdapterError, ParseResult, fhir, synthea_observations
from pipelines.config import PersonSpec, SourceConfig
from pipelines.schema import LAB_RESULT_SCHEMA, REJECT_SCHEMA

FIXTURES = Path(__file__).parent / "fixtures"
BUNDLE = FIXTURES / "fhir" / "bundle.json"
NDJSON = FIXTURES / "fhir" / "observations.ndjson"
SINGLE = FIXTURES / "fhir" / "observation_apple_health.json"
# German Medizininformatik-Initiative (MII) style: leukocytes as LOINC 26464-8 in UCUM /nL, units
# spelled out ("milligram per liter") beside the UCUM code, Observations with a code and no display.
MII_BUNDLE = FIXTURES / "fhir" / "mii_bundle.json"
CODE_ONLY_NDJSON = FIXTURES / "fhir" / "code_only.ndjson"
CODE_ONLY_SINGLE = FIXTURES / "fhir" / "observation_code_only.json"
SYNTHEA = FIXTURES / "synthea" / "observations.csv"
SYNTHEA_NO_CATEGORY = FIXTURES / "synthea" / "observations_no_category.csv"


def source(fmt: str, person: PersonSpec | None = None, **overrides: Any) -> SourceConfig:
    default = PersonSpec(column="subject" if fmt == "fhir" else "PATIENT")
    values: dict[str, Any] = {
        "name": "labs",
        "kind": "labs",
        "format": fmt,
        "path": "*",
        "person": person or default,
    }
    values.update(overrides)
    return SourceConfig(**values)


def check_contract(result: ParseResult) -> None:
    """What every adapter promises, whatever the file."""
    assert result.rows.schema == pl.Schema(LAB_RESULT_SCHEMA)
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert result.rows_read == result.rows.height + result.rejects.height
    assert result.rejects["reason"].null_count() == 0
    assert result.rejects["line"].null_count() == 0
    assert result.rows["line"].null_count() == 0


def parse_fhir(path: Path, person: PersonSpec | None = None) -> ParseResult:
    result = fhir.parse(path, source("fhir", person))
    check_contract(result)
    return result


def parse_synthea(path: Path, person: PersonSpec | None = None, **kw: Any) -> ParseResult:
    result = synthea_observations.parse(path, source("synthea_observations", person, **kw))
    check_contract(result)
    return result


def row_at(result: ParseResult, line: int) -> dict[str, Any]:
    rows = result.rows.filter(pl.col("line") == line).to_dicts()
    assert len(rows) == 1, f"line {line}: {result.rows.to_dicts()}"
    return rows[0]


def reject_at(result: ParseResult, line: int) -> dict[str, Any]:
    rows = result.rejects.filter(pl.col("line") == line).to_dicts()
    assert len(rows) == 1, f"line {line}: {result.rejects.to_dicts()}"
    return rows[0]


def write(tmp_path: Path, content: str | bytes, name: str = "file.json") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def observation(**extra: Any) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5", "display": "CRP"}]},
        "subject": {"reference": "Patient/9"},
        "effectiveDateTime": "2024-01-01T08:00:00Z",
        "valueQuantity": {"value": 2.0, "unit": "mg/L"},
    }
    res.update(extra)
    return res


# ---- FHIR Bundle -------------------------------------------------------------------------------


def test_bundle_accounts_for_every_observation_and_skips_other_resources() -> None:
    result = parse_fhir(BUNDLE)
    # 16 entries: a Patient and a DiagnosticReport are not data rows of a labs source.
    assert result.rows_read == 14
    assert result.rows["line"].to_list() == [2, 3, 4, 6, 11, 13]
    assert result.rejects["line"].to_list() == [5, 7, 8, 9, 10, 12, 15, 16]


def test_bundle_values_units_and_context() -> None:
    result = parse_fhir(BUNDLE)
    crp = row_at(result, 2)
    assert crp["person_id"] == "123"
    assert crp["marker"] == "crp" and crp["loinc"] == "1988-5"
    assert crp["value"] == 12.4 and crp["unit"] == "mg/L" and crp["censored"] is None
    # The offset is dropped: the wall-clock time as printed, like the lab CSV adapter.
    assert crp["collected_at"] == datetime(2024, 3, 1, 8, 30)
    assert (crp["ref_low"], crp["ref_high"], crp["flag"]) == (0.0, 5.0, "H")
    assert crp["test_name_raw"] == "C reactive protein [Mass/volume] in Serum or Plasma"

    dl = row_at(result, 6)
    assert dl["value"] == pytest.approx(5.2) and dl["unit"] == "mg/L"
    assert (dl["value_raw"], dl["unit_raw"]) == ("0.52", "mg/dL")
    assert dl["ref_low"] == 0.0 and dl["ref_high"] == pytest.approx(5.0)  # from the range's text
    assert dl["collected_at"] == datetime(2024, 5, 1, 7, 45)


def test_bundle_censoring_from_comparator_and_value_string() -> None:
    result = parse_fhir(BUNDLE)
    comparator = row_at(result, 3)
    assert (comparator["censored"], comparator["value"], comparator["value_raw"]) == (
        "<",
        0.3,
        "<0.3",
    )
    assert comparator["loinc"] == "30522-7"
    assert comparator["unit_raw"] == "mg/L"  # the UCUM code wins over the unit text "mg/l"
    string = row_at(result, 4)
    assert (string["censored"], string["value"], string["value_raw"]) == ("<", 0.3, "<0.3")
    assert string["unit_raw"] == "mg/L" and string["ref_high"] == 3.0  # unit of the range
    assert string["collected_at"] == datetime(2024, 4, 1)


def test_bundle_other_dates_and_subjects() -> None:
    result = parse_fhir(BUNDLE)
    esr = row_at(result, 11)
    assert esr["marker"] == "esr" and esr["value"] == 22.0 and esr["unit"] == "mm/h"
    assert esr["person_id"] == "6f2c9d0e-0000-4000-8000-000000000001"  # urn:uuid: reference
    assert esr["collected_at"] == datetime(2024, 6, 3, 11, 0)  # effectivePeriod.start
    il6 = row_at(result, 13)
    assert il6["marker"] == "il6" and il6["collected_at"] == datetime(2024, 6, 5, 12, 0)  # issued


def test_bundle_rejects_name_json_path_and_reason() -> None:
    result = parse_fhir(BUNDLE)
    cancelled = reject_at(result, 5)
    assert cancelled["column"] == "entry[4].resource.status"
    assert (cancelled["reason"], cancelled["value"]) == ("status cancelled", "cancelled")
    assert reject_at(result, 15)["reason"] == "status entered-in-error"

    unknown = reject_at(result, 7)
    assert unknown["column"] == "entry[6].resource.code"
    assert "not a known inflammation marker" in unknown["reason"]
    assert "LOINC 8302-2" in unknown["value"]
    assert unknown["raw"] == "8302-2 Body Height"

    malformed = reject_at(result, 8)
    assert malformed["column"] == "entry[7].resource"
    assert "not an object" in malformed["reason"]

    wrong_type = reject_at(result, 9)
    assert wrong_type["column"] == "entry[8].resource.valueQuantity.value"
    assert "not a number" in wrong_type["reason"]
    assert json.loads(wrong_type["raw"])["id"] == "crp-7"  # compact JSON of the resource

    text = reject_at(result, 10)
    assert text["column"] == "entry[9].resource.valueString"
    assert (text["reason"], text["value"]) == ("no numeric result", "see note")

    unit = reject_at(result, 12)
    assert unit["column"] == "entry[11].resource.valueQuantity.unit"
    assert unit["reason"].startswith("unknown unit for ferritin")
    assert unit["value"] == "furlongs"

    partial = reject_at(result, 16)
    assert partial["column"] == "entry[15].resource.effectiveDateTime"
    assert "has no day" in partial["reason"]
    assert partial["value"] == "2024-06"


def test_fixed_or_folder_person_overrides_subject(tmp_path: Path) -> None:
    fixed = parse_fhir(BUNDLE, PersonSpec(fixed="alice"))
    assert fixed.rows["person_id"].unique().to_list() == ["alice"]
    folder = tmp_path / "bob"
    folder.mkdir()
    copy = write(folder, SINGLE.read_text(encoding="utf-8"), "obs.json")
    assert parse_fhir(copy, PersonSpec(from_folder=True)).rows["person_id"].to_list() == ["bob"]


def test_registered_under_the_contract_name() -> None:
    assert FORMATS["fhir"].parse is fhir.parse
    assert FORMATS["synthea_observations"].parse is synthea_observations.parse


# ---- FHIR NDJSON and single resources ----------------------------------------------------------


def test_ndjson_skips_blank_lines_and_rejects_a_malformed_line() -> None:
    result = parse_fhir(NDJSON)
    # 3 Observations and 1 line that cannot be read; the Patient line and blanks are not rows.
    assert result.rows_read == 4
    assert result.rows["line"].to_list() == [1, 5, 7]
    assert result.rows["marker"].to_list() == ["crp", "wbc", "ferritin"]
    assert result.rows["person_id"].to_list() == ["p1", "p1", "p2"]
    bad = reject_at(result, 4)
    assert "not valid JSON" in bad["reason"]
    assert bad["raw"].startswith('{"resourceType": "Observation", "id": "n2"')
    wbc = row_at(result, 5)
    assert (wbc["value"], wbc["unit"], wbc["unit_raw"]) == (6.1, "10^3/uL", "10*3/uL")


def test_single_observation_file_apple_health_style() -> None:
    result = parse_fhir(SINGLE)
    assert result.rows_read == 1 and result.rejects.height == 0
    obs = row_at(result, 1)
    assert obs["person_id"] == "apple-7"
    assert obs["test_name_raw"] == "C-Reactive Protein, High Sensitivity"  # code.text
    assert (obs["marker"], obs["loinc"], obs["value"]) == ("hscrp", "30522-7", 1.8)
    assert obs["collected_at"] == datetime(2023, 11, 7, 9, 12)


def test_mii_bundle_maps_by_loinc_code_with_or_without_display() -> None:
    result = parse_fhir(MII_BUNDLE)
    assert result.rows_read == 7
    got = result.rows.select("line", "marker", "loinc", "value", "unit", "unit_raw").rows()
    assert got == [
        (1, "wbc", "26464-8", 7.6, "10^3/uL", "/nL"),  # 7.6 /nL = 7.6 x 10^3/uL
        (2, "wbc", "26464-8", 11.3, "10^3/uL", "/nL"),  # no display, no text: the code decides
        (3, "crp", "1988-5", 14.2, "mg/L", "mg/L"),  # UCUM code wins over "milligram per liter"
        (4, "hscrp", "30522-7", 0.84, "mg/L", "mg/L"),  # the LOINC coding, not the local one
        (5, "hscrp", "76486-0", pytest.approx(11.4 * 0.105), "mg/L", "nmol/L"),
        (7, "wbc", "6690-2", 6.9, "10^3/uL", "10*9/L"),
    ]
    leuko = row_at(result, 1)
    assert leuko["test_name_raw"] == "Leukocytes [#/volume] in Blood"
    assert (leuko["ref_low"], leuko["ref_high"]) == (3.9, 10.2)
    assert row_at(result, 2)["test_name_raw"] is None
    assert row_at(result, 2)["flag"] == "H"
    assert row_at(result, 3)["crp_method_basis"] == "LOINC 1988-5"
    assert row_at(result, 4)["crp_method_basis"] == "LOINC 30522-7"
    assert row_at(result, 1)["crp_method_basis"] is None  # not a CRP marker
    sodium = reject_at(result, 6)
    assert sodium["column"] == "entry[5].resource.code"
    assert sodium["reason"] == (
        "LOINC code (no test name) is not a known inflammation marker; add the code to "
        "markers.csv to load it"
    )
    assert sodium["value"] == "2951-2"


def test_ndjson_of_code_only_observations_loads_every_marker() -> None:
    result = parse_fhir(CODE_ONLY_NDJSON)
    assert result.rows_read == 4 and result.rejects.height == 0
    got = result.rows.select("line", "marker", "loinc", "value", "unit").rows()
    assert got == [
        (1, "wbc", "26464-8", 5.4, "10^3/uL"),
        (2, "ferritin", "24373-3", 88.0, "ng/mL"),
        (3, "albumin", "61151-7", pytest.approx(4.1), "g/dL"),  # 41 g/L
        (4, "wbc", "804-5", pytest.approx(6.2), "10^3/uL"),  # 6200 /uL, manual count
    ]
    assert result.rows["test_name_raw"].null_count() == 4


def test_single_observation_with_only_a_loinc_code_loads() -> None:
    result = parse_fhir(CODE_ONLY_SINGLE)
    assert result.rows_read == 1 and result.rejects.height == 0
    obs = row_at(result, 1)
    assert (obs["marker"], obs["loinc"], obs["value"], obs["unit"]) == (
        "hscrp",
        "30522-7",
        2.3,
        "mg/L",
    )
    assert obs["test_name_raw"] is None
    assert obs["collected_at"] == datetime(2024, 1, 15, 9, 5)


def test_fhir_crp_name_without_code_follows_crp_method(tmp_path: Path) -> None:
    # A portal that sends only text: "CRP", a 0-10 mg/L range (standard by evidence).
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "CRP"},
        "subject": {"reference": "Patient/9"},
        "effectiveDateTime": "2024-02-01",
        "valueQuantity": {"value": 2.5, "unit": "mg/L"},
        "referenceRange": [{"high": {"value": 10, "unit": "mg/L"}}],
    }
    # (The value 2.5 has one decimal: no low-result evidence either.)
    path = write(tmp_path, json.dumps(resource))
    assert row_at(parse_fhir(path), 1)["marker"] == "crp"
    said = fhir.parse(path, source("fhir", None, crp_method="hs"))
    assert said.rows.select("marker", "crp_method_basis").row(0) == (
        "hscrp",
        "sources.yaml crp_method: hs",
    )


def test_a_file_of_another_resource_type_has_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"resourceType": "Condition", "id": "c1"}))
    result = parse_fhir(path)
    assert result.rows_read == 0 and result.rows.height == 0


def test_json_array_and_nested_bundle_on_an_ndjson_line(tmp_path: Path) -> None:
    array = write(tmp_path, json.dumps([{"resourceType": "Patient"}, observation()]))
    result = parse_fhir(array)
    assert result.rows_read == 1 and row_at(result, 2)["value"] == 2.0

    bundle = {"resourceType": "Bundle", "entry": [{"resource": observation()}, {"x": 1}]}
    lines = json.dumps(observation(effectiveDateTime="2024-02-01")) + "\n" + json.dumps(bundle)
    result = parse_fhir(write(tmp_path, lines, "x.ndjson"))
    assert result.rows_read == 3
    assert result.rows["line"].to_list() == [1, 2]
    assert reject_at(result, 2)["column"] == "entry[1]"


def test_value_shapes(tmp_path: Path) -> None:
    cases = [
        observation(valueQuantity={"value": 150, "comparator": ">=", "code": "mg/L"}),
        observation(valueQuantity={"value": "4.5", "unit": "mg/L"}),  # number sent as a string
        observation(valueQuantity={"value": 1, "comparator": "ad", "unit": "mg/L"}),
        observation(valueQuantity={"value": True, "unit": "mg/L"}),
        observation(valueQuantity=None, dataAbsentReason={"text": "Specimen haemolysed"}),
        observation(
            valueQuantity={"value": 3, "unit": "mg/L", "code": "MGL", "system": "urn:local"}
        ),
        observation(subject={"reference": "Group/7"}),
        observation(subject=None),
    ]
    for case in cases[4:5]:
        del case["valueQuantity"]
    cases[7].pop("subject")
    path = write(
        tmp_path, json.dumps({"resourceType": "Bundle", "entry": [{"resource": c} for c in cases]})
    )
    result = parse_fhir(path)
    assert result.rows_read == len(cases)
    assert (row_at(result, 1)["censored"], row_at(result, 1)["value"]) == (">", 150.0)
    assert row_at(result, 2)["value"] == 4.5
    assert reject_at(result, 3)["column"] == "entry[2].resource.valueQuantity.comparator"
    assert reject_at(result, 4)["column"] == "entry[3].resource.valueQuantity.value"
    assert reject_at(result, 5)["reason"] == "no numeric result"
    assert "Specimen haemolysed" in reject_at(result, 5)["value"]
    assert row_at(result, 6)["unit_raw"] == "mg/L"  # a non-UCUM code: the unit text is used
    assert reject_at(result, 7)["reason"] == "subject is not a Patient"
    assert "Group" in reject_at(result, 7)["value"]
    assert reject_at(result, 8)["column"] == "entry[7].resource.subject"


# ---- FHIR: nothing but AdapterError ------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        bytes(random.Random(7).getrandbits(8) for _ in range(2048)),
        b"",
        b"   \n\n",
        b"[1, 2, 3]",
        b"null",
        b'"just a string"',
        b'{"foo": 1}',
        b'{"resourceType": "Bundle", "entry": {"resource": 1}}',
        b"[" * 100_000,
        json.dumps(observation(), indent=2)[:150].encode(),  # truncated pretty JSON
        json.dumps(observation())[:80].encode(),  # truncated one-line JSON
        b"\xff\xfe" + "{}".encode("utf-16-le"),
    ],
    ids=[
        "random-bytes",
        "empty",
        "blank",
        "array-of-numbers",
        "null",
        "string",
        "object-without-resourceType",
        "bundle-entry-not-a-list",
        "deeply-nested",
        "truncated-pretty",
        "truncated-line",
        "utf16-empty-object",
    ],
)
def test_garbage_raises_only_adapter_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, content, "garbage.json")
    with pytest.raises(AdapterError, match=r"garbage\.json"):
        fhir.parse(path, source("fhir"))


def test_missing_file_is_an_adapter_error(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match=r"nope\.json"):
        fhir.parse(tmp_path / "nope.json", source("fhir"))


JUNK: list[Any] = [None, 0, -1.5, True, "", "x", "<", [], [1, "a"], {}, {"value": "?"}, [{}]]
FIELDS = [
    "status",
    "code",
    "subject",
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "valueQuantity",
    "valueString",
    "referenceRange",
    "interpretation",
    "resourceType",
]
NESTED = [
    ("code", "coding"),
    ("code", "text"),
    ("valueQuantity", "value"),
    ("valueQuantity", "unit"),
    ("valueQuantity", "code"),
    ("valueQuantity", "comparator"),
    ("subject", "reference"),
]


def mutants(seed: int, n: int) -> list[Any]:
    rng = random.Random(seed)
    out: list[Any] = []
    for _ in range(n):
        res: Any = observation(
            referenceRange=[{"low": {"value": 0}, "high": {"value": 5}}],
            interpretation=[{"coding": [{"code": "H"}]}],
        )
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                res[rng.choice(FIELDS)] = rng.choice(JUNK)
            else:
                outer, inner = rng.choice(NESTED)
                if isinstance(res.get(outer), dict):
                    res[outer][inner] = rng.choice(JUNK)
        if rng.random() < 0.05:
            res = rng.choice(JUNK)
        out.append(res)
    return out


def test_mutated_observations_never_crash(tmp_path: Path) -> None:
    resources = mutants(1, 300)
    entries = [{"resource": r} for r in resources] + [{"fullUrl": "x"}, 5, None]
    result = parse_fhir(write(tmp_path, json.dumps({"resourceType": "Bundle", "entry": entries})))
    # Every item that is (or may be) an Observation is a row or a reject, nothing else.
    counted = sum(
        1
        for r in resources
        if not (isinstance(r, dict) and isinstance(r.get("resourceType"), str))
        or r["resourceType"] == "Observation"
    )
    assert result.rows_read == counted + 3
    ndjson = "\n".join(json.dumps(r) for r in mutants(2, 200)) + "\n{broken\n"
    parse_fhir(write(tmp_path, ndjson, "m.ndjson"))


# ---- Synthea observations.csv ------------------------------------------------------------------


def test_synthea_accounting_and_markers_among_vital_signs() -> None:
    result = parse_synthea(SYNTHEA)
    assert result.rows_read == 10
    assert result.rows["line"].to_list() == [3, 5, 7, 10]
    # LOINC 1988-5 is standard CRP, 30522-7 hs-CRP: two markers, never pooled.
    assert result.rows["marker"].to_list() == ["crp", "hscrp", "crp", "wbc"]
    assert result.rejects["line"].to_list() == [2, 4, 6, 8, 9, 11]
    crp = row_at(result, 3)
    assert crp["person_id"] == "b9c610cd-28a6-4636-ccb6-c7a0d2a4cb85"
    assert crp["collected_at"] == datetime(2019, 2, 13, 20, 36, 19)
    assert (crp["loinc"], crp["value"], crp["unit"]) == ("1988-5", 4.1, "mg/L")
    assert row_at(result, 5)["loinc"] == "30522-7"
    dl = row_at(result, 7)
    assert dl["value"] == pytest.approx(9.0) and (dl["value_raw"], dl["unit_raw"]) == (
        "0.9",
        "mg/dL",
    )
    wbc = row_at(result, 10)
    assert (wbc["value"], wbc["unit"]) == (7.2, "10^3/uL")


def test_synthea_rejects_keep_non_markers_short() -> None:
    result = parse_synthea(SYNTHEA)
    height = reject_at(result, 2)
    assert height["column"] == "CODE" and height["raw"] == "8302-2 Body Height"
    assert height["value"] == "Body Height (LOINC 8302-2)"
    assert "not a known inflammation marker" in height["reason"]
    assert reject_at(result, 4)["raw"] == "72166-2 Tobacco smoking status"  # text, not a marker
    text = reject_at(result, 6)
    assert text["column"] == "VALUE" and text["reason"] == "no numeric result"
    assert text["value"] == "pending"
    assert text["raw"].startswith("2020-03-01T08:00:00Z,")  # whole row for real problems
    assert reject_at(result, 8)["column"] == "DATE"
    assert reject_at(result, 9)["column"] == "PATIENT"


def test_synthea_without_category_and_with_a_fixed_person() -> None:
    result = parse_synthea(SYNTHEA_NO_CATEGORY, PersonSpec(fixed="me"))
    assert result.rows_read == 2
    assert row_at(result, 3)["person_id"] == "me"


def test_synthea_file_problems_are_adapter_errors(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="CODE"):
        synthea_observations.parse(
            write(tmp_path, "Date,Test,Result\n2024-01-01,CRP,1\n", "x.csv"),
            source("synthea_observations"),
        )
    with pytest.raises(AdapterError, match="columns"):
        synthea_observations.parse(SYNTHEA, source("synthea_observations", columns={"a": "b"}))
    with pytest.raises(AdapterError, match=r"garbage\.csv"):
        synthea_observations.parse(
            write(
                tmp_path, bytes(random.Random(3).getrandbits(8) for _ in range(512)), "garbage.csv"
            ),
            source("synthea_observations"),
        )


def test_the_known_loinc_coding_wins_and_columns_are_refused(tmp_path: Path) -> None:
    code = {
        "coding": [
            {"system": "http://acme.lab/codes", "code": "CRPQ", "display": "CRP quant"},
            {"system": "http://loinc.org", "code": "99999-9"},
            {"system": "http://loinc.org", "code": "30522-7"},
        ]
    }
    result = parse_fhir(write(tmp_path, json.dumps(observation(code=code))))
    assert (row_at(result, 1)["loinc"], row_at(result, 1)["test_name_raw"]) == (
        "30522-7",
        "CRP quant",
    )
    with pytest.raises(AdapterError, match="columns"):
        fhir.parse(BUNDLE, source("fhir", columns={"value": "x"}))
