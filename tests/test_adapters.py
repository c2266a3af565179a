"""The CSV reading layer and the Cronometer servings adapter, on real files with real quirks."""

from __future__ import annotations

import math
import random
import re
from pathlib import Path

import polars as pl
import pytest

from pipelines import text as text_module
from pipelines.adapters import FORMATS, AdapterError, ParseResult, cronometer_servings
from pipelines.adapters._csv import per_distinct, read_csv_table
from pipelines.adapters._csv import read as csv_read
from pipelines.adapters.base import lines_of
from pipelines.config import PersonSpec, SourceConfig
from pipelines.schema import DIET_ENTRY_SCHEMA, REJECT_SCHEMA
from pipelines.text import number

FIXTURES = Path(__file__).parent / "fixtures" / "adapters"
SERVINGS = FIXTURES / "cronometer_servings.csv"
HEADER = "Day,Time,Group,Food Name,Amount,Energy (kcal),Fiber (g),Category"


def source(**overrides: object) -> SourceConfig:
    values: dict[str, object] = {
        "name": "alice_cronometer",
        "kind": "diet",
        "format": "cronometer_servings",
        "path": "*.csv",
        "person": PersonSpec(fixed="alice"),
    }
    values.update(overrides)
    return SourceConfig(**values)  # type: ignore[arg-type]


def parse(path: Path, **overrides: object) -> ParseResult:
    result = cronometer_servings.parse(path, source(**overrides))
    check_contract(result)
    return result


def check_contract(result: ParseResult) -> None:
    """What every adapter promises, whatever the file."""
    assert result.rows.schema == pl.Schema(DIET_ENTRY_SCHEMA)
    assert result.rejects.schema == pl.Schema(REJECT_SCHEMA)
    assert result.rows_read == lines_of(result.rows) + result.rejects.height
    assert result.rejects["reason"].null_count() == 0
    assert result.rejects["line"].null_count() == 0


def write(tmp_path: Path, text: str, name: str = "servings.csv", encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def row(result: ParseResult, food: str) -> dict[str, object]:
    rows = result.rows.filter(pl.col("food") == food).to_dicts()
    assert len(rows) == 1, f"{food!r}: {rows}"
    return rows[0]


def reject_at(result: ParseResult, line: int) -> dict[str, object]:
    rows = result.rejects.filter(pl.col("line") == line).to_dicts()
    assert len(rows) == 1, f"line {line}: {result.rejects.to_dicts()}"
    return rows[0]


# ---- the committed fixture -----------------------------------------------------------------


def test_fixture_counts_every_row_once() -> None:
    result = parse(SERVINGS)
    # 10 data rows (one spans two physical lines); the trailing all-empty row is not data.
    assert result.rows_read == 10
    assert result.rows.height == 6
    assert sorted(result.rejects["line"].to_list()) == [8, 10, 11, 12]
    assert result.rows["person_id"].unique().to_list() == ["alice"]


def test_quoted_food_names_keep_their_commas() -> None:
    result = parse(SERVINGS)
    oats = row(result, "Oats, rolled")
    assert oats["day"].isoformat() == "2025-01-06"  # type: ignore[attr-defined]
    assert oats["meal"] == "Breakfast"
    assert oats["category_raw"] == "Cereal Grains and Pasta"
    assert oats["energy_kcal"] == pytest.approx(150.4)
    assert oats["line"] == 2


def test_embedded_newline_keeps_later_line_numbers_physical() -> None:
    result = parse(SERVINGS)
    soup = row(result, "Lentil soup\n(homemade)")
    assert soup["line"] == 4
    assert soup["time"] == "12:30 PM"
    assert row(result, "Coffee")["line"] == 6
    assert row(result, "Egg")["line"] == 7
    assert row(result, "Beef steak")["line"] == 9
    assert reject_at(result, 8)["column"] == "Sodium (mg)"


def test_blank_time_and_blank_nutrients_are_null_not_zero() -> None:
    result = parse(SERVINGS)
    kefir = row(result, "Kefir, plain")
    assert kefir["time"] is None
    assert kefir["energy_kcal"] is None
    assert kefir["fiber_g"] is None
    assert kefir["protein_g"] is None
    egg = row(result, "Egg")
    assert egg["fiber_g"] == 0.0
    assert egg["alcohol_g"] is None


def test_vitamin_d_iu_becomes_micrograms() -> None:
    result = parse(SERVINGS)
    assert row(result, "Kefir, plain")["vit_d_ug"] == pytest.approx(2.5)
    assert row(result, "Egg")["vit_d_ug"] == pytest.approx(82 * 0.025)


def test_unknown_columns_are_ignored() -> None:
    result = parse(SERVINGS)
    assert "Water (g)" not in result.rows.columns
    assert list(result.rows.columns) == list(DIET_ENTRY_SCHEMA)


def test_non_numeric_nutrient_is_rejected_with_line_and_column() -> None:
    reject = reject_at(parse(SERVINGS), 8)
    assert reject["column"] == "Sodium (mg)"
    assert (reject["reason"], reject["value"]) == ("not a number", "abc")
    assert "Kimchi" in str(reject["raw"])


def test_bad_day_blank_food_and_negative_nutrient_are_rejected() -> None:
    result = parse(SERVINGS)
    bad_day = reject_at(result, 10)
    assert bad_day["column"] == "Day"
    assert (bad_day["reason"], bad_day["value"]) == ("not a valid date", "2025-01-32")
    blank_food = reject_at(result, 11)
    assert blank_food["column"] == "Food Name"
    assert "blank" in str(blank_food["reason"])
    negative = reject_at(result, 12)
    assert negative["column"] == "Fiber (g)"
    assert "negative" in str(negative["reason"])
    assert negative["value"] is not None and negative["value"].startswith("-")


@pytest.mark.parametrize(
    ("amount", "grams"),
    [
        ("100.00 g", 100.0),
        ("1.5 kg", 1500.0),
        ("250 ml", 250.0),
        ("8.00 fl oz", 8 * 29.5735),
        ("1.00 oz", 28.349523),
        ("0.5 L", 500.0),
        ("2 large", None),
        ("1.00 full recipe", None),
        ("1 cup", None),
        ("", None),
    ],
)
def test_amount_parsing(tmp_path: Path, amount: str, grams: float | None) -> None:
    path = write(tmp_path, f'{HEADER}\n2025-01-06,08:00,Breakfast,Food,"{amount}",100,1,Misc\n')
    result = parse(path)
    assert result.rows.height == 1
    got = result.rows["grams"][0]
    assert result.rows["amount_raw"][0] == (amount or None)
    if grams is None:
        assert got is None
    else:
        assert got == pytest.approx(grams)


def test_bom_and_crlf_give_the_same_rows(tmp_path: Path) -> None:
    text = SERVINGS.read_text(encoding="utf-8")
    path = tmp_path / "servings.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    plain, messy = parse(SERVINGS), parse(path)
    # The embedded newline becomes CRLF inside the quotes too; it is read back as a plain newline.
    assert messy.rows.equals(plain.rows)
    assert messy.rejects.select("line", "column").equals(plain.rejects.select("line", "column"))


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_configured_encodings(tmp_path: Path, encoding: str) -> None:
    text = f"{HEADER}\n2025-01-06,,Dinner,Crème fraîche,30.00 g,100,0,Dairy\n"
    path = write(tmp_path, text, encoding=encoding)
    result = parse(path, encoding=encoding)
    assert row(result, "Crème fraîche")["grams"] == 30.0


def test_utf16_with_bom_is_read_even_when_utf8_is_configured(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"{HEADER}\n2025-01-06,,Dinner,Crème,30 g,100,0,Dairy\n", encoding="utf-16"
    )
    assert parse(path).rows["food"].to_list() == ["Crème"]


def test_wrong_encoding_is_an_error_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"{HEADER}\n2025-01-06,,Dinner,Crème,30 g,100,0,Dairy\n", encoding="latin-1"
    )
    with pytest.raises(AdapterError, match=r"servings\.csv.*utf-8.*line 2.*encoding"):
        parse(path)


def test_utf16_without_bom_is_an_error_suggesting_utf16(tmp_path: Path) -> None:
    path = write(
        tmp_path, f"{HEADER}\n2025-01-06,,Dinner,Crème,30 g,100,0,Dairy\n", "x.csv", "utf-16-le"
    )
    with pytest.raises(AdapterError, match=r"x\.csv.*UTF-16.*encoding: utf-16"):
        parse(path)
    assert parse(path, encoding="utf-16-le").rows["food"].to_list() == ["Crème"]


def test_unknown_encoding_name_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, f"{HEADER}\n")
    with pytest.raises(AdapterError, match=r"unknown encoding 'klingon'.*alice_cronometer"):
        parse(path, encoding="klingon")


def test_semicolons_and_decimal_commas(tmp_path: Path) -> None:
    text = (
        "Day;Time;Group;Food Name;Amount;Energy (kcal);Fiber (g)\n"
        "2025-01-06;08:00;Frühstück;Haferflocken, kernig;40,00 g;1.234,5;4,0\n"
        "2025-01-06;12:00;Mittag;Brot;100 g;250;1.5\n"
    )
    result = parse(write(tmp_path, text), decimal=",")
    oats = row(result, "Haferflocken, kernig")
    assert oats["energy_kcal"] == pytest.approx(1234.5)
    assert oats["fiber_g"] == pytest.approx(4.0)
    assert oats["grams"] == pytest.approx(40.0)
    # "1.5" in a decimal-comma file is ambiguous: rejected with a hint, never read as 15.
    reject = reject_at(result, 3)
    assert reject["column"] == "Fiber (g)"
    assert "decimal" in str(reject["reason"])


def test_tab_delimiter_is_sniffed(tmp_path: Path) -> None:
    text = HEADER.replace(",", "\t") + "\n2025-01-06\t\tLunch\tOats, rolled\t40 g\t150\t4\tGrains\n"
    result = parse(write(tmp_path, text))
    assert row(result, "Oats, rolled")["fiber_g"] == 4.0


def test_missing_required_column_names_file_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "Day,Time,Group,Amount,Energy (kcal)\n2025-01-06,,Lunch,40 g,150\n")
    with pytest.raises(AdapterError, match=r"servings\.csv.*'Food Name'"):
        parse(path)


def test_empty_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="empty"):
        parse(write(tmp_path, "\n\n"))


def test_header_only_and_blank_lines_are_no_data(tmp_path: Path) -> None:
    assert parse(write(tmp_path, HEADER + "\n")).rows_read == 0
    text = f"{HEADER}\n\n2025-01-06,,Lunch,Oats,40 g,150,4,Grains\n\n,,,,,,,\n\n"
    result = parse(write(tmp_path, text))
    assert result.rows_read == 1
    assert result.rows["line"].to_list() == [3]


def test_person_from_column(tmp_path: Path) -> None:
    text = "Client,Day,Food Name,Amount\nalice,2025-01-06,Oats,40 g\n,2025-01-06,Rice,100 g\n"
    result = parse(write(tmp_path, text), person=PersonSpec(column="client"))
    assert result.rows["person_id"].to_list() == ["alice"]
    assert reject_at(result, 3)["column"] == "Client"
    with pytest.raises(AdapterError, match=r"servings\.csv.*'Patient'"):
        parse(write(tmp_path, text), person=PersonSpec(column="Patient"))


def test_person_from_folder(tmp_path: Path) -> None:
    folder = tmp_path / "bob"
    folder.mkdir()
    path = write(folder, f"{HEADER}\n2025-01-06,,Lunch,Oats,40 g,150,4,Grains\n")
    assert parse(path, person=PersonSpec(from_folder=True)).rows["person_id"].to_list() == ["bob"]


def test_unquoted_delimiter_in_a_value_is_rejected_not_shifted(tmp_path: Path) -> None:
    text = f"{HEADER}\n2025-01-06,,Lunch,Oats, rolled,40 g,150,4,Grains\n"
    result = parse(write(tmp_path, text))
    assert result.rows.height == 0
    assert "more fields than the header" in str(reject_at(result, 2)["reason"])


def test_unterminated_quote_is_an_error_with_a_line(tmp_path: Path) -> None:
    text = (
        f'{HEADER}\n2025-01-06,,Lunch,Oats,40 g,150,4,Grains\n2025-01-06,,Lunch,"Rice,1 g,1,1,X\n'
    )
    with pytest.raises(AdapterError, match=r"servings\.csv: line 3: malformed quoting"):
        parse(write(tmp_path, text))


def test_header_matching_forgives_case_spacing_and_micro_sign(tmp_path: Path) -> None:
    text = (
        " day , FOOD NAME,amount,B12 (mcg),Energy(kcal),Vitamin D (µg)\n"
        "2025-01-06,Salmon,100 g,3.2,208,11\n"
    )
    salmon = row(parse(write(tmp_path, text)), "Salmon")
    assert salmon["vit_b12_ug"] == 3.2
    assert salmon["energy_kcal"] == 208
    assert salmon["vit_d_ug"] == 11


def test_bare_cr_line_ends(tmp_path: Path) -> None:
    text = f"{HEADER}\r2025-01-06,,Lunch,Oats,40 g,150,4,Grains\r2025-01-07,,Lunch,Rice,1 g,1,1,X\r"
    result = parse(write(tmp_path, text))
    assert result.rows["line"].to_list() == [2, 3]


def test_quote_characters_inside_unquoted_values(tmp_path: Path) -> None:
    text = f'{HEADER}\n2025-01-06,,Lunch,12" pizza,1 slice,285,2,Fast Foods\n'
    assert parse(write(tmp_path, text)).rows["food"].to_list() == ['12" pizza']
    text = (
        f'{HEADER}\n2025-01-06,,Lunch,5" pie,1 slice,285,2,"Baked\nProducts"\n'
        "2025-01-07,,X,Y,1 g,1,1,Z\n"
    )
    result = parse(write(tmp_path, text))
    assert result.rows["food"].to_list() == ['5" pie', "Y"]
    assert result.rows["line"].to_list() == [2, 4]


def test_read_csv_table_raw_text_and_lines(tmp_path: Path) -> None:
    path = write(tmp_path, 'a,b\n1,"x\ny"\n\n2,z\n')
    table = read_csv_table(path, source())
    assert table.headers == ("a", "b")
    assert table.frame["__line"].to_list() == [2, 5]
    assert table.frame["__raw"].to_list() == ['1,"x\ny"', "2,z"]


def test_registered_under_its_format_name() -> None:
    assert FORMATS["cronometer_servings"].parse is cronometer_servings.parse
    assert FORMATS["cronometer_servings"].kinds == ("diet",)


def test_large_file_stays_consistent(tmp_path: Path) -> None:
    lines = [HEADER] + [
        f'2025-01-{1 + i % 28:02d},,Lunch,"Food {i}, raw",{i % 500}.00 g,{i % 900},{i % 7},Misc'
        for i in range(20_000)
    ]
    lines[5000] = "2025-01-01,,Lunch,Bad,1 g,x,1,Misc"
    result = parse(write(tmp_path, "\n".join(lines) + "\n"))
    assert result.rows_read == 20_000
    assert result.rejects["line"].to_list() == [5001]
    assert not math.isnan(result.rows["energy_kcal"].sum())


def test_csv_module_fallback_reads_the_same_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When Polars cannot split a file like the csv module does, the csv module's cells are used."""
    text = SERVINGS.read_text(encoding="utf-8")
    path = write(tmp_path, text + '2025-01-08,,Lunch,"Rice, ""wild""",1 g,1,1,X,extra\n')
    expected = parse(path)
    monkeypatch.setattr(csv_read, "polars_cells", lambda *args: None)
    fallback = parse(path)
    assert fallback.rows.equals(expected.rows)
    assert fallback.rejects.equals(expected.rejects)
    assert fallback.rejects["line"].to_list()[-1] == 14


@pytest.mark.parametrize(
    ("decimal", "text", "value", "invalid"),
    [
        (".", "1.5", 1.5, False),
        (".", "-2", -2.0, False),
        (".", ".5", 0.5, False),
        (".", "1e-3", 0.001, False),
        (".", "1,234.5", 1234.5, False),
        (".", "1,5", None, True),
        (".", "0,300", None, True),
        (".", "nan", None, True),
        (".", "inf", None, True),
        (".", "1e999", None, True),
        (".", "-1e999", None, True),
        (".", "abc", None, True),
        (".", None, None, False),
        (".", "", None, False),
        (",", "1,5", 1.5, False),
        (",", "1.234,5", 1234.5, False),
        (",", "1.234", 1234.0, False),
        (",", "0.300", None, True),
        (",", "1.5", None, True),
        (",", "1.000e999", None, True),
    ],
)
def test_number(decimal: str, text: str | None, value: float | None, invalid: bool) -> None:
    parsed, bad = number(pl.col("s"), decimal)
    got = pl.DataFrame({"s": [text]}, schema={"s": pl.String}).select(parsed, bad.alias("bad"))
    assert got.row(0) == (value, invalid)


def test_number_reads_exactly_the_plain_numbers_of_its_pattern() -> None:
    """`number` reads plain numbers with Polars' float parser, not with the pattern `_NUMBER`:
    on cells built from digits, separators, signs, exponents and the words the parser knows
    ("nan", "inf", "infinity"), a cell has a value exactly when the pattern matches it (or it is
    grouped in thousands) and its value is finite."""
    rng = random.Random(19)
    pieces = [*"0123456789.,eE+-_ x١", "nan", "inf", "Infinity", "1e999"]
    cells = sorted({"".join(rng.choices(pieces, k=rng.randint(1, 7))) for _ in range(20_000)})
    for decimal in (".", ","):
        value, _ = number(pl.col("s"), decimal)
        got = pl.DataFrame({"s": cells}).select(value).to_series().to_list()
        for text, parsed in zip(cells, got, strict=True):
            if re.fullmatch(text_module._GROUPED[decimal], text):
                continue
            expected = None
            if re.fullmatch(text_module._NUMBER[decimal], text):
                as_float = float(text.replace(",", ".") if decimal == "," else text)
                expected = as_float if math.isfinite(as_float) else None
            assert parsed == expected, (decimal, text)


def test_clean_strips_every_cell_that_needs_it() -> None:
    """`clean` strips only the columns `_untidy` names, which must be every column with an empty
    cell or one starting or ending in whitespace (any Unicode space), long or short, in a column
    of several chunks or a slice: the result is that of stripping every column."""
    rng = random.Random(7)
    alphabet = ["a", "b", "1", " ", "\t", "\u00a0", "\u3000", "\u2028", "\u0085", "é", ","]
    for _ in range(300):
        height = rng.randint(1, 20)

        def cells(height: int = height) -> list[str | None]:
            return [
                None
                if rng.random() < 0.2
                else "".join(rng.choices(alphabet, k=rng.choice([0, 1, 5, 12, 13, 30])))
                for _ in range(height)
            ]

        frame = pl.DataFrame(
            {
                "c0": cells(),
                "c1": cells(),
                "__extra": cells(),
                "__line": range(height),
                "__raw": ["x"] * height,
            },
            schema={
                "c0": pl.String,
                "c1": pl.String,
                "__extra": pl.String,
                "__line": pl.Int64,
                "__raw": pl.String,
            },
        )
        if rng.random() < 0.5:
            frame = pl.concat([frame, frame], rechunk=False).slice(rng.randint(0, height), height)
        names = ["c0", "c1", "__extra"]
        expected = frame.with_columns([csv_read.tidy(n) for n in names]).filter(
            pl.any_horizontal([pl.col(n).is_not_null() for n in names])
        )
        assert csv_read.clean(frame, 2).equals(expected)


def test_per_distinct_gives_each_row_its_value_in_order() -> None:
    """Worked out once per distinct cell and joined back: every row (nulls too) gets what the
    expression gives its own cell, in the rows' order."""
    cells = pl.Series("c4", ["2 g", None, "1 kg", "2 g", "x", None, "1 kg"])
    got = per_distinct(cells, lambda text: cronometer_servings._grams(text, "."))
    expected = cells.to_frame().select(cronometer_servings._grams(pl.col("c4"), "."))
    assert got.to_list() == expected.to_series().to_list()
    assert got.to_list() == [2.0, None, 1000.0, 2.0, None, None, 1000.0]
