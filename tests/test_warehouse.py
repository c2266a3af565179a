"""The warehouse: transactions roll back on failure, readers are read-only, names are checked."""

import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines.warehouse import Warehouse, ident, replace_rows, replace_table


def test_failed_write_leaves_warehouse_as_it_was(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.write() as conn:
        replace_table(conn, "t", pl.DataFrame({"a": [1, 2]}))
    with pytest.raises(RuntimeError), wh.write() as conn:
        replace_table(conn, "t", pl.DataFrame({"a": [9]}))
        replace_table(conn, "u", pl.DataFrame({"b": [1]}))
        raise RuntimeError("killed mid-write")
    assert wh.table("t")["a"].to_list() == [1, 2]
    assert wh.table("u").is_empty()


def test_reader_is_read_only(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.write() as conn:
        replace_table(conn, "t", pl.DataFrame({"a": [1]}))
    with wh.read() as conn, pytest.raises(duckdb.Error):
        conn.execute("INSERT INTO t VALUES (2)")


def test_replace_rows_owns_rows_per_source(tmp_path: Path) -> None:
    wh = Warehouse(tmp_path / "w.duckdb")
    with wh.write() as conn:
        replace_rows(conn, "f", pl.DataFrame({"source": ["a", "a"], "n": [1, 2]}), "source", "a")
        replace_rows(conn, "f", pl.DataFrame({"source": ["b"], "n": [3]}), "source", "b")
        replace_rows(conn, "f", pl.DataFrame({"source": ["a"], "n": [4]}), "source", "a")
    assert sorted(wh.table("f")["n"].to_list()) == [3, 4]


def test_reading_a_missing_warehouse_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="gutsignal run"):
        Warehouse(tmp_path / "nope.duckdb").table("t")


@pytest.mark.parametrize("bad", ["x; DROP TABLE t", 'a"b', "A", "1a", ""])
def test_identifiers_from_configuration_cannot_inject_sql(bad: str) -> None:
    with pytest.raises(ValueError):
        ident(bad)


@pytest.mark.parametrize("how", ["create_table", "replace_table", "replace_rows"])
def test_an_empty_table_takes_a_large_insert(tmp_path: Path, how: str) -> None:
    """DuckDB 1.5.6 loses a large insert into a table created from an empty Arrow frame in the
    same transaction; tables we create empty must not have that problem."""
    from pipelines.warehouse import create_table, replace_rows, replace_table

    big = pl.DataFrame({"a": range(200_000), "s": ["x"] * 200_000})
    warehouse = Warehouse(tmp_path / "w.duckdb")
    with warehouse.write() as conn:
        if how == "create_table":
            create_table(conn, "t", dict(big.schema))
        elif how == "replace_table":
            replace_table(conn, "t", big.clear())
        else:
            replace_rows(conn, "t", big.clear(), "s", "x")
        conn.register("_big", big.to_arrow())
        conn.execute("INSERT INTO t SELECT * FROM _big")
        conn.unregister("_big")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (200_000,)
    assert warehouse.query("SELECT count(*) AS n FROM t")["n"].item() == 200_000


def test_a_damaged_block_is_reported_at_once_not_taken_for_a_lock(tmp_path: Path) -> None:
    """DuckDB's "... in block at location ..." contains "lock"; it is damage, not another
    program holding the file, so nobody waits for it to go away."""
    wh = Warehouse(tmp_path / "w.duckdb", lock_timeout_s=30)
    with wh.write() as conn:
        replace_table(conn, "t", pl.DataFrame({"a": list(range(1000))}))
    assert wh.damage() is None
    with open(wh.path, "r+b") as f:
        f.seek(3 * 4096)  # the first block after the headers: the catalog
        f.write(b"\x5a" * 4096)
    started = time.monotonic()
    reason = wh.damage()
    assert reason is not None and "block" in reason
    assert time.monotonic() - started < 5
    aside = wh.move_aside()
    assert not wh.path.exists() and aside.name.startswith("w.damaged-")
    assert wh.damage() is None  # no warehouse yet: nothing to heal
