"""Synthea's `observations.csv` (format `synthea_observations`, kind labs).

Header (read by name, so versions without CATEGORY or TYPE work too):
`DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE`. DATE is ISO 8601 with `Z`
(the offset is dropped, as everywhere: wall-clock time); CODE is LOINC; TYPE is `numeric` or
`text`. The person is `person:` from sources.yaml when it is a fixed id or from_folder, else the
column it names (person: {column: PATIENT}).

A Synthea file holds every observation of every patient: vital signs, surveys, panels. Rows that
are not an inflammation marker are rejected by `normalise_lab_rows` with the reason "not a known
inflammation marker ..." (the test and its LOINC code in `value`), so every row is still
accounted for; because they are most of the file, their `raw` is only "CODE DESCRIPTION" rather
than the whole row. Text results (TYPE text) of a marker are rejected as "no numeric result".
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipelines.adapters._csv import (
    LINE,
    RAW,
    CsvTable,
    cell,
    date_reason,
    extra_fields_check,
    file_index_schema,
    parse_csv_batch,
    parse_datetime,
    per_file,
    read_csv_table,
    refuse_swapped_dates,
    split_rejects,
)
from pipelines.adapters.base import FILE_INDEX, AdapterError, BatchResult, ParseResult
from pipelines.adapters.signatures import refuse_other_format
from pipelines.config import SourceConfig
from pipelines.lab_vocabulary import CENSORED, LOW_BOUND
from pipelines.rules import Check
from pipelines.schema import REJECT_SCHEMA, conform
from pipelines.text import number
from pipelines.transforms.labs import LabTableError, normalise_lab_rows

HINT = "Is this Synthea's observations.csv (DATE,PATIENT,ENCOUNTER,CODE,DESCRIPTION,VALUE,...)?"


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one Synthea observations.csv; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _observations(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many observations files at once, exactly as `parse` one by one would
    (`parse_csv_batch`)."""
    return parse_csv_batch(paths, source, _observations)


def _observations(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in LAB_RESULT_SCHEMA, rejects) for one file or a stack of files (then both with
    FILE_INDEX); the CRP method is decided, and rejects matched to rows, within each file."""
    source, path = table.source, table.path
    carried = per_file(table.frame)
    schema = file_index_schema(table.frame)
    if source.columns:
        raise AdapterError(
            f"{path}: source {source.name!r} sets 'columns', but format synthea_observations "
            "reads Synthea's own headers; remove 'columns' from the source in sources.yaml."
        )
    refuse_other_format(table, "synthea_observations")
    date = table.require(["DATE"], HINT)
    code = table.require(["CODE"], HINT)
    description = table.require(["DESCRIPTION"], HINT)
    value_at = table.require(["VALUE"], HINT)
    units = table.find(["UNITS", "UNIT"])
    kind = table.find(["TYPE"])

    fixed = source.person.for_file(path)
    checks: list[Check] = [extra_fields_check(table)]
    if fixed is not None and table.files is not None:
        # In a stack each file keeps its own id (its folder, with from_folder).
        ids = {i: source.person.for_file(file) for i, file in table.files.items()}
        person = pl.col(FILE_INDEX).replace_strict(ids, return_dtype=pl.String)
    elif fixed is not None:
        person = pl.lit(fixed, dtype=pl.String)
    else:
        name = source.person.column or "PATIENT"
        index = table.require(
            [name],
            f"Source {source.name!r} takes the person id from this column; set person: "
            "{column: PATIENT} (or a fixed id) in sources.yaml.",
        )
        person = pl.col(cell(index))
        checks.append(
            Check(
                person.is_null(),
                table.headers[index],
                pl.lit(f"person id is blank in column '{table.headers[index]}'"),
            )
        )

    def text(index: int | None) -> pl.Expr:
        return pl.col(cell(index)) if index is not None else pl.lit(None, dtype=pl.String)

    date_raw = text(date)
    refuse_swapped_dates(table, date_raw, table.headers[date])
    formats = [f for f in (source.datetime_format, source.date_format) if f]
    collected = parse_datetime(date_raw, formats)
    checks += [
        Check(date_raw.is_null(), table.headers[date], pl.lit("DATE is blank")),
        Check(
            collected.is_null(),
            table.headers[date],
            date_reason(date_raw, source.date_format, source.datetime_format),
            date_raw,
        ),
    ]
    good, rejects = split_rejects(table.frame, checks)

    value_raw = text(value_at)
    parts = value_raw.str.extract_groups(CENSORED)
    comparator = parts.struct.field("1")
    value, _ = number(pl.coalesce(parts.struct.field("2"), value_raw), source.decimal)
    is_text = text(kind).str.to_lowercase().is_in(["text", "string"]).fill_null(False)
    rows = good.select(
        person.alias("person_id"),
        collected.alias("collected_at"),
        text(description).alias("test_name_raw"),
        text(code).alias("loinc"),
        pl.when(is_text).then(None).otherwise(value).alias("value"),
        pl.when(is_text | value.is_null())
        .then(None)
        .when(comparator.is_in(list(LOW_BOUND)))
        .then(pl.lit(">"))
        .when(comparator.is_not_null())
        .then(pl.lit("<"))
        .alias("censored"),
        value_raw.fill_null("").alias("value_raw"),
        text(units).alias("unit_raw"),
        pl.col(LINE).alias("line"),
        # Short evidence for the many non-marker rows; others get the whole row back below.
        pl.concat_str(
            [text(code).fill_null(""), text(description).fill_null("")], separator=" "
        ).alias("raw"),
        *carried,
    )
    code_header = table.headers[code]
    try:
        loaded, unmapped = normalise_lab_rows(
            rows,
            {
                "test_name_raw": code_header,
                "value": table.headers[value_at],
                "unit_raw": table.headers[units] if units is not None else "UNITS",
            },
            crp_method=source.crp_method,
            carry=carried,
        )
    except LabTableError as exc:
        raise AdapterError(f"{path}: cannot map lab results: {exc}") from exc
    # Rejects other than "not a marker" are few and worth their whole row.
    full = unmapped.filter(pl.col("column") != code_header)
    if full.height:
        whole = full.join(
            good.select(*carried, pl.col(LINE).alias("line"), pl.col(RAW).alias("__whole")),
            on=[*carried, "line"],
            how="left",
        ).with_columns(pl.col("__whole").alias("raw"))
        unmapped = pl.concat(
            [
                unmapped.filter(pl.col("column") == code_header),
                conform(whole, {**REJECT_SCHEMA, **schema}),
            ]
        )
    all_rejects = pl.concat(
        [conform(rejects, {**REJECT_SCHEMA, **schema}), unmapped], how="vertical"
    ).sort([*carried, "line"], maintain_order=True)
    return loaded, all_rejects
