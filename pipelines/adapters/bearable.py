"""Bearable's CSV export (format `bearable`, kind outcomes): one row per logged entry (table
`biometrics`).

Shape (as public parsers of the export read it, e.g. a Bearable dashboard and a symptom-pivot
script on GitHub, and the export analysis on coornail.net linked from
reference/users-and-peers.md): the file `Bearable App - Data Export. Generated DD-MM-YYYY.csv`
with the header `date,date formatted,weekday,time of day,category,rating/amount,detail,notes`,
one row per entry. The day is `date formatted` (ISO is read as is; any other shape needs
`date_format`, as everywhere), `time of day` ("am", "pm", "14:39", ...) goes to `time` as
written. Older exports (2021) have no `date formatted` column, only `date` written "9th May 2021";
such a file is refused naming the missing column rather than read with a guessed date.

Categories read, with Bearable's scales (its "different scales" support page):

- Symptom: the symptom in `detail` without its severity word ("Bloating (Moderate)" ->
  `bloating`), valued by `rating/amount` on scale 0-4 (none to unbearable);
- Mood: `mood`, scale 1-10; Energy: `energy`, scale 1-5 (very low to very high);
- Sleep: `sleep_duration`, `rating/amount` written H:MM, stored in h;
- Sleep quality: `sleep_quality`, scale 1-5, the number in `rating/amount` (a public 2021 export
  has `Sleep quality,4,Good`: the word in `detail` is the number's label and is not read);
- Bowel Movements: `bristol_stool` on the Bristol scale (`bristol_1-7`), the type in
  `rating/amount` ("4", also "Type 4").

What public material shows of Bowel Movements, and what it does not: the category is named
"Bowel Movements", its entries carry a clock time (`14:39`) in `time of day`, Bearable's scales
page says the section uses the Bristol chart (type 1 to 7), and a public importer reads
`rating/amount` as the movement's rating and `detail` as " | "-joined descriptions. No public
export shows a logged Bristol type, only a movement with `rating/amount` "None". So the reading is
the strict one: a whole number 1-7 (optionally after "Type") is the Bristol type; anything else
("None", a word, 4.5) is rejected with the reason "bowel movement without a Bristol type
(1-7)", never guessed into a type or into "no movement that day"; 0 or 8 is rejected by the
plausibility rules as outside the scale; `detail` is not read (what it lists, e.g. urgency, is not
shown for sure).

Several bowel movements on one day: each is one reading with its time, all loaded; the day's
`bristol_stool` is that set (how a day is summarised is the analysis' choice, not the ingest's).
This is the ownership key (person, day, measure) of `biometrics` at work, as for a symptom logged
several times a day: a later export that covers the day again replaces the day's whole set and
the older file's entries count as duplicates, so every line is loaded, rejected with a reason or
counted as a duplicate.

Symptom names get the stable names of `pipelines.outcome_vocabulary` ("Stomach pain" ->
`abdominal_pain`). Every other category (Factors, Nutrition, Medication, Notes, Health
measurements, ...) is not read as an outcome: its rows are rejected with the reason "category not
read as an outcome", so that the file's accounting still covers every line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from pipelines.adapters._csv import (
    LINE,
    CsvTable,
    cell,
    extra_fields_check,
    file_index_schema,
    not_a_number_reason,
    parse_csv_batch,
    per_file,
    read_csv_table,
    split_rejects,
)
from pipelines.adapters.base import BatchResult, ParseResult
from pipelines.adapters.cronometer_biometrics import metric_name
from pipelines.adapters.diet_csv import date_checks, date_expr, person_id
from pipelines.adapters.signatures import refuse_other_format
from pipelines.config import SourceConfig
from pipelines.outcome_vocabulary import ALIASES, SCALE_BRISTOL, SCALE_UNIT
from pipelines.rules import Check
from pipelines.schema import BIOMETRIC_SCHEMA, REJECT_SCHEMA, conform
from pipelines.text import number

# Category -> (measure, or None to take it from `detail`; scale).
CATEGORIES: dict[str, tuple[str | None, str]] = {
    "symptom": (None, "0-4"),
    "mood": ("mood", "1-10"),
    "energy": ("energy", "1-5"),
    "sleep": ("sleep_duration", SCALE_UNIT),
    "sleep quality": ("sleep_quality", "1-5"),
    "bowel movements": ("bristol_stool", SCALE_BRISTOL),
}
_SEVERITY = r"\s*\((?:none|mild|moderate|severe|unbearable|extreme)\)\s*$"
_DURATION = r"^(\d{1,2}):([0-5]\d)$"
_BRISTOL_PREFIX = r"(?i)^\s*type\s*"
_HINT = (
    "Is this Bearable's export (Settings > Export data)? Export it again, or point the source "
    "at the right files."
)


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one Bearable export; see the module docstring."""
    table = read_csv_table(path, source)
    rows, rejects = _entries(table)
    return ParseResult(rows=rows, rejects=rejects, rows_read=table.rows_read)


def parse_batch(paths: Sequence[Path], source: SourceConfig) -> BatchResult:
    """Read many Bearable exports at once, exactly as `parse` one by one would."""
    return parse_csv_batch(paths, source, _entries)


def _entries(table: CsvTable) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows in BIOMETRIC_SCHEMA, rejects) for one file or a stack of files."""
    source = table.source
    refuse_other_format(table, "bearable")
    day_i = table.require(["date formatted"], _HINT)
    category_i = table.require(["category"], _HINT)
    amount_i = table.require(["rating/amount"], _HINT)
    detail_i = table.require(["detail"], _HINT)
    time_i = table.find(["time of day"])
    person, person_check = person_id(table)

    day_raw = pl.col(cell(day_i))
    category = pl.col(cell(category_i)).str.to_lowercase()
    amount = pl.col(cell(amount_i))
    detail = pl.col(cell(detail_i))
    amount_header = table.headers[amount_i]

    read = category.is_in(list(CATEGORIES)).fill_null(False)
    fixed = category.replace_strict(
        {k: v[0] for k, v in CATEGORIES.items()}, default=None, return_dtype=pl.String
    )
    scale = category.replace_strict(
        {k: v[1] for k, v in CATEGORIES.items()}, default=None, return_dtype=pl.String
    )
    symptom = metric_name(detail.str.replace(f"(?i){_SEVERITY}", "")).replace(ALIASES)
    measure = pl.coalesce(fixed, symptom)
    is_sleep = (category == "sleep").fill_null(False)
    is_bowel = (category == "bowel movements").fill_null(False)
    # Two plain extracts, not `extract_groups`: a struct inside when/then panics in Polars on
    # differently chunked columns (see `pipelines.text.format_text`).
    hours = amount.str.extract(_DURATION, 1).cast(pl.Float64)
    duration = hours + amount.str.extract(_DURATION, 2).cast(pl.Float64) / 60
    # "Type 4" is read as 4; the number itself must be a whole type (see the module docstring).
    rating, invalid = number(
        pl.when(is_bowel).then(amount.str.replace(_BRISTOL_PREFIX, "")).otherwise(amount),
        source.decimal,
    )

    checks: list[Check] = [extra_fields_check(table)]
    if person_check is not None:
        checks.append(person_check)
    checks += [
        Check(
            ~read,
            table.headers[category_i],
            pl.lit("category not read as an outcome"),
            pl.col(cell(category_i)),
        )
    ]
    checks += date_checks(table, day_raw, table.headers[day_i])
    checks += [
        Check(measure.is_null(), table.headers[detail_i], pl.lit("symptom name is blank")),
        Check(amount.is_null(), amount_header, pl.lit(f"{amount_header} is blank")),
        Check(
            is_sleep & duration.is_null(),
            amount_header,
            pl.lit("sleep not written as a duration H:MM"),
            amount,
        ),
        Check(
            is_bowel & (invalid | (rating != rating.round())),
            amount_header,
            pl.lit("bowel movement without a Bristol type (1-7)"),
            amount,
        ),
        Check(
            ~is_sleep & invalid,
            amount_header,
            not_a_number_reason(source.decimal, cell=amount),
            amount,
        ),
    ]
    good, rejects = split_rejects(table.frame, checks)

    rows = good.select(
        person.alias("person_id"),
        date_expr(day_raw, source).alias("day"),
        (pl.lit(None, dtype=pl.String) if time_i is None else pl.col(cell(time_i))).alias("time"),
        measure.alias("metric"),
        pl.when(is_sleep).then(duration).otherwise(rating).alias("value"),
        pl.when(is_sleep).then(pl.lit("h")).alias("unit"),
        scale.alias("scale"),
        amount.alias("value_raw"),
        pl.col(LINE).alias("line"),
        *per_file(table.frame),
    )
    schema = file_index_schema(table.frame)
    return conform(rows, {**BIOMETRIC_SCHEMA, **schema}), conform(
        rejects, {**REJECT_SCHEMA, **schema}
    )
