"""The cohort-wide tables on the Parquet store (issue 19): associations, persons, data_sufficiency
and diet_summary are views over parts by person shard, like the per-person tables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import store
from pipelines.project import Project
from pipelines.steps.features import replace_with_parts
from pipelines.warehouse import Warehouse, replace_table
from tests.conftest import DemoRun

MOVED = ("associations", "persons", "data_sufficiency", "diet_summary")


def test_the_moved_tables_are_store_tables() -> None:
    assert set(MOVED) <= set(store.TABLES)


@pytest.mark.parametrize("table", MOVED)
def test_each_moved_table_is_a_view_over_its_shards_parts(demo_run: DemoRun, table: str) -> None:
    """A view over the files `store_parts` names, one or more under
    data/store/<table>/shard=NN/ for every shard, each holding only its shard's people (a row
    without a person, such as a cohort finding, in shard 0)."""
    project = demo_run.project
    root = project.root / "data" / "store"
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        kind = conn.execute(
            "SELECT table_type FROM information_schema.tables WHERE table_name = ?", [table]
        ).fetchone()
        assert kind == ("VIEW",)
        parts = conn.execute(
            "SELECT shard, file FROM store_parts WHERE table_name = ? ORDER BY shard, part",
            [table],
        ).fetchall()
        count = store.shard_count(root)
        assert sorted({k for k, _ in parts}) == list(range(count))
        for k, file in parts:
            assert file.startswith(f"{table}/shard={k:02d}/part-")
            assert (root / file).is_file()
        total = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        # The demo's diaries report no person-level totals: diet_summary has no rows there.
        assert total and (total[0] > 0) == (table != "diet_summary")
        stored = pl.read_parquet([root / f for _, f in parts])
        assert stored.height == total[0]
        for k, file in parts:
            people = pl.read_parquet(root / file)["person_id"].to_list()
            assert {store.shard_of(p, count) for p in people} <= {k}


def test_a_warehouse_with_the_native_tables_keeps_their_rows(
    demo_run: DemoRun, tmp_path: Path
) -> None:
    """A warehouse from before: the moved tables as DuckDB tables. The first read-write open
    moves them into the store, with the same rows."""
    src = demo_run.project
    path = tmp_path / "warehouse.duckdb"
    assert src.warehouse().snapshot(path)  # with a copy of the demo's store beside it
    want: dict[str, list[tuple]] = {}
    with duckdb.connect(str(src.warehouse_path), read_only=True) as old:
        for table in MOVED:
            want[table] = old.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
    with duckdb.connect(str(path)) as conn:
        store.attach(conn, store.beside(path), read_only=False)
        for table in MOVED:
            conn.execute(f"CREATE TABLE _native AS SELECT * FROM {table}")
            store.drop_table(conn, table)
            conn.execute(f"ALTER TABLE _native RENAME TO {table}")
            assert store.is_native(conn, table)
    warehouse = Warehouse(path)
    with warehouse.write() as conn:
        for table in MOVED:
            assert not store.is_native(conn, table)
            assert conn.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall() == want[table]


def _persons(ids: list[str | None], age: float) -> pl.DataFrame:
    return pl.DataFrame({"person_id": ids, "age": [age] * len(ids)})


def _files(root: Path, table: str) -> set[Path]:
    return set(root.glob(f"{table}/shard=*/*.parquet"))


@pytest.mark.parametrize("table", ["persons", "associations"])
def test_a_step_killed_before_its_commit_leaves_the_previous_rows(
    tmp_path: Path, table: str
) -> None:
    """As kill -9 leaves a whole-table step (persons' `replace_table`, the associations'
    `replace_with_parts`): its new parts are written, but no committed view names them; the old
    rows stay, and the next open removes the new files."""
    project = Project(tmp_path)
    project.ensure_dirs()
    warehouse = project.warehouse()
    with warehouse.write() as conn:
        replace_table(conn, table, _persons(["alice", "bob", None], 40.0))
    root = warehouse.store
    before, old_files = warehouse.table(table).sort("person_id"), _files(root, table)
    conn = duckdb.connect(str(warehouse.path))
    store.attach(conn, root, read_only=False)
    conn.execute("BEGIN TRANSACTION")
    new = _persons(["alice", "carol"], 50.0)
    if table == "persons":
        replace_table(conn, table, new)
    else:
        replace_with_parts(conn, table, [new])
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (2,)
    assert len(_files(root, table)) > len(old_files)
    conn.close()  # killed: never committed
    assert warehouse.table(table).sort("person_id").equals(before)
    with warehouse.write():
        pass
    assert _files(root, table) == old_files
