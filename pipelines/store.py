"""The store of record of the per-person derived tables: immutable Parquet part files by shard.

    <data>/store/store.json                                   the shard count and shard function
    <data>/store/<table>/shard=<NN>/part-<uuid>.parquet       one or more parts per shard

The tables (`TABLES`): the per-person tables the feature and analysis steps rewrite person by
person, and the cohort-wide tables they replace whole (`associations`, `persons`,
`data_sufficiency`, `diet_summary`: rows of a person each, an association of the cohort without
one in shard 0); the ingest keeps each source's `raw_<source>` and `stg_<source>` here too
(`pipelines.ingest`). What stays a DuckDB table, and why:

- `store_parts`, the catalog of the views: it changes in the same DuckDB transaction as the views
  and the step's other writes, which is what makes a write atomic and a killed step harmless.
- The incremental records (`ingest_files`, `ingest_state`, `person_inputs`, `step_inputs`,
  and what is kept until its inputs change: `input_memos`, `page_freshness`): each says what a
  step's outputs were computed from, so it must commit with those outputs in one transaction;
  they are the query layer's bookkeeping, not data anyone queries, and change by DELETE and
  INSERT of a few rows per person or file every night, which a part-file store would turn into
  rewritten parts. The exception is `person_day_inputs`, diet_daily's record of each
  person-day, in `TABLES`: as many rows as diet_daily (1.8 M at 10,000 people), written as
  diet_daily is (a night adds a part per shard it touches), and planned a shard at a time, so
  a night reads a shard's records at a time from their files, and the quiet check reads their
  list of parts, where a DuckDB table was read whole each night and kept in DuckDB's buffers
  (issue 19).
- `food_categories` and `unmapped_foods`: a row per food, no person to shard by, and small (the
  foods of the cohort); the taxonomy step compares unmapped_foods as read with its new frame.
- The ingest's `rejected_rows` and `lines_to_check`: replaced per source and file, not per person
  (a source's rejects span every shard), and written by the ingest's accounting.

In the
warehouse each is a VIEW of the same name over the files its rows are in, listed one by one, so
the steps, the dashboards, the tests and a user's DuckDB CLI read them as before. The warehouse
table `store_parts` says which files those are: per table and shard, the parts in their order
(`part`), each file's path relative to the store. A table reads as its shards in order, each
shard as its parts in order, each part in its row order.

A person's shard is the first 8 hex digits of the md5 of their person_id, as an unsigned integer,
modulo the shard count (a null person_id is shard 0): documented and the same in SQL
(`shard_sql`) and Python (`shard_of`) on every version, unlike DuckDB's `hash()` or Python's
salted `hash()`. The count is recorded in store.json when the store is made, and a store keeps it.

A part file is never changed or renamed once it has its name, and a name is never used twice. A
write only adds files: `replace_all` one part per shard; `appending` one part at the end of each
shard its rows fall in; `rewrite` (and `replace_people`, `forget`, `write_shards`) rewrites, without
the replaced rows, only the parts that hold some, and puts the new rows of a shard in one new part
at its end, so a night that adds a day writes the new day and nothing else. The same write merges a
shard's small trailing parts (`trailing_merge`), so the parts stay few while a night's cost does not
grow with the history. The files are flushed to disk, then `store_parts` and the view change inside
the step's transaction: the new files become visible with the step's other writes when it commits,
and a step that rolls back or is killed leaves the old view, which names only old files. The files
no view names any more (replaced, compacted, or written by a step that did not commit) are removed
after a commit that changed `store_parts` or a rollback, or by the next read-write connection
(`collect`).

Because no file changes in place, a snapshot of the store is a tree of hard links
(`pipelines.store_copies`): the run-level snapshot (`pipelines.runs`) and the backups keep the
files their own warehouse copy names, whatever the live store removes later.

The views hold the store's absolute paths (a relative one would resolve against the reading
process' working directory). `attach`, run by `Warehouse` on every connection it opens, points
them at its store when the project folder has moved: persistently on a read-write connection, as
temporary views of the same names on a read-only one. A DuckDB CLI opened on a moved project's
warehouse reads the old paths until the next gutsignal run.

Steps call `replace_all`, `replace_people` and `rewrite` (the ingest: `appending`, `forget` and
`write_shards`, in `pipelines.store_writes`) with the connection the Warehouse gave them (its store
is in the connection's `gutsignal_store` variable), inside the step's transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import polars as pl

from pipelines.literals import sql_text

TABLES = (
    "diet_daily",
    "marker_draws",
    "marker_trends",
    "exposure_windows",
    "daily_effects",
    "page_summaries",  # what the index shows of each person (the person-page step)
    "associations",
    "persons",
    "data_sufficiency",
    "diet_summary",
    # diet_daily's record of each person-day's inputs (`pipelines.incremental.record_days`):
    # as many rows as diet_daily, planned a shard at a time, so stored like it.
    "person_day_inputs",
)
SHARDS = 16  # for a new store; an existing one keeps the count in its store.json
COMPACT_AT = 8  # a shard with more parts than this has its trailing parts merged (`trailing_merge`)
# The row groups of the parts DuckDB writes here (and `write_shards`' too). A scan decompresses a
# row group per thread, and with DuckDB's default, 122,880 rows, a shard's part was one row group
# until the shard outgrew it: a scan of diet_daily took +27 MB at 2,000 people and +68 MB at
# 10,000, in groups of 16,384 rows +23 and +29 (issue 19). `appending`'s staging parts, the
# history the first build reads in large sorted passes, keep their own size.
ROW_GROUP_ROWS = 16_384
MANIFEST = "store.json"
STAGING_PREFIX = ".staging-"  # a write's folder of files not yet in place
PARTS = "store_parts"
LEGACY_FILE = "part.parquet"  # the one file per shard of a store from before the parts
VARIABLE = "gutsignal_store"
SHARD_FUNCTION = "md5(person_id)[0:8] as an unsigned integer, modulo shards; null -> 0"

Parts = dict[int, list[str]]  # shard -> its files in order, relative to the store


def shard_of(person_id: str | None, shards: int) -> int:
    """The shard of a person (see the module's docstring); `shard_sql` in Python."""
    if person_id is None:
        return 0
    return int(hashlib.md5(person_id.encode()).hexdigest()[:8], 16) % shards


def shard_sql(shards: int, column: str = "person_id") -> str:
    """The shard of `column` in DuckDB SQL; `shard_of` in SQL."""
    return f"coalesce(('0x' || md5({column})[1:8])::UBIGINT % {int(shards)}, 0)"


def in_shards(shards: Iterable[int], count: int, column: str = "person_id") -> str:
    """SQL: `column` (a person) is in one of `shards` of a store of `count` shards."""
    keys = sorted({int(k) for k in shards})
    if not keys or keys[-1] >= count:
        raise ValueError(f"shards {keys} are not shards of a store of {count}")
    return f"{shard_sql(count, column)} IN ({', '.join(map(str, keys))})"


def beside(database: Path) -> Path:
    """Where the store of a warehouse file without a project lives (a backup, a snapshot, a
    test's warehouse): `warehouse-<time>.duckdb` has `warehouse-<time>.store`."""
    return database.with_suffix(".store")


def shard_count(root: Path) -> int:
    """The store's shard count, recorded in its store.json (made with SHARDS when missing)."""
    manifest = root / MANIFEST
    if manifest.exists():
        return int(json.loads(manifest.read_text(encoding="utf-8"))["shards"])
    root.mkdir(parents=True, exist_ok=True)
    staged = root / f".{MANIFEST}.{uuid.uuid4().hex}"
    staged.write_text(json.dumps({"shards": SHARDS, "shard": SHARD_FUNCTION}), encoding="utf-8")
    os.replace(staged, manifest)
    return SHARDS


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _read(root: Path, files: Iterable[str], options: str = "") -> str:
    """read_parquet over `files` (relative to `root`), in their order. Not Hive-partitioned: the
    shard is where a row is kept, not a column of the table. Every part has the table's columns
    (`replace_all` writes them all, `rewrite` casts to them), so the files are read without
    unifying their schemas."""
    listed = ", ".join(sql_text(root / f) for f in files)
    return f"read_parquet([{listed}], hive_partitioning = false{options})"


def view_sql(root: Path, parts: Parts) -> str:
    """The SELECT of a table's view over its `parts`."""
    return f"SELECT * FROM {_read(root, _in_order(parts))}"


def _in_order(parts: Parts) -> list[str]:
    return [f for shard in sorted(parts) for f in parts[shard]]


def is_native(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether `name` is a DuckDB table of the warehouse (not a view over the store)."""
    row = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND table_name = ?",
        [name],
    ).fetchone()
    return bool(row and row[0])


def _has_parts_table(conn: duckdb.DuckDBPyConnection) -> bool:
    return is_native(conn, PARTS)


def take_over(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    """Move the rows of the native table `table` into the store, as a store table of the same
    name (one part per shard): a warehouse from before the store kept it in the DuckDB file."""
    moving = _quote(f"_store_moving_{table}")
    conn.execute(f"ALTER TABLE {_quote(table)} RENAME TO {moving}")
    _write_all(conn, root_of(conn), table, f"SELECT * FROM {moving}")
    conn.execute(f"DROP TABLE {moving}")


def live_parts(conn: duckdb.DuckDBPyConnection, root: Path) -> dict[str, Parts]:
    """Every stored table's parts as this connection sees them: from `store_parts`, or, in a
    warehouse from before it, the one file per shard of the store found on disk."""
    tables: dict[str, Parts] = {}
    if _has_parts_table(conn):
        for table, shard, file in conn.execute(
            f"SELECT table_name, shard, file FROM {PARTS} ORDER BY table_name, shard, part"
        ).fetchall():
            tables.setdefault(table, {}).setdefault(shard, []).append(file)
        return tables
    if not (root / MANIFEST).exists():
        return tables
    shards = shard_count(root)
    for table in TABLES:
        legacy = {k: f"{table}/shard={k:02d}/{LEGACY_FILE}" for k in range(shards)}
        if all((root / f).exists() for f in legacy.values()):
            tables[table] = {k: [f] for k, f in legacy.items()}
    return tables


def attach(conn: duckdb.DuckDBPyConnection, root: Path, read_only: bool) -> None:
    """Make `root` this connection's store: the writes go there, and the views read from there.

    On a read-write connection, `store_parts` is made when missing (listing the files of a store
    from before it), a store table the warehouse holds as a native table (a warehouse from
    before the store, or a table written by hand) moves into the store, and the files no view
    names are removed (`collect`: left by a write that was killed, or by one that committed
    but was killed before it removed what it replaced).
    """
    root = root.resolve()
    conn.execute(f"SET VARIABLE {VARIABLE} = ?", [str(root)])
    # A table a view of the store would replace: one of TABLES moves into the store here; a raw
    # or staging table waits for its source's ingest (`pipelines.ingest.tables.ensure_tables`).
    native = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()
    }
    views = dict(
        conn.execute(
            "SELECT view_name, sql FROM duckdb_views() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()
    )
    if read_only:
        for table, parts in live_parts(conn, root).items():
            if table not in native and not _points_at(views.get(table), root, parts):
                conn.execute(
                    f"CREATE OR REPLACE TEMP VIEW {_quote(table)} AS {view_sql(root, parts)}"
                )
        return
    conn.execute("BEGIN TRANSACTION")
    try:
        if not _has_parts_table(conn):
            legacy = live_parts(conn, root)
            conn.execute(
                f"CREATE TABLE {PARTS} (table_name VARCHAR, shard INTEGER, part INTEGER, "
                "file VARCHAR)"
            )
            for table, parts in legacy.items():
                _set_parts(conn, table, parts)
        for table in sorted(native & set(TABLES)):
            take_over(conn, table)
        for table, parts in live_parts(conn, root).items():
            if table not in native - set(TABLES) and not _points_at(views.get(table), root, parts):
                conn.execute(f"CREATE OR REPLACE VIEW {_quote(table)} AS {view_sql(root, parts)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    collect(conn)


def _points_at(sql: str | None, root: Path, parts: Parts) -> bool:
    """Whether a view's SQL reads exactly `parts` under `root`, in their order (DuckDB keeps the
    SQL in its own spelling: the file literals are what must be there, and no other file)."""
    files = _in_order(parts)
    if sql is None or sql.count(".parquet'") != len(files):
        return False
    at = [sql.find(sql_text(root / f)) for f in files]
    return -1 not in at and at == sorted(at)


def root_of(conn: duckdb.DuckDBPyConnection) -> Path:
    """The store of a connection `attach` set up."""
    root = _store_root(conn)
    if root is None:
        raise RuntimeError(
            "this DuckDB connection has no store: open it through pipelines.warehouse.Warehouse, "
            "or call pipelines.store.attach on it"
        )
    return root


def _store_root(conn: duckdb.DuckDBPyConnection) -> Path | None:
    row = conn.execute(f"SELECT getvariable('{VARIABLE}')").fetchone()
    return None if not row or row[0] is None else Path(row[0])


def parts_signature(conn: duckdb.DuckDBPyConnection) -> tuple[object, ...] | None:
    """`store_parts` in two numbers, its row count and the sum of its rows' hashes: a write that
    leaves them as they were named no new file and retired none (a name is never used twice),
    so it has nothing for `collect` to remove."""
    if not _has_parts_table(conn):
        return None
    row = conn.execute(
        f"SELECT count(*), sum(hash(table_name, shard, part, file)) FROM {PARTS}"
    ).fetchone()
    return tuple(row) if row else None


def collect(conn: duckdb.DuckDBPyConnection) -> None:
    """Remove the store's files `store_parts` does not name, and any staging folder. Called
    outside a transaction (after a commit or a rollback): what it sees named is committed."""
    root = root_of(conn)
    if not _has_parts_table(conn):
        return
    live = {root / f for parts in live_parts(conn, root).values() for f in _in_order(parts)}
    for folder in [f for f in root.iterdir() if f.is_dir()] if root.is_dir() else []:
        for staging in folder.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(staging, ignore_errors=True)
        for path in folder.glob("shard=*/*.parquet"):
            if path not in live:
                path.unlink(missing_ok=True)


def _parts_of(conn: duckdb.DuckDBPyConnection, table: str) -> Parts:
    parts: Parts = {}
    for shard, file in conn.execute(
        f"SELECT shard, file FROM {PARTS} WHERE table_name = ? ORDER BY shard, part", [table]
    ).fetchall():
        parts.setdefault(shard, []).append(file)
    return parts


def _set_parts(
    conn: duckdb.DuckDBPyConnection, table: str, parts: Parts, everything: bool = True
) -> None:
    """Record `parts` as the table's (every shard's when `everything`, else those given)."""
    if everything:
        conn.execute(f"DELETE FROM {PARTS} WHERE table_name = ?", [table])
    else:
        conn.execute(
            f"DELETE FROM {PARTS} WHERE table_name = ? AND list_contains(?, shard)",
            [table, sorted(parts)],
        )
    rows = [(table, k, i, f) for k in sorted(parts) for i, f in enumerate(parts[k])]
    if rows:
        conn.executemany(f"INSERT INTO {PARTS} VALUES (?, ?, ?, ?)", rows)


def _define(conn: duckdb.DuckDBPyConnection, root: Path, table: str) -> None:
    conn.execute(
        f"CREATE OR REPLACE VIEW {_quote(table)} AS {view_sql(root, _parts_of(conn, table))}"
    )


def _new_part(table: str, shard: int) -> str:
    """A new part's path, relative to the store; a name never used before."""
    return f"{table}/shard={shard:02d}/part-{uuid.uuid4().hex}.parquet"


def _copy(conn: duckdb.DuckDBPyConnection, query: str, dest: Path) -> int:
    """Write the rows of `query` to the Parquet file `dest`; how many there were."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    row = conn.execute(
        f"COPY ({query}) TO {sql_text(dest)} (FORMAT parquet, ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
    ).fetchone()
    return int(row[0]) if row else 0


def replace_all(conn: duckdb.DuckDBPyConnection, table: str, source: str | pl.DataFrame) -> None:
    """Replace every shard of `table` with the rows of `source` (a query or a frame), its columns
    the table's from now on: one new part per shard."""
    root = root_of(conn)
    if isinstance(source, str):
        _write_all(conn, root, table, source)
    else:
        conn.register("_store_source", source.to_arrow())
        try:
            _write_all(conn, root, table, "SELECT * FROM _store_source")
        finally:
            conn.unregister("_store_source")


def _write_all(conn: duckdb.DuckDBPyConnection, root: Path, table: str, source: str) -> None:
    """Write every shard of `table` from `source` in one pass (a shard without rows gets a part
    without rows, which keeps the columns), and make them the table's parts."""
    shards = shard_count(root)
    staging = _staging(root, table)
    try:
        added = _by_shard(conn, staging, source, shards)
        for k in range(shards):
            if k not in added:
                added[k] = staging / f"empty-{k}.parquet"
                _copy(conn, f"SELECT * FROM ({source}) LIMIT 0", added[k])
        _update(conn, root, table, range(shards), None, added, everything=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def rewrite(
    conn: duckdb.DuckDBPyConnection,
    table: str,
    drop: str,
    rows: pl.DataFrame | str,
    people: str | None,
) -> None:
    """Rewrite the shards of `people` (a query of person_id; None: every shard): each keeps its
    rows for which the SQL condition `drop` (over the alias `t`) is not true, and takes its rows
    of `rows` (a frame, or a query DuckDB streams), cast to the table's columns (a column `rows`
    lacks is null), in a new part at its end. Only the parts that hold a dropped row are
    rewritten."""
    root = root_of(conn)
    shards = shard_count(root)
    columns = conn.execute(f"DESCRIBE {_quote(table)}").fetchall()
    have = (
        rows.columns
        if isinstance(rows, pl.DataFrame)
        else [d[0] for d in conn.execute(f"SELECT * FROM ({rows}) LIMIT 0").description]
    )
    extra = set(have) - {c[0] for c in columns}
    if extra:
        raise ValueError(f"{table} has no columns {sorted(extra)}")
    new = ", ".join(
        f"CAST({_quote(name) if name in have else 'NULL'} AS {kind}) AS {_quote(name)}"
        for name, kind, *_ in columns
    )
    staging = _staging(root, table)
    try:
        if isinstance(rows, pl.DataFrame):
            # Spooled to a file, not registered: DuckDB keeps a frame registered inside a
            # transaction until it ends, so a step that rewrites group after group kept every
            # group's rows.
            spooled = staging / "rows.parquet"
            rows.write_parquet(spooled)
            source = f"read_parquet({sql_text(spooled)})"
        else:
            source = f"({rows})"
        touched = (
            set(range(shards))
            if people is None
            else {
                k
                for (k,) in conn.execute(
                    f"SELECT DISTINCT {shard_sql(shards)} FROM ({people})"
                ).fetchall()
            }
        )
        added = _by_shard(conn, staging, f"SELECT {new} FROM {source}", shards)
        _update(conn, root, table, touched | set(added), drop, added)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_people(conn: duckdb.DuckDBPyConnection, table: str, rows: pl.DataFrame) -> None:
    """Replace the rows of the people in the temp table `_people` with `rows` (theirs)."""
    people = "SELECT person_id FROM _people"
    rewrite(conn, table, f"t.person_id IN ({people})", rows, people)


def drop_table(conn: duckdb.DuckDBPyConnection, table: str) -> None:
    """Remove a store table: its view and its parts (the files go with the next `collect`)."""
    conn.execute(f"DROP VIEW IF EXISTS {_quote(table)}")
    if _has_parts_table(conn):
        conn.execute(f"DELETE FROM {PARTS} WHERE table_name = ?", [table])


def read_shards(
    conn: duckdb.DuckDBPyConnection, tables: Iterable[str], shards: Iterable[int]
) -> None:
    """Make this connection read only the parts of `shards` of each of `tables` the store holds
    (temporary views of the same names, as `attach` makes on a read-only connection), so that a
    query for some people's rows opens their shards' files, not every shard's. For queries of
    rows of people of `shards` only: their rows are nowhere else. A table with no part in those
    shards is left as it is (read whole, it gives the same rows)."""
    root, wanted, keep = root_of(conn), set(tables), {int(k) for k in shards}
    for table, parts in live_parts(conn, root).items():
        mine = {k: files for k, files in parts.items() if k in keep and files}
        if table in wanted and mine:
            conn.execute(f"CREATE OR REPLACE TEMP VIEW {_quote(table)} AS {view_sql(root, mine)}")


def store_shards(conn: duckdb.DuckDBPyConnection) -> int:
    """The shard count of the connection's store; 1 without a store (a bare DuckDB connection,
    whose tables are all native: read whole, as one shard)."""
    root = _store_root(conn)
    return 1 if root is None else shard_count(root)


@contextmanager
def shard_views(conn: duckdb.DuckDBPyConnection, shard: int) -> Iterator[None]:
    """For its duration, every store table of this connection reads only its parts of `shard`
    (none, when it has none there), so a query over the store's views, and over views of them
    such as diet_entries, reads the rows of that shard's people from their files alone. Native
    tables are read whole. Afterwards the views are as they were: temporary views of the same
    names, made by `read_shards` or by `attach` on a read-only connection, are put back."""
    root = _store_root(conn)
    if root is None:
        yield
        return
    tables = {t: parts for t, parts in live_parts(conn, root).items() if any(parts.values())}
    before = dict(
        conn.execute("SELECT view_name, sql FROM duckdb_views() WHERE temporary").fetchall()
    )
    try:
        for table, parts in tables.items():
            files = parts.get(shard, [])
            if files:
                rows = view_sql(root, {shard: files})
            else:
                # No row of the shard: the table's columns, from any one of its files.
                rows = f"SELECT * FROM {_read(root, _in_order(parts)[:1])} LIMIT 0"
            conn.execute(f"CREATE OR REPLACE TEMP VIEW {_quote(table)} AS {rows}")
        yield
    finally:
        for table in tables:
            conn.execute(f"DROP VIEW IF EXISTS temp.main.{_quote(table)}")
            if table in before:
                conn.execute(before[table])


def shard_source(conn: duckdb.DuckDBPyConnection, table: str, shard: int) -> str:
    """A `read_parquet(...)` of one shard of `table`, its parts in order."""
    return _read(root_of(conn), _parts_of(conn, table).get(shard, []))


def shard_sources(
    conn: duckdb.DuckDBPyConnection, table: str, shards: Iterable[int] | None = None
) -> list[tuple[str, str]]:
    """`table` shard by shard, for a scan whose work on a shard (a sort, say) needs a shard's
    memory, not the whole table's: for each shard (of `shards`, or every one) that holds a
    part, in shard order, the shard number and a `read_parquet(...)` of its parts
    (`shard_source`). A table with no part at all (a DuckDB table, or a store table without a
    row) is one source, read whole, its rows' shards worked out (`shard_sql`). Each as (SQL of
    the rows' shard, SQL of the rows)."""
    parts = _parts_of(conn, table) if _has_parts_table(conn) else {}
    if not any(parts.values()):
        return [(shard_sql(shard_count(root_of(conn))), _quote(table))]
    root, keep = root_of(conn), None if shards is None else {int(k) for k in shards}
    return [
        (str(k), _read(root, files))
        for k, files in sorted(parts.items())
        if files and (keep is None or k in keep)
    ]


def _by_shard(
    conn: duckdb.DuckDBPyConnection, staging: Path, source: str, shards: int
) -> dict[int, Path]:
    """The rows of `source` written to one file per shard they fall in, in one pass."""
    conn.execute(
        f"COPY (SELECT *, {shard_sql(shards)} AS _shard FROM ({source})) "
        f"TO {sql_text(staging / 'parts')} "
        f"(FORMAT parquet, PARTITION_BY (_shard), ROW_GROUP_SIZE {ROW_GROUP_ROWS})"
    )
    added: dict[int, Path] = {}
    for folder in (staging / "parts").glob("_shard=*"):
        files = sorted(folder.glob("*.parquet"))
        k = int(folder.name.split("=")[1])
        if len(files) != 1:
            raise RuntimeError(f"DuckDB wrote {len(files)} files for shard {k}")
        added[k] = files[0]
    return added


def _update(
    conn: duckdb.DuckDBPyConnection,
    root: Path,
    table: str,
    shards: Iterable[int],
    drop: str | None,
    added: dict[int, Path],
    everything: bool = False,
) -> None:
    """The write all others are made of. For each of `shards`: without `everything`, the parts
    that hold a row `drop` matches are rewritten without those rows (the others are kept as they
    are); with it, no old part is kept. The file `added[shard]` (written in a staging folder)
    becomes the shard's last part, and its trailing parts are merged (`trailing_merge`). The new
    files are flushed, then recorded in `store_parts` and the view."""
    touched = sorted(set(shards))
    before = _parts_of(conn, table)
    parts = {k: [] if everything else list(before.get(k, [])) for k in touched}
    holding = (
        set()
        if drop is None or everything
        else _holding(conn, root, [f for k in touched for f in parts[k]], drop)
    )
    written: list[str] = []
    for k in touched:
        kept: list[str] = []
        for file in parts[k]:
            if file not in holding:
                kept.append(file)
                continue
            part = _new_part(table, k)
            query = f"SELECT * FROM {_read(root, [file])} t WHERE ({drop}) IS NOT TRUE"
            if _copy(conn, query, root / part):
                kept.append(part)
                written.append(part)
            else:
                (root / part).unlink()
        if k in added and (_rows_in(conn, added[k]) or not kept):
            part = _new_part(table, k)
            (root / part).parent.mkdir(parents=True, exist_ok=True)
            os.replace(added[k], root / part)
            kept.append(part)
            written.append(part)
        elif not kept:
            # A shard keeps at least one part, if without rows: the view needs a file per shard.
            part = _new_part(table, k)
            _copy(conn, f"SELECT * FROM {_read(root, before[k])} LIMIT 0", root / part)
            kept.append(part)
            written.append(part)
        merged = trailing_merge([(root / f).stat().st_size for f in kept])
        if merged > 1:
            part = _new_part(table, k)
            _copy(conn, f"SELECT * FROM {_read(root, kept[-merged:])}", root / part)
            written = [f for f in written if f not in kept[-merged:]] + [part]
            kept = [*kept[:-merged], part]
        parts[k] = kept
    _flush(root, written)
    _set_parts(conn, table, parts, everything=False)
    _define(conn, root, table)


def trailing_merge(sizes: list[int]) -> int:
    """How many of a shard's trailing parts (their sizes in bytes, in order) to merge into one;
    0 or 1: none. Nothing while the shard has at most COMPACT_AT parts; beyond that, the last two
    merge, and take in each part before them that is no larger than what they hold together.

    So the parts stay few, and sizes halve from the first, like the digits of a binary counter: a
    night's small parts merge among themselves every few nights, those with the ones before them
    as they reach their size, and the first, large part only once the rows after it add up to as
    much. Each row is rewritten about once per doubling of the shard, and a night's cost does not
    grow with the history, where compacting the whole shard every few nights rewrote it each time.
    """
    if len(sizes) <= COMPACT_AT:
        return 0
    merged, total = 2, sizes[-1] + sizes[-2]
    while merged < len(sizes) and sizes[-merged - 1] <= total:
        total += sizes[-merged - 1]
        merged += 1
    return merged


def _rows_in(conn: duckdb.DuckDBPyConnection, file: Path) -> int:
    row = conn.execute(
        f"SELECT sum(num_rows) FROM parquet_file_metadata({sql_text(file)})"
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _holding(conn: duckdb.DuckDBPyConnection, root: Path, files: list[str], drop: str) -> set[str]:
    """Which of `files` hold a row `drop` matches."""
    if not files:
        return set()
    by_path = {str(root / f): f for f in files}
    found = conn.execute(
        f"SELECT DISTINCT filename FROM {_read(root, files, ', filename = true')} t WHERE {drop}"
    ).fetchall()
    return {by_path[name] for (name,) in found}


def _staging(root: Path, table: str) -> Path:
    """A new staging folder beside the table's shards (the same filesystem, so a rename moves a
    file into place)."""
    staging = root / table / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
    staging.mkdir(parents=True)
    return staging


def _flush(root: Path, files: list[str]) -> None:
    """Flush new parts and their folders' entries to disk before the transaction that names
    them commits: a power cut cannot leave a committed view naming a missing or partial file."""
    for file in files:
        _fsync(root / file)
    for folder in {(root / f).parent for f in files}:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
