"""The store's streaming writers (`pipelines.store`): `appending` adds the ingest's parsed rows of
`raw_<source>` as they arrive, `forget` removes a changed or removed file's rows, `write_shards`
writes some shards' rows from a query, shard by shard: `stg_<source>` (`pipelines.ingest.settle`)
and a per-person step's full build under a scope of shards (`pipelines.steps.features`).

Each is made of the store's one write, `_update`: its new files are written in a staging folder
and become the table's parts inside the caller's transaction, with the same guarantees as every
other store write (the store module's docstring).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.store import ROW_GROUP_ROWS, _staging, _update, root_of, shard_count, shard_of

# `appending` writes a shard's held rows as a row group once they are this many (half of DuckDB's
# row group): few, large row groups are cheaper to read, and a first build's parts are what the
# history is read from (its diet_daily build at 10,000 people took 8% longer and 50-90 MB more
# over row groups of 15,000 rows).
ROWS_PER_GROUP = 61_440
# An incremental ingest's parts (a night's rows: `trailing_merge` merges them with the parts
# before within a few nights) take a shard's rows as a row group once they come from this many
# frames (`appending`'s `max_frames`): a frame holds a few hundred rows of a shard, and held until
# ROWS_PER_GROUP, the night of 10,000 people kept all its 200,000 rows (+80 MB against the night
# of 2,000; issue 19).
INCREMENTAL_FRAMES = 4


@dataclass
class Copy:
    """A second set of files `appending` writes beside its parts: each shard's rows as `derive`
    makes them, in the same order, in `folder` (on the store's filesystem). The caller decides
    what becomes of them (`files`, once the block has ended); the folder is the caller's to
    remove."""

    folder: Path
    derive: Callable[[pa.Table], pa.Table]
    files: dict[int, Path] = field(default_factory=dict)


@contextmanager
def appending(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    copy: Copy | None = None,
    max_frames: int | None = None,
) -> Iterator[Callable[[pl.DataFrame], None]]:
    """Add rows that arrive as frames (the table's columns, in its order, person_id among them)
    to `table`: one new part at the end of each shard they fall in, no other file read or written.
    Each frame given to the function this yields is split by shard in a background thread while
    the caller makes the next one (pyarrow's writer runs without the GIL; a parse is mostly
    Python), and a shard's rows go into its part as a row group once ROWS_PER_GROUP of them, or
    rows of `max_frames` frames (when given), are held: memory holds two frames and, per shard,
    fewer than ROWS_PER_GROUP rows (of fewer than `max_frames` frames), not the lot. The
    parts join `table` when the block ends without an error; otherwise they are removed and the
    table is as it was. With `copy`, each row group also goes, derived, into the copy's file of
    its shard: the ingest's staging rows as settle would write them, without reading the parts
    back."""
    root = root_of(conn)
    shards, staging = shard_count(root), _staging(root, table)
    writers: dict[int, pq.ParquetWriter] = {}
    copies: dict[int, pq.ParquetWriter] = {}
    held: dict[int, list[pa.Table]] = {}
    background = ThreadPoolExecutor(max_workers=1)
    pending: list[Future[None]] = []

    # The copy's row groups are written in a thread of their own, the frame before's while this
    # one's are split and written: at most two frames' rows are held for it.
    copying = ThreadPoolExecutor(max_workers=1)
    copied: list[Future[None]] = []

    def write_copy(k: int, rows: pa.Table) -> None:
        assert copy is not None
        derived = copy.derive(rows)
        if k not in copies:
            copy.files[k] = copy.folder / f"rows-{k}.parquet"
            copies[k] = pq.ParquetWriter(copy.files[k], derived.schema)
        copies[k].write_table(derived)

    def copied_all() -> None:
        while copied:
            copied.pop(0).result()

    def flush(k: int) -> None:
        rows = pa.concat_tables(held.pop(k))
        if k not in writers:
            writers[k] = pq.ParquetWriter(staging / f"rows-{k}.parquet", rows.schema)
        writers[k].write_table(rows)
        if copy is not None:
            copied.append(copying.submit(write_copy, k, rows))

    def hold(rows: pl.DataFrame) -> None:
        copied_all()
        people = rows["person_id"].unique().drop_nulls().to_list()
        shard = pl.col("person_id").replace_strict(
            people, [shard_of(p, shards) for p in people], default=0, return_dtype=pl.Int64
        )  # a null person_id is shard 0
        for (k,), part in (
            rows.with_columns(shard.alias("_shard"))
            .partition_by("_shard", as_dict=True, include_key=False)
            .items()
        ):
            held.setdefault(k, []).append(part.to_arrow())
            frames, rows_held = len(held[k]), sum(t.num_rows for t in held[k])
            if rows_held >= ROWS_PER_GROUP or (max_frames is not None and frames >= max_frames):
                flush(k)

    def write(rows: pl.DataFrame) -> None:
        if pending:
            pending.pop().result()  # the frame before is held (or its error raised here)
        pending.append(background.submit(hold, rows))

    try:
        yield write
        if pending:
            pending.pop().result()
        for k in list(held):
            flush(k)
        copied_all()
        for writer in [*writers.values(), *copies.values()]:
            writer.close()
        _update(
            conn, root, table, writers, None, {k: staging / f"rows-{k}.parquet" for k in writers}
        )
    finally:
        background.shutdown(wait=True, cancel_futures=True)
        copying.shutdown(wait=True, cancel_futures=True)
        for writer in [*writers.values(), *copies.values()]:
            writer.close()
        shutil.rmtree(staging, ignore_errors=True)


def new_folder(conn: duckdb.DuckDBPyConnection, table: str) -> Path:
    """An empty folder beside `table`'s shards, for files that may become its parts (a `Copy`)."""
    return _staging(root_of(conn), table)


def forget(conn: duckdb.DuckDBPyConnection, table: str, drop: str) -> None:
    """Remove from `table` the rows for which the SQL condition `drop` (over the alias `t`) is
    true, rewriting only the parts that hold some."""
    root = root_of(conn)
    _update(conn, root, table, range(shard_count(root)), drop, {})


def write_shards(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    rows_of: Callable[[int], str | Path],
    shards: Iterable[int],
    drop: str | None,
) -> None:
    """For each of `shards`: the rows of the query `rows_of(shard)` (the shard's new rows, the
    table's columns in its order) become a new part at its end, after its rows for which `drop`
    (over the alias `t`) is true are removed, or all its old rows when `drop` is None. One shard
    at a time, so a query that reads one shard's rows of another table holds 1/shards of it.
    `rows_of` may instead give a Parquet file of those rows already written (an `appending`
    copy, on the store's filesystem): it is moved into place as it is."""
    root = root_of(conn)
    staging = _staging(root, table)
    try:
        added: dict[int, Path] = {}
        for k in shards:
            query = rows_of(k)
            if isinstance(query, Path):
                added[k] = query
                continue
            added[k] = staging / f"rows-{k}.parquet"
            # Through Arrow into pyarrow's writer, which encodes the rows in a fraction of the CPU
            # time of DuckDB's COPY; the result streams, so memory holds a row group of it (each
            # batch one, of at most ROW_GROUP_ROWS rows, as the store's COPY writes them).
            rows = conn.execute(query).to_arrow_reader(ROW_GROUP_ROWS)
            with pq.ParquetWriter(added[k], rows.schema) as writer:
                for batch in rows:
                    writer.write_batch(batch)
        _update(conn, root, table, added, drop, added, everything=drop is None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
