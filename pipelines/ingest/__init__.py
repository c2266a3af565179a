"""Ingest one source: files -> canonical rows, with every input row accounted for, incrementally.

`sync_source` brings a source's tables in the warehouse up to date with the files under
data/raw/. It reads only what changed since the last run, so a nightly run costs what its new
files cost, not what the history costs:

- Every file is hashed (sha256; a file whose size and modification time are unchanged is not
  re-hashed, see `HashMemo`). A file's rows are keyed by `file_id`, a hash of source and content.
- Files already ingested with the same parser (adapter code, data tables, plausibility rules and
  the source's configuration: `source_fingerprint`) are not read again. New or changed files are
  parsed in batches (`Format.parse_batch`, cut by file count and bytes), so memory is bounded by
  a batch, not by the history, and a night's many small files are parsed together.
- Right after parsing, the plausibility rules (`pipelines.transforms.plausibility`: dates before
  1950 or in the future, a 50,000 kcal food, negative CRP, ...) move impossible rows to the
  rejects, the same way for every format. A file with a row rejected as "in the future" is read
  again on a later day, when that day may have come.
- Parsed rows are kept in `raw_<source>`, every row of every current file; `stg_<source>` holds
  the rows that count. Both are tables of the Parquet store (`pipelines.store`): views of the same
  names over part files by person shard, written by appending a part per shard a night touches.
  Exports repeat history (this month's Cronometer export contains last month's days again), so each
  ownership key (`OWNERSHIP_KEY`: a person-day for diet entries, person + marker + time for labs,
  ...) is owned by the newest file that has it (by modification time, then path); the same key's
  rows in older files count as duplicates. Only keys that new, changed or removed files touch are
  settled again, shard by shard (every key holds the person).
- Keys that must be unique (`UNIQUE_IN_FILE`): a repeat within the owning file counts as a
  duplicate; the first occurrence loads.
- An identical file (same sha256) seen twice: the second copy's rows are all duplicates.
- A file an adapter cannot read at all is recorded with status "error" and the reason; so is one
  that trips an unexpected error inside an adapter (a bug, reported as such), so one bad file never
  stops the others from loading.

Invariant, per file: rows_read == rows_loaded + rows_rejected + rows_duplicate.

The caller owns the transaction (`Warehouse.write()`), so a failed run changes nothing.
`ingest_source` runs the same code against a private DuckDB and returns the frames (tests, tools).

The modules follow the flow: `files` (list and hash), `parse` (batches parsed, checked and
written into `raw_<source>`), `settle` (newest file wins, into `stg_<source>`),
`accounting` (counts per file, the nightly line check), and `sync` (`sync_source`, the steps in
order); `tables` and `fingerprints` hold what they share. The names above are importable from
`pipelines.ingest` itself.
"""

from pipelines.ingest.accounting import check_unique_lines
from pipelines.ingest.files import (
    LISTING_SCHEMA,
    HashMemo,
    file_identity,
    list_files,
    sha256_of,
)
from pipelines.ingest.fingerprints import parser_fingerprint, source_fingerprint
from pipelines.ingest.parse import (
    BATCH_BYTES,
    BATCH_FILES,
    error_message,
    plausible,
)
from pipelines.ingest.sync import (
    DUCKDB_MEMORY_LIMIT,
    SourceIngest,
    SyncResult,
    ingest_source,
    sync_source,
)
from pipelines.ingest.tables import (
    INGEST_STATE_SCHEMA,
    LINES_TO_CHECK,
    LINES_TO_CHECK_SCHEMA,
    OWNERSHIP_KEY,
    REJECTED_ROWS_SCHEMA,
    UNIQUE_IN_FILE,
    raw_table,
    staging_table,
    target_table,
)

__all__ = [
    "BATCH_BYTES",
    "BATCH_FILES",
    "DUCKDB_MEMORY_LIMIT",
    "INGEST_STATE_SCHEMA",
    "LINES_TO_CHECK",
    "LINES_TO_CHECK_SCHEMA",
    "LISTING_SCHEMA",
    "OWNERSHIP_KEY",
    "REJECTED_ROWS_SCHEMA",
    "UNIQUE_IN_FILE",
    "HashMemo",
    "SourceIngest",
    "SyncResult",
    "check_unique_lines",
    "error_message",
    "file_identity",
    "ingest_source",
    "list_files",
    "parser_fingerprint",
    "plausible",
    "raw_table",
    "sha256_of",
    "source_fingerprint",
    "staging_table",
    "sync_source",
    "target_table",
]
