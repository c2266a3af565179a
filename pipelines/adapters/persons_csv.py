"""Covariates table (format `csv`, kind persons): one row per person with sex, age, birth year.

`person: {column: <header>}` names the id column (a fixed id or from_folder also work, for a
one-person file). `columns:` maps `sex`, `age`, `birth_year` and `birth_date` to the file's
headers; a key without a mapping is looked up under common names (Sex/Gender/RIAGENDR, Age/
RIDAGEYR, Birth Year/Year of Birth/YOB, Birth Date/BIRTHDATE/Date of Birth/DOB), so Synthea's
patients.csv reads with just person: {column: Id}. At least one of them must be present.

- sex: "female" or "male". Recognised (any case): F, Female, W, Woman, weiblich, femme, mujer,
  femenino -> female; M, Male, Man, männlich, homme, hombre, masculino -> male; and the NHANES
  convention (RIAGENDR) 1 = male, 2 = female. `options: {sex_codes: {"1": "female", "2": "male",
  "9": null}}` adds or overrides codes (case-insensitive); a code mapped to null loads the person
  with sex unknown. A blank cell is unknown (null); any other value rejects the row (column sex).
- age: years, a number from 0 to 120 (decimal separator as configured); else the row is rejected.
- birth_year: a whole year from 1880 to this year; else rejected. When the file has no birth
  year but a birth date (`birth_date`, ISO 8601 or `date_format`), the year is derived from it.
- A person id seen again in the same file: the later row is rejected ("duplicate person id").
  Only rows that are otherwise valid take part, so a corrected row after a bad one still loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from pipelines.adapters._csv import (
    LINE,
    RAW,
    CsvTable,
    cell,
    date_reason,
    extra_fields_check,
    file_index_schema,
    not_a_number_reason,
    parse_csv_batch,
    parse_datetime,
    per_file,
    person_column_check,
    read_csv_table,
    refuse_swapped_dates,
    split_rejects,
)
from pipelines.adapters.base import AdapterError, BatchResult, ParseResult
from pipelines.config import SourceConfig
from pipelines.rules import Check
from pipelines.schema import PERSON_SCHEMA, REJECT_SCHEMA, conform
from pipelines.text import number

DEFAULT_HEADERS: dict[str, tuple[str, ...]] = {
    "sex": ("sex", "gender", "RIAGENDR"),
    "age": ("age", "age_years", "age years", "RIDAGEYR"),
    "birth_year": ("birth_year", "birth year", "year_of_birth", "year of birth", "yob"),
    "birth_date": ("birth_date", "birth date", "date_of_birth", "date of birth", "dob"),
}

SEX_CODES: dict[str, str] = {
    **dict.fromkeys(
        ("f", "female", "w", "woman", "weiblich", "frau", "femme", "mujer", "femenino", "2"),
        "female",
    ),
    **dict.fromkeys(
        ("m", "male", "man", "männlich", "maennlich", "mann", "homme", "hombre", "masculino", "1"),
        "male",
    ),
}
SEXES = ("female", "male")
MIN_AGE, MAX_AGE = 0, 120
MIN_BIRTH_YEAR = 1880


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one covariates CSV; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _persons(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many covariates CSVs at once, exactly as `parse` one by one would
    (`parse_csv_batch`)."""
    return parse_csv_batch(paths, source, _persons)


def _persons(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in PERSON_SCHEMA, rejects) for one file or a stack of files (then both with
    FILE_INDEX); duplicate ids are looked for within each file."""
    source, path = table.source, table.path
    unknown = sorted(set(source.columns) - set(DEFAULT_HEADERS))
    if unknown:
        raise AdapterError(
            f"{path}: source {source.name!r} maps unknown key(s) {unknown} in 'columns'; "
            f"known keys for persons: {list(DEFAULT_HEADERS)} (the id column is set with "
            "person: {column: ...})."
        )
    codes = sex_codes(path, source)
    found = table.mapped(DEFAULT_HEADERS)
    person, person_check = person_column_check(table)
    if person_check is not None:
        # The id column is not a covariate, even when its name looks like one.
        found = {k: i for k, i in found.items() if table.headers[i] != person_check.column}
    if not found:
        have = ", ".join(repr(h) for h in table.headers)
        raise AdapterError(
            f"{path}: no sex, age, birth_year or birth_date column found (columns in the file: "
            f"{have}). Map them with 'columns: {{sex: <header>, age: <header>}}' for source "
            f"{source.name!r} in sources.yaml."
        )

    def text(key: str) -> pl.Expr:
        return pl.col(cell(found[key])) if key in found else pl.lit(None, dtype=pl.String)

    def header(key: str) -> str:
        return table.headers[found[key]] if key in found else key

    sex_raw = text("sex")
    sex_key = sex_raw.str.to_lowercase().str.replace(r"^([0-9]+)\.0*$", "${1}")
    sex = sex_key.replace_strict(codes, default=None, return_dtype=pl.String)
    known_sex = sex_key.is_in(list(codes))

    age_raw = text("age")
    age, age_invalid = number(age_raw, source.decimal)

    year_raw = text("birth_year")
    year, year_invalid = number(year_raw, source.decimal)
    this_year = date.today().year

    birth_raw = text("birth_date")
    if "birth_date" in found:
        refuse_swapped_dates(table, birth_raw, header("birth_date"))
    formats = [f for f in (source.datetime_format, source.date_format) if f]
    birth = parse_datetime(birth_raw, formats)

    checks: list[Check] = [extra_fields_check(table)]
    if person_check is not None:
        checks.append(person_check)
    checks += [
        Check(
            sex_raw.is_not_null() & ~known_sex,
            header("sex"),
            pl.lit(
                "sex is not a known code (female: F, Female, W, 2; male: M, Male, 1); map it "
                "with options: {sex_codes: {'<code>': female|male|null}} in sources.yaml"
            ),
            sex_raw,
        ),
        Check(
            age_invalid,
            header("age"),
            not_a_number_reason(source.decimal, "age is not a number", age_raw),
            age_raw,
        ),
        Check(
            (age < MIN_AGE) | (age > MAX_AGE),
            header("age"),
            pl.lit(f"age is outside {MIN_AGE}-{MAX_AGE} years"),
            age_raw,
        ),
        Check(
            year_invalid | (year != year.floor()) | (year < MIN_BIRTH_YEAR) | (year > this_year),
            header("birth_year"),
            pl.lit(f"birth year is not a year from {MIN_BIRTH_YEAR} to {this_year}"),
            year_raw,
        ),
        Check(
            birth_raw.is_not_null() & birth.is_null(),
            header("birth_date"),
            date_reason(birth_raw, source.date_format, source.datetime_format),
            birth_raw,
        ),
        Check(
            year.is_null() & ((birth.dt.year() < MIN_BIRTH_YEAR) | (birth.dt.year() > this_year)),
            header("birth_date"),
            pl.lit(f"birth date is not from {MIN_BIRTH_YEAR} to {this_year}"),
            birth_raw,
        ),
    ]
    good, rejects = split_rejects(table.frame, checks)
    carried = per_file(table.frame)
    rows = good.select(
        person.alias("person_id"),
        sex.alias("sex"),
        age.alias("age"),
        pl.coalesce(year.cast(pl.Int64, strict=False), birth.dt.year().cast(pl.Int64)).alias(
            "birth_year"
        ),
        pl.col(LINE).alias("line"),
        pl.col(RAW).alias("raw"),
        *carried,
    )

    # The first valid row of a person wins; later ones are rejected, not merged. Within a file:
    # two files may each name the same person.
    first = pl.col("person_id").is_first_distinct()
    duplicate = ~(first.over(carried) if carried else first)
    id_column = person_check.column if person_check is not None else None
    dupes = rows.filter(duplicate).select(
        "line",
        pl.lit(id_column, dtype=pl.String).alias("column"),
        pl.lit("duplicate person id (the first row of that id loads)").alias("reason"),
        pl.col("person_id").alias("value"),
        "raw",
        *carried,
    )
    schema = file_index_schema(table.frame)
    all_rejects = pl.concat(
        [
            conform(rejects, {**REJECT_SCHEMA, **schema}),
            conform(dupes, {**REJECT_SCHEMA, **schema}),
        ],
        how="vertical",
    ).sort([*carried, "line"], maintain_order=True)
    return conform(rows.filter(~duplicate), {**PERSON_SCHEMA, **schema}), all_rejects


def sex_codes(path: Path, source: SourceConfig) -> dict[str, str | None]:
    """The default sex codes with `options.sex_codes` from sources.yaml on top (keys lower case)."""
    codes: dict[str, str | None] = dict(SEX_CODES)
    extra: Any = source.options.get("sex_codes")
    if extra is None:
        return codes
    if not isinstance(extra, dict):
        raise AdapterError(
            f"{path}: source {source.name!r}, key 'options.sex_codes': expected a mapping such "
            "as {'1': male, '2': female}."
        )
    for code, meaning in extra.items():
        value = meaning.strip().lower() if isinstance(meaning, str) else meaning
        if value == "":
            value = None
        if value is not None and value not in SEXES:
            raise AdapterError(
                f"{path}: source {source.name!r}, key 'options.sex_codes': code {code!r} maps to "
                f"{meaning!r}; use female, male or null (unknown)."
            )
        codes[str(code).strip().lower()] = value
    return codes
