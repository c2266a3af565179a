"""Source adapters: one module per file format, registered here by name.

An adapter turns one file into canonical rows (see `pipelines.schema`) plus rejected rows with the
file line, column and reason. It never touches the warehouse: deduplication across files and writing
are the ingest step's job (`pipelines.ingest`).

To add a format: write `pipelines/adapters/<format>.py` with a `parse(path, source) -> ParseResult`
function and register it in FORMATS below.
"""

from pipelines.adapters import cronometer_servings, lab_csv
from pipelines.adapters.base import AdapterError, Format, ParseResult

FORMATS: dict[str, Format] = {
    "cronometer_servings": Format(("diet",), cronometer_servings.parse),
    "csv": Format(("labs",), lab_csv.parse),
}

__all__ = ["FORMATS", "AdapterError", "Format", "ParseResult"]
