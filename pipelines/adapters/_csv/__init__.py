"""Robust CSV reading shared by the CSV-based adapters.

Real exports are messy: a UTF-8 BOM in front of the first header, CRLF line ends, Latin-1 or
UTF-16 files from spreadsheet programs, semicolons and decimal commas from European locales, food
names with commas in them, notes with line breaks inside quotes. `read_csv_table` turns all of that
into one frame of stripped strings (blank cell -> null) with, per row, the 1-based physical line
where it starts and the raw text of the row, so adapters can reject rows with a line number users
can find.

The file is parsed by Polars as plain strings. Only when a quoted field spans lines (so Polars rows
no longer map one-to-one onto physical lines) do we parse with Python's csv module, which reports
where each record starts.

Helpers for adapters: header matching that forgives case, spacing, `µ`/`u` and units in parentheses
(`CsvTable.find` / `CsvTable.require`), date parsing that returns null for blanks and flags bad
cells instead of guessing (`parse_datetime`; numbers are read by `pipelines.text.number`),
`refuse_swapped_dates`, which refuses a whole file whose dates disprove the configured day/month
order, `split_rejects`, which applies an ordered list of checks (`pipelines.rules.Check`) and
splits the rows into loaded and rejected (each reject with a stable reason and the offending cell
in `value`), and `per_distinct`, which parses a column that repeats (a diary's days, its amounts)
once per distinct cell.

Batches: `parse_csv_batch` reads many files with one adapter transform per group of files that share
headers and delimiter (`stack_tables`), because for a small file the fixed cost of building
expressions and running queries is far larger than the cost of its rows.

The modules follow the flow: `read` (a file to a `CsvTable`, defined in `table` with the header
matching), `dates` and `checks` (what adapters build their checks from, and `split_rejects`), and
`batch` (many files at once). Adapters import the names below from `pipelines.adapters._csv`.
"""

from pipelines.adapters._csv.batch import TableTransform, parse_csv_batch, stack_tables
from pipelines.adapters._csv.checks import (
    NEGATIVE_REASON,
    extra_fields_check,
    not_a_number_reason,
    person_column_check,
    split_rejects,
)
from pipelines.adapters._csv.dates import (
    ISO_DATETIME,
    date_reason,
    parse_datetime,
    refuse_swapped_dates,
)
from pipelines.adapters._csv.read import read_csv_table
from pipelines.adapters._csv.table import (
    EXTRA,
    LINE,
    RAW,
    CsvTable,
    cell,
    file_index_schema,
    header_key,
    per_distinct,
    per_file,
)

__all__ = [
    "EXTRA",
    "ISO_DATETIME",
    "LINE",
    "NEGATIVE_REASON",
    "RAW",
    "CsvTable",
    "TableTransform",
    "cell",
    "date_reason",
    "extra_fields_check",
    "file_index_schema",
    "header_key",
    "not_a_number_reason",
    "parse_csv_batch",
    "parse_datetime",
    "per_distinct",
    "per_file",
    "person_column_check",
    "read_csv_table",
    "refuse_swapped_dates",
    "split_rejects",
    "stack_tables",
]
