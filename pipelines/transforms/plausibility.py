"""Plausibility rules: values no body, diary or lab produces, rejected in ONE place for all sources.

Adapters check that a cell *is* a number or a date; this module checks that the number or date
*can be true*. `pipelines.ingest.ingest_source` calls `apply_plausibility` on every parsed file,
whatever its format, so a rule holds the same way for Cronometer, MyFitnessPal, a mapped CSV, FHIR,
Synthea and NHANES. A failing row is rejected: it lands in `rejected_rows` with its file, line,
the canonical column, the reason (a stable category), the offending value in `value` (`raw` is
the row as parsed, its filled columns in JSON), and counts in the file's `rows_rejected`, so
`rows_read == rows_loaded + rows_rejected + rows_duplicate` still holds. A row is rejected for
its first failing rule, in the order below.

The rules, and why:

- Every number (all tables): NaN or infinite -> rejected ("not a finite number"). No measurement is
  infinite; "1e999" in a cell, an overflowing conversion or a NaN from a binary file would
  otherwise poison every sum and mean downstream.
- Dates (diet days, biometric days, lab collection times): before 1950-01-01 -> "date before 1950";
  after `today` + 1 day -> "date in the future". No food diary or lab export this pipeline reads
  goes back before 1950 (hs-CRP itself dates from the 1990s), so such a date is a typo, a
  placeholder or a spreadsheet's day zero (1900-01-01); a day after tomorrow cannot have been
  eaten or drawn yet (one day of slack absorbs time zones: an export made in Auckland is already
  "tomorrow" in UTC). Cross-sectional rows without a date (NHANES) pass.
- Diet entries (one logged food): `energy_kcal` above 10,000 kcal or `grams` above 10,000 g
  (10 kg) -> rejected. No single food logged at a meal reaches that; it is a unit slip (milligrams
  typed as grams, "100 kg" for 100 g) or a paste error. NOT a row rule: a person-day whose
  entries sum above 10,000 kcal may consist of individually plausible rows; flagging such days is
  left to `diet_daily`.
- Nutrients (diet entries and reported daily totals): any negative amount -> rejected. Intake
  cannot be negative. (The CSV adapters already reject negative cells with the file's header as
  the column; this rule covers every format, NHANES included.)
- Lab results: a negative `value` -> rejected, because concentrations, counts and rates are
  never below zero. CRP above 1,000 mg/L (after unit conversion) -> rejected as implausible: the
  highest CRP values reported in the literature (severe sepsis, burns) are a few hundred mg/L, so
  a thousand is an order-of-magnitude slip such as mg/L written as mg/dL. CRP values above
  10 mg/L stay: they are real, and flagged as acute downstream.
- Persons: `age` outside 0-120 years -> rejected (nobody verified has lived past 122; a negative
  age is a typo); `birth_year` outside 1880-this year -> rejected (the same bound persons_csv
  uses, so NHANES and every other persons source agree).
- Biometrics: `weight` in kg outside 2-400 kg -> rejected (below a newborn's weight or above any
  recorded adult's: a pounds/kilograms slip or a typo). Weights in a unit the adapter did not
  convert to kg are left alone, since their scale is unknown.
- Daily outcomes (biometrics rows with a `scale`): a rating outside its own scale -> rejected
  ("value outside its scale 0-4": a 7 on a 0-4 symptom scale, a Bristol 8, a yes/no of 2), because
  a value is only comparable with the others on its scale; a physical measure outside the range a
  body produces -> rejected with the range (`PHYSICAL_BOUNDS` in pipelines/outcome_vocabulary.py:
  resting heart rate 20-200 bpm, RMSSD 1-300 ms, skin temperature deviation -5 to +5 °C, sleep
  0-24 h, ...): these catch the unit slips a wearable's export invites (sleep in minutes or
  seconds read as hours, an absolute temperature in the deviation column).

Formula-like text (cells starting with `=`, `+`, `-` or `@`, such as `=HYPERLINK("http://x","y")`
or `@SUM(1)`) is NOT a plausibility problem and is never altered: it is loaded as plain text,
exactly as written, and nothing in the pipeline evaluates it (Polars and DuckDB treat it as a
string; the dashboards HTML-escape all user text). The one place such text can do harm is outside
the pipeline: if a user exports a table (for example `diet_entries.food` or
`lab_results.test_name_raw`) to CSV and opens it in a spreadsheet program, the spreadsheet may
evaluate the cell as a formula ("CSV injection"). Health data is kept byte-for-byte, so the
pipeline does not prefix such cells with an apostrophe; anyone re-opening exports in a spreadsheet
should import them as text.
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from functools import lru_cache

import polars as pl

from pipelines.lab_vocabulary import CRP_MARKERS
from pipelines.outcome_vocabulary import PHYSICAL_BOUNDS, SCALE_UNIT, SCALE_YES_NO
from pipelines.rules import Check, first_failing, reject_fields
from pipelines.schema import NUTRIENTS, REJECT_SCHEMA, conform, empty
from pipelines.text import format_text

EARLIEST_DATE = date(1950, 1, 1)
# ingest reads a file again on a later day when a row was rejected with this reason.
FUTURE_REASON = "date in the future"
FUTURE_SLACK = timedelta(days=1)
MAX_FOOD_KCAL = 10_000.0
MAX_FOOD_GRAMS = 10_000.0
MAX_CRP_MG_L = 1_000.0
MIN_AGE, MAX_AGE = 0.0, 120.0
MIN_BIRTH_YEAR = 1880
MIN_WEIGHT_KG, MAX_WEIGHT_KG = 2.0, 400.0

DATE_COLUMNS = {
    "diet_entries": "day",
    "diet_daily_reported": "day",
    "biometrics": "day",
    "lab_results": "collected_at",
}


def _rule(failed: pl.Expr, column: str, reason: str, value: pl.Expr) -> Check:
    """Rows where `failed` is True are rejected with `column` and `reason`, a stable category; the
    offending value goes in the reject's `value` (as text)."""
    return Check(failed, column, pl.lit(reason), value)


def rules(target: str, schema: dict[str, pl.DataType], today: date) -> list[Check]:
    """The rules for rows of canonical table `target` with `schema`, in the order they apply."""
    out: list[Check] = []
    for name, dtype in schema.items():
        if dtype == pl.Float64:
            col = pl.col(name)
            out.append(_rule(~col.is_finite(), name, "not a finite number", col))

    date_column = DATE_COLUMNS.get(target)
    if date_column is not None and date_column in schema:
        day = pl.col(date_column).cast(pl.Date)
        shown = (
            pl.col(date_column).dt.strftime("%Y-%m-%d %H:%M")
            if schema[date_column] != pl.Date
            else pl.col(date_column)
        )
        latest = today + FUTURE_SLACK
        out += [
            _rule(day < EARLIEST_DATE, date_column, f"date before 1950 ({EARLIEST_DATE})", shown),
            _rule(
                day > latest,
                date_column,
                # Not the date itself: the reason must not change from one run to the next.
                f"{FUTURE_REASON} (after the day after the run)",
                shown,
            ),
        ]

    if target == "diet_entries":
        out += [
            _rule(
                pl.col("energy_kcal") > MAX_FOOD_KCAL,
                "energy_kcal",
                f"implausible energy for one food: more than {MAX_FOOD_KCAL:,.0f} kcal (a unit "
                "slip or typo?)",
                pl.col("energy_kcal"),
            ),
            _rule(
                pl.col("grams") > MAX_FOOD_GRAMS,
                "grams",
                f"implausible amount for one food: more than {MAX_FOOD_GRAMS:,.0f} g (a unit "
                "slip or typo?)",
                pl.col("grams"),
            ),
        ]
    if target in ("diet_entries", "diet_daily_reported"):
        for nutrient in NUTRIENTS:
            if nutrient in schema:
                out.append(
                    _rule(pl.col(nutrient) < 0, nutrient, "negative amount", pl.col(nutrient))
                )
    if target == "lab_results":
        out += [
            _rule(
                pl.col("value") < 0,
                "value",
                "negative result: a concentration cannot be below zero",
                format_text("{} {}", pl.col("value"), pl.col("marker")),
            ),
            _rule(
                pl.col("marker").is_in(list(CRP_MARKERS)) & (pl.col("value") > MAX_CRP_MG_L),
                "value",
                f"implausible CRP: above {MAX_CRP_MG_L:,.0f} mg/L (the highest reported values "
                "are a few hundred; check the unit)",
                pl.col("value"),
            ),
        ]
    if target == "persons":
        out += [
            _rule(
                (pl.col("age") < MIN_AGE) | (pl.col("age") > MAX_AGE),
                "age",
                f"implausible age: outside {MIN_AGE:.0f}-{MAX_AGE:.0f} years",
                pl.col("age"),
            ),
            _rule(
                (pl.col("birth_year") < MIN_BIRTH_YEAR) | (pl.col("birth_year") > today.year),
                "birth_year",
                f"implausible birth year: outside {MIN_BIRTH_YEAR}-{today.year}",
                pl.col("birth_year"),
            ),
        ]
    if target == "biometrics":
        weight = (pl.col("metric") == "weight") & (pl.col("unit") == "kg")
        out.append(
            _rule(
                weight & ((pl.col("value") < MIN_WEIGHT_KG) | (pl.col("value") > MAX_WEIGHT_KG)),
                "value",
                f"implausible weight: outside {MIN_WEIGHT_KG:.0f}-{MAX_WEIGHT_KG:.0f} kg",
                pl.col("value"),
            )
        )
        if "scale" in schema:
            out += outcome_rules("value", pl.col("value"), pl.col("scale"), pl.col("metric"))
    return out


def outcome_rules(
    column: str, value: pl.Expr, scale: pl.Expr, metric: pl.Expr, shown: pl.Expr | None = None
) -> list[Check]:
    """A rating within its scale, a physical measure within what a body produces; a reject names
    `column` and shows `shown` (else the value). The outcome CSV's wide shape applies them to each
    measure column itself, so that its rejects name the column the reading came from (`Bloating`)
    and the cell as written, rather than `value`."""
    shown = value if shown is None else shown
    # Plain extracts rather than a struct, which Polars can panic on inside when/then.
    bound = r"(\d+)-(\d+)$"
    low = (
        pl.when(scale == SCALE_YES_NO).then(0.0).otherwise(scale.str.extract(bound, 1).cast(float))
    )
    high = (
        pl.when(scale == SCALE_YES_NO).then(1.0).otherwise(scale.str.extract(bound, 2).cast(float))
    )
    out = [
        Check(
            (value < low) | (value > high),
            column,
            # One reason per scale, so that the rejects still group by it.
            format_text("value outside its scale {}", scale),
            shown,
        )
    ]
    for measure, (lowest, highest, bounds) in PHYSICAL_BOUNDS.items():
        here = (metric == measure) & (scale == SCALE_UNIT)
        out.append(
            _rule(
                here & ((value < lowest) | (value > highest)),
                column,
                f"implausible {measure}: outside {bounds}",
                shown,
            )
        )
    return out


def apply_plausibility(
    target: str, rows: pl.DataFrame, today: date
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows that pass every rule, rejects in REJECT_SCHEMA) for rows of canonical table `target`.

    `rows` has the target's schema (with `line`); the kept rows keep it unchanged. Each reject has
    the row's `line`, the canonical column, the reason and the row as JSON in `raw`. Internal
    columns (named `__...`, such as the file index of a batch) stay on the rejects and out of
    `raw`.
    """
    if rows.height == 0:
        return rows, empty(REJECT_SCHEMA)
    compiled = _compiled(target, tuple(rows.schema.items()), today)
    if compiled is None:
        return rows, empty(REJECT_SCHEMA)
    first, column, reason, value = compiled
    marked = rows.with_columns(first.alias("__rule"))
    failing = marked.filter(pl.col("__rule").is_not_null())
    if failing.height == 0:
        return rows, empty(REJECT_SCHEMA)
    internal = [c for c in failing.columns if c.startswith("__")]
    rejects = failing.select(
        pl.col("line").cast(pl.Int64),
        column.alias("column"),
        reason.fill_null("implausible value").alias("reason"),
        value.alias("value"),
        *[pl.col(c) for c in internal if c != "__rule"],
    ).with_columns(pl.Series("raw", _raw(failing.drop(internal)), dtype=pl.String))
    kept = marked.filter(pl.col("__rule").is_null()).drop("__rule")
    extra = {c: rejects.schema[c] for c in internal if c != "__rule"}
    return kept, conform(rejects, {**REJECT_SCHEMA, **extra})


@lru_cache(maxsize=64)
def _compiled(
    target: str, schema: tuple[tuple[str, pl.DataType], ...], today: date
) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr] | None:
    """(index of the first failing rule, its column, its reason, its value) as expressions, built
    once.

    Building the expressions (dozens of rules, each with its formatted reason) costs far more than
    applying them to a small file, and a run applies them to thousands of files of one schema.
    """
    checks = rules(target, dict(schema), today)
    if not checks:
        return None
    column, reason, value = reject_fields(checks, pl.col("__rule"))
    return first_failing(checks), column, reason, value


def _raw(rows: pl.DataFrame) -> list[str]:
    """Each row as read, as compact JSON of its filled columns (dates and odd numbers as text).

    Rejected rows are few, so plain Python is fine here.
    """
    out: list[str] = []
    for row in rows.iter_rows(named=True):
        filled = {
            k: (
                v
                if isinstance(v, int | str) or (isinstance(v, float) and math.isfinite(v))
                else str(v)
            )
            for k, v in row.items()
            if v is not None
        }
        out.append(json.dumps(filled, ensure_ascii=False, separators=(",", ":")))
    return out
