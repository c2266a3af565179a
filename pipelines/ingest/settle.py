"""The third step: which rows count, when exports repeat each other's history.

Each ownership key is owned by the newest file that has it; `settle` rebuilds `stg_<source>` from
`raw_<source>` for every key (a full run) or only for the keys the changed files touch
(`_affected`), and lists the files whose staging rows changed in `lines_to_check`.
"""

from __future__ import annotations

import duckdb

from pipelines.config import SourceConfig
from pipelines.ingest.tables import (
    LINES_TO_CHECK,
    OWNERSHIP_KEY,
    UNIQUE_IN_FILE,
    raw_table,
    staging_table,
)
from pipelines.schema import TARGET_SCHEMAS
from pipelines.warehouse import ident


def settle(conn: duckdb.DuckDBPyConnection, source: SourceConfig, target: str, full: bool) -> int:
    """Decide which rows count: all keys (`full`) or only the keys in `_affected`.

    Returns the number of keys settled again (incremental case).
    """
    raw, stg = ident(raw_table(source.name)), ident(staging_table(source.name))
    key = OWNERSHIP_KEY[target]
    keys = ", ".join(f"r.{ident(k)}" for k in key)
    columns = ", ".join(f"r.{ident(c)}" for c in TARGET_SCHEMAS[target])
    source_literal = ident(source.name).replace('"', "'")  # a checked identifier as a string
    narrow, params = ("", []) if full else _key_ranges(conn, key)
    where = "" if full else f"WHERE hash({keys}) IN (SELECT h FROM _affected){narrow}"
    scope = f"FROM {raw} r JOIN _order o USING (file_id)"
    if target in UNIQUE_IN_FILE:
        owned = f"""
            SELECT {columns}, r.file_id, {source_literal} AS source, r._row, o.ord
            {scope} {where}
            QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY o.ord DESC, r._row) = 1
        """
        owned_params = params
    else:
        # All rows of the newest file that has the key count (a day holds many foods). The winner
        # per key is found from the keys alone; only then are the rows themselves read, once. A
        # group by and a join spill to disk when they must, so this stays bounded at any scale.
        matches = " AND ".join(f"r.{ident(k)} IS NOT DISTINCT FROM w.{ident(k)}" for k in key)
        owned = f"""
            WITH winner AS (SELECT {keys}, max(o.ord) AS ord {scope} {where} GROUP BY ALL)
            SELECT {columns}, r.file_id, {source_literal} AS source, r._row, o.ord
            {scope} JOIN winner w ON {matches} AND o.ord = w.ord {where}
        """
        owned_params = params + params  # `where` appears twice
    if full:
        # In file order, as the files were read: hash joins and windows return rows in any order,
        # and downstream float sums would then differ in their last bits from run to run.
        conn.execute(
            f"CREATE OR REPLACE TABLE {stg} AS "
            f"SELECT * EXCLUDE (ord) FROM ({owned}) ORDER BY ord, _row"
        )
        conn.execute(f"INSERT INTO {LINES_TO_CHECK} VALUES (?, NULL)", [source.name])
        return 0
    conn.execute(
        f"DELETE FROM {stg} r WHERE hash({keys}) IN (SELECT h FROM _affected){narrow}", params
    )
    # Kept apart for a moment to list its files: as small as the keys settled again.
    conn.execute(f"CREATE OR REPLACE TEMP TABLE _owned AS {owned}", owned_params)
    conn.execute(f"INSERT INTO {stg} SELECT * EXCLUDE (ord) FROM _owned ORDER BY ord, _row")
    conn.execute(
        f"INSERT INTO {LINES_TO_CHECK} SELECT DISTINCT ?, o.file_id FROM _owned o "
        f"WHERE NOT EXISTS (SELECT 1 FROM {LINES_TO_CHECK} c "
        "WHERE c.source = ? AND c.file_id = o.file_id)",
        [source.name, source.name],
    )
    conn.execute("DROP TABLE _owned")
    row = conn.execute("SELECT count(*) FROM _affected").fetchone()
    return int(row[0]) if row else 0


def _key_ranges(conn: duckdb.DuckDBPyConnection, key: list[str]) -> tuple[str, list]:
    """A filter ` AND r.k BETWEEN ? AND ? ...` (and its parameters) that every row with a key in
    `_affected` passes: for each key column without nulls there, the range of its values.

    Matching hashes alone means hashing every row of the history; a constant range lets DuckDB
    skip the row groups whose min/max lie outside it, and a night's keys (its new days) lie
    outside nearly all of them. It only ever narrows: the hash test still decides.
    """
    columns = [ident(k) for k in key]
    row = conn.execute(
        "SELECT "
        + ", ".join(f"min({c}), max({c}), count(*) > count({c})" for c in columns)
        + " FROM _affected"
    ).fetchone()
    assert row is not None
    narrow, params = "", []
    for i, column in enumerate(columns):
        low, high, has_null = row[3 * i : 3 * i + 3]
        if low is not None and not has_null:
            narrow += f" AND r.{column} BETWEEN ? AND ?"
            params += [low, high]
    return narrow, params
