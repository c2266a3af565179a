"""The Parquet store of the per-person tables (`pipelines.store`): stable shards, atomic
per-shard replacement, views any connection can read, and snapshots that cover it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from pipelines import store, store_writes
from pipelines.cli import DEMO_SOURCES_YAML
from pipelines.incremental import register_people
from pipelines.literals import sql_text
from pipelines.project import Project
from pipelines.runs import guarded_run
from pipelines.store import replace_all, replace_people, shard_of, shard_sql
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


def files(root: Path, name: str = "marker_draws") -> dict[Path, tuple[int, int]]:
    """The table's files on disk, with their inode and mtime."""
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (root / name).glob("shard=*/*.parquet")
    }


def named(warehouse: Warehouse, name: str = "marker_draws") -> list[Path]:
    """The files `store_parts` names for the table, in order; the view reads those and no other."""
    with warehouse.read() as conn:
        listed = [
            warehouse.store.resolve() / r[0]
            for r in conn.execute(
                "SELECT file FROM store_parts WHERE table_name = ? ORDER BY shard, part", [name]
            ).fetchall()
        ]
        (sql,) = conn.execute(
            "SELECT sql FROM duckdb_views() WHERE view_name = ?", [name]
        ).fetchone() or (None,)
    assert sql is not None and sql.count(".parquet'") == len(listed)
    assert all(f"'{f}'" in sql for f in listed)
    return listed


def append(warehouse: Warehouse, person: str, value: float) -> None:
    """Rows for `person`, none replaced: the shard gains a part."""
    with warehouse.write() as conn:
        register_people(conn, [person])
        store.rewrite(
            conn, "marker_draws", "FALSE", draws([person], value), "SELECT person_id FROM _people"
        )


def test_every_shard_has_a_part_and_the_count_is_recorded(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    root = tmp_path / "data" / "store"
    assert store.shard_count(root) == store.SHARDS
    on_disk = sorted(files(root))
    assert len(on_disk) == store.SHARDS
    assert sorted(named(project.warehouse())) == on_disk
    for person in PEOPLE:
        (shard,) = root.glob(f"marker_draws/shard={shard_of(person, store.SHARDS):02d}/*.parquet")
        assert person in pl.read_parquet(shard)["person_id"].to_list()
    assert table(project.warehouse()) == sorted((p, 1.0) for p in PEOPLE for _ in range(2))


def test_an_append_adds_a_part_and_leaves_every_other_file_untouched(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    root = tmp_path / "data" / "store"
    before = files(root)
    append(project.warehouse(), "alice", 5.0)
    after = files(root)
    assert {p: after[p] for p in before} == before
    (added,) = set(after) - set(before)
    assert added.parent.name == f"shard={shard_of('alice', store.SHARDS):02d}"
    assert pl.read_parquet(added)["value"].to_list() == [5.0, 5.0]
    rows = table(project.warehouse())
    assert rows.count(("alice", 1.0)) == 2 and rows.count(("alice", 5.0)) == 2


@pytest.mark.parametrize("rows_per_group", [2, store_writes.ROWS_PER_GROUP])
def test_frames_appended_as_they_come_make_one_part_per_shard_in_their_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rows_per_group: int
) -> None:
    """`appending`: every frame's rows of a shard go into that shard's one new part, after the
    frames before, in row groups of ROWS_PER_GROUP rows; a shard no frame touches, and every old
    file, is left alone; a null person is shard 0."""
    monkeypatch.setattr(store_writes, "ROWS_PER_GROUP", rows_per_group)
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    root = tmp_path / "data" / "store"
    before, rows_before = files(root), table(warehouse)
    frames = [draws(["alice", "bob"], 5.0), draws(["bob"], 6.0), draws(["p001"], 7.0)]
    frames.append(pl.DataFrame({"person_id": [None], "value": [8.0]}, schema=frames[0].schema))
    with warehouse.write() as conn, store_writes.appending(conn, "marker_draws") as add:
        for frame in frames:
            add(frame)
    after = files(root)
    assert {p: after[p] for p in before} == before
    added = {int(p.parent.name.removeprefix("shard=")): p for p in set(after) - set(before)}
    people = {"alice": [5.0], "bob": [5.0, 6.0], "p001": [7.0], None: [8.0]}
    wanted: dict[int, list[tuple]] = {}
    for person, values in people.items():
        k = shard_of(person, store.SHARDS)
        wanted.setdefault(k, []).extend(
            (person, v) for v in values for _ in range(2 if person else 1)
        )
    assert sorted(added) == sorted(wanted)
    for k, path in added.items():
        assert pl.read_parquet(path).rows() == wanted[k]  # each shard's rows in frame order
    bob = added[shard_of("bob", store.SHARDS)]
    assert pq.ParquetFile(bob).num_row_groups == (2 if rows_per_group == 2 else 1)
    assert len(table(warehouse)) == len(rows_before) + sum(map(len, wanted.values()))
    assert not list(root.glob("marker_draws/.staging-*"))


@pytest.mark.parametrize("max_frames", [None, 3])
def test_an_incremental_append_writes_a_shard_held_over_max_frames_frames(
    tmp_path: Path, max_frames: int | None
) -> None:
    """A night's frames hold few rows of each shard: with `max_frames` (an incremental ingest),
    `appending` writes a shard's rows once it holds rows of that many frames, not only at
    ROWS_PER_GROUP rows (issue 19: the night of 10,000 people held all its rows until the end).
    The rows and their order are the same."""
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    root = tmp_path / "data" / "store"
    before = files(root)
    frames = [draws(["alice"], float(v)) for v in range(7)]  # two rows a frame
    with (
        warehouse.write() as conn,
        store_writes.appending(conn, "marker_draws", max_frames=max_frames) as add,
    ):
        for frame in frames:
            add(frame)
    (part,) = set(files(root)) - set(before)
    groups = pq.ParquetFile(part).metadata
    sizes = [groups.row_group(i).num_rows for i in range(groups.num_row_groups)]
    assert sizes == ([14] if max_frames is None else [6, 6, 2])
    assert pl.read_parquet(part).rows() == pl.concat(frames).rows()


def test_an_error_while_appending_frames_leaves_the_table_and_no_file_behind(
    tmp_path: Path,
) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    root = tmp_path / "data" / "store"
    before, old_files = table(warehouse), named(warehouse)
    with pytest.raises(KeyboardInterrupt), warehouse.write() as conn:
        with store_writes.appending(conn, "marker_draws") as add:
            add(draws(["alice"], 5.0))
            raise KeyboardInterrupt("killed between two batches")
    assert table(warehouse) == before and named(warehouse) == old_files
    assert sorted(files(root)) == sorted(old_files)
    assert not list(root.glob("marker_draws/.staging-*"))


def test_a_replacement_rewrites_only_the_parts_that_held_replaced_rows(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    root = tmp_path / "data" / "store"
    shard = f"shard={shard_of('alice', store.SHARDS):02d}"
    assert shard_of("p013", store.SHARDS) == shard_of("alice", store.SHARDS)
    append(warehouse, "p013", 1.0)
    append(warehouse, "alice", 5.0)
    before = files(root)
    first, neighbour, appended = [p for p in named(warehouse) if p.parent.name == shard]
    with warehouse.write() as conn:
        register_people(conn, ["alice"])
        store.rewrite(
            conn, "marker_draws", "t.value = 5.0", draws(["alice"], 6.0), "SELECT * FROM _people"
        )
    after = files(root)
    # The appended part held every replaced row and none other: it is gone, not rewritten.
    assert appended not in after
    assert {p: after[p] for p in before if p != appended} == {
        p: v for p, v in before.items() if p != appended
    }
    assert [p for p in named(warehouse) if p.parent.name == shard][:2] == [first, neighbour]
    rows = table(warehouse)
    assert rows.count(("alice", 1.0)) == 2 and rows.count(("alice", 6.0)) == 2
    assert ("alice", 5.0) not in rows and len(rows) == 16

    # Replacing alice: the parts with her rows only go, p013's part is left as it was.
    set_alice(warehouse, 7.0)
    parts = [p for p in named(warehouse) if p.parent.name == shard]
    assert parts[0] == neighbour and len(parts) == 2
    assert files(root)[neighbour] == before[neighbour]
    assert pl.read_parquet(parts[1])["person_id"].to_list() == ["alice", "alice"]
    assert sorted(files(root)) == sorted(named(warehouse))
    assert [r for r in table(warehouse) if r[0] == "alice"] == [("alice", 7.0)] * 2


def test_a_rewrite_keeps_the_other_rows_of_a_part_in_their_order(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    mixed = pl.DataFrame(
        {"person_id": ["p013", "alice", "p020", "alice"], "value": [1.0, 2.0, 3.0, 4.0]}
    )
    with warehouse.write() as conn:
        replace_all(conn, "marker_draws", mixed)
    before = named(warehouse)
    set_alice(warehouse, 9.0)
    # The part rewritten without alice, her rows in a new one after it.
    assert len(named(warehouse)) == store.SHARDS + 1
    assert len(set(named(warehouse)) - set(before)) == 2
    with warehouse.read() as conn:
        assert conn.execute("SELECT * FROM marker_draws").fetchall() == [
            ("p013", 1.0),
            ("p020", 3.0),
            ("alice", 9.0),
            ("alice", 9.0),
        ]


def test_a_shard_of_many_parts_is_compacted_in_order(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    shard = f"shard={shard_of('alice', store.SHARDS):02d}"
    for value in range(store.COMPACT_AT - 1):
        append(warehouse, "alice", float(value))
    assert len([p for p in named(warehouse) if p.parent.name == shard]) == store.COMPACT_AT
    with warehouse.read() as conn:
        in_order = conn.execute("SELECT * FROM marker_draws").fetchall()
    append(warehouse, "alice", 99.0)
    (compacted,) = [p for p in named(warehouse) if p.parent.name == shard]
    with warehouse.read() as conn:
        got = conn.execute("SELECT * FROM marker_draws").fetchall()
    assert got == _with_appended(in_order, shard, [("alice", 99.0)] * 2)
    assert sorted(files(tmp_path / "data" / "store")) == sorted(named(warehouse))
    assert compacted.exists()


def _with_appended(rows: list[tuple], shard: str, new: list[tuple]) -> list:
    """`rows` (the table in view order) with `new` at the end of the rows of `shard`."""
    k = int(shard.removeprefix("shard="))
    last = max(i for i, r in enumerate(rows) if shard_of(r[0], store.SHARDS) <= k)
    return [*rows[: last + 1], *new, *rows[last + 1 :]]


def test_a_write_that_fails_half_way_leaves_the_table_and_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    root = tmp_path / "data" / "store"
    append(warehouse, "alice", 5.0)
    before, old_files = table(warehouse), named(warehouse)
    copy, calls = store._copy, []

    def killed(*args: object) -> int:
        calls.append(args)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed after a part was written")
        return copy(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "_copy", killed)
    with pytest.raises(KeyboardInterrupt):
        set_alice(warehouse, 2.0)
    monkeypatch.undo()
    assert table(warehouse) == before
    assert named(warehouse) == old_files
    # The rolled-back write's part is gone already, and the next write goes through.
    assert sorted(files(root)) == sorted(old_files)
    set_alice(warehouse, 3.0)
    assert ("alice", 3.0) in table(warehouse)
    assert sorted(files(root)) == sorted(named(warehouse))
    assert not list(root.glob("marker_draws/.staging-*"))


def test_the_parts_signature_moves_with_every_file_a_write_names_or_retires(
    tmp_path: Path,
) -> None:
    """`Warehouse.write` looks for files to remove after a commit only when `store_parts`
    changed: a write of other tables leaves its signature alone, and a replacement, whose old
    files go right after its commit, does not."""
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    root = tmp_path / "data" / "store"

    def signature() -> tuple[object, ...] | None:
        with warehouse.read() as conn:
            return store.parts_signature(conn)

    first = signature()
    assert first is not None and first[0] == len(named(warehouse))
    with warehouse.write() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    assert signature() == first
    set_alice(warehouse, 3.0)
    assert signature() != first and signature()[0] == first[0]  # type: ignore[index]
    assert sorted(files(root)) == sorted(named(warehouse))


def test_a_killed_write_leaves_the_old_view_and_its_files_go_on_the_next_open(
    tmp_path: Path,
) -> None:
    """As kill -9 leaves it: parts written, never named by a committed view."""
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    root = tmp_path / "data" / "store"
    before, old_files = table(warehouse), named(warehouse)
    conn = duckdb.connect(str(warehouse.path))
    store.attach(conn, warehouse.store, read_only=False)
    conn.execute("BEGIN TRANSACTION")
    register_people(conn, ["alice"])
    store.replace_people(conn, "marker_draws", draws(["alice"], 2.0))
    assert len(files(root)) > len(old_files)
    conn.close()  # never committed
    assert table(warehouse) == before and named(warehouse) == old_files
    with warehouse.write():
        pass
    assert sorted(files(root)) == sorted(old_files)


def test_a_store_from_before_the_parts_is_read_and_taken_over(tmp_path: Path) -> None:
    """One `part.parquet` per shard, views over a glob and no store_parts: read as it is, and
    listed in store_parts, files untouched, by the first read-write connection."""
    project = project_with_draws(tmp_path / "old")
    warehouse = project.warehouse()
    root = warehouse.store.resolve()
    want = table(warehouse)
    with duckdb.connect(str(warehouse.path)) as conn:
        for (file,) in conn.execute("SELECT file FROM store_parts").fetchall():
            os.replace(root / file, (root / file).with_name(store.LEGACY_FILE))
        conn.execute("DROP TABLE store_parts")
        conn.execute(
            "CREATE OR REPLACE VIEW marker_draws AS SELECT * FROM read_parquet("
            f"'{root}/marker_draws/shard=*/*.parquet', hive_partitioning = false)"
        )
    before = files(root)
    # Read-only, in a moved project: the views from the files on disk, for this connection.
    shutil.move(tmp_path / "old", tmp_path / "new")
    assert table(Project(tmp_path / "new").warehouse()) == want
    shutil.move(tmp_path / "new", tmp_path / "old")
    with warehouse.write():
        pass
    assert files(root) == before
    assert sorted(named(warehouse)) == sorted(before)
    assert table(warehouse) == want


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


def test_a_snapshot_keeps_the_files_a_later_compaction_removes(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    append(warehouse, "alice", 5.0)
    before = table(warehouse)
    snap = project.processed_dir / "warehouse.run-1.duckdb"
    assert warehouse.snapshot(snap)
    for value in range(store.COMPACT_AT + 1):
        append(warehouse, "alice", float(value))
    set_alice(warehouse, 2.0)
    root = tmp_path / "data" / "store"
    assert sorted(files(root)) == sorted(named(warehouse))

    warehouse.restore(snap)

    assert table(warehouse) == before
    assert sorted(files(root)) == sorted(named(warehouse))
    set_alice(warehouse, 3.0)
    assert [r for r in table(warehouse) if r[0] == "alice"] == [("alice", 3.0)] * 2


def test_the_trailing_merge_keeps_parts_few_and_a_nights_cost_bounded() -> None:
    """Two years of equal nights after a first part of a thousand nights' size: at most COMPACT_AT
    parts, the first never rewritten, and about log2(nights) rewrites per row in all. Compacting
    the whole shard every COMPACT_AT nights instead rewrote the history 91 times."""
    head = 1000
    sizes, rewritten = [head], []
    for _ in range(730):
        sizes.append(1)
        merged = store.trailing_merge(sizes)
        rewritten.append(sum(sizes[-merged:]) if merged > 1 else 0)
        if merged > 1:
            sizes = [*sizes[:-merged], sum(sizes[-merged:])]
        assert len(sizes) <= store.COMPACT_AT
    assert sizes[0] == head
    assert max(rewritten) < head
    assert sum(rewritten) <= 730 * 10


def test_nightly_appends_leave_a_shards_large_first_part_alone(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    with warehouse.write() as conn:  # a long history for alice: her shard's first part is large
        history = draws(PEOPLE * 500, 1.0)
        replace_all(
            conn, "marker_draws", history.with_columns(value=pl.int_range(history.height) / 7)
        )
    shard = f"shard={shard_of('alice', store.SHARDS):02d}"
    (first,) = [p for p in named(warehouse) if p.parent.name == shard]
    inode = first.stat().st_ino
    for night in range(3 * store.COMPACT_AT):
        append(warehouse, "alice", float(night))
        parts = [p for p in named(warehouse) if p.parent.name == shard]
        assert parts[0] == first and first.stat().st_ino == inode
        assert len(parts) <= store.COMPACT_AT
    alice = [r for r in table(warehouse) if r[0] == "alice"]
    assert len(alice) == 2 * 500 + 2 * 3 * store.COMPACT_AT


def test_shard_views_read_one_shards_rows_then_put_the_views_back(tmp_path: Path) -> None:
    project = project_with_draws(tmp_path)
    warehouse = project.warehouse()
    shard = shard_of("alice", store.SHARDS)
    mine = sorted(p for p in PEOPLE if shard_of(p, store.SHARDS) == shard)
    nobody = next(k for k in range(store.SHARDS) if k not in {shard_of(p, 16) for p in PEOPLE})
    with warehouse.write() as conn:
        conn.execute("CREATE VIEW over AS SELECT person_id FROM marker_draws")
    # Only alice's shard has a row: the other shards have no part of the table at all.
    with warehouse.write() as conn, store_writes.appending(conn, "persons") as add:
        add(pl.DataFrame({"person_id": ["alice"], "age": [40]}))
    assert [p.parent.name for p in (tmp_path / "data" / "store").glob("persons/*/*")] == [
        f"shard={shard:02d}"
    ]
    whole = table(warehouse)

    def people(conn: duckdb.DuckDBPyConnection) -> list[str]:
        return sorted({r[0] for r in conn.execute("SELECT person_id FROM over").fetchall()})

    for opened in (warehouse.write, warehouse.read):  # main views; attach's temp views
        with opened() as conn:
            with store.shard_views(conn, shard):
                # A view over a store table reads the shard's rows; a native table is whole.
                assert people(conn) == mine != PEOPLE
                assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
            with store.shard_views(conn, nobody):
                assert people(conn) == []
                columns = conn.execute("SELECT * FROM persons").pl().columns
                assert columns == ["person_id", "age"]
            assert people(conn) == PEOPLE
            assert conn.execute("SELECT * FROM persons").fetchall() == [("alice", 40)]
            assert conn.execute("SELECT * FROM marker_draws ORDER BY ALL").fetchall() == whole
    with duckdb.connect() as bare:  # no store: every table is read whole, as one shard
        bare.execute("CREATE TABLE marker_draws AS SELECT 'alice' AS person_id")
        with store.shard_views(bare, 3):
            assert bare.execute("SELECT count(*) FROM marker_draws").fetchone() == (1,)
        assert store.store_shards(bare) == 1


def test_parts_are_written_in_row_groups_of_at_most_row_group_rows(tmp_path: Path) -> None:
    """A scan holds a row group per thread: a shard's part in one 122,880-row group (DuckDB's
    default) made a scan's memory grow with the shard until it reached that size. Every write
    path of the store (a whole table, a rewrite of some people, a shard's part rewritten without
    some rows, `write_shards`) writes groups of at most ROW_GROUP_ROWS."""
    project = project_with_draws(tmp_path)
    many = store.ROW_GROUP_ROWS * 2 + 5
    alice = pl.DataFrame({"person_id": ["alice"] * many, "value": [float(v) for v in range(many)]})

    def groups() -> list[int]:
        sizes: list[int] = []
        for path in (project.root / "data" / "store" / "marker_draws").rglob("*.parquet"):
            meta = pq.ParquetFile(path).metadata
            sizes += [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        return sizes

    with project.warehouse().write() as conn:
        replace_all(conn, "marker_draws", pl.concat([alice, draws(["bob"], 1.0)]))
    assert max(groups()) == store.ROW_GROUP_ROWS and len(groups()) >= 3
    with project.warehouse().write() as conn:
        register_people(conn, ["alice"])
        replace_people(conn, "marker_draws", alice.with_columns(value=pl.col("value") + 1))
        store_writes.forget(conn, "marker_draws", "t.value = 7")  # a part rewritten
        store_writes.write_shards(
            conn,
            "marker_draws",
            lambda k: f"SELECT * FROM marker_draws WHERE {shard_sql(16)} = {k}",
            [shard_of("alice", 16)],
            drop=None,
        )
    assert max(groups()) <= store.ROW_GROUP_ROWS
    assert table(project.warehouse()).count(("alice", 8.0)) == 1
    with project.warehouse().read() as conn:
        assert conn.execute("SELECT count(*) FROM marker_draws").fetchone() == (many - 1 + 2,)


def test_a_view_points_at_exactly_its_parts_in_order(tmp_path: Path) -> None:
    """`attach` leaves a read-only connection's persistent view when it already reads the parts
    the store lists (`_points_at`), judged from the SQL as DuckDB keeps it: every file, in the
    store's order, and no other; a quote in the store's path counts as one."""
    root = tmp_path / "it's the store"
    parts = {0: ["t/shard=00/a.parquet", "t/shard=00/b.parquet"], 3: ["t/shard=03/c.parquet"]}
    conn = duckdb.connect()
    for files in parts.values():
        for f in files:
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            conn.execute(f"COPY (SELECT 1 AS x) TO {sql_text(root / f)} (FORMAT parquet)")
    conn.execute(f"CREATE VIEW v AS {store.view_sql(root, parts)}")
    kept = conn.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'v'").fetchone()
    assert kept is not None
    sql = kept[0]
    assert store._points_at(sql, root, parts)
    assert not store._points_at(sql, root, {0: parts[0]})  # a part more than the store lists
    assert not store._points_at(sql, root, {**parts, 5: ["t/shard=05/d.parquet"]})  # one less
    assert not store._points_at(sql, root, {0: parts[0][::-1], 3: parts[3]})  # out of order
    assert not store._points_at(sql, tmp_path / "elsewhere", parts)
    assert not store._points_at(None, root, parts)
