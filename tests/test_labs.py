"""The lab CSV adapter and lab normalisation (markers, LOINC codes, units, censoring, dates)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from pipelines.adapters import FORMATS, AdapterError, ParseResult, lab_csv
from pipelines.config import PersonSpec, SourceConfig
from pipelines.schema import LAB_RESULT_SCHEMA, REJECT_SCHEMA
from pipelines.transforms.labs import MARKERS_TABLE, lab_tables, normalise_lab_rows

FIXTURES = Path(__file__).parent / "fixtures" / "adapters"
PORTAL = FIXTURES / "labs_portal.csv"
DEMO_COLUMNS = {
    "collected_at": "Collected",
    "marker": "Test",
    "value": "Result",
    "unit": "Units",
    "reference_range": "Reference Range",
    "flag": "Flag",
}

KNOWN_MARKERS_ONLY = "not a known inflammation marker; add it to markers.csv to load it"


def source(**overrides: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": "clinic_labs",
        "kind": "labs",
        "format": "csv",
        "path": "*.csv",
        "person": PersonSpec(column="Patient"),
        "columns": DEMO_COLUMNS,
        "datetime_format": "%Y-%m-%d %H:%M",
    }
    values.update(overrides)
    return SourceConfig(**values)  # type: ignore[arg-type]


def parse(path: Path, **overrides: object) -> ParseResult:
    result = lab_csv.parse(path, source(**overrides))
    assert result.rows.schema == pl.Schema(LAB_RESULT_SCHEMA)
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert result.rows_read == result.rows.height + result.rejects.height
    assert result.rejects["reason"].null_count() == 0
    return result


def write(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "labs.csv"
    path.write_bytes(text.encode(encoding))
    return path


def at_line(df: pl.DataFrame, line: int) -> dict[str, object]:
    rows = df.filter(pl.col("line") == line).to_dicts()
    assert len(rows) == 1, f"line {line}: {df.to_dicts()}"
    return rows[0]


# ---- the demo/portal shape ---------------------------------------------------------------------


def test_portal_csv_loads_and_rejects_with_reasons() -> None:
    result = parse(PORTAL)
    assert result.rows_read == 9
    assert result.rows["line"].to_list() == [2, 3, 4, 5, 6, 7]
    assert result.rejects["line"].to_list() == [8, 9, 10]
    assert set(result.rows["person_id"]) == {"alice", "bob"}
    # the registered generic csv format reads a labs source with this adapter
    via_registry = FORMATS["csv"].parse(PORTAL, source())
    assert via_registry.rows.equals(result.rows)


def test_hs_and_standard_crp_get_their_loinc() -> None:
    rows = parse(PORTAL).rows
    hs = at_line(rows, 2)
    assert (hs["marker"], hs["loinc"], hs["value"], hs["unit"]) == (
        "hscrp",
        "30522-7",
        1.42,
        "mg/L",
    )
    assert hs["test_name_raw"] == "C-Reactive Protein, High Sensitivity"
    assert hs["collected_at"] == datetime(2025, 2, 3, 8, 15)
    assert hs["crp_method_basis"] == "name"
    # "CRP" states no method: its reference range decides (README "hs-CRP and standard CRP").
    plain = at_line(rows, 5)  # 0.0-10.0 mg/L: a standard range
    assert (plain["marker"], plain["loinc"]) == ("crp", None)
    assert plain["crp_method_basis"] == (
        "no method stated and no sign of a high-sensitivity assay: standard"
    )
    low_range = at_line(rows, 3)  # "<3.0" mg/L: an hs-CRP range
    assert (low_range["marker"], low_range["crp_method_basis"]) == (
        "hscrp",
        "reference upper limit <= 3 mg/L: hs",
    )
    assert at_line(rows, 4)["marker"] == "crp"  # 0.0-0.5 mg/dL = 5 mg/L: standard


def test_mg_dl_becomes_mg_l_and_the_raw_value_is_kept() -> None:
    row = at_line(parse(PORTAL).rows, 4)
    assert row["value"] == pytest.approx(6.2)
    assert row["unit"] == "mg/L"
    assert (row["value_raw"], row["unit_raw"]) == ("0.62", "mg/dL")
    assert row["ref_low"] == 0.0
    assert row["ref_high"] == pytest.approx(5.0)
    assert row["flag"] == "H"


def test_censored_results_keep_their_bound() -> None:
    rows = parse(PORTAL).rows
    below = at_line(rows, 3)
    assert (below["value"], below["censored"], below["value_raw"]) == (0.3, "<", "<0.3")
    above = at_line(rows, 6)
    assert (above["marker"], above["value"], above["censored"]) == ("esr", 150.0, ">")
    assert above["unit"] == "mm/h"
    assert at_line(rows, 2)["censored"] is None


def test_reference_ranges_are_converted_with_the_value() -> None:
    rows = parse(PORTAL).rows
    assert (at_line(rows, 3)["ref_low"], at_line(rows, 3)["ref_high"]) == (None, 3.0)
    albumin = at_line(rows, 7)
    assert albumin["value"] == pytest.approx(4.2)  # 42 g/L -> g/dL
    assert albumin["ref_low"] == pytest.approx(3.5)
    assert albumin["ref_high"] is None


def test_text_results_unknown_tests_and_units_are_rejected() -> None:
    rejects = parse(PORTAL).rejects
    cancelled = at_line(rejects, 8)
    assert cancelled["column"] == "Result"
    assert (cancelled["reason"], cancelled["value"]) == ("no numeric result", "CANCELLED")
    assert "CANCELLED" in str(cancelled["raw"])
    glucose = at_line(rejects, 9)
    assert glucose["column"] == "Test"
    assert glucose["reason"] == KNOWN_MARKERS_ONLY
    assert glucose["value"] == "Glucose"
    unit = at_line(rejects, 10)
    assert unit["column"] == "Units"
    assert str(unit["reason"]).startswith("unknown unit for crp")
    assert "units.csv" in str(unit["reason"])
    assert unit["value"] == "mmol/L"


# ---- dates -------------------------------------------------------------------------------------

LAB_HEADER = "Patient,Date,Test,Result,Units\n"


def test_date_format_is_honoured(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_HEADER + "alice,07/11/2024,CRP,1.0,mg/L\n")
    result = parse(path, date_format="%d/%m/%Y", datetime_format=None, columns={})
    assert result.rows["collected_at"].to_list() == [datetime(2024, 11, 7)]


def test_ambiguous_date_without_format_is_rejected_with_a_helpful_reason(tmp_path: Path) -> None:
    text = LAB_HEADER + "alice,07/11/2024,CRP,1.0,mg/L\nalice,2024-11-07T09:30:00Z,CRP,2.0,mg/L\n"
    result = parse(write(tmp_path, text), datetime_format=None, columns={})
    reject = at_line(result.rejects, 2)
    assert reject["column"] == "Date"
    assert reject["value"] == "07/11/2024"
    assert "date_format" in str(reject["reason"])
    assert "never guessed" in str(reject["reason"])
    # ISO 8601 needs no setting; the offset is dropped, keeping the wall-clock time.
    assert result.rows["collected_at"].to_list() == [datetime(2024, 11, 7, 9, 30)]


def test_us_datetime_format_with_am_pm(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_HEADER + "alice,11/07/2024 09:00 PM,CRP,1.0,mg/L\n")
    result = parse(path, datetime_format="%m/%d/%Y %I:%M %p", columns={})
    assert result.rows["collected_at"].to_list() == [datetime(2024, 11, 7, 21, 0)]


def test_invalid_and_blank_dates(tmp_path: Path) -> None:
    text = LAB_HEADER + "alice,2024-02-30,CRP,1.0,mg/L\nalice,,CRP,1.0,mg/L\n"
    result = parse(write(tmp_path, text), datetime_format=None, columns={})
    assert "not a valid date" in str(at_line(result.rejects, 2)["reason"])
    assert "blank" in str(at_line(result.rejects, 3)["reason"])


# ---- values, units, markers --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "value", "censored"),
    [
        ("<0.3", 0.3, "<"),
        ("< 0.15", 0.15, "<"),
        ("<=0.2", 0.2, "<"),
        (">150", 150.0, ">"),
        (">= 10", 10.0, ">"),
        ("2.5", 2.5, None),
    ],
)
def test_censoring(tmp_path: Path, raw: str, value: float, censored: str | None) -> None:
    path = write(tmp_path, LAB_HEADER + f"alice,2024-11-07,CRP,{raw},mg/L\n")
    row = parse(path, columns={}).rows.to_dicts()[0]
    assert (row["value"], row["censored"], row["value_raw"]) == (value, censored, raw)


@pytest.mark.parametrize(
    "raw", ["CANCELLED", "TNP", "see note", "Below detection limit (0.3)", "<"]
)
def test_text_results_are_rejected(tmp_path: Path, raw: str) -> None:
    path = write(tmp_path, LAB_HEADER + f"alice,2024-11-07,CRP,{raw},mg/L\n")
    result = parse(path, columns={})
    assert result.rejects.select("reason", "value").rows() == [("no numeric result", raw)]


def test_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    text = (
        "Patient;Date;Test;Result;Units;Range\n"
        "alice;07.11.2024;PCR;1,5;mg/L;0,0 - 5,0\n"
        "alice;07.11.2024;Ferritina;<0,5;ng/mL;\n"
        "alice;07.11.2024;PCR;1.5;mg/L;\n"
    )
    result = parse(write(tmp_path, text), date_format="%d.%m.%Y", decimal=",", columns={})
    crp = at_line(result.rows, 2)
    assert (crp["marker"], crp["value"], crp["ref_low"], crp["ref_high"]) == ("crp", 1.5, 0.0, 5.0)
    ferritin = at_line(result.rows, 3)
    assert (ferritin["marker"], ferritin["value"], ferritin["censored"]) == ("ferritin", 0.5, "<")
    assert "decimal" in str(at_line(result.rejects, 4)["reason"])


def test_latin1_file(tmp_path: Path) -> None:
    text = LAB_HEADER + "josé,2024-11-07,Protéine C réactive,3.0,mg/L\n"
    result = parse(write(tmp_path, text, "latin-1"), encoding="latin-1", columns={})
    assert result.rows["person_id"].to_list() == ["josé"]
    assert result.rows["marker"].to_list() == ["crp"]


def test_loinc_column_maps_markers_whatever_the_name(tmp_path: Path) -> None:
    text = (
        "Patient,Date,Test,LOINC,Result,Units\n"
        "alice,2024-11-07,Lab panel item 7,1988-5,4.0,mg/L\n"
        "alice,2024-11-07,Stool test,38445-3,120,ug/g\n"
        "alice,2024-11-07,IL-6 (serum),26881-3,3.1,pg/mL\n"
        "alice,2024-11-07,Thing,2345-7,5.0,mg/dL\n"
        "alice,2024-11-07,hs-CRP,,0.8,mg/L\n"
    )
    result = parse(write(tmp_path, text), columns={})
    markers = result.rows.select("marker", "loinc").rows()
    assert markers == [
        ("crp", "1988-5"),
        ("calprotectin", "38445-3"),
        ("il6", "26881-3"),
        ("hscrp", "30522-7"),
    ]
    assert "(LOINC 2345-7)" in str(at_line(result.rejects, 5)["value"])


@pytest.mark.parametrize(
    ("name", "marker", "loinc"),
    [
        # No method stated, no evidence (no range, value 1): standard, and no LOINC is invented.
        ("CRP", "crp", None),
        ("C-Reactive Protein", "crp", None),
        ("C-Reactive Protein, Quant", "crp", "1988-5"),
        ("C-Reactive Protein, High Sensitivity", "hscrp", "30522-7"),
        ("hs-CRP", "hscrp", "30522-7"),
        ("hsCRP", "hscrp", "30522-7"),
        ("CRP HIGH SENSITIVITY", "hscrp", "30522-7"),
        ("CRP, HIGH SENSITIVITY", "hscrp", "30522-7"),
        ("PCR", "crp", None),
        ("Proteina C reactiva", "crp", None),
        ("CRP, Serum", "crp", None),
        ("ESR", "esr", None),
        ("Sed Rate", "esr", None),
        ("Erythrocyte Sedimentation Rate", "esr", None),
        ("IL-6", "il6", None),
        ("Interleukin 6", "il6", None),
        ("Calprotectin", "calprotectin", None),
        ("Faecal Calprotectin", "calprotectin", None),
        ("Fecal Calprotectin", "calprotectin", None),
        ("Ferritin", "ferritin", None),
        ("Ferritin, Serum", "ferritin", None),
        ("WBC", "wbc", None),
        ("White Blood Cell Count", "wbc", None),
        ("Leukocytes", "wbc", None),
        ("Fibrinogen", "fibrinogen", None),
        ("TNF-alpha", "tnf_alpha", None),
        ("Albumin", "albumin", None),
        ("Zonulin", "zonulin", None),
        ("Glucose", None, None),
        ("Albumin/Creatinine Ratio", None, None),
        ("Procalcitonin", None, None),
    ],
)
def test_test_names(name: str, marker: str | None, loinc: str | None) -> None:
    unit = {
        "hscrp": "mg/L",
        "crp": "mg/L",
        "esr": "mm/h",
        "il6": "pg/mL",
        "calprotectin": "ug/g",
        "ferritin": "ng/mL",
        "wbc": "10^3/uL",
        "fibrinogen": "mg/dL",
        "tnf_alpha": "pg/mL",
        "albumin": "g/dL",
        "zonulin": "ng/mL",
    }.get(marker or "", "mg/L")
    rows, rejects = normalise_lab_rows(
        pl.DataFrame({"test_name_raw": [name], "value": [1.0], "unit_raw": [unit], "line": [2]})
    )
    if marker is None:
        assert rows.height == 0
        assert rejects.select("reason", "value").rows() == [(KNOWN_MARKERS_ONLY, name)]
    else:
        assert rows.select("marker", "loinc", "unit").row(0) == (marker, loinc, unit)


@pytest.mark.parametrize(
    ("marker_name", "unit", "value", "expected"),
    [
        ("CRP", "mg/L", 2.0, 2.0),
        ("CRP", "mg/dL", 0.2, 2.0),
        ("CRP", "µg/mL", 2.0, 2.0),
        ("CRP", "nmol/L", 95.2, 9.996),
        ("ESR", "mm/hr", 12.0, 12.0),
        ("ESR", "", 12.0, 12.0),
        ("IL-6", "ng/L", 3.0, 3.0),
        ("Calprotectin", "mg/kg", 50.0, 50.0),
        ("Ferritin", "ug/L", 80.0, 80.0),
        ("Ferritin", "pmol/L", 100.0, 44.5),
        ("WBC", "10*3/uL", 6.5, 6.5),
        ("WBC", "x10E3/uL", 6.5, 6.5),
        ("WBC", "10^9/L", 6.5, 6.5),
        ("WBC", "K/uL", 6.5, 6.5),
        ("WBC", "/uL", 6500.0, 6.5),
        ("Fibrinogen", "g/L", 3.0, 300.0),
        ("Albumin", "g/L", 42.0, 4.2),
        ("TNF-alpha", "pg/mL", 1.2, 1.2),
        ("Zonulin", "ng/mL", 40.0, 40.0),
    ],
)
def test_unit_conversion(marker_name: str, unit: str, value: float, expected: float) -> None:
    rows, rejects = normalise_lab_rows(
        pl.DataFrame(
            {
                "test_name_raw": [marker_name],
                "value": [value],
                "unit_raw": [unit or None],
                "value_raw": [str(value)],
                "line": [2],
            }
        )
    )
    assert rejects.height == 0, rejects.to_dicts()
    assert rows["value"][0] == pytest.approx(expected)
    assert rows["unit_raw"][0] == (unit or None)


def test_unknown_and_blank_units_are_rejected_never_guessed() -> None:
    rows, rejects = normalise_lab_rows(
        pl.DataFrame(
            {
                "test_name_raw": ["CRP", "CRP", "Ferritin"],
                "value": [1.0, 1.0, 1.0],
                "unit_raw": ["mmol/L", None, "mg/L"],
                "line": [2, 3, 4],
            }
        ),
        {"unit_raw": "Units"},
    )
    assert rows.height == 0
    reasons = rejects["reason"].to_list()
    assert reasons[0].startswith("unknown unit for crp")
    assert reasons[1].startswith("unit is blank; crp results need a unit")
    assert reasons[2].startswith("unknown unit for ferritin")
    assert rejects["value"].to_list() == ["mmol/L", None, "mg/L"]
    assert rejects["column"].to_list() == ["Units"] * 3
    assert rejects["raw"].to_list() == ["mmol/L", None, "mg/L"]


def test_normalise_keeps_row_order_and_passes_columns_through() -> None:
    df = pl.DataFrame(
        {
            "person_id": ["p1", "p2", "p3"],
            "test_name_raw": ["Ferritin", "Glucose", "CRP"],
            "value": [100.0, 5.0, 0.5],
            "censored": [None, None, "<"],
            "unit_raw": ["pmol/L", "mmol/L", "mg/dL"],
            "ref_low": [10.0, None, None],
            "ref_high": [None, None, 1.0],
            "line": [7, 8, 9],
        }
    )
    rows, rejects = normalise_lab_rows(df)
    assert rows["person_id"].to_list() == ["p1", "p3"]
    assert rows["value"].to_list() == pytest.approx([44.5, 5.0])
    assert rows["censored"].to_list() == [None, "<"]
    assert rows["ref_low"].to_list()[0] == pytest.approx(4.45)
    assert rows["ref_high"].to_list()[1] == pytest.approx(10.0)
    assert rejects["line"].to_list() == [8]


def test_a_known_marker_from_the_adapter_is_trusted() -> None:
    df = pl.DataFrame(
        {"test_name_raw": ["LBXHSCRP"], "marker": ["crp"], "value": [2.0], "unit_raw": ["mg/L"]}
    ).with_columns(line=pl.lit(1, dtype=pl.Int64))
    rows, _ = normalise_lab_rows(df)
    assert rows["marker"].to_list() == ["crp"]


def test_reference_range_shapes(tmp_path: Path) -> None:
    ranges = ["0.0-3.0", "<3.0", "<=3.0", ">=40", ">40", "0.5 - 1.0 mg/dL", "normal", ""]
    text = "Patient,Date,Test,Result,Units,Reference Range\n" + "".join(
        f"alice,2024-11-07,CRP,1.0,mg/L,{r}\n" for r in ranges
    )
    rows = parse(write(tmp_path, text), columns={}).rows
    assert rows.select("ref_low", "ref_high").rows() == [
        (0.0, 3.0),
        (None, 3.0),
        (None, 3.0),
        (40.0, None),
        (40.0, None),
        (0.5, 1.0),
        (None, None),
        (None, None),
    ]


# ---- configuration errors ----------------------------------------------------------------------


def test_mapped_column_missing_names_file_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_HEADER + "alice,2024-11-07,CRP,1.0,mg/L\n")
    with pytest.raises(AdapterError, match=r"labs\.csv.*'Collected'.*collected_at"):
        parse(path)


def test_required_column_without_mapping_or_default(tmp_path: Path) -> None:
    path = write(tmp_path, "Patient,When,Test,Result\nalice,2024-11-07,CRP,1.0\n")
    with pytest.raises(AdapterError, match=r"labs\.csv.*collected_at"):
        parse(path, columns={})


def test_unknown_columns_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_HEADER + "alice,2024-11-07,CRP,1.0,mg/L\n")
    with pytest.raises(AdapterError, match=r"unknown key.*'patient'.*person: \{column"):
        parse(path, columns={"patient": "Patient"})


def test_missing_person_column_and_blank_person(tmp_path: Path) -> None:
    path = write(tmp_path, LAB_HEADER + "alice,2024-11-07,CRP,1.0,mg/L\n,2024-11-07,CRP,1.0,mg/L\n")
    result = parse(path, columns={})
    assert at_line(result.rejects, 3)["reason"] == "person id is blank in column 'Patient'"
    with pytest.raises(AdapterError, match=r"labs\.csv.*'Client'"):
        parse(path, columns={}, person=PersonSpec(column="Client"))


def test_tables_are_consistent() -> None:
    tables = lab_tables()
    units = tables.units
    for marker, canonical in tables.canonical_units.items():
        key = canonical.lower().replace("µ", "u")
        hit = units.filter((pl.col("__marker") == marker) & (pl.col("__unit_key") == key))
        assert hit["__factor"].to_list() == [1.0], marker


# ---- hs-CRP and standard CRP --------------------------------------------------------------------

# A US portal export (M/D/YYYY dates, CRLF) with both tests: a cardiologist's hs-CRP and a GP's
# standard CRP, whose "<5" must not become a chronic 3.54 mg/L.
BOTH_CRPS = (
    "Patient,Collected,Test,Result,Units,Reference Range,Flag\r\n"
    "alice,11/07/2024 09:00 AM,hs-CRP,1.8,mg/L,0.0-3.0,\r\n"
    "alice,12/05/2024 08:45 AM,CRP,<5,mg/L,0.0-5.0,\r\n"
    'alice,01/09/2025 09:10 AM,"C-Reactive Protein, High Sensitivity",2.4,mg/L,<3.0,\r\n'
    "alice,02/13/2025 08:30 AM,CRP,12,mg/L,0.0-5.0,H\r\n"
)


def test_a_file_with_hs_crp_and_crp_rows_loads_two_markers(tmp_path: Path) -> None:
    result = parse(write(tmp_path, BOTH_CRPS), datetime_format="%m/%d/%Y %I:%M %p")
    assert result.rows_read == 4 and result.rejects.height == 0
    got = result.rows.select("line", "marker", "value", "censored", "crp_method_basis").rows()
    standard = "no method stated and no sign of a high-sensitivity assay: standard"
    assert got == [
        (2, "hscrp", 1.8, None, "name"),
        (3, "crp", 5.0, "<", standard),
        (4, "hscrp", 2.4, None, "name"),
        (5, "crp", 12.0, None, standard),
    ]


def test_crp_method_in_sources_yaml_decides_a_name_without_method(tmp_path: Path) -> None:
    path = write(tmp_path, BOTH_CRPS)
    fmt = "%m/%d/%Y %I:%M %p"
    said_hs = parse(path, datetime_format=fmt, crp_method="hs").rows
    assert said_hs["marker"].to_list() == ["hscrp"] * 4
    assert at_line(said_hs, 3)["crp_method_basis"] == "sources.yaml crp_method: hs"
    assert at_line(said_hs, 2)["crp_method_basis"] == "name"  # a stated method is not overridden
    said_standard = parse(PORTAL, crp_method="standard").rows
    # "CRP <0.3, range <3.0" would be hs by its range; the user said otherwise.
    assert at_line(said_standard, 3)["marker"] == "crp"
    assert at_line(said_standard, 2)["marker"] == "hscrp"  # "High Sensitivity" in the name


def test_a_low_result_with_two_decimals_marks_the_whole_assay_as_hs(tmp_path: Path) -> None:
    text = (
        "Patient,Collected,Test,Result,Units\n"
        "alice,2025-01-02 08:00,CRP,0.42,mg/L\n"
        "alice,2025-02-02 08:00,CRP,4.10,mg/L\n"  # same test and unit: the same assay
        "alice,2025-03-02 08:00,CRP,0.42,mg/dL\n"  # 4.2 mg/L: not below 1, another unit
    )
    columns = {k: v for k, v in DEMO_COLUMNS.items() if k not in ("reference_range", "flag")}
    rows = parse(write(tmp_path, text), columns=columns).rows
    assert rows["marker"].to_list() == ["hscrp", "hscrp", "crp"]
    assert at_line(rows, 3)["crp_method_basis"] == "results below 1 mg/L with 2 decimals: hs"


def test_every_marker_loinc_is_verified_and_unique() -> None:
    table = pl.read_csv(MARKERS_TABLE, infer_schema=False)
    coded = table.filter(pl.col("loinc").is_not_null() & pl.col("pattern").is_null())
    assert not table["note"].fill_null("").str.contains("to verify").any()
    assert coded["note"].str.contains("verified").all()
    assert coded["loinc"].is_unique().all()
    by_marker = {
        m: set(codes) for m, codes in coded.group_by("marker").agg(pl.col("loinc")).iter_rows()
    }
    assert by_marker["hscrp"] == {"30522-7", "71426-1", "76486-0"}
    assert by_marker["crp"] == {"1988-5", "76485-2", "48421-2"}
    assert by_marker["wbc"] == {"6690-2", "26464-8", "804-5"}
    assert by_marker["ferritin"] == {"2276-4", "20567-4", "24373-3"}
    assert by_marker["albumin"] == {"1751-7", "61151-7", "2862-1"}
    assert by_marker["esr"] == {"30341-2", "4537-7"}
    assert by_marker["calprotectin"] == {"38445-3"}
    assert (by_marker["il6"], by_marker["fibrinogen"]) == ({"26881-3"}, {"3255-7"})
