"""The ingest step's reads beyond `pipelines.ingest.sync_source`."""

from datetime import date

import duckdb

from pipelines.identity import remembered
from pipelines.warehouse import ident


def latest_data_day(conn: duckdb.DuckDBPyConnection, table: str) -> date | None:
    """The latest day of data in a staging table (its `day` or `collected_at`); None for a
    table without dates (a persons list, an undated cohort)."""
    columns = {r[0] for r in conn.execute(f"DESCRIBE {ident(table)}").fetchall()}
    dated = [c for c in ("day", "collected_at") if c in columns]
    if not dated:
        return None
    latest = ", ".join(f"max(CAST({ident(c)} AS DATE))" for c in dated)
    query = f"SELECT greatest({latest}) FROM {ident(table)}"

    def newest() -> str | None:
        row = conn.execute(query).fetchone()
        return row[0].isoformat() if row and row[0] is not None else None

    # Scanned again only when the table's parts changed: not on a night with nothing new.
    day = remembered(conn, [query], newest)
    return None if day is None else date.fromisoformat(day)
