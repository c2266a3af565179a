"""The Parquet store of the per-person tables (`pipelines.store`): stable shards, atomic
per-shard replacement, views any connection can read, and snapshots that cover it."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import store
from pipelines.cli import DEMO_SOURCES_YAML
from pipelines.incremental import register_people
from pipelines.project import Project
from pipelines.runs import guarded_run
from pipelines.store import replace_all, replace_people, shard_of, shard_path, shard_sql
from pipelines.warehouse import Warehouse, wal_path
from tests.test_backups import write_to_wal_only

PEOPLE = ["alice", "bob", "carol", "dave", "erin", "p001"]


def draws(people: list[str], value: float) -> pl.DataFrame:
    return pl.DataFrame(
        {"person_id": [p for p in people for _ in range(2)], "value": [value] * 2 * len(people)}
    )


def table(warehouse: Warehouse, name: str = "marker_draws") -> list[tuple]:
    with warehouse.read() as conn:
        return conn.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()


def project_with_draws(root: Path) -> Project:
    project = Project(root)
    project.ensure_dirs()
    project.sources_yaml.write_text(DEMO_SOURCES_YAML, encoding="utf-8")
    with project.warehouse().write() as conn:
        replace_all(conn, "marker_draws", draws(PEOPLE, 1.0))
        conn.execute("CREATE TABLE t AS SELECT 1 AS v")
    return project


def set_alice(warehouse: Warehouse, value: float) -> None:
    with warehouse.write() as conn:
        register_people(conn, ["alice"])
        replace_people(conn, "marker_draws", draws(["alice"], value))


def test_shard_numbers_are_pinned_and_the_same_in_sql_and_python() -> None:
    """The shard of a person must never move (a store written by one version is read by the
    next): md5 is the same everywhere, unlike DuckDB's hash() or Python's salted hash()."""
    ids = ["p001", "alice", "bob", "P-0042", "é"]
    assert [shard_of(i, 16) for i in ids] == [3, 2, 12, 11, 7]
    assert [shard_of(i, 7) for i in ids] == [1, 3, 5, 5, 3]
    assert shard_of(None, 16) == 0
    conn = duckdb.connect()
    frame = pl.DataFrame({"person_id": [*ids, None]}, schema={"person_id": pl.String})
    conn.register("ids", frame.to_arrow())
    in_sql = conn.execute(f"SELECT {shard_sql(16)} FROM ids").fetchall()
    assert [r[0] for r in in_sql] == [3, 2, 12, 11, 7, 0]


def test_every_shard_has_a_file_and_the_count_is_recorded(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    root = tmp_path / "data" / "store"
    assert store.shard_count(root) == store.SHARDS
    files = sorted(root.glob("marker_draws/shard=*/*.parquet"))
    assert len(files) == store.SHARDS
    for person in PEOPLE:
        path = shard_path(root, "marker_draws", shard_of(person, store.SHARDS))
        people = pl.read_parquet(path)["person_id"].unique().to_list()
        assert person in people
    assert table(project.warehouse()) == sorted((p, 1.0) for p in PEOPLE for _ in range(2))


def test_replacing_people_rewrites_their_shards_only(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    root = tmp_path / "data" / "store"
    before = {p: p.stat().st_ino for p in root.glob("marker_draws/shard=*/*.parquet")}
    set_alice(project.warehouse(), 2.0)
    after = {p: p.stat().st_ino for p in root.glob("marker_draws/shard=*/*.parquet")}
    changed = [p for p in before if before[p] != after[p]]
    assert changed == [shard_path(root, "marker_draws", shard_of("alice", store.SHARDS))]
    rows = table(project.warehouse())
    assert ("alice", 2.0) in rows and ("alice", 1.0) not in rows and len(rows) == 12


def test_a_crash_between_write_and_rename_leaves_every_shard_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    before = table(warehouse)

    def killed(*args: object) -> None:
        raise KeyboardInterrupt("killed before the rename")

    monkeypatch.setattr(store.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        set_alice(warehouse, 2.0)
    monkeypatch.undo()
    assert table(warehouse) == before
    # The next write clears what the interrupted one staged and goes through.
    set_alice(warehouse, 3.0)
    assert ("alice", 3.0) in table(warehouse)
    assert not list((tmp_path / "data" / "store").glob("marker_draws/.staging-*"))


def test_views_read_from_another_working_directory_and_after_the_project_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_with_draws(tmp_path / "old")
    want = table(project.warehouse())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # A user's DuckDB session, read-only, started in another folder.
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        assert conn.execute("SELECT * FROM marker_draws ORDER BY ALL").fetchall() == want
    # Views that point at the store already are left alone (not made again on every open).
    with project.warehouse().read() as conn:
        assert conn.execute(
            "SELECT count(*) FROM duckdb_views() WHERE temporary AND NOT internal"
        ).fetchone() == (0,)

    shutil.move(tmp_path / "old", tmp_path / "new")
    moved = Project(tmp_path / "new")
    # Read-only: the views are pointed at the new folder for this connection.
    assert table(moved.warehouse()) == want
    # Read-write: for good, so an outside session reads them too.
    with moved.warehouse().write():
        pass
    with duckdb.connect(str(moved.warehouse_path), read_only=True) as conn:
        assert conn.execute("SELECT * FROM marker_draws ORDER BY ALL").fetchall() == want


def test_a_native_table_of_a_store_table_moves_into_the_store(tmp_path: Path) -> None:
    """A warehouse from before the store keeps its rows: the table becomes files and a view."""
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.write() as conn:
        conn.execute("CREATE TABLE marker_trends AS SELECT 'alice' AS person_id, 2.5 AS slope")
    with warehouse.write() as conn:
        kind = conn.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = 'marker_trends'"
        ).fetchone()
    assert kind == ("VIEW",)
    assert table(warehouse, "marker_trends") == [("alice", 2.5)]
    assert len(list(store.beside(warehouse.path).glob("marker_trends/shard=*/*"))) == 16


def test_a_restore_with_a_wal_present_puts_back_the_store_and_the_warehouse(
    tmp_path: Path,
) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    before = table(warehouse)
    snap = project.processed_dir / "warehouse.run-1.duckdb"
    assert warehouse.snapshot(snap)
    set_alice(warehouse, 2.0)
    # A commit that lives only in the WAL, as a killed writer leaves it.
    write_to_wal_only(warehouse.path, "INSERT INTO t VALUES (2)")
    assert table(warehouse, "t") == [(1,), (2,)]

    warehouse.restore(snap)

    assert not wal_path(warehouse.path).exists()
    assert table(warehouse) == before
    assert table(warehouse, "t") == [(1,)]


def test_a_failed_run_puts_the_store_back_and_a_good_one_keeps_it(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    before = table(warehouse)

    def run(failed: bool, scheduled: bool):
        return guarded_run(
            project, "abcdef0123", scheduled=scheduled, failed=lambda: failed, log=print
        )

    with run(failed=True, scheduled=True):
        set_alice(warehouse, 2.0)
        assert ("alice", 2.0) in table(warehouse)
    assert table(warehouse) == before
    # The backup kept its own store beside it; the run's snapshot is gone, store and all.
    (backup,) = (project.processed_dir / "backups").glob("warehouse-*.duckdb")
    assert Warehouse(backup).table("marker_draws").height == 12
    assert not list(project.processed_dir.glob("warehouse.run-*"))

    with run(failed=False, scheduled=False):
        set_alice(warehouse, 3.0)
    assert ("alice", 3.0) in table(warehouse)


def test_a_restore_of_a_backup_from_before_the_store_empties_it(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.ensure_dirs()
    warehouse = project.warehouse()
    with warehouse.write() as conn:
        conn.execute("CREATE TABLE t AS SELECT 1 AS v")
    assert warehouse.snapshot(project.processed_dir / "old.duckdb")
    with warehouse.write() as conn:
        replace_all(conn, "marker_draws", draws(PEOPLE, 1.0))
    warehouse.restore(project.processed_dir / "old.duckdb")
    assert not warehouse.store.exists()
    assert warehouse.table("marker_draws").is_empty()
