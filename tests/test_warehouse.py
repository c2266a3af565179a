"""The warehouse: transactions roll back on failure, readers are read-only, names are checked."""

import os
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

import pipelines.warehouse as warehouse_module
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


@pytest.mark.parametrize(
    "earlier",
    [None, b"", b"abcdefgh" * 4, b"abcdefgh" * 4 + b"old tail that is longer", b"x" * 3],
    ids=["no file", "empty", "same", "longer", "shorter"],
)
def test_a_refreshed_copy_equals_its_source_whatever_it_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, earlier: bytes | None
) -> None:
    monkeypatch.setattr(warehouse_module, "REFRESH_BLOCK", 8)
    source = tmp_path / "source"
    source.write_bytes(b"abcdefgh" * 2 + b"CHANGED!" + b"abcdefgh" + b"tail")
    copy = tmp_path / "copy"
    if earlier is not None:
        copy.write_bytes(earlier)
    with source.open("rb") as fh:
        warehouse_module._refresh_durably(fh, copy)
    assert copy.read_bytes() == source.read_bytes()


def test_a_refresh_rewrites_only_the_blocks_that_differ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warehouse_module, "REFRESH_BLOCK", 8)
    source, copy = tmp_path / "source", tmp_path / "copy"
    copy.write_bytes(b"abcdefgh" * 4)
    source.write_bytes(b"abcdefgh" + b"CHANGED!" + b"abcdefgh" * 2)
    written: list[bytes] = []
    real_open = open

    class Spy:
        def __init__(self, fh) -> None:  # type: ignore[no-untyped-def]
            self.fh = fh

        def __enter__(self) -> "Spy":
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(self.fh, name)

        def write(self, data) -> int:  # type: ignore[no-untyped-def]
            written.append(bytes(data))
            return int(self.fh.write(data))

    monkeypatch.setattr(
        warehouse_module, "open", lambda *a, **k: Spy(real_open(*a, **k)), raising=False
    )
    with real_open(source, "rb") as fh:
        warehouse_module._refresh_durably(fh, copy)
    assert written == [b"CHANGED!"]
    assert copy.read_bytes() == source.read_bytes()


def test_a_snapshot_starts_from_the_spare_and_a_retired_snapshot_becomes_it(
    tmp_path: Path,
) -> None:
    warehouse = Warehouse(tmp_path / "w.duckdb")
    spare = warehouse.spare(tmp_path)
    with warehouse.write() as conn:
        conn.execute("CREATE TABLE t AS SELECT range AS v FROM range(100000)")
    first = tmp_path / "first.duckdb"
    assert warehouse.snapshot(first)
    warehouse.retire(first)
    assert spare.exists() and not first.exists()
    inode = spare.stat().st_ino
    with warehouse.write() as conn:
        conn.execute("DELETE FROM t WHERE v % 7 = 0")
    second = tmp_path / "second.duckdb"
    assert warehouse.snapshot(second)
    assert second.stat().st_ino == inode and not spare.exists()
    assert second.read_bytes() == warehouse.path.read_bytes()
    assert Warehouse(second).query("SELECT count(*) AS n FROM t")["n"][0] == 100000 - 14286
    os.link(second, tmp_path / "second name.duckdb")
    warehouse.retire(second)  # still named elsewhere: never the spare, which is rewritten
    assert not spare.exists() and not second.exists()
    warehouse.retire(tmp_path / "second name.duckdb")
    warehouse.path.unlink()
    assert not warehouse.snapshot(tmp_path / "third.duckdb")
    assert not spare.exists()  # no warehouse: no copy of one kept either
