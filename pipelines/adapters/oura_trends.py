"""Oura's daily trends export (format `oura_trends`, kind outcomes): one row per day, one column per
measure (table `biometrics`).

Shape: the CSV that Oura's web dashboard exports ("Export data", file `oura_<date>_trends.csv`),
with a lower-case `date` column (ISO, 2026-01-05) and about 50 columns named as on the dashboard:
`Sleep Score, ..., Total Bedtime, Total Sleep Time, Awake Time, ..., Average Resting Heart Rate,
Lowest Resting Heart Rate, Average HRV, Temperature Deviation (°C), Respiratory Rate, Activity
Score, ..., Steps, ..., Readiness Score, ...` (header as read by public parsers of the export,
e.g. the `DataSource.oura` field list of a personal-analytics tool on GitHub). Read here:

| column | measure | unit / scale |
|---|---|---|
| Average Resting Heart Rate | `resting_hr` | bpm (Oura's average over the night) |
| Lowest Resting Heart Rate | `resting_hr_lowest` | bpm (what Oura's app calls resting heart rate) |
| Average HRV | `hrv_rmssd` | ms (Oura measures HRV as RMSSD) |
| Temperature Deviation (°C) | `skin_temp_dev` | °C from the personal baseline |
| Respiratory Rate | `respiratory_rate` | breaths/min |
| Total Sleep Time | `sleep_duration` | seconds in the file (as Oura's API), stored in h |
| Steps | `steps` | steps |
| Sleep Score, Readiness Score | `oura_sleep_score`, `oura_readiness_score` | scale 0-100 |

Other columns are ignored. Quirks: a day without the ring (or before a measure existed) has blank
cells, which are no reading rather than a rejected one; the export may end with today's partial
row, which a later export replaces (ownership key person, day, measure).

The columns above are a fixed mapping read by the outcome CSV's wide reader
(`outcome_csv.wide_readings`), so accounting is per reading, not per line: one line carries up to
nine readings, each loaded or rejected on its own, naming its column and showing the cell as
written (a non-numeric HRV, or a `Temperature Deviation (°C)` of 36.4 outside the body's range,
rejects that reading and keeps the day's heart rate). `rows_read` counts the non-blank cells of
the columns above, so rows_read == loaded + rejected + duplicate holds per reading.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import polars as pl

from pipelines.adapters._csv import read_csv_table
from pipelines.adapters.base import AdapterError, ParseResult
from pipelines.adapters.outcome_csv import WideColumn, wide_readings
from pipelines.adapters.signatures import refuse_other_format
from pipelines.config import SourceConfig
from pipelines.outcome_vocabulary import PHYSICAL, SCALE_UNIT


class Column(NamedTuple):
    header: str
    measure: str
    scale: str
    factor: float = 1.0  # to the measure's canonical unit


COLUMNS = (
    Column("Average Resting Heart Rate", "resting_hr", SCALE_UNIT),
    Column("Lowest Resting Heart Rate", "resting_hr_lowest", SCALE_UNIT),
    Column("Average HRV", "hrv_rmssd", SCALE_UNIT),
    Column("Temperature Deviation", "skin_temp_dev", SCALE_UNIT),
    Column("Respiratory Rate", "respiratory_rate", SCALE_UNIT),
    Column("Total Sleep Time", "sleep_duration", SCALE_UNIT, 1 / 3600),
    Column("Steps", "steps", SCALE_UNIT),
    Column("Sleep Score", "oura_sleep_score", "0-100"),
    Column("Readiness Score", "oura_readiness_score", "0-100"),
)
_HINT = (
    "Is this Oura's trends export (web dashboard > Export data > CSV)? Export it again, or point "
    "the source at the right files."
)


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one Oura trends export with the outcome CSV's wide reader; see the module docstring."""
    table = read_csv_table(path, source)
    refuse_other_format(table, "oura_trends")
    day_i = table.require(["date"], _HINT)
    found = [_wide_column(i, c) for c in COLUMNS if (i := table.find([c.header])) is not None]
    if not found:
        raise AdapterError(
            f"{path}: none of the Oura columns this format reads "
            f"({', '.join(c.header for c in COLUMNS)}). {_HINT}"
        )
    # The export has no time of day: a night is dated by the morning it ends.
    return wide_readings(table, found, day_i, pl.lit(None, dtype=pl.String))


def _wide_column(position: int, column: Column) -> WideColumn:
    unit = PHYSICAL[column.measure][0] if column.measure in PHYSICAL else None
    return WideColumn(position, column.measure, column.scale, unit, None, column.factor)
