"""The nhanes_xpt adapter: its XPORT v5 reader, the real NHANES 2017-18 files, the example project.

Diet recall totals (DR1TOT/DR2TOT) are not in the shared datasets, so the tests write small XPT
files with a minimal XPORT v5 writer (below; pandas can read XPT but not write it).
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import polars as pl
import pytest

from pipelines.adapters import FORMATS
from pipelines.adapters.base import AdapterError
from pipelines.adapters.nhanes_tables import nhanes_variables
from pipelines.adapters.nhanes_xpt import parse
from pipelines.adapters.xport import read_xport
from pipelines.config import PersonSpec, SourceConfig
from pipelines.project import load_project_config
from pipelines.schema import (
    DIET_REPORTED_SCHEMA,
    LAB_RESULT_SCHEMA,
    NUTRIENTS,
    PERSON_SCHEMA,
    REJECT_SCHEMA,
)

REPO = Path(__file__).resolve().parents[1]
NHANES = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nhanes"
HSCRP = NHANES / "HSCRP_J.XPT"
DEMO = NHANES / "DEMO_J.XPT"
EXAMPLE = REPO / "examples" / "nhanes"

needs_data = pytest.mark.skipif(
    not (HSCRP.exists() and DEMO.exists()), reason="shared NHANES datasets not available"
)


def source(kind: str, person: PersonSpec | None = None, **options: object) -> SourceConfig:
    return SourceConfig(
        name=f"nhanes_{kind}",
        kind=kind,
        format="nhanes_xpt",
        path="nhanes/*.XPT",
        person=person or PersonSpec(column="SEQN"),
        options=dict(options),
    )


# ------------------------------------------------------------------------------------------------
# A minimal XPORT v5 writer (numeric variables as 8-byte IBM floats, character variables as text)
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
    raw = text.encode("ascii") if isinstance(text, str) else text
    return raw.ljust(80, b" ")


def write_xpt(path: Path, dataset: str, columns: dict[str, list]) -> Path:
    """Write `columns` (name -> values; str values make a character variable) as XPORT v5."""
    names = list(columns)
    nobs = len(next(iter(columns.values()))) if columns else 0
    layout: list[tuple[str, bool, int, int]] = []
    position = 0
    for name in names:
        values = columns[name]
        numeric = not any(isinstance(v, str) for v in values)
        length = 8 if numeric else max(1, *(len(v or "") for v in values))
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
    out += _card(f"SAS     {dataset:<8}SASDATA 9.4     X64_10PR" + " " * 24 + stamp)
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
            name.encode().ljust(8),
            f"{name} label".encode().ljust(40),
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
    path.write_bytes(bytes(out))
    return path


def check_accounting(result, schema) -> None:
    assert result.rows_read == result.rows.height + result.rejects.height
    assert result.rows.schema == pl.Schema(schema)
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)


# ------------------------------------------------------------------------------------------------
# The reader
# ------------------------------------------------------------------------------------------------


def test_reader_round_trips_written_file(tmp_path: Path) -> None:
    values = [0.0, 1.0, -2.5, 0.11, 93703.0, 1e-5, 123456.789, None]
    path = write_xpt(
        tmp_path / "T.XPT",
        "T_J",
        {"X": values, "NAME": ["a", "bb", "", "ccc", "d", "e", "f", "g"]},
    )
    xpt = read_xport(path)
    assert xpt.dataset == "T_J"
    assert xpt.labels["X"] == "X label"
    assert xpt.frame["X"].to_list() == values  # zero is exactly 0, missing is null
    assert xpt.frame["NAME"].to_list() == ["a", "bb", None, "ccc", "d", "e", "f", "g"]


def test_reader_drops_blank_padding_after_short_records(tmp_path: Path) -> None:
    # 3 records x 8 bytes = 24 bytes, padded with 56 blanks to one 80-byte card.
    path = write_xpt(tmp_path / "S.XPT", "S", {"SEQN": [1.0, 2.0, 3.0]})
    assert read_xport(path).frame.height == 3


@needs_data
def test_reader_matches_pandas_on_real_files() -> None:
    pd = pytest.importorskip("pandas")
    for path in (HSCRP, DEMO):
        ours = read_xport(path).frame
        theirs = pl.from_dict(
            {c: pd.read_sas(path, format="xport")[c].to_numpy() for c in ours.columns}
        )
        assert ours.columns == theirs.columns
        # pandas reads SAS zero as 5.4e-79; we read it as 0.
        theirs = theirs.select(
            pl.when(pl.col(c).abs() < 1e-70).then(0.0).otherwise(pl.col(c)).fill_nan(None).alias(c)
            for c in theirs.columns
        )
        assert ours.equals(theirs)


def test_not_an_xpt_file_is_an_adapter_error(tmp_path: Path) -> None:
    bad = tmp_path / "HSCRP_J.XPT"
    bad.write_text("SEQN,LBXHSCRP\n93703,1.2\n")
    with pytest.raises(AdapterError, match=r"HSCRP_J\.XPT.*not a SAS transport"):
        parse(bad, source("labs"))
    empty_file = tmp_path / "EMPTY.XPT"
    empty_file.write_bytes(b"")
    with pytest.raises(AdapterError, match=r"EMPTY\.XPT"):
        parse(empty_file, source("labs"))


def test_truncated_xpt_is_an_adapter_error(tmp_path: Path) -> None:
    whole = write_xpt(tmp_path / "W.XPT", "W", {"SEQN": [1.0], "LBXHSCRP": [1.0]})
    cut = tmp_path / "CUT.XPT"
    cut.write_bytes(whole.read_bytes()[:500])
    with pytest.raises(AdapterError, match=r"CUT\.XPT.*truncated"):
        parse(cut, source("labs"))


# ------------------------------------------------------------------------------------------------
# Labs
# ------------------------------------------------------------------------------------------------


@needs_data
def test_real_hscrp_file() -> None:
    result = parse(HSCRP, source("labs"))
    check_accounting(result, LAB_RESULT_SCHEMA)
    rows, rejects = result.rows, result.rejects
    assert result.rows_read == 8366
    assert rows.height == 7250
    assert rejects.height == 1116
    assert set(rejects["reason"]) == {"no result (missing in NHANES)"}
    assert set(rejects["column"]) == {"LBXHSCRP"}
    # line is the 1-based record number: the first record (SEQN 93703) has no result.
    first = rejects.row(0, named=True)
    assert first["line"] == 1
    assert first["raw"].startswith("SEQN=93703,")

    assert rows["person_id"][0] == "93704"
    assert rows["line"][0] == 2
    assert not rows["person_id"].str.contains(r"\.").any()
    assert rows["person_id"].n_unique() == 7250
    assert set(rows["marker"]) == {"hscrp"}  # LBXHSCRP: high-sensitivity CRP
    assert set(rows["unit"]) == {"mg/L"}
    assert set(rows["loinc"]) == {"30522-7"}
    assert set(rows["crp_method_basis"]) == {"format"}  # the NHANES variable says it
    assert rows["collected_at"].null_count() == rows.height  # NHANES has no dates

    censored = rows.filter(pl.col("censored") == "<")
    assert censored.height == 75
    assert set(censored["value"]) == {0.15}
    assert set(censored["value_raw"]) == {"0.11"}
    uncensored = rows.filter(pl.col("censored").is_null())
    assert (uncensored["value"] >= 0.15).all()
    assert uncensored["value"].max() == pytest.approx(182.82)
    assert (uncensored["value"] == uncensored["value_raw"].cast(pl.Float64)).all()
    assert rows["line"].is_sorted()


def test_lab_file_with_several_markers_gives_one_row_per_marker(tmp_path: Path) -> None:
    path = write_xpt(
        tmp_path / "MIX.XPT",
        "MIX",
        {
            "SEQN": [1.0, 2.0, 3.0, None],
            "LBXHSCRP": [2.5, 0.11, None, 1.0],
            "LBDHRPLC": [0.0, 1.0, None, 0.0],
            "LBXWBCSI": [6.4, None, 7.0, 5.0],
        },
    )
    result = parse(path, source("labs"))
    check_accounting(result, LAB_RESULT_SCHEMA)
    assert result.rows_read == 8  # 4 records x 2 marker variables
    got = result.rows.select("person_id", "marker", "value", "unit", "censored", "line").rows()
    assert got == [
        ("1", "hscrp", 2.5, "mg/L", None, 1),
        ("1", "wbc", 6.4, "10^3/uL", None, 1),
        ("2", "hscrp", 0.15, "mg/L", "<", 2),
        ("3", "wbc", 7.0, "10^3/uL", None, 3),
    ]
    assert result.rejects.select("line", "column").rows() == [
        (2, "LBXWBCSI"),
        (3, "LBXHSCRP"),
        (4, "SEQN"),
        (4, "SEQN"),
    ]
    assert "participant id (SEQN) is missing" in result.rejects["reason"].to_list()

    only_wbc = parse(path, source("labs", table="CBC_J"))
    assert only_wbc.rows_read == 4
    assert set(only_wbc.rows["marker"]) == {"wbc"}


def test_standard_crp_in_mg_dl_is_converted(tmp_path: Path) -> None:
    path = write_xpt(tmp_path / "CRP_F.XPT", "CRP_F", {"SEQN": [51624.0], "LBXCRP": [0.21]})
    row = parse(path, source("labs")).rows.row(0, named=True)
    assert row["marker"] == "crp"  # LBXCRP (1999-2010): standard CRP, never pooled with hs-CRP
    assert row["loinc"] == "1988-5"
    assert row["value"] == pytest.approx(2.1)
    assert row["unit"] == "mg/L"
    assert (row["value_raw"], row["unit_raw"]) == ("0.21", "mg/dL")


@needs_data
def test_fixed_person_is_used_as_given() -> None:
    result = parse(HSCRP, source("labs", person=PersonSpec(fixed="cohort")))
    assert set(result.rows["person_id"]) == {"cohort"}


@needs_data
def test_wrong_kind_or_option_is_a_clear_error() -> None:
    with pytest.raises(AdapterError, match=r"DEMO_J\.XPT.*looks like a persons file"):
        parse(DEMO, source("labs"))
    with pytest.raises(AdapterError, match="unknown option"):
        parse(HSCRP, source("labs", tables="HSCRP"))
    with pytest.raises(AdapterError, match="none of the variables of NHANES table CBC"):
        parse(HSCRP, source("labs", table="CBC"))
    with pytest.raises(AdapterError, match="person column 'PATIENT'"):
        parse(HSCRP, source("labs", person=PersonSpec(column="patient")))


# ------------------------------------------------------------------------------------------------
# Persons
# ------------------------------------------------------------------------------------------------


@needs_data
def test_real_demographics_file() -> None:
    result = parse(DEMO, source("persons"))
    check_accounting(result, PERSON_SCHEMA)
    rows = result.rows
    assert result.rows_read == rows.height == 9254
    assert rows["person_id"].n_unique() == 9254
    assert rows["person_id"][0] == "93703"
    assert rows["sex"].value_counts().sort("sex").rows() == [("female", 4697), ("male", 4557)]
    assert rows["age"].null_count() == 0
    assert rows["age"].min() == 0
    assert rows["age"].max() == 80  # top-coded: 80 means 80 and over
    assert rows["line"].to_list() == list(range(1, 9255))
    # The survey design and the further DEMO covariates (DEMO_J codebook counts).
    assert rows["weight_var"].unique().to_list() == ["WTMEC2YR"]
    assert rows["weight"].null_count() == 0
    assert (rows["weight"] == 0).sum() == 550  # interviewed, not examined
    assert rows["stratum"].n_unique() == 15
    assert sorted(rows["stratum"].unique()) == [str(s) for s in range(134, 149)]
    assert sorted(rows["psu"].unique()) == ["1", "2"]
    assert rows.select("stratum", "psu").unique().height == 30
    assert rows["race_eth"].value_counts().sort("race_eth").rows() == [
        ("mexican_american", 1367),
        ("non_hispanic_asian", 1168),
        ("non_hispanic_black", 2115),
        ("non_hispanic_white", 3150),
        ("other_hispanic", 820),
        ("other_or_multiracial", 634),
    ]
    assert rows["income_poverty"].null_count() == 1231
    assert rows["income_poverty"].max() == 5.0  # top-coded: 5 means 5 and over
    first = rows.row(0, named=True)
    assert (first["stratum"], first["psu"], first["race_eth"]) == ("145", "2", "non_hispanic_asian")
    # `from_folder` (also the default when person: is left out) reads SEQN for NHANES files.
    folder = parse(DEMO, source("persons", person=PersonSpec(from_folder=True)))
    assert folder.rows["person_id"].equals(rows["person_id"])


def test_unknown_sex_code_is_rejected(tmp_path: Path) -> None:
    path = write_xpt(
        tmp_path / "DEMO.XPT",
        "DEMO",
        {"SEQN": [1.0, 2.0, 3.0], "RIAGENDR": [1.0, 3.0, None], "RIDAGEYR": [40.0, 50.0, 80.0]},
    )
    result = parse(path, source("persons"))
    check_accounting(result, PERSON_SCHEMA)
    assert result.rows.select("person_id", "sex", "age").rows() == [
        ("1", "male", 40.0),
        ("3", None, 80.0),
    ]
    assert result.rejects.select("line", "column").rows() == [(2, "RIAGENDR")]
    assert "not an NHANES sex code" in result.rejects["reason"][0]
    assert result.rejects["value"][0] == "3"


def test_design_variables_and_race_codes(tmp_path: Path) -> None:
    """An older cycle's DEMO (RIDRETH1 only), a bad race code and a negative weight."""
    path = write_xpt(
        tmp_path / "DEMO_F.XPT",
        "DEMO_F",
        {
            "SEQN": [51624.0, 51625.0, 51626.0, 51627.0, 51628.0],
            "RIAGENDR": [1.0, 2.0, 2.0, 1.0, 2.0],
            "RIDAGEYR": [34.0, 4.0, 16.0, 10.0, 61.0],
            "RIDRETH1": [3.0, 5.0, 6.0, 4.0, 1.0],
            "INDFMPIR": [1.36, None, 2.5, 5.0, 0.0],
            "WTMEC2YR": [81528.77, 56995.04, 31000.0, -1.0, 0.0],
            "SDMVSTRA": [83.0, 79.0, 84.0, 86.0, 90.0],
            "SDMVPSU": [1.0, 2.0, 1.0, 2.0, 1.0],
        },
    )
    result = parse(path, source("persons"))
    check_accounting(result, PERSON_SCHEMA)
    cols = ["person_id", "weight", "weight_var", "stratum", "psu", "race_eth", "income_poverty"]
    assert result.rows.select(cols).rows() == [
        ("51624", 81528.77, "WTMEC2YR", "83", "1", "non_hispanic_white", 1.36),
        ("51625", 56995.04, "WTMEC2YR", "79", "2", "other_or_multiracial", None),
        ("51628", 0.0, "WTMEC2YR", "90", "1", "mexican_american", 0.0),
    ]
    assert result.rejects.select("line", "column", "value").rows() == [
        (3, "RIDRETH1", "6"),
        (4, "WTMEC2YR", "-1"),
    ]
    assert result.rejects["reason"][1] == "negative survey weight"
    assert "not an NHANES race/ethnicity code" in result.rejects["reason"][0]


# ------------------------------------------------------------------------------------------------
# Diet recall totals
# ------------------------------------------------------------------------------------------------

BRIEF_DIET = {
    "KCAL": "energy_kcal",
    "PROT": "protein_g",
    "CARB": "carbs_g",
    "SUGR": "sugars_g",
    "FIBE": "fiber_g",
    "TFAT": "fat_g",
    "SFAT": "sat_fat_g",
    "MFAT": "mufa_g",
    "PFAT": "pufa_g",
    "CHOL": "cholesterol_mg",
    "VARA": "vit_a_ug",
    "VC": "vit_c_mg",
    "VD": "vit_d_ug",
    "ATOC": "vit_e_mg",
    "VB6": "vit_b6_mg",
    "VB12": "vit_b12_ug",
    "FOLA": "folate_ug",
    "IRON": "iron_mg",
    "MAGN": "magnesium_mg",
    "SELE": "selenium_ug",
    "ZINC": "zinc_mg",
    "CAFF": "caffeine_mg",
    "ALCO": "alcohol_g",
    "SODI": "sodium_mg",
    "VB1": "thiamin_mg",
    "VB2": "riboflavin_mg",
    "NIAC": "niacin_mg",
    "BCAR": "beta_carotene_ug",
    "FA": "folic_acid_ug",
}


def test_variable_table_maps_recall_totals() -> None:
    table = nhanes_variables()
    for day in (1, 2):
        mapped = {v.variable: v.column for v in table if v.table == f"DR{day}TOT"}
        for suffix, column in BRIEF_DIET.items():
            assert mapped[f"DR{day}T{suffix}"] == column
    assert {v.column for v in table if v.kind == "diet"} <= set(NUTRIENTS)
    assert all(v.factor == 1 for v in table if v.kind == "diet")


def _recall(day: int) -> dict[str, list]:
    p = f"DR{day}T"
    n = 4
    columns: dict[str, list] = {
        "SEQN": [93703.0, 93704.0, 93705.0, 93706.0],
        f"DR{day}DRSTZ": [1.0, 2.0, 5.0, 1.0],
        "WTDRD1": [1000.0] * n,
    }
    for i, suffix in enumerate(BRIEF_DIET):
        columns[p + suffix] = [float(10 + i), 1.0, None, float(20 + i)]
    columns[p + "ALCO"] = [0.0, 0.0, None, 12.5]
    for suffix, value in {
        "P183": 1.5,
        "P184": 0.1,
        "P205": 0.2,
        "P225": 0.05,
        "P226": 0.15,
    }.items():
        columns[p + suffix] = [value] * 2 + [None] + [value]
    columns[p + "P182"] = [14.0, 1.0, None, 10.0]
    columns[p + "P204"] = [0.2, 1.0, None, 0.1]
    return columns


def test_day1_recall_totals(tmp_path: Path) -> None:
    path = write_xpt(tmp_path / "DR1TOT_X.XPT", "DR1TOT_X", _recall(1))
    result = parse(path, source("diet"))
    check_accounting(result, DIET_REPORTED_SCHEMA)
    assert FORMATS["nhanes_xpt"].target(source("diet")) == "diet_daily_reported"
    assert result.rows_read == 4
    rows = result.rows
    assert rows["person_id"].to_list() == ["93703", "93706"]
    assert rows["line"].to_list() == [1, 4]
    assert set(rows["period"]) == {"recall_day1"}
    assert rows["day"].null_count() == 2
    first = rows.row(0, named=True)
    for i, column in enumerate(BRIEF_DIET.values()):
        expected = 0.0 if column == "alcohol_g" else float(10 + i)
        assert first[column] == expected, column
    assert first["omega3_g"] == pytest.approx(2.0)
    assert first["omega6_g"] == pytest.approx(14.2)
    assert first["trans_fat_g"] is None  # not reported by NHANES: null, never zero

    rejects = result.rejects
    assert rejects.select("line", "column").rows() == [(2, "DR1DRSTZ"), (3, "DR1DRSTZ")]
    assert rejects["value"].to_list() == ["2", "5"]
    assert "not reliable" in rejects["reason"][0]
    assert "not done" in rejects["reason"][1]
    assert rejects["raw"][0].startswith("SEQN=93704, DR1DRSTZ=2")


def test_day2_recall_and_forced_table(tmp_path: Path) -> None:
    path = write_xpt(tmp_path / "DR2TOT_X.XPT", "DR2TOT_X", _recall(2))
    result = parse(path, source("diet"))
    assert set(result.rows["period"]) == {"recall_day2"}
    assert result.rows["fiber_g"].to_list() == [14.0, 24.0]
    with pytest.raises(AdapterError, match="none of the variables of NHANES table DR1TOT"):
        parse(path, source("diet", table="DR1TOT"))


def test_recall_without_status_variable_rejects_empty_records(tmp_path: Path) -> None:
    columns = _recall(1)
    del columns["DR1DRSTZ"]
    path = write_xpt(tmp_path / "DR1.XPT", "DR1", columns)
    result = parse(path, source("diet"))
    check_accounting(result, DIET_REPORTED_SCHEMA)
    assert result.rows.height == 3
    assert result.rejects.select("line").to_series().to_list() == [3]
    assert "no nutrient values" in result.rejects["reason"][0]


# dietaryindex's NHANES mapping (science.md 6.1): DII parameter -> the day-1 variables summed.
DII_FROM_DR1TOT = {
    "Alcohol": ["DR1TALCO"],
    "Vitamin B12": ["DR1TVB12"],
    "Vitamin B6": ["DR1TVB6"],
    "beta-Carotene": ["DR1TBCAR"],
    "Caffeine": ["DR1TCAFF"],  # mg; the table wants g
    "Carbohydrate": ["DR1TCARB"],
    "Cholesterol": ["DR1TCHOL"],
    "Energy": ["DR1TKCAL"],
    "Total fat": ["DR1TTFAT"],
    "Fibre": ["DR1TFIBE"],
    "Folic acid": ["DR1TFA"],
    "Iron": ["DR1TIRON"],
    "Magnesium": ["DR1TMAGN"],
    "MUFA": ["DR1TMFAT"],
    "Niacin": ["DR1TNIAC"],
    "n-3 fatty acids": ["DR1TP183", "DR1TP184", "DR1TP205", "DR1TP225", "DR1TP226"],
    "n-6 fatty acids": ["DR1TP182", "DR1TP204"],
    "Protein": ["DR1TPROT"],
    "PUFA": ["DR1TPFAT"],
    "Riboflavin": ["DR1TVB2"],
    "Saturated fat": ["DR1TSFAT"],
    "Selenium": ["DR1TSELE"],
    "Thiamin": ["DR1TVB1"],
    "Vitamin A": ["DR1TVARA"],
    "Vitamin C": ["DR1TVC"],
    "Vitamin D": ["DR1TVD"],
    "Vitamin E": ["DR1TATOC"],
    "Zinc": ["DR1TZINC"],
}


def test_recall_totals_reach_the_dii_with_all_28_parameters(tmp_path: Path) -> None:
    """Two realistic day-1 recalls (and one without vitamin D, as before 2007): the DII of the
    parsed rows equals Shivappa's formula applied to the XPT values with the reference table."""
    from scipy.stats import norm

    from pipelines.transforms.dii import add_dii

    values = {
        "DR1TKCAL": [2250.0, 1480.0, 1900.0],
        "DR1TPROT": [92.1, 55.3, 70.0],
        "DR1TCARB": [260.4, 190.2, 230.0],
        "DR1TSUGR": [110.0, 80.5, 95.0],
        "DR1TFIBE": [21.3, 9.8, 15.0],
        "DR1TTFAT": [88.0, 60.2, 75.0],
        "DR1TSFAT": [29.5, 21.0, 25.0],
        "DR1TMFAT": [30.1, 20.4, 26.0],
        "DR1TPFAT": [20.2, 12.9, 17.0],
        "DR1TCHOL": [310.0, 180.0, 250.0],
        "DR1TATOC": [9.8, 5.1, 8.0],
        "DR1TVARA": [720.0, 410.0, 600.0],
        "DR1TBCAR": [2900.0, 850.0, 2000.0],
        "DR1TVB1": [1.62, 1.05, 1.4],
        "DR1TVB2": [2.31, 1.44, 1.9],
        "DR1TNIAC": [28.7, 17.2, 22.0],
        "DR1TVB6": [2.1, 1.2, 1.7],
        "DR1TFOLA": [520.0, 300.0, 400.0],  # total folate: not the DII's folic acid
        "DR1TFA": [190.0, 75.0, 120.0],
        "DR1TVB12": [5.6, 3.1, 4.4],
        "DR1TVC": [95.0, 40.0, 70.0],
        "DR1TVD": [5.2, 2.9, None],
        "DR1TMAGN": [340.0, 210.0, 280.0],
        "DR1TIRON": [15.8, 9.9, 12.0],
        "DR1TZINC": [12.1, 7.4, 10.0],
        "DR1TSELE": [120.0, 80.0, 100.0],
        "DR1TCAFF": [190.0, 0.0, 95.0],
        "DR1TALCO": [14.0, 0.0, 0.0],
        "DR1TSODI": [3600.0, 2500.0, 3100.0],
        "DR1TP182": [17.0, 10.5, 14.0],
        "DR1TP183": [1.9, 1.1, 1.5],
        "DR1TP184": [0.02, 0.01, 0.01],
        "DR1TP204": [0.15, 0.09, 0.12],
        "DR1TP205": [0.05, 0.01, 0.02],
        "DR1TP225": [0.02, 0.01, 0.01],
        "DR1TP226": [0.09, 0.02, 0.05],
    }
    path = write_xpt(
        tmp_path / "DR1TOT_J.XPT",
        "DR1TOT_J",
        {"SEQN": [93703.0, 93704.0, 93705.0], "DR1DRSTZ": [1.0, 1.0, 1.0], **values},
    )
    rows = parse(path, source("diet")).rows
    assert rows.height == 3
    scored = add_dii(rows)

    reference = pl.read_csv(REPO.parent / "shared" / "reference" / "dii_shivappa2014.csv")
    table = {r["parameter"]: r for r in reference.iter_rows(named=True)}
    for i in range(3):
        expected, n = 0.0, 0
        for parameter, variables in DII_FROM_DR1TOT.items():
            cells = [values[v][i] for v in variables]
            if any(c is None for c in cells):
                continue
            x = sum(c for c in cells if c is not None)
            if parameter == "Caffeine":
                x /= 1000
            ref = table[parameter]
            z = (x - ref["global_mean"]) / ref["global_sd"]
            expected += (2 * norm.cdf(z) - 1) * ref["effect_score"]
            n += 1
        assert scored["dii_params"][i] == n == (28 if i < 2 else 27)
        assert scored["dii"][i] == pytest.approx(expected, abs=1e-9)
    assert scored["thiamin_mg"].to_list() == [1.62, 1.05, 1.4]
    assert scored["folic_acid_ug"].to_list() == [190.0, 75.0, 120.0]
    assert scored["folate_ug"].to_list() == [520.0, 300.0, 400.0]


# ------------------------------------------------------------------------------------------------
# The example project
# ------------------------------------------------------------------------------------------------


def test_example_sources_yaml_loads() -> None:
    config = load_project_config(EXAMPLE / "sources.yaml")
    assert config.settings.cohort_min_age == 20
    by_name = {s.name: s for s in config.sources}
    assert set(by_name) == {"nhanes_crp", "nhanes_demographics", "nhanes_intake"}
    crp, demo, intake = (
        by_name["nhanes_crp"],
        by_name["nhanes_demographics"],
        by_name["nhanes_intake"],
    )
    assert (crp.kind, crp.format, crp.path) == ("labs", "nhanes_xpt", "nhanes/HSCRP_*.XPT")
    assert (demo.kind, demo.format, demo.path) == ("persons", "nhanes_xpt", "nhanes/DEMO_*.XPT")
    assert (intake.kind, intake.format) == ("diet", "csv")
    assert all(s.person.column == "SEQN" for s in config.sources)
    assert set(intake.columns) <= set(NUTRIENTS)
    assert intake.columns["caffeine_mg"] == "Caffeine"
    assert intake.options == {"scale": {"caffeine_mg": 1000}, "period": "recall_mean_2d"}
    targets = {s.name: FORMATS[s.format].target(s) for s in config.sources}
    assert targets == {
        "nhanes_crp": "lab_results",
        "nhanes_demographics": "persons",
        "nhanes_intake": "diet_daily_reported",
    }


@needs_data
def test_example_globs_match_the_shared_files(tmp_path: Path) -> None:
    raw = tmp_path / "data" / "raw" / "nhanes"
    raw.mkdir(parents=True)
    for f in NHANES.iterdir():
        (raw / f.name).symlink_to(f)
    config = load_project_config(EXAMPLE / "sources.yaml")
    found = {
        s.name: [Path(p).name for p in s.files(tmp_path / "data" / "raw")] for s in config.sources
    }
    assert found == {
        "nhanes_crp": ["HSCRP_J.XPT"],
        "nhanes_demographics": ["DEMO_J.XPT"],
        "nhanes_intake": ["nhanes_2011_2018_dii_intake.csv"],
    }
    crp = parse(raw / "HSCRP_J.XPT", config.source("nhanes_crp"))
    assert crp.rows.height == 7250
