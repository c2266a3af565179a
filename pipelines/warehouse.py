"""The DuckDB warehouse: one file, one writer at a time, many readers.

DuckDB lets one process hold a file read-write. Dagster steps and runs are separate processes, so
every write goes through `Warehouse.write()`, which takes a cross-process file lock before
connecting and wraps the work in one transaction: a failed or killed step leaves the tables as
they were. Readers use `Warehouse.read()`, a read-only connection held only for the query.

We use explicit SQL over this small class rather than Dagster's DuckDB IO managers: they cannot
open read-only, cannot evolve a table's schema, and their Polars loader breaks on DuckDB 2.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from io import BufferedReader
from pathlib import Path
from typing import BinaryIO

import duckdb
import polars as pl
from filelock import FileLock, Timeout

from pipelines.store import TABLES as STORE_TABLES
from pipelines.store import attach as attach_store
from pipelines.store import beside as store_beside
from pipelines.store import collect as collect_store
from pipelines.store import parts_signature, replace_all
from pipelines.store_copies import link_tree, put_back

LOG = logging.getLogger("gutsignal.warehouse")
IDENT_RE = re.compile(r"^[a-z][a-z0-9_]*$")
LOCK_TIMEOUT_S = 600.0
COPY_CHUNK = 16 * 1024 * 1024
REFRESH_BLOCK = 1024 * 1024  # what `_refresh_durably` compares, and rewrites when it differs
# DuckDB's memory per connection (buffer pool and operators; beyond it DuckDB spills to
# `<warehouse>.tmp`). Its default, 80% of the machine's RAM, let every step's peak grow with the
# warehouse: DuckDB kept the blocks each query read, so a step that plans over 10 M entries or
# reads a group of people at a time held most of the tables it scanned. The ingest's settle runs
# under the same limit.
MEMORY_LIMIT = "1GB"
# DuckDB's external file cache (on by default since 1.3) is off: with it, diet_daily's first
# build alone peaked 60 to 140 MB higher in the same time (0.69-0.73 GB against 0.63-0.66 GB
# at 2,000 people, 0.87 against 0.72 GB at 10,000; issue 19), and the files it would keep are
# in the OS page cache anyway.
CONNECTION_CONFIG: dict[str, str | bool] = {
    "memory_limit": MEMORY_LIMIT,
    "enable_external_file_cache": False,
}
# What DuckDB raises for a file it cannot read (truncated, overwritten, a damaged catalog). A lock
# held by another program is an IOException too; `Warehouse._connect` waits for that one instead.
DAMAGED = (duckdb.IOException, duckdb.SerializationException, duckdb.InternalException)


def ident(name: str) -> str:
    """Quote a table or column identifier that came from code or configuration.

    Source names are validated in config.py, but a second check here means no configured name can
    ever reach SQL unquoted.
    """
    if not IDENT_RE.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return f'"{name}"'


class WarehouseBusy(RuntimeError):
    """Another process held the write lock for longer than we were willing to wait."""


class Warehouse:
    """Access to `data/processed/warehouse.duckdb` (or any path)."""

    def __init__(
        self, path: Path | str, lock_timeout_s: float = LOCK_TIMEOUT_S, store: Path | None = None
    ) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        # The Parquet store of the per-person tables (`pipelines.store`); a project's is
        # <data>/store, a bare warehouse file's (a backup) the folder beside it.
        self.store = Path(store) if store is not None else store_beside(self.path)

    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The cross-process lock. DuckDB itself refuses a second process (even a read-only one)
        while a writer has the file open, so readers take the lock too, briefly."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.lock_path))
        try:
            lock.acquire(timeout=self.lock_timeout_s)
        except Timeout as exc:
            raise WarehouseBusy(
                f"{self.path} is in use by another gutsignal run; waited "
                f"{self.lock_timeout_s:.0f} s. Try again when it has finished."
            ) from exc
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection inside one transaction, under the cross-process write lock."""
        with self._locked():
            conn = self._connect(read_only=False)
            try:
                attach_store(conn, self.store, read_only=False)
                parts = parts_signature(conn)
                conn.execute("BEGIN TRANSACTION")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    collect_store(conn)
                    raise
                conn.execute("COMMIT")
                # Most steps of a quiet night write no store file: nothing to look for on disk.
                if parts_signature(conn) != parts:
                    collect_store(conn)
            finally:
                conn.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection; it never blocks a writer for longer than the query."""
        if not self.path.exists():
            raise FileNotFoundError(
                f"{self.path} does not exist yet: run `gutsignal run` first to build the warehouse"
            )
        with self._locked():
            conn = self._connect(read_only=True)
            try:
                attach_store(conn, self.store, read_only=True)
                yield conn
            finally:
                conn.close()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        """Connect, waiting while another program (a DuckDB CLI, a notebook) holds the file.

        Our own processes are serialised by the file lock; an outside program is not, and DuckDB
        refuses a read-write open while any other process has the file open. We retry with
        backoff and say what is going on, instead of failing on the first refusal.
        """
        deadline = time.monotonic() + self.lock_timeout_s
        delay, warned = 0.1, False
        while True:
            try:
                return duckdb.connect(
                    str(self.path), read_only=read_only, config=dict(CONNECTION_CONFIG)
                )
            except duckdb.IOException as exc:
                # Not just "lock": a damaged file's "... in block at location ..." contains it.
                if "could not set lock" not in str(exc).lower():
                    raise
                if time.monotonic() + delay > deadline:
                    raise WarehouseBusy(
                        f"{self.path} is open in another program (a DuckDB CLI or notebook?) "
                        f"and stayed open for {self.lock_timeout_s:.0f} s. Close it, or open it "
                        "read-only between runs (`duckdb -readonly ...`)."
                    ) from exc
                if not warned:
                    LOG.warning("%s is open in another program; waiting for it to close", self.path)
                    warned = True
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def snapshot(self, dest: Path) -> bool:
        """Back the warehouse up into `dest`, one self-contained DuckDB file that opens read-only
        with no `.wal` beside it. False when there is no warehouse yet.

        A committed transaction can live only in `warehouse.duckdb.wal` until DuckDB checkpoints
        it into the file, so a bare copy of the file can miss it. Under the write lock we open
        the warehouse read-write, CHECKPOINT (every committed transaction into the file, the WAL
        gone) and copy the file while that connection is still open. The copy is consistent
        because nothing can write the file meanwhile: our processes wait on the file lock, and
        our read-write connection holds DuckDB's own exclusive lock on the file, which keeps out
        any other program too (a DuckDB CLI or notebook, even a read-only one: we wait for it
        to close first, as every write does).

        A copy of the checkpointed file rather than `ATTACH` + `COPY FROM DATABASE`: the latter
        re-creates every object from its SQL and re-compresses every row, CPU work at the start of
        every run on a warehouse of several GB, while the file is DuckDB's own image of the
        database, views and all.

        The store (`pipelines.store`) goes to the folder beside `dest` (`store.beside`) as a tree
        of hard links, under the same lock: no step writes meanwhile, and a store file is never
        changed in place, so the links keep this moment's files. It is made before `dest` takes
        its name, so a snapshot file that exists has its store.

        The copy is made in the folder's spare (`spare`), renamed to `dest` once complete: a
        snapshot killed half-way leaves a half-written spare, never a `dest` that looks complete.
        The spare is the snapshot the folder no longer needs (`retire`: the last run's, the
        backup just rotated out), and the copy rewrites only its blocks that differ from the
        warehouse (`_refresh_durably`): a night changes a small part of the file, and writing
        all of it anew was most of the cost of starting a run. Every block is read and compared,
        so `dest` is the warehouse's bytes whatever the spare held.
        """
        spare = self.spare(dest.parent)
        with self._locked():
            if not self.path.exists():
                spare.unlink(missing_ok=True)  # no warehouse: no copy of one kept either
                return False
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                # Closing any descriptor of a file drops every POSIX lock this process holds on
                # it, DuckDB's included: the one we copy from is opened first and closed last.
                with open(self.path, "rb") as source:
                    conn = self._connect(read_only=False)
                    try:
                        conn.execute("CHECKPOINT")
                        wal = wal_path(self.path)
                        if wal.exists() and wal.stat().st_size > 0:
                            raise RuntimeError(f"{wal} is not empty after CHECKPOINT; no backup")
                        if spare.exists():
                            _refresh_durably(source, spare)
                        else:
                            _copy_durably(source, spare)
                    finally:
                        conn.close()
                link_tree(self.store, store_beside(dest))
                # Nothing should ever be beside a backup; a `.wal` there would be replayed onto it.
                wal_path(dest).unlink(missing_ok=True)
                os.replace(spare, dest)
            except BaseException:
                spare.unlink(missing_ok=True)  # half-written: it would only hold disk space
                raise
            return True

    def spare(self, folder: Path) -> Path:
        """The file a snapshot into `folder` is made in (see `snapshot`)."""
        return folder / f".{self.path.name}.spare"

    def retire(self, snapshot: Path) -> None:
        """Done with a snapshot or a backup: it becomes the spare of its folder, the next
        snapshot's starting point, unless another name still holds its bytes (a run's snapshot
        that is a scheduled run's backup): the spare is rewritten in place."""
        if snapshot.exists() and snapshot.stat().st_nlink == 1:
            os.replace(snapshot, self.spare(snapshot.parent))
        else:
            snapshot.unlink(missing_ok=True)

    def restore(self, src: Path) -> None:
        """Put a snapshot back in place: afterwards the warehouse holds exactly what `src` holds.

        The warehouse's own `.wal` goes, before the file is replaced: DuckDB replays a `.wal` onto
        whatever file it finds beside it, even one the WAL was never written for, so a stale one
        would bring back transactions the restore is meant to undo. A `.wal` beside `src` (our
        snapshots have none; a backup opened read-write by a DuckDB CLI can) is part of what
        `src` holds, as `duckdb -readonly src` shows: it is checkpointed into the copy, so the
        restored warehouse is one self-contained file, and `src` itself is left untouched.

        The store is put back from the folder beside `src` (emptied when there is none: a backup
        from before the store), after the file: a restore killed half-way is done again from
        the same snapshot by the next run.
        """
        with self._locked():
            staged = self.path.with_name(self.path.name + ".restoring")
            try:
                wal_path(staged).unlink(missing_ok=True)  # from a restore killed half-way
                shutil.copyfile(src, staged)
                if wal_path(src).exists():
                    shutil.copyfile(wal_path(src), wal_path(staged))
                    with duckdb.connect(str(staged)) as conn:
                        conn.execute("CHECKPOINT")
                _fsync(staged)
                with self._held():
                    wal_path(self.path).unlink(missing_ok=True)
                    os.replace(staged, self.path)
                    put_back(store_beside(src), self.store)
            except BaseException:
                staged.unlink(missing_ok=True)
                wal_path(staged).unlink(missing_ok=True)
                raise

    @contextmanager
    def _held(self) -> Iterator[None]:
        """Hold DuckDB's own lock on the warehouse file (shared, read-only), when it opens.

        Our file lock keeps our own processes out; this waits for, and then keeps out, another
        program with the file open read-write, which would otherwise go on writing a `.wal` for a
        file we are replacing. A damaged file DuckDB cannot open is replaced without it.
        """
        conn = None
        if self.path.exists():
            try:
                conn = self._connect(read_only=True)
            except DAMAGED:
                conn = None
        try:
            yield
        finally:
            if conn is not None:
                conn.close()

    def damage(self) -> str | None:
        """Why DuckDB cannot open the warehouse file (its message), or None when it opens or there
        is none yet. Waits, like any connection, while another program holds the file."""
        with self._locked():
            if not self.path.exists():
                return None
            return file_damage(self.path, lambda: self._connect(read_only=True))

    def move_aside(self) -> Path:
        """Rename the warehouse (and its .wal) to `warehouse.damaged-<UTC time>.duckdb` beside it:
        out of the way of the next run, and nothing deleted."""
        with self._locked():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            dest = self.path.with_name(f"{self.path.stem}.damaged-{stamp}{self.path.suffix}")
            n = 1
            while dest.exists():
                n += 1
                dest = dest.with_name(f"{self.path.stem}.damaged-{stamp}-{n}{self.path.suffix}")
            wal = wal_path(self.path)
            if wal.exists():
                os.replace(wal, wal_path(dest))
            os.replace(self.path, dest)
            return dest

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run a read-only query and return a Polars frame."""
        with self.read() as conn:
            return conn.execute(sql, params or []).pl()

    def table(self, name: str) -> pl.DataFrame:
        """A whole table as a Polars frame, or an empty frame when it does not exist yet."""
        with self.read() as conn:
            if not table_exists(conn, name):
                return pl.DataFrame()
            return conn.execute(f"SELECT * FROM {ident(name)}").pl()


# DuckDB's hash tables need some memory per thread: under 64 MB an aggregate over three million
# keys spilled to disk with 2 threads and failed (out of memory) with 16. A lowered limit is
# therefore at least this much per thread, so a machine with more cores gets a higher floor.
MIN_MB_PER_THREAD = 32


@contextmanager
def memory_limit(conn: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """DuckDB's memory limit lowered to `limit` (in MB, e.g. "64MB"), or to MIN_MB_PER_THREAD
    per thread when that is more, for the duration: DuckDB keeps the blocks a query reads or
    writes cached up to its limit, which let a step's peak grow with the tables it scanned;
    under a lower limit it drops them (they are on disk) and reads them again."""
    if not limit.endswith("MB") or not limit[:-2].isdigit():
        raise ValueError(f"memory_limit takes whole megabytes such as '64MB', not {limit!r}")
    threads = conn.execute("SELECT current_setting('threads')").fetchone()
    floor = MIN_MB_PER_THREAD * int(threads[0]) if threads else 0
    row = conn.execute("SELECT current_setting('memory_limit')").fetchone()
    conn.execute(f"SET memory_limit = '{max(int(limit[:-2]), floor)}MB'")
    aborted = False
    try:
        yield
    except duckdb.Error:
        # A failed statement aborts the transaction, which takes no SET until it is rolled back:
        # the error goes up as it is (the caller rolls back), not as a failed SET.
        aborted = True
        raise
    finally:
        if row and not aborted:
            conn.execute(f"SET memory_limit = '{_shown_limit_back(row[0])}'")


def _shown_limit_back(shown: str) -> str:
    """The limit DuckDB shows ("953.6 MiB", one decimal, cut not rounded) as a value to set it
    back to: half a last digit more, so setting it and showing it again gives the same text
    instead of a limit that shrinks a little each time a step lowers and restores it."""
    number, _, unit = shown.partition(" ")
    if not unit.endswith("iB") or not number.replace(".", "", 1).isdigit():
        return shown
    return f"{float(number) + 0.05:.2f} {unit}"


def wal_path(path: Path) -> Path:
    """The write-ahead log DuckDB keeps beside the database file at `path`."""
    return path.with_name(path.name + ".wal")


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _copy_durably(source: BinaryIO, dest: Path) -> None:
    """Copy an open file to `dest` and flush it to disk, so a power cut after the rename that
    follows cannot leave a backup of the right name and the wrong (empty) contents.

    The kernel copies the bytes itself where it can (`os.copy_file_range`, Linux): a folder's
    first snapshot copies the whole warehouse, and a copy through Python's buffers took several
    times as long. Elsewhere, or across filesystems that refuse it, the bytes go through a buffer.
    """
    with open(dest, "wb") as out:
        if not _kernel_copy(source, out):
            shutil.copyfileobj(source, out, COPY_CHUNK)
        out.flush()
        os.fsync(out.fileno())


def _refresh_durably(source: BufferedReader, dest: Path) -> None:
    """Make `dest` a copy of the open file `source`, flushed to disk, writing only the blocks in
    which it differs: `dest` is an earlier copy, or anything (a refresh killed half-way, another
    file, no file), since every block of both is read and compared. Reading a block costs a
    fraction of writing it: the copy costs what changed since the last one."""
    dest.touch()
    new, old = bytearray(REFRESH_BLOCK), bytearray(REFRESH_BLOCK)
    view = memoryview(new)
    offset = 0
    source.seek(0)
    with open(dest, "r+b") as out:
        while n := source.readinto(new):
            # Whole bytearrays compare without copying them; only the last block is shorter.
            same = out.readinto(old) == n and (new == old if n == len(new) else new[:n] == old[:n])
            if not same:
                out.seek(offset)
                out.write(view[:n])
            offset += n
        out.truncate(offset)
        out.flush()
        os.fsync(out.fileno())


def _kernel_copy(source: BinaryIO, out: BinaryIO) -> bool:
    """Copy all of `source` into the empty `out` with `os.copy_file_range` (explicit offsets:
    neither file's position moves); False, with nothing written, when the platform or the
    filesystems do not offer it."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is None:
        return False
    size = os.fstat(source.fileno()).st_size
    done = 0
    try:
        while done < size:
            n = copy_range(source.fileno(), out.fileno(), size - done, done, done)
            if n == 0:
                break
            done += n
    except OSError as exc:
        if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL) and not done:
            return False
        raise
    if done != size:
        raise OSError(f"copied {done} of {size} bytes of {source.name}")
    return True


def file_damage(
    path: Path, connect: Callable[[], duckdb.DuckDBPyConnection] | None = None
) -> str | None:
    """Why DuckDB cannot open the database file at `path` and read its catalog, else None.

    A damaged file fails here (on connect, or on the first query), not half-way through a run;
    so does a file cut short after its catalog (shorter than the blocks it says are in use), which
    opens and fails only when a table's missing blocks are read. Other damage inside a table's
    data blocks only shows when those blocks are read.
    """
    try:
        conn = connect() if connect else duckdb.connect(str(path), read_only=True)
        with conn:
            conn.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
            # With a .wal beside it, the in-use count includes blocks the WAL's replay allocated
            # in memory only: the file's size says nothing then.
            if wal_path(path).exists():
                return None
            row = conn.execute(
                "SELECT block_size, used_blocks FROM pragma_database_size() "
                "WHERE database_name = current_database()"
            ).fetchone()
    except DAMAGED as exc:
        return " ".join(str(exc).split())
    size = path.stat().st_size
    if row and size < row[0] * row[1]:
        return f"the file is cut short: {size} bytes, {row[1]} blocks of {row[0]} bytes in use"
    return None


def table_exists(conn: duckdb.DuckDBPyConnection, name: str, schema: str = "main") -> bool:
    row = conn.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, name],
    ).fetchone()
    return bool(row and row[0])


def create_table(
    conn: duckdb.DuckDBPyConnection,
    name: str,
    schema: dict[str, pl.DataType | type[pl.DataType]],
    replace: bool = False,
) -> None:
    """Create an empty table `name` with the columns and types of a Polars `schema`.

    Not from an empty Arrow frame: DuckDB 1.5.6 silently drops every row of a later insert of more
    than one row group (122,880 rows) into a table created that way in the same transaction, even
    after COMMIT (tests/test_warehouse.py::test_an_empty_table_takes_a_large_insert). A one-row
    frame of nulls filtered out gives the same column types without the bug.
    """
    shape = pl.DataFrame(schema=schema).clear(n=1)
    verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE"
    conn.register("_shape", shape.to_arrow())
    try:
        conn.execute(f"{verb} {ident(name)} AS SELECT * FROM _shape WHERE false")
    finally:
        conn.unregister("_shape")


def add_missing_columns(
    conn: duckdb.DuckDBPyConnection,
    name: str,
    schema: dict[str, pl.DataType | type[pl.DataType]],
) -> list[str]:
    """Add to table `name` the columns of `schema` it lacks (null in existing rows); returns them.

    How a warehouse written by an older version takes a column added to a contract table (such as
    `value` in rejected_rows): its rows stay, and inserts `BY NAME` work again.
    """
    have = {r[0] for r in conn.execute(f"DESCRIBE {ident(name)}").fetchall()}
    added = [c for c in schema if c not in have]
    for column in added:
        sql_type = _sql_type(conn, schema[column])
        conn.execute(f"ALTER TABLE {ident(name)} ADD COLUMN {ident(column)} {sql_type}")
    return added


def _sql_type(conn: duckdb.DuckDBPyConnection, dtype: pl.DataType | type[pl.DataType]) -> str:
    """DuckDB's type for a Polars dtype, as DuckDB itself maps it from Arrow."""
    conn.register("_type", pl.DataFrame(schema={"c": dtype}).to_arrow())
    try:
        row = conn.execute("DESCRIBE SELECT c FROM _type").fetchone()
    finally:
        conn.unregister("_type")
    return str(row[1]) if row else "VARCHAR"


def replace_table(conn: duckdb.DuckDBPyConnection, name: str, df: pl.DataFrame) -> int:
    """Replace table `name` with the contents of `df` (schema included); returns the row count.
    A table of the Parquet store (`store.TABLES`) is written to its shards (`store.replace_all`),
    any other as a DuckDB table."""
    if name in STORE_TABLES:
        replace_all(conn, name, df)
        return df.height
    if df.height == 0:
        create_table(conn, name, dict(df.schema), replace=True)
        return 0
    # Arrow's string views, as Polars holds its strings: the default (oldest) level copies every
    # string into a new buffer first, ~100 MB of the associations step's peak at 155,000 rows.
    conn.register("_frame", df.to_arrow(compat_level=pl.CompatLevel.newest()))
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {ident(name)} AS SELECT * FROM _frame")
    finally:
        conn.unregister("_frame")
    return df.height


def replace_rows(
    conn: duckdb.DuckDBPyConnection, name: str, df: pl.DataFrame, where_col: str, value: str
) -> int:
    """Replace the rows of `name` where `where_col = value` with `df` (create the table if new).

    Used for tables shared by several sources (ingest_files, rejected_rows): each source owns its
    rows. `BY NAME` keeps older tables working when a column is added.
    """
    if not table_exists(conn, name):
        create_table(conn, name, dict(df.schema))
    else:
        conn.execute(f"DELETE FROM {ident(name)} WHERE {ident(where_col)} = ?", [value])
    insert_frame(conn, name, df)
    return df.height


def insert_frame(conn: duckdb.DuckDBPyConnection, name: str, df: pl.DataFrame) -> None:
    """Append `df` to table `name`, matching columns by name (nothing to do when it is empty)."""
    if df.height == 0:
        return
    conn.register("_frame", df.to_arrow())
    try:
        conn.execute(f"INSERT INTO {ident(name)} BY NAME SELECT * FROM _frame")
    finally:
        conn.unregister("_frame")
