"""Which export a CSV file is, from its header: one table for every format that has a fixed shape.

A file of the wrong format used to load quietly (a Servings file configured as `myfitnesspal`
loaded as daily totals without its carbohydrates; a `dailysummary.csv` holding Servings rows
loaded one food as the day's total). Each fixed-shape adapter calls `refuse_other_format` right
after reading the header: when the header is another format's signature, the file is refused with
a message naming the format (and configuration) that reads it.

Signatures are tried in order and the first match wins, so a more specific shape comes before a
looser one (a Servings file has `Day` and `Energy (kcal)` too, like a Daily Nutrition file). Each
signature is a list of required columns, each given as its accepted names (header matching is
`CsvTable.find`'s: no case, no spaces, units in parentheses tolerated). A header that matches no
signature is left to the adapter, whose own messages say which column is missing: exports vary,
and a file is refused here only when it positively looks like another format.

The generic `csv` format reads whatever its mapping says, so it refuses nothing; its lab shape is
here so that a lab table given to a diet format is named as such.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.adapters._csv import CsvTable
from pipelines.adapters.base import AdapterError


@dataclass(frozen=True)
class Signature:
    format: str  # the sources.yaml `format:` that reads this shape
    label: str  # what the file is, in a user's words
    columns: tuple[tuple[str, ...], ...]  # required columns, each as its accepted names
    setting: str = ""  # the configuration beyond `format:` that reads it, when there is one


SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "synthea_observations",
        "a Synthea observations.csv (lab results)",
        (("DATE",), ("PATIENT",), ("ENCOUNTER",), ("CODE",), ("DESCRIPTION",), ("VALUE",)),
        "with kind: labs",
    ),
    Signature(
        "bearable",
        "a Bearable export (one row per entry: 'date formatted', 'category', 'rating/amount')",
        (("date formatted",), ("category",), ("rating/amount",), ("detail",)),
        "with kind: outcomes",
    ),
    Signature(
        "oura_trends",
        "an Oura trends export (one row per day: 'date', 'Average Resting Heart Rate', ...)",
        (("date",), ("Average Resting Heart Rate",), ("Average HRV",)),
        "with kind: outcomes",
    ),
    Signature(
        "cronometer_biometrics",
        "a Cronometer Biometrics export (weight, blood pressure, ...)",
        (("Day", "Date"), ("Metric",), ("Amount", "Value")),
    ),
    Signature(
        "cronometer_servings",
        "a Cronometer Servings export (one row per food: 'Food Name', 'Amount')",
        (("Day", "Date"), ("Food Name",), ("Amount",)),
    ),
    Signature(
        "myfitnesspal",
        "a MyFitnessPal food-level export (one row per food: 'Meal', 'Food')",
        (("Date", "Day"), ("Meal",), ("Food",), ("Calories",)),
        "with options: {level: entries}",
    ),
    Signature(
        "myfitnesspal",
        "a MyFitnessPal Nutrition Summary (one row per meal: 'Meal', 'Calories')",
        (("Date", "Day"), ("Meal",), ("Calories",)),
    ),
    Signature(
        "cronometer_daily_summary",
        "a Cronometer Daily Nutrition export (one row per day: 'Date', 'Energy (kcal)')",
        # `Date` only: a Servings export has `Day` and `Energy (kcal)` too.
        (("Date",), ("Energy (kcal)",)),
    ),
    Signature(
        "csv",
        "a table of lab results (test, result, unit)",
        (
            ("Test", "Test Name", "Analyte", "Marker", "Component", "Observation"),
            ("Result", "Value"),
            ("Unit", "Units"),
        ),
        "with kind: labs and its columns mapped (README: Add your own data source)",
    ),
)


def identify(table: CsvTable) -> Signature | None:
    """The first signature whose columns are all in `table`'s header, or None."""
    for signature in SIGNATURES:
        if all(table.find(names) is not None for names in signature.columns):
            return signature
    return None


def refuse_other_format(table: CsvTable, own: str) -> None:
    """Raise AdapterError when `table`'s header is another format's signature (see the module
    docstring); `own` is the format the source is configured with."""
    fits = identify(table)
    if fits is None or fits.format == own:
        return
    source = table.source
    setting = f"format: {fits.format}" + (f" {fits.setting}" if fits.setting else "")
    have = ", ".join(repr(h) for h in table.headers)
    raise AdapterError(
        f"{table.path}: this file looks like {fits.label}, not a {own} file (columns in the "
        f"file: {have}). It was not loaded. Set `{setting}` for source {source.name!r} in "
        f"sources.yaml (or give this file a source of its own), or point the source's path at "
        f"{own} files."
    )
