"""The ingest step's reads beyond `pipelines.ingest.sync_source`."""

from datetime import date

import duckdb

from pipelines.warehouse import ident


def latest_data_day(conn: duckdb.DuckDBPyConnection, table: str) -> date | None:
    """The latest day of data in a staging table (its `day` or `collected_at`); None for a
    table without dates (a persons list, an undated cohort)."""
    columns = {r[0] for r in conn.execute(f"DESCRIBE {ident(table)}").fetchall()}
    dated = [c for c in ("day", "collected_at") if c in columns]
    if not dated:
        return None
    latest = ", ".join(f"max(CAST({ident(c)} AS DATE))" for c in dated)
    row = conn.execute(f"SELECT greatest({latest}) FROM {ident(table)}").fetchone()
    return row[0] if row else None
