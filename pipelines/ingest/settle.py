"""The third step: which rows count, when exports repeat each other's history.

Each ownership key is owned by the newest file that has it; `settle` rebuilds `stg_<source>` from
`raw_<source>` for every key (a full run) or only for the keys the changed files touch
(`_affected`), and lists the files whose staging rows changed in `lines_to_check`.

Both runs first find each key's winning file from the keys alone (`_winner`), then write the
winning rows in slices of file order of about `SLICE_ROWS` rows, each sorted on its own, so memory
stays bounded however long the history is (a single file larger than that is a slice of its own).
Each slice reads only the stretches of `raw_<source>` that hold its own rows (`_row_runs`), so
the whole settle reads the history about once, however many slices it takes.
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

# Staging rows written per statement. Each statement sorts its rows into file order: one sort of
# the whole history (51.7 M rows) ran out of DuckDB's 1 GB, and a sort slows down well before that
# as it spills.
SLICE_ROWS = 500_000
# Stretches of raw_<source> one slice reads at most (`_row_runs`): a parallel insert stores file
# order in a few runs, one per thread, so a slice's rows lie in a few stretches; more would only
# add scans, fewer would read what lies between them.
SLICE_RUNS = 16
# DuckDB's rows per row group (its default), the unit its scans skip.
ROW_GROUP_ROWS = 122_880


def settle(conn: duckdb.DuckDBPyConnection, source: SourceConfig, target: str, full: bool) -> int:
    """Decide which rows count: all keys (`full`) or only the keys in `_affected`.

    Returns the number of keys settled again (incremental case).
    """
    raw, stg = ident(raw_table(source.name)), ident(staging_table(source.name))
    key = OWNERSHIP_KEY[target]
    keys = ", ".join(f"r.{ident(k)}" for k in key)
    columns = ", ".join(f"r.{ident(c)}" for c in TARGET_SCHEMAS[target])
    source_literal = ident(source.name).replace('"', "'")  # a checked identifier as a string
    narrow, params = ("", []) if full else _key_ranges(conn, key, "_affected")
    where = "" if full else f"WHERE hash({keys}) IN (SELECT h FROM _affected){narrow}"
    scope = f"FROM {raw} r JOIN _order o USING (file_id)"
    # The winning file of each key, from the keys alone: small (one row per key), and both
    # aggregations spill to disk when they must. With it, how many rows that file has for the key.
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _winner AS
        SELECT {", ".join(ident(k) for k in key)}, max(ord) AS ord, arg_max(n, ord) AS n
        FROM (SELECT {keys}, o.ord, count(*) AS n {scope} {where} GROUP BY ALL)
        GROUP BY ALL
        """,
        params,
    )
    # Where each file's rows (of the keys settled) are stored: rowid ranges, one per row group
    # they lie in, as a file that two threads stored is in two places (`_row_runs`).
    conn.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE _stored AS
        SELECT o.ord, min(r.rowid) AS lo, max(r.rowid) AS hi {scope} {where}
        GROUP BY o.ord, r.rowid // {ROW_GROUP_ROWS}
        """,
        params,
    )
    selected = f"SELECT {columns}, r.file_id, {source_literal} AS source, r._row"
    if full:
        conn.execute(f"CREATE OR REPLACE TABLE {stg} AS {selected} FROM {raw} r LIMIT 0")
    else:
        conn.execute(
            f"DELETE FROM {stg} r WHERE hash({keys}) IN (SELECT h FROM _affected){narrow}", params
        )
    # A unique key repeated within its winning file: the file's first row counts.
    unique = (
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY r._row) = 1"
        if target in UNIQUE_IN_FILE
        else ""
    )
    matches = " AND ".join(f"r.{ident(k)} IS NOT DISTINCT FROM w.{ident(k)}" for k in key)
    rows_per_file = conn.execute("SELECT ord, sum(n) FROM _winner GROUP BY ord ORDER BY ord")
    for low, high in _slices(rows_per_file.fetchall(), SLICE_ROWS):
        runs = _row_runs(conn, (low, high), SLICE_RUNS)
        # Each stretch a scan of its own: DuckDB skips the row groups outside a constant rowid
        # range, not those outside an OR of several.
        stretches = " UNION ALL ".join(
            f"SELECT * FROM {raw} WHERE rowid BETWEEN ? AND ?" for _ in runs
        )
        # In file order, as the files were read: hash joins and windows return rows in any order,
        # and downstream float sums would then differ in their last bits from run to run.
        conn.execute(
            f"""
            INSERT INTO {stg} {selected} FROM ({stretches}) r JOIN _order o USING (file_id)
            JOIN _winner w ON {matches} AND o.ord = w.ord
            WHERE w.ord BETWEEN ? AND ? {unique}
            ORDER BY o.ord, r._row
            """,
            [*(bound for run in runs for bound in run), low, high],
        )
    if full:
        conn.execute(f"INSERT INTO {LINES_TO_CHECK} VALUES (?, NULL)", [source.name])
    else:
        conn.execute(
            f"INSERT INTO {LINES_TO_CHECK} SELECT DISTINCT ?, o.file_id "
            "FROM _winner w JOIN _order o USING (ord) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {LINES_TO_CHECK} c "
            "WHERE c.source = ? AND c.file_id = o.file_id)",
            [source.name, source.name],
        )
    conn.execute("DROP TABLE _winner")
    conn.execute("DROP TABLE _stored")
    if full:
        return 0
    row = conn.execute("SELECT count(*) FROM _affected").fetchone()
    return int(row[0]) if row else 0


def _slices(rows_per_file: list[tuple[int, int]], slice_rows: int) -> list[tuple[int, int]]:
    """Cut the files (ord, rows; in file order) into consecutive ranges `(first ord, last ord)` of
    at most `slice_rows` rows each; a file with more rows than that is a range of its own."""
    slices: list[tuple[int, int]] = []
    rows = 0
    for ord_, n in rows_per_file:
        if slices and rows + n <= slice_rows:
            slices[-1] = (slices[-1][0], ord_)
            rows += n
        else:
            slices.append((ord_, ord_))
            rows = n
    return slices


def _row_runs(
    conn: duckdb.DuckDBPyConnection, ords: tuple[int, int], most: int
) -> list[tuple[int, int]]:
    """The stretches of raw_<source> (rowid ranges, at most `most`) that hold the rows of the
    files with `ord` in `ords`, as `_stored` found them, cut apart at the widest gaps between them.

    A slice of consecutive files is stored in a few stretches wherever the history was written
    (file order within each thread's run of a parallel insert, each night's files after the last),
    while its keys may span all of it: the files of people exported side by side share no key
    range. Reading its own stretches, a slice reads its own rows and what little lies between
    them, so the slices together read the history about once, however long it is.
    """
    return conn.execute(
        """
        WITH spans AS (
            SELECT lo, hi, lo - max(hi) OVER (ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING
                AND 1 PRECEDING) AS gap
            FROM _stored WHERE ord BETWEEN ? AND ?
        ),
        cuts AS (
            SELECT lo, hi, gap > 1 AND row_number() OVER (ORDER BY gap DESC NULLS LAST, lo) < ?
                AS cut
            FROM spans
        )
        SELECT min(lo), max(hi) FROM (
            SELECT lo, hi, count(*) FILTER (cut) OVER (ORDER BY lo, hi ROWS UNBOUNDED PRECEDING)
                AS run
            FROM cuts
        )
        GROUP BY run ORDER BY 1
        """,
        [*ords, most],
    ).fetchall()


def _key_ranges(
    conn: duckdb.DuckDBPyConnection, key: list[str], keys_table: str
) -> tuple[str, list]:
    """A filter ` AND r.k BETWEEN ? AND ? ...` (and its parameters) that every row with a key in
    `keys_table` passes: for each key column without nulls there, the range of its values.

    Matching hashes alone means reading every row of the history; a constant range lets DuckDB
    skip the row groups whose min/max lie outside it, and a night's keys (its new days) lie
    outside nearly all of them. It only ever narrows: the hash test still decides.
    """
    columns = [ident(k) for k in key]
    row = conn.execute(
        "SELECT "
        + ", ".join(f"min({c}), max({c}), count(*) > count({c})" for c in columns)
        + f" FROM {keys_table}"
    ).fetchone()
    assert row is not None
    narrow, narrow_params = "", []
    for i, column in enumerate(columns):
        low, high, has_null = row[3 * i : 3 * i + 3]
        if low is not None and not has_null:
            narrow += f" AND r.{column} BETWEEN ? AND ?"
            narrow_params += [low, high]
    return narrow, narrow_params
