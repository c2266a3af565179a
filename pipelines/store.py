"""The store of record of the per-person derived tables: Parquet files by person shard.

    <data>/store/store.json                          the shard count and the shard function
    <data>/store/<table>/shard=<NN>/part.parquet     one file per shard, every shard present

The tables (`TABLES`) are rewritten per person by the feature and analysis steps. In the
warehouse each is a VIEW of the same name over its files, so the steps, the dashboards, the tests
and a user's DuckDB CLI read them as before.

A person's shard is the first 8 hex digits of the md5 of their person_id, as an unsigned integer,
modulo the shard count (a null person_id is shard 0): documented and the same in SQL
(`shard_sql`) and Python (`shard_of`) on every version, unlike DuckDB's `hash()` or Python's
salted `hash()`. The count is recorded in store.json when the store is made, and a store keeps it.

Writes are atomic per shard: the new file is written under a staging folder beside the table's
shards, flushed to disk, and renamed over the shard's file (`os.replace`). A write never changes
a file in place, so a snapshot of the store is a tree of hard links (`link_tree`), and a reader
with a file open keeps the version it opened. A write that dies before its renames leaves every
shard as it was; the run-level snapshot (`pipelines.runs`) puts back the shards of a run that
failed after some renames, with the warehouse.

The views hold the store's absolute path (a relative one would resolve against the reading
process' working directory). `attach`, run by `Warehouse` on every connection it opens, points
them at its store when the project folder has moved: persistently on a read-write connection, as
temporary views of the same names on a read-only one. A DuckDB CLI opened on a moved project's
warehouse reads the old path until the next gutsignal run.

Steps call `replace_all`, `replace_people` and `rewrite` with the connection the
Warehouse gave them (its store is in the connection's `gutsignal_store` variable). They run
inside the step's transaction: the files are visible at once, the views and the incremental
state when the step commits.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

import duckdb
import polars as pl

TABLES = ("diet_daily", "marker_draws", "marker_trends", "exposure_windows", "daily_effects")
SHARDS = 16  # for a new store; an existing one keeps the count in its store.json
MANIFEST = "store.json"
FILE = "part.parquet"
VARIABLE = "gutsignal_store"
SHARD_FUNCTION = "md5(person_id)[0:8] as an unsigned integer, modulo shards; null -> 0"


def shard_of(person_id: str | None, shards: int) -> int:
    """The shard of a person (see the module's docstring); `shard_sql` in Python."""
    if person_id is None:
        return 0
    return int(hashlib.md5(person_id.encode()).hexdigest()[:8], 16) % shards


def shard_sql(shards: int, column: str = "person_id") -> str:
    """The shard of `column` in DuckDB SQL; `shard_of` in SQL."""
    return f"coalesce(('0x' || md5({column})[1:8])::UBIGINT % {int(shards)}, 0)"


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


def shard_path(root: Path, table: str, shard: int) -> Path:
    return root / table / f"shard={shard:02d}" / FILE


def stored_tables(root: Path) -> list[str]:
    """The tables the store holds (every shard file of each is there)."""
    if not (root / MANIFEST).exists():
        return []
    shards = shard_count(root)
    return [t for t in TABLES if all(shard_path(root, t, k).exists() for k in range(shards))]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _files(root: Path, table: str) -> str:
    return _literal(root / table / "shard=*" / "*.parquet")


def view_sql(root: Path, table: str) -> str:
    """The SELECT of a table's view. Not Hive-partitioned: the shard is where a row is kept, not
    a column of the table. Every shard has the table's columns (`replace_all` writes them all,
    `rewrite` casts to them), so the files are read without unifying their schemas."""
    return f"SELECT * FROM read_parquet({_files(root, table)}, hive_partitioning = false)"


def attach(conn: duckdb.DuckDBPyConnection, root: Path, read_only: bool) -> None:
    """Make `root` this connection's store: the writes go there, and the views read from there.

    On a read-write connection, a store table the warehouse holds as a native table (a warehouse
    from before the store, or a table written by hand) moves into the store first.
    """
    root = root.resolve()
    conn.execute(f"SET VARIABLE {VARIABLE} = ?", [str(root)])
    native = {
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()
    } & set(TABLES)
    if not read_only:
        for table in sorted(native):
            _write_all(conn, root, table, f"SELECT * FROM {_quote(table)}")
            conn.execute(f"DROP TABLE {_quote(table)}")
        native = set()
    views = dict(
        conn.execute(
            "SELECT view_name, sql FROM duckdb_views() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()
    )
    for table in stored_tables(root):
        # DuckDB keeps the view's SQL in its own spelling: the files' path is what must match.
        if table in native or _files(root, table) in (views.get(table) or ""):
            continue
        temp = "TEMP " if read_only else ""
        conn.execute(f"CREATE OR REPLACE {temp}VIEW {_quote(table)} AS {view_sql(root, table)}")


def root_of(conn: duckdb.DuckDBPyConnection) -> Path:
    """The store of a connection `attach` set up."""
    row = conn.execute(f"SELECT getvariable('{VARIABLE}')").fetchone()
    if not row or row[0] is None:
        raise RuntimeError(
            "this DuckDB connection has no store: open it through pipelines.warehouse.Warehouse, "
            "or call pipelines.store.attach on it"
        )
    return Path(row[0])


def replace_all(conn: duckdb.DuckDBPyConnection, table: str, source: str | pl.DataFrame) -> None:
    """Replace every shard of `table` with the rows of `source` (a query or a frame), its columns
    the table's from now on."""
    root = root_of(conn)
    if isinstance(source, str):
        _write_all(conn, root, table, source)
    else:
        conn.register("_store_source", source.to_arrow())
        try:
            _write_all(conn, root, table, "SELECT * FROM _store_source")
        finally:
            conn.unregister("_store_source")
    conn.execute(f"CREATE OR REPLACE VIEW {_quote(table)} AS {view_sql(root, table)}")


def _write_all(conn: duckdb.DuckDBPyConnection, root: Path, table: str, source: str) -> None:
    """Write every shard of `table` from `source` in one pass (a shard without rows gets a file
    without rows, which keeps the columns), then rename them into place."""
    shards = shard_count(root)
    staging = _staging(root, table)
    try:
        conn.execute(
            f"COPY (SELECT *, {shard_sql(shards)} AS _shard FROM ({source})) "
            f"TO {_literal(staging / 'parts')} (FORMAT parquet, PARTITION_BY (_shard))"
        )
        staged: dict[int, Path] = {}
        for k in range(shards):
            files = sorted((staging / "parts" / f"_shard={k}").glob("*.parquet"))
            if len(files) > 1:
                raise RuntimeError(f"DuckDB wrote {len(files)} files for shard {k} of {table}")
            if files:
                staged[k] = files[0]
            else:
                staged[k] = staging / f"empty-{k}.parquet"
                conn.execute(
                    f"COPY (SELECT * FROM ({source}) LIMIT 0) TO {_literal(staged[k])} "
                    "(FORMAT parquet)"
                )
        _put_in_place(root, table, staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def rewrite(
    conn: duckdb.DuckDBPyConnection, table: str, drop: str, rows: pl.DataFrame, people: str
) -> None:
    """Rewrite the shards of `people` (a query of person_id): each keeps its rows for which the
    SQL condition `drop` (over the alias `t`) is not true, and takes its rows of `rows`, cast to
    the table's columns (a column `rows` lacks is null)."""
    root = root_of(conn)
    shards = shard_count(root)
    columns = conn.execute(f"DESCRIBE {_quote(table)}").fetchall()
    extra = set(rows.columns) - {c[0] for c in columns}
    if extra:
        raise ValueError(f"{table} has no columns {sorted(extra)}")
    new = ", ".join(
        f"CAST({_quote(name) if name in rows.columns else 'NULL'} AS {kind}) AS {_quote(name)}"
        for name, kind, *_ in columns
    )
    staging = _staging(root, table)
    try:
        # Spooled to a file, not registered: DuckDB keeps a frame registered inside a transaction
        # until it ends, so a step that rewrites group after group kept every group's rows.
        spooled = staging / "rows.parquet"
        rows.write_parquet(spooled)
        source = f"read_parquet({_literal(spooled)})"
        touched = conn.execute(
            f"SELECT DISTINCT {shard_sql(shards)} FROM "
            f"(SELECT person_id FROM ({people}) UNION ALL SELECT person_id FROM {source})"
        ).fetchall()
        staged: dict[int, Path] = {}
        for (k,) in sorted(touched):
            staged[k] = staging / f"{k}.parquet"
            conn.execute(
                f"COPY (SELECT * FROM read_parquet({_literal(shard_path(root, table, k))}, "
                "hive_partitioning = false) t "
                f"WHERE ({drop}) IS NOT TRUE UNION ALL "
                f"SELECT * FROM (SELECT {new} FROM {source}) WHERE {shard_sql(shards)} = {k}) "
                f"TO {_literal(staged[k])} (FORMAT parquet)"
            )
        _put_in_place(root, table, staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_people(conn: duckdb.DuckDBPyConnection, table: str, rows: pl.DataFrame) -> None:
    """Replace the rows of the people in the temp table `_people` with `rows` (theirs)."""
    people = "SELECT person_id FROM _people"
    rewrite(conn, table, f"t.person_id IN ({people})", rows, people)


def _staging(root: Path, table: str) -> Path:
    """A new staging folder beside the table's shards (the same filesystem, so a rename moves a
    file into place); a write that died leaves its own, removed here."""
    folder = root / table
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(".staging-*"):
        shutil.rmtree(old, ignore_errors=True)
    staging = folder / f".staging-{uuid.uuid4().hex}"
    staging.mkdir()
    return staging


def _put_in_place(root: Path, table: str, staged: dict[int, Path]) -> None:
    """Flush every staged file to disk, then rename each over its shard's file: a power cut
    cannot leave a shard of the right name and the wrong contents."""
    for path in staged.values():
        _fsync(path)
    for k, path in staged.items():
        target = shard_path(root, table, k)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


# Snapshots ---------------------------------------------------------------------------------------


def link_tree(src: Path, dest: Path) -> None:
    """A copy of the store `src` at `dest` made of hard links (its files are never changed in
    place); a file copy where the filesystem refuses a link. Nothing when `src` does not exist."""
    remove_tree(dest)
    if not src.exists():
        return
    partial = dest.with_name(f".{dest.name}.partial")
    remove_tree(partial)
    shutil.copytree(src, partial, copy_function=_link_or_copy, ignore=_staging_folders)
    os.replace(partial, dest)


def put_back(snapshot: Path, root: Path) -> None:
    """Make the store at `root` hold exactly what the store snapshot `snapshot` holds (nothing
    when there is none: a snapshot of a warehouse from before the store)."""
    incoming = root.with_name(f".{root.name}.restoring")
    outgoing = root.with_name(f".{root.name}.replaced")
    remove_tree(incoming)
    remove_tree(outgoing)
    if snapshot.exists():
        shutil.copytree(snapshot, incoming, copy_function=_link_or_copy, ignore=_staging_folders)
    if root.exists():
        os.replace(root, outgoing)
    if incoming.exists():
        os.replace(incoming, root)
    remove_tree(outgoing)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _staging_folders(_folder: str, names: Iterable[str]) -> list[str]:
    return [n for n in names if n.startswith(".staging-")]
