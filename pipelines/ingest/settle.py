"""The third step: which rows count, when exports repeat each other's history.

Each ownership key is owned by the newest file that has it; `settle` rewrites `stg_<source>` from
`raw_<source>` for every key (a full run) or only for the keys the changed files touch
(`_affected`), lists the files whose staging rows changed in `lines_to_check`, and returns the
files whose loaded rows may have changed, for the recount.

Both are store tables (`pipelines.store`), sharded by person, and every ownership key holds the
person: a key's rows, in every file, are all in one shard. So the settle works shard by shard:
it reads that shard's raw rows only, and writes that shard's staging rows (in file order, as the
files were read: downstream float sums depend on the order of a person's rows) as one new part.
Memory is bounded by a shard, 1/16 of the history. A full run replaces every shard's staging
parts; an incremental one touches only the shards of affected keys, rewriting the staging parts
that hold such keys without them (`store_writes.write_shards`).

A full run first asks of each shard whether the rule keeps all its rows as they are stored
(`_all_own`: in file order, no key in two files), as after a first ingest of exports that do not
overlap; then the shard is copied without the join that finds each key's winning file and the
sort back into file order. A first ingest writes that copy while it stores the raw rows
(`staging_copy`), so such a shard's staging part is only moved into place, its rows not read back.
Either way the same rows come out, in the same order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa

from pipelines import store, store_writes
from pipelines.config import SourceConfig
from pipelines.ingest.tables import (
    LINES_TO_CHECK,
    OWNERSHIP_KEY,
    UNIQUE_IN_FILE,
    raw_table,
    staging_table,
)
from pipelines.literals import sql_text
from pipelines.schema import TARGET_SCHEMAS
from pipelines.warehouse import ident


def staging_copy(conn: duckdb.DuckDBPyConnection, source: SourceConfig) -> store_writes.Copy:
    """For `store_writes.appending` on `raw_<source>` when it is written whole: each shard's rows
    as a copy of `stg_<source>` gives them (the raw columns with the source before `_row`), for
    `settle` to use where the rule keeps them all. The caller removes its folder."""
    folder = store_writes.new_folder(conn, staging_table(source.name))
    name = source.name

    def derive(rows: pa.Table) -> pa.Table:
        # One value repeated, built by Arrow: a Python list of the rows' names cost far more.
        return rows.add_column(
            rows.num_columns - 1, "source", pa.repeat(pa.scalar(name, pa.string()), rows.num_rows)
        )

    return store_writes.Copy(folder, derive)


@dataclass(frozen=True)
class Settled:
    """What an incremental `settle` did."""

    keys: int  # ownership keys settled again
    files: pl.Series  # file ids of the files with rows of those keys: their loaded rows may change


def settle(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    target: str,
    full: bool,
    copied: dict[int, Path] | None = None,
) -> Settled | None:
    """Decide which rows count: all keys (`full`) or only the keys in `_affected`. `copied`: a
    full run's shards as `staging_copy` wrote them, when raw_<source> holds those rows alone.

    Returns None after a full run (every key and file), else the keys and files it settled.
    """
    raw, stg = raw_table(source.name), staging_table(source.name)
    key = OWNERSHIP_KEY[target]
    shards = store.shard_count(store.root_of(conn))
    keys = ", ".join(f"r.{ident(k)}" for k in key)
    if full:
        only, drop = "true", None
        touched: list[int] = list(range(shards))
    else:
        ranges = _key_ranges(conn, key)
        only, drop = (
            f"hash({', '.join(f'{a}.{ident(k)}' for k in key)}) IN (SELECT h FROM _affected)"
            + "".join(f" AND {a}.{r}" for r in ranges)
            for a in ("r", "t")
        )
        touched = [
            k
            for (k,) in conn.execute(
                f"SELECT DISTINCT {store.shard_sql(shards)} FROM _affected ORDER BY 1"
            ).fetchall()
        ]
        # The files with rows of each affected key, in one scan of the history: each file may
        # win or lose some of them (the recount's), and the newest wins (`_winner`, one row per
        # key).
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _keyed AS SELECT DISTINCT {keys}, r.file_id "
            f"FROM {ident(raw)} r WHERE {only}"
        )
        conn.execute(
            f"CREATE OR REPLACE TEMP TABLE _winner AS SELECT {keys}, max(o.ord) AS ord "
            "FROM _keyed r JOIN _order o USING (file_id) GROUP BY ALL"
        )
        files = conn.sql("SELECT DISTINCT file_id FROM _keyed").pl()
        conn.execute("DROP TABLE _keyed")

    def winners(shard: int) -> str:
        if not full:
            return f"SELECT * FROM _winner WHERE {store.shard_sql(shards)} = {shard}"
        return (
            f"SELECT {keys}, max(o.ord) AS ord FROM {store.shard_source(conn, raw, shard)} r "
            "JOIN _order o USING (file_id) GROUP BY ALL"
        )

    columns = ", ".join(f"r.{ident(c)}" for c in TARGET_SCHEMAS[target])
    source_literal = ident(source.name).replace('"', "'")  # a checked identifier as a string
    matches = " AND ".join(f"r.{ident(k)} IS NOT DISTINCT FROM w.{ident(k)}" for k in key)
    # A unique key repeated within its winning file: the file's first row counts.
    unique = (
        f"QUALIFY row_number() OVER (PARTITION BY {keys} ORDER BY r._row) = 1"
        if target in UNIQUE_IN_FILE
        else ""
    )

    # `_all_own` works on hashes of the keys and file ids, not the values (issue 19: the first
    # ingest's settle grew with the history, 1.6 GB at 10,000 people). A hash two keys share
    # only sends their shard down the rule's join, which gives the same rows; two files sharing
    # one send every shard there.
    order = conn.execute("SELECT hash(file_id) AS file_id, ord FROM _order").pl() if full else None
    if order is not None and order["file_id"].is_duplicated().any():
        order = None

    def rows_of(shard: int) -> str | Path:
        rows = store.shard_source(conn, raw, shard)
        if order is not None and _all_own(conn, rows, keys, order, target in UNIQUE_IN_FILE):
            # Every row owns its key and the scan is in file order (a first ingest stores its
            # files in order, each key in one file): the rule's rows are the shard's, as stored.
            if copied is not None and shard in copied:
                return copied[shard]
            return f"SELECT {columns}, r.file_id, {source_literal} AS source, r._row FROM {rows} r"
        # In file order, as the files were read: hash joins and windows return rows in any order,
        # and downstream float sums would then differ in their last bits from run to run.
        return f"""
            SELECT {columns}, r.file_id, {source_literal} AS source, r._row
            FROM {rows} r JOIN _order o USING (file_id)
            JOIN ({winners(shard)}) w ON {matches} AND o.ord = w.ord
            WHERE {only} {unique}
            ORDER BY o.ord, r._row
            """

    store_writes.write_shards(conn, stg, rows_of, touched, drop)
    if full:
        conn.execute(f"INSERT INTO {LINES_TO_CHECK} VALUES (?, NULL)", [source.name])
        return None
    conn.execute(
        f"INSERT INTO {LINES_TO_CHECK} SELECT DISTINCT ?, o.file_id "
        "FROM _winner w JOIN _order o USING (ord) "
        f"WHERE NOT EXISTS (SELECT 1 FROM {LINES_TO_CHECK} c "
        "WHERE c.source = ? AND c.file_id = o.file_id)",
        [source.name, source.name],
    )
    conn.execute("DROP TABLE _winner")
    row = conn.execute("SELECT count(*) FROM _affected").fetchone()
    return Settled(int(row[0]) if row else 0, files["file_id"])


# Rows of a shard read at a time to check their order (`_all_own`).
ORDER_BATCH_ROWS = 500_000


def _all_own(
    conn: duckdb.DuckDBPyConnection, rows: str, keys: str, order: pl.DataFrame, unique: bool
) -> bool:
    """Whether the rule keeps every one of `rows` (a shard's raw rows, `r`, in the order they
    are stored) in that order: they are in file order (`_in_file_order`), and no key (`keys`,
    over `r`) is in two files, nor, for a `unique` key, twice in one.

    Then the settle copies them as they are, without the join that finds each key's winning file
    and the sort back into file order, which cost more than the rest of it. A first ingest of
    exports that do not overlap (one a month, say) is that case in every shard.

    The order is checked a batch of rows at a time, and the keys are grouped by DuckDB under the
    ingest's memory limit: read whole into Polars, a shard's 3.2 M rows at 10,000 people took
    300-400 MB (issue 19)."""
    stored = conn.execute(f"SELECT hash(r.file_id) AS file_id, r._row FROM {rows} r")
    last: pl.DataFrame | None = None  # the batch before's last row: the order runs across batches
    for batch in stored.to_arrow_reader(ORDER_BATCH_ROWS):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        if frame.height == 0:
            continue
        if not _in_file_order(frame if last is None else pl.concat([last, frame]), order):
            return False
        last = frame.tail(1)
    pairs = (
        f"SELECT hash({keys}) AS k FROM {rows} r"
        if unique
        else f"SELECT DISTINCT hash({keys}) AS k, hash(r.file_id) FROM {rows} r"
    )
    row = conn.execute(
        f"SELECT count(*) FROM (SELECT k FROM ({pairs}) GROUP BY k HAVING count(*) > 1)"
    ).fetchone()
    return not (row and row[0])


def _in_file_order(stored: pl.DataFrame, order: pl.DataFrame) -> bool:
    """Whether `stored` (file_id and _row of rows, in the order they are stored) is in file order:
    by the files' `ord` (`order`: file_id -> ord), then by _row. A file not in `order` is not."""
    ords = stored["file_id"].replace_strict(
        order["file_id"], order["ord"], default=None, return_dtype=pl.Int64
    )
    if ords.null_count():
        return False  # a file not in `order`: the rule's join leaves its rows out
    step, row_step = ords.diff(), stored["_row"].diff()
    return bool(((step > 0) | ((step == 0) & (row_step > 0))).all())  # the first row's null: true


def _key_ranges(conn: duckdb.DuckDBPyConnection, key: list[str]) -> list[str]:
    """Conditions `k BETWEEN <low> AND <high>` that every row with a key in `_affected` meets:
    for each key column without nulls there, the range of its values.

    Matching hashes alone means reading every row of the history; a constant range lets DuckDB
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
    ranges = []
    for i, column in enumerate(columns):
        low, high, has_null = row[3 * i : 3 * i + 3]
        if low is not None and not has_null:
            ranges.append(f"{column} BETWEEN {_literal(low)} AND {_literal(high)}")
    return ranges


def _literal(value: object) -> str:
    """A key value as a SQL constant of its type."""
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, str):
        return sql_text(value)
    return repr(value)
