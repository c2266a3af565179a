"""The ingest's tables and what they are keyed on.

Names of a source's `raw_<source>` and `stg_<source>` tables (store tables: `pipelines.store`), the
ownership keys that decide which file's rows count, and the schemas of the bookkeeping tables
(`ingest_state`, `rejected_rows`, `lines_to_check`), created by `ensure_tables` at the start of
every `sync_source`.
"""

from __future__ import annotations

import duckdb
import polars as pl

from pipelines import store
from pipelines.adapters import FORMATS
from pipelines.config import SourceConfig
from pipelines.schema import INGEST_FILES_SCHEMA
from pipelines.warehouse import add_missing_columns, create_table, ident, table_exists

# The key on which a newer file's rows replace an older file's rows, by target table.
OWNERSHIP_KEY = {
    "diet_entries": ["person_id", "day"],
    "diet_daily_reported": ["person_id", "day", "period"],
    "lab_results": ["person_id", "marker", "collected_at"],
    "persons": ["person_id"],
    "biometrics": ["person_id", "day", "metric"],
}

# Tables whose ownership key is also a unique key (a repeat within one file is a duplicate).
UNIQUE_IN_FILE = {"lab_results", "persons", "diet_daily_reported"}

REJECTED_ROWS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "file_id": pl.String,
    "source": pl.String,
    "path": pl.String,
    "line": pl.Int64,
    "column": pl.String,
    "reason": pl.String,
    "value": pl.String,
    "raw": pl.String,
}
# What the warehouse remembers of each file it has read, so the next run can skip it.
INGEST_STATE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "source": pl.String,
    "file_id": pl.String,
    "fingerprint": pl.String,
    "checked_on": pl.Date,  # the "today" its plausibility rules were applied with
    "recheck": pl.Boolean,  # a row was rejected as in the future: read it again on a later day
    "rows_read": pl.Int64,
    "rows_rejected": pl.Int64,
    "error": pl.String,  # why the file could not be read; null when it was
    "ingested_at": pl.Datetime("us"),
}
# The files whose rows entered a staging table since the check "a raw file line loads at most
# once" last passed (`accounting.check_unique_lines`), so that check reads only them, not the
# history. A null file_id stands for every file of its source (the staging table was rebuilt),
# a null source for every source (the warehouse predates this table).
LINES_TO_CHECK = "lines_to_check"
LINES_TO_CHECK_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "source": pl.String,
    "file_id": pl.String,
}


def raw_table(source_name: str) -> str:
    return f"raw_{source_name}"


def staging_table(source_name: str) -> str:
    return f"stg_{source_name}"


def target_table(source: SourceConfig) -> str:
    """The canonical table this source feeds."""
    return FORMATS[source.format].target(source)


def raw_schema(schema: dict) -> dict[str, pl.DataType | type[pl.DataType]]:
    """The columns of `raw_<source>` for a target `schema`: its rows as parsed, their file, and
    their place in the file's batch (`_row`, the order the settle keeps)."""
    return {**schema, "file_id": pl.String, "_row": pl.Int64}


def ensure_tables(conn: duckdb.DuckDBPyConnection, source_name: str, schema: dict) -> None:
    """Create the ingest tables that do not exist yet. A `raw_<source>` of an older layout (the
    canonical schema changed) is dropped with its staging table and state, so every file is read
    again. `raw_<source>` and `stg_<source>` are store tables (`pipelines.store`); a warehouse from
    before kept them as DuckDB tables, and their rows move into the store here, once."""
    columns = raw_schema(schema)
    name, stg = raw_table(source_name), staging_table(source_name)
    if table_exists(conn, name):
        have = [r[0] for r in conn.execute(f"DESCRIBE {ident(name)}").fetchall()]
        if have != list(columns):
            for table in (name, stg):
                if store.is_native(conn, table):
                    conn.execute(f"DROP TABLE {ident(table)}")
                else:
                    store.drop_table(conn, table)
            if table_exists(conn, "ingest_state"):
                conn.execute("DELETE FROM ingest_state WHERE source = ?", [source_name])
    for table in (name, stg):
        if store.is_native(conn, table):
            store.take_over(conn, table)
    if not table_exists(conn, name):
        store.replace_all(conn, name, pl.DataFrame(schema=columns))
    for table, table_schema in (
        ("ingest_state", INGEST_STATE_SCHEMA),
        ("ingest_files", INGEST_FILES_SCHEMA),
        ("rejected_rows", REJECTED_ROWS_SCHEMA),
    ):
        if not table_exists(conn, table):
            create_table(conn, table, table_schema)
    add_missing_columns(conn, "rejected_rows", REJECTED_ROWS_SCHEMA)
    if not table_exists(conn, LINES_TO_CHECK):
        create_table(conn, LINES_TO_CHECK, LINES_TO_CHECK_SCHEMA)
        # Staging rows written before the table existed were never listed: check them all once.
        conn.execute(f"INSERT INTO {LINES_TO_CHECK} VALUES (NULL, NULL)")
