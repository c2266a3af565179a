"""`raw_<source>` and `stg_<source>` on the Parquet store (`pipelines.store`), shard by shard.

A night writes one new part per shard it touches, in raw and in staging, and no other file; a
changed file rewrites only the shards its person is in; every input row stays accounted for; and a
warehouse from before, with DuckDB tables for both, moves them into the store once.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from pipelines import store
from pipelines.warehouse import Warehouse
from tests.test_incremental_ingest import assert_same_as_fresh, export
from tests.test_nightly_checks import Night

PEOPLE = ["ann", "bob", "cid", "dee", "eve", "fay"]
JANUARY = [f"2025-01-{d:02d}" for d in range(1, 21)]


def files(warehouse: Warehouse, table: str) -> dict[Path, tuple[int, int]]:
    """A store table's files on disk, with their inode and mtime."""
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (warehouse.store / table).glob("shard=*/*.parquet")
    }


def shard(person: str) -> str:
    return f"shard={store.shard_of(person, store.SHARDS):02d}"


def january(night: Night) -> None:
    for person in PEOPLE:
        export(night.raw / "cm" / person / "jan.csv", JANUARY, 100, 1e9)
    night.ingest()


def test_a_night_adds_one_part_per_touched_shard_and_leaves_every_other_file(
    tmp_path: Path,
) -> None:
    night = Night(tmp_path)
    january(night)
    before = {t: files(night.warehouse, t) for t in ("raw_cm", "stg_cm")}
    export(night.raw / "cm" / "ann" / "feb.csv", ["2025-02-01", "2025-02-02"], 80, 2e9)
    export(night.raw / "cm" / "bob" / "feb.csv", ["2025-02-01"], 90, 2e9)
    night.ingest()
    touched = {shard("ann"), shard("bob")}
    for table in ("raw_cm", "stg_cm"):
        after = files(night.warehouse, table)
        assert {p: after[p] for p in before[table]} == before[table], table
        added = set(after) - set(before[table])
        assert sorted(p.parent.name for p in added) == sorted(touched), table
    assert_same_as_fresh(night.raw, _ingested(night))


def test_a_changed_file_settles_only_its_shard_again(tmp_path: Path) -> None:
    night = Night(tmp_path)
    january(night)
    before = {t: files(night.warehouse, t) for t in ("raw_cm", "stg_cm")}
    export(night.raw / "cm" / "cid" / "jan.csv", JANUARY[:10], 120, 3e9)  # corrected
    night.ingest()
    for table in ("raw_cm", "stg_cm"):
        after = files(night.warehouse, table)
        kept = {p: v for p, v in before[table].items() if p.parent.name != shard("cid")}
        assert {p: after.get(p) for p in kept} == kept, table
        assert {p.parent.name for p in set(after) ^ set(before[table])} == {shard("cid")}, table
    with night.warehouse.read() as conn:
        grams = conn.execute("SELECT DISTINCT grams FROM stg_cm WHERE person_id = 'cid'")
        assert grams.fetchall() == [(120.0,)]
    assert_same_as_fresh(night.raw, _ingested(night))


def test_every_row_is_accounted_for_through_a_full_and_an_incremental_settle(
    tmp_path: Path,
) -> None:
    """Exports that repeat each other's days, within a person and as identical copies."""
    night = Night(tmp_path)
    for i, person in enumerate(PEOPLE):
        export(night.raw / "cm" / person / "jan.csv", JANUARY, 100 + i, 1e9)
        export(night.raw / "cm" / person / "late.csv", JANUARY[5:15], 200 + i, 2e9)
    export(night.raw / "cm" / "ann" / "copy.csv", JANUARY[5:15], 200, 2e9)
    night.ingest()
    first = balance(night)
    assert first["rows_duplicate"] > 0
    for i, person in enumerate(PEOPLE[:3]):
        export(night.raw / "cm" / person / "feb.csv", [*JANUARY[10:], "2025-02-01"], 300 + i, 3e9)
    night.ingest()
    second = balance(night)
    assert second["rows_duplicate"] > first["rows_duplicate"]
    assert_same_as_fresh(night.raw, _ingested(night))


def balance(night: Night) -> dict[str, int]:
    """The warehouse's per-file counts, checked: read = loaded + rejected + duplicate per file,
    and the staging table holds exactly the rows loaded."""
    with night.warehouse.read() as conn:
        counts = conn.execute("SELECT * FROM ingest_files").pl()
        staged = conn.execute("SELECT count(*) FROM stg_cm").fetchone()
    unbalanced = counts.filter(
        pl.col("rows_read")
        != pl.col("rows_loaded") + pl.col("rows_rejected") + pl.col("rows_duplicate")
    )
    assert unbalanced.is_empty(), unbalanced
    assert staged == (counts["rows_loaded"].sum(),)
    return {c: int(counts[c].sum()) for c in ("rows_read", "rows_loaded", "rows_duplicate")}


def test_raw_and_staging_tables_of_a_warehouse_from_before_move_into_the_store(
    tmp_path: Path,
) -> None:
    night = Night(tmp_path)
    january(night)
    with night.warehouse.read() as conn:
        rows = {t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in ("raw_cm", "stg_cm")}
    with night.warehouse.write() as conn:  # as the versions before kept them: DuckDB tables
        for table in ("raw_cm", "stg_cm"):
            conn.execute(f"CREATE TABLE native_{table} AS SELECT * FROM {table}")
            store.drop_table(conn, table)
            conn.execute(f"ALTER TABLE native_{table} RENAME TO {table}")
    assert files(night.warehouse, "raw_cm") == {}
    night.ingest()
    with night.warehouse.read() as conn:
        kinds = conn.execute(
            "SELECT table_name, table_type FROM information_schema.tables "
            "WHERE table_name IN ('raw_cm', 'stg_cm') ORDER BY 1"
        ).fetchall()
        assert kinds == [("raw_cm", "VIEW"), ("stg_cm", "VIEW")]
        for table, want in rows.items():
            got = conn.execute(f"SELECT * FROM {table}").fetchall()
            assert sorted(got, key=repr) == sorted(want, key=repr), table
    assert len(files(night.warehouse, "stg_cm")) == store.SHARDS
    export(night.raw / "cm" / "ann" / "feb.csv", ["2025-02-01"], 80, 2e9)
    night.ingest()
    assert_same_as_fresh(night.raw, _ingested(night))


def _ingested(night: Night):  # type: ignore[no-untyped-def]
    """The warehouse's staging rows, files and rejects as `ingest_source` returns them."""
    from pipelines.ingest import SourceIngest
    from pipelines.ingest.tables import REJECTED_ROWS_SCHEMA
    from pipelines.schema import conform

    with night.warehouse.read() as conn:
        files_ = conn.execute("SELECT * FROM ingest_files WHERE source = 'cm'").pl()
        loaded = files_.filter(pl.col("status") == "loaded").sort("path")
        conn.register("_files", loaded.select("file_id", pl.int_range(pl.len()).alias("_ord")))
        rows = conn.sql(
            "SELECT s.* EXCLUDE (_row) FROM stg_cm s JOIN _files f USING (file_id) "
            "ORDER BY f._ord, s._row"
        ).pl()
        rejects = conn.sql("SELECT * FROM rejected_rows WHERE source = 'cm'").pl()
    return SourceIngest(rows=rows, files=files_, rejects=conform(rejects, REJECTED_ROWS_SCHEMA))
