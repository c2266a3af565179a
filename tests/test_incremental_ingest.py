"""Incremental ingest: a nightly run reads only new or changed files, settles only the keys they
touch, parses in bounded batches, and always ends where a fresh full ingest would."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pyarrow.parquet as pq
import pytest

import pipelines.ingest as ingest
import pipelines.ingest.accounting as ingest_accounting
import pipelines.ingest.fingerprints as ingest_fingerprints
import pipelines.ingest.parse as ingest_parse
import pipelines.ingest.settle as ingest_settle
import pipelines.ingest.sync as ingest_sync
from pipelines import store, store_writes
from pipelines.adapters import FORMATS
from pipelines.config import PersonSpec, SourceConfig
from pipelines.defs.partitions import all_partitions_tags
from pipelines.ingest import ingest_source, sync_source
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.warehouse import Warehouse

HEADER = "Day,Time,Group,Food Name,Amount,Energy (kcal),Fiber (g),Category\n"
FOOD = "Lunch,Kimchi,{g}.00 g,{kcal},2,Vegetables and Vegetable Products"

SOURCE = SourceConfig(
    name="cm",
    kind="diet",
    format="cronometer_servings",
    path="cm/*/*.csv",
    person=PersonSpec(from_folder=True),
)


def export(path: Path, days: list[str], grams: int, mtime: float, extra: str = "") -> None:
    """A Cronometer servings export with one kimchi entry per day (grams tell files apart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{d},," + FOOD.format(g=grams, kcal=grams // 5) + "\n" for d in days)
    path.write_text(HEADER + rows + extra, encoding="utf-8")
    os.utime(path, (mtime, mtime))


def comparable(result: ingest.SourceIngest) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    rows = result.rows.sort("person_id", "day", "file_id", "line")
    files = result.files.drop("ingested_at").sort("path")
    rejects = result.rejects.sort("path", "line")
    return rows, files, rejects


def assert_same_as_fresh(raw: Path, incremental: ingest.SourceIngest) -> None:
    fresh = ingest_source(SOURCE, raw)
    for got, want in zip(comparable(incremental), comparable(fresh), strict=True):
        assert got.equals(want), f"\n{got}\n!=\n{want}"


class CountingFormat:
    """Records the files handed to the real batch parser."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str = "cronometer_servings"):
        self.batches: list[list[str]] = []
        real = FORMATS[name]

        def batch(paths, source):  # type: ignore[no-untyped-def]
            self.batches.append([p.name for p in paths])
            return real.parse_batch(paths, source)

        # Everything else of the format as it is (its person rule: `pipelines.ingest.scope`).
        monkeypatch.setitem(FORMATS, name, replace(real, batch=batch))

    @property
    def files(self) -> list[str]:
        return [name for batch in self.batches for name in batch]


def test_every_incremental_step_ends_where_a_full_ingest_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Add overlapping exports, correct one, delete the newest, rename, copy: after each step the
    incrementally maintained tables equal a fresh ingest of the same files, and only the files
    that changed were read."""
    raw, state = tmp_path / "raw", tmp_path / "state"
    counting = CountingFormat(monkeypatch)

    def step() -> ingest.SourceIngest:
        counting.batches.clear()
        result = ingest_source(SOURCE, raw, cache_dir=state)
        read = list(counting.batches)
        assert_same_as_fresh(raw, result)
        counting.batches[:] = read  # what the incremental run read, not the fresh one
        return result

    export(raw / "cm" / "ann" / "jan.csv", ["2025-01-01", "2025-01-02"], 100, 1_700_000_000)
    export(raw / "cm" / "bob" / "jan.csv", ["2025-01-01"], 50, 1_700_000_000)
    first = step()
    assert sorted(counting.files) == ["jan.csv", "jan.csv"]
    assert first.rows.height == 3

    # A newer export repeats 2025-01-02 with another amount and adds a day: it owns 01-02 now.
    export(raw / "cm" / "ann" / "feb.csv", ["2025-01-02", "2025-01-03"], 200, 1_700_100_000)
    second = step()
    assert counting.files == ["feb.csv"]
    ann = second.rows.filter(pl.col("person_id") == "ann").sort("day")
    assert ann["grams"].to_list() == [100.0, 200.0, 200.0]
    jan = second.files.filter(pl.col("path") == "cm/ann/jan.csv").row(0, named=True)
    assert (jan["rows_loaded"], jan["rows_duplicate"]) == (1, 1)

    # The older file is corrected (new content, still older): nothing it loses to feb comes back.
    export(raw / "cm" / "ann" / "jan.csv", ["2025-01-01", "2025-01-02"], 120, 1_700_000_500)
    third = step()
    assert counting.files == ["jan.csv"]
    ann = third.rows.filter(pl.col("person_id") == "ann").sort("day")
    assert ann["grams"].to_list() == [120.0, 200.0, 200.0]

    # The newest export is deleted: 2025-01-02 goes back to the older file.
    (raw / "cm" / "ann" / "feb.csv").unlink()
    fourth = step()
    assert counting.files == []
    ann = fourth.rows.filter(pl.col("person_id") == "ann").sort("day")
    assert ann["grams"].to_list() == [120.0, 120.0]

    # Renamed and copied: same bytes, nothing parsed, the copy's rows are duplicates.
    (raw / "cm" / "bob" / "jan.csv").rename(raw / "cm" / "bob" / "january.csv")
    shutil.copy2(raw / "cm" / "bob" / "january.csv", raw / "cm" / "bob" / "copy.csv")
    fifth = step()
    assert counting.files == []
    statuses = dict(fifth.files.select("path", "status").iter_rows())
    assert statuses["cm/bob/january.csv"] != statuses["cm/bob/copy.csv"]
    assert "duplicate_file" in statuses.values()

    # The copy that counted is removed: the other one, listed as it was, counts now.
    read_first = (
        "cm/bob/copy.csv" if statuses["cm/bob/copy.csv"] == "loaded" else "cm/bob/january.csv"
    )
    (raw / read_first).unlink()
    left = step().files.filter(pl.col("path").str.starts_with("cm/bob/"))
    assert counting.files == []
    assert left.select("status", "rows_loaded").rows() == [("loaded", 1)]

    # A file with a bad row and a broken file: rejects and errors survive later runs unchanged.
    export(raw / "cm" / "bob" / "mar.csv", ["2025-03-01"], 80, 1_700_300_000, extra="oops,,x,,,\n")
    (raw / "cm" / "bob" / "broken.csv").write_bytes(b"")
    sixth = step()
    assert sorted(counting.files) == ["broken.csv", "mar.csv"]
    assert sixth.rejects.height == 1
    seventh = step()
    assert counting.files == []  # errors are remembered too, not retried every night
    assert comparable(seventh)[2].equals(comparable(sixth)[2])

    # Touched, the same bytes: nothing parsed, and the files record the new time (a night that
    # parses nothing keeps its file records only when every file is listed as recorded).
    os.utime(raw / "cm" / "bob" / "mar.csv", (1_700_400_000, 1_700_400_000))
    eighth = step()
    assert counting.files == []
    times = [
        r.files.filter(pl.col("path") == "cm/bob/mar.csv")["modified_at"][0]
        for r in (seventh, eighth)
    ]
    assert times[0] != times[1]


def test_a_parser_change_reads_every_file_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, state = tmp_path / "raw", tmp_path / "state"
    export(raw / "cm" / "ann" / "jan.csv", ["2025-01-01"], 100, 1_700_000_000)
    export(raw / "cm" / "ann" / "feb.csv", ["2025-02-01"], 100, 1_700_100_000)
    counting = CountingFormat(monkeypatch)
    ingest_source(SOURCE, raw, cache_dir=state)
    counting.batches.clear()
    monkeypatch.setattr(ingest_fingerprints, "parser_fingerprint", lambda: "a fixed adapter")
    result = ingest_source(SOURCE, raw, cache_dir=state)
    assert sorted(counting.files) == ["feb.csv", "jan.csv"]
    assert_same_as_fresh(raw, result)


def test_files_are_parsed_in_bounded_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory is bounded by a batch: never more than BATCH_FILES files in memory at once."""
    raw = tmp_path / "raw"
    for i in range(10):
        export(raw / "cm" / f"p{i}" / "jan.csv", ["2025-01-01", "2025-01-02"], 10 + i, 1e9 + i)
    whole = ingest_source(SOURCE, raw)
    monkeypatch.setattr(ingest_sync, "BATCH_FILES", 3)
    counting = CountingFormat(monkeypatch)
    batched = ingest_source(SOURCE, raw)
    assert [len(b) for b in counting.batches] == [3, 3, 3, 1]
    for got, want in zip(comparable(batched), comparable(whole), strict=True):
        assert got.equals(want)


def test_batches_are_also_bounded_by_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many small files make one batch (a night's files are parsed together), large ones are cut
    at BATCH_BYTES, a file larger than that alone is a batch of its own; nothing is lost."""
    raw = tmp_path / "raw"
    days = [f"2025-01-{d:02d}" for d in range(1, 29)]
    for i in range(8):
        export(raw / "cm" / f"p{i}" / "jan.csv", days if i in (2, 3, 6) else days[:1], 10 + i, i)
    whole = ingest_source(SOURCE, raw)
    # One parse at a time, so the batches reach the counting parser in their order.
    monkeypatch.setattr(ingest_parse, "PARSE_AHEAD", 1)
    sizes = {p.parent.name: p.stat().st_size for p in raw.glob("cm/*/jan.csv")}
    big, small = sizes["p2"], sizes["p0"]
    assert big > 10 * small
    monkeypatch.setattr(ingest_sync, "BATCH_BYTES", big + 2 * small)
    counting = CountingFormat(monkeypatch)
    batched = ingest_source(SOURCE, raw)
    # In order of modification, cut before the file that would go over: p0 p1 p2 | p3 p4 p5 | p6 p7
    assert [len(b) for b in counting.batches] == [3, 3, 2]
    monkeypatch.setattr(ingest_sync, "BATCH_BYTES", big - 1)
    counting.batches.clear()
    tight = ingest_source(SOURCE, raw)
    assert [len(b) for b in counting.batches] == [2, 1, 1, 2, 1, 1]
    for result in (batched, tight):
        for got, want in zip(comparable(result), comparable(whole), strict=True):
            assert got.equals(want)


def test_many_small_files_are_cut_sooner_than_a_few_large_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A night's many small files go SMALL_BATCH_BYTES at a time once a batch holds
    SMALL_BATCH_FILES of them, so the batches in memory hold as much on a night of 10,000
    people as on one of 2,000; a few large files still fill a batch up to its byte limit."""
    monkeypatch.setattr(ingest_parse, "SMALL_BATCH_FILES", 4)
    monkeypatch.setattr(ingest_parse, "SMALL_BATCH_BYTES", 3_500)

    def cut(sizes: list[int]) -> list[int]:
        listing = pl.DataFrame({"size_bytes": sizes}, schema={"size_bytes": pl.Int64})
        return [b.height for b in ingest_parse.batches(listing, 100, 10_000)]

    assert cut([1_000] * 10) == [4, 4, 2]  # else one batch of 10,000 bytes
    assert cut([1_000] * 3) == [3]
    assert cut([3_000] * 5) == [3, 2]  # fewer than 4 files: cut at 10,000 bytes only


def test_only_an_incremental_ingest_cuts_row_groups_at_incremental_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first build's raw parts hold a shard's rows of many batches in one row group (the
    history is read from them); a night's hold a shard's rows of at most INCREMENTAL_FRAMES
    batches (issue 19), and its rows are the same as a fresh ingest's."""
    monkeypatch.setattr(ingest_sync, "BATCH_FILES", 1)  # a batch, and a frame, per file
    raw, store_root = tmp_path / "raw", tmp_path / "warehouse.store"
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    memo = tmp_path / "hashes.parquet"

    def days(month: str, n: int) -> list[list[str]]:
        return [[f"2025-{month}-{d:02d}"] for d in range(1, n + 1)]

    def parts() -> set[Path]:  # ann's raw parts
        return set(store_root.glob(f"raw_cm/shard={store.shard_of('ann', store.SHARDS):02d}/*"))

    def new_parts_row_groups(before: set[Path]) -> list[list[int]]:
        metas = [pq.ParquetFile(part).metadata for part in parts() - before]
        return [[m.row_group(i).num_rows for i in range(m.num_row_groups)] for m in metas]

    for d, day in enumerate(days("01", 6)):
        export(raw / "cm" / "ann" / f"jan{d}.csv", day, 100 + d, 1e9 + d)
    with warehouse.write() as conn:
        sync_source(conn, SOURCE, raw, memo_path=memo)
    assert [g for g in new_parts_row_groups(set()) if sum(g)] == [[6]]  # and an empty part
    before = parts()
    for d, day in enumerate(days("02", 6)):
        export(raw / "cm" / "ann" / f"feb{d}.csv", day, 200 + d, 2e9 + d)
    with warehouse.write() as conn:
        night = sync_source(conn, SOURCE, raw, memo_path=memo)
    assert night.files_parsed == 6
    frames = store_writes.INCREMENTAL_FRAMES
    assert new_parts_row_groups(before) == [[frames, 6 - frames]]
    assert_same_as_fresh(raw, ingest_source(SOURCE, raw))


def test_nightly_sync_settles_only_the_keys_new_files_touch(tmp_path: Path) -> None:
    """Against a real warehouse file: the second run reads one file and settles its two days."""
    raw = tmp_path / "raw"
    for person in ("ann", "bob", "cid"):
        export(raw / "cm" / person / "jan.csv", ["2025-01-01", "2025-01-02"], 100, 1e9)
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.write() as conn:
        first = sync_source(conn, SOURCE, raw, memo_path=tmp_path / "hashes.parquet")
    assert (first.files_parsed, first.keys_settled, first.rows_loaded) == (3, None, 6)

    export(raw / "cm" / "ann" / "feb.csv", ["2025-01-02", "2025-01-03"], 200, 2e9)
    with warehouse.write() as conn:
        second = sync_source(conn, SOURCE, raw, memo_path=tmp_path / "hashes.parquet")
    assert second.files_parsed == 1
    assert second.keys_settled == 2  # ann 01-02 and ann 01-03; bob and cid untouched
    assert second.rows_loaded == 7
    staged = warehouse.query("SELECT person_id, day, grams FROM stg_cm ORDER BY ALL")
    assert staged.filter(pl.col("person_id") == "ann")["grams"].to_list() == [100.0, 200.0, 200.0]
    kept = warehouse.query("SELECT count(*) AS n FROM raw_cm")["n"].item()
    assert kept == 8  # every parsed row is kept, so removing feb.csv can restore jan's 01-02


def test_the_ingest_asset_reads_only_new_files_on_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real asset, twice, on a real Dagster instance: the metadata says what was read."""
    from pipelines.definitions import defs

    project = tmp_path / "project"
    raw = project / "data" / "raw"
    (project / "sources.yaml").parent.mkdir(parents=True, exist_ok=True)
    (project / "sources.yaml").write_text(
        "sources:\n  - name: cm\n    kind: diet\n    format: cronometer_servings\n"
        "    path: cm/*/*.csv\n    person: {from_folder: true}\n",
        encoding="utf-8",
    )
    for person in ("ann", "bob"):
        export(raw / "cm" / person / "jan.csv", ["2025-01-01"], 100, 1e9)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project))
    key = dg.AssetKey("ingest_cm")

    def files_parsed(instance: dg.DagsterInstance) -> int:
        job = defs().resolve_job_def("refresh_all")
        result = job.execute_in_process(
            instance=instance, asset_selection=[key], tags=all_partitions_tags(Project(project))
        )
        assert result.success
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        return int(event.asset_materialization.metadata["files_parsed"].value)  # type: ignore[arg-type]

    legacy = project / "data" / "processed" / "parse_cache" / "cm"
    legacy.mkdir(parents=True)  # what an older version left behind
    hashes = project / "data" / "processed" / "file_hashes"
    (hashes / "cm.json").parent.mkdir(parents=True)
    (hashes / "cm.json").write_text('{"cm/ann/jan.csv": [1, 2, "0"]}')  # an older memo
    with dg.DagsterInstance.ephemeral() as instance:
        assert files_parsed(instance) == 2
        assert not legacy.parent.exists()
        assert sorted(p.name for p in hashes.iterdir()) == ["cm.parquet"]
        export(raw / "cm" / "ann" / "feb.csv", ["2025-02-01"], 100, 2e9)
        assert files_parsed(instance) == 1
        assert files_parsed(instance) == 0


def test_the_same_bytes_in_two_peoples_folders_are_two_peoples_days(tmp_path: Path) -> None:
    """With person from the folder, identical files are not copies of each other."""
    raw = tmp_path / "raw"
    for person in ("ann", "bob"):
        export(raw / "cm" / person / "day.csv", ["2025-01-01"], 100, 1e9)
    result = ingest_source(SOURCE, raw)
    assert sorted(result.rows["person_id"].to_list()) == ["ann", "bob"]
    assert result.files["status"].to_list() == ["loaded", "loaded"]


def test_a_first_ingest_larger_than_a_row_group_loads_every_row(tmp_path: Path) -> None:
    """130,000 rows (more than one DuckDB row group) in the run that creates the tables: every row
    is stored and counted (this once came out as zero rows, see `create_table`)."""
    raw = tmp_path / "raw"
    days = [f"2025-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)]
    per_day = 130_000 // len(days) + 1
    export(raw / "cm" / "ann" / "year.csv", [d for d in days for _ in range(per_day)], 10, 1e9)
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.write() as conn:
        result = sync_source(conn, SOURCE, raw)
    expected = len(days) * per_day
    assert expected > 122_880
    assert result.rows_loaded == expected
    assert warehouse.query("SELECT count(*) AS n FROM stg_cm")["n"].item() == expected


def test_batches_are_written_straight_into_one_new_raw_part_per_shard(tmp_path: Path) -> None:
    """The memory-bounded path: each batch's rows go into raw_<source>'s new parts as it is
    parsed, one part per shard for the whole run; nothing is left in the store's staging folder."""
    raw = tmp_path / "raw"
    for i in range(7):
        export(raw / "cm" / f"p{i}" / "jan.csv", ["2025-01-01"], 10 + i, 1e9 + i)
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.write() as conn:
        before = {r[0] for r in conn.execute("SELECT file FROM store_parts").fetchall()}
    with warehouse.write() as conn, pytest.MonkeyPatch.context() as patch:
        patch.setattr(ingest_sync, "BATCH_FILES", 3)
        result = sync_source(conn, SOURCE, raw)
        new = conn.execute(
            "SELECT shard, file FROM store_parts WHERE table_name = 'raw_cm' AND part > 0"
        ).fetchall()
    assert result.rows_loaded == 7
    shards = {store.shard_of(f"p{i}", store.SHARDS) for i in range(7)}
    assert sorted(k for k, _ in new) == sorted(shards)  # one new part per shard, every batch in it
    assert not before & {f for _, f in new}
    # A shard's rows of all batches are held until they make a row group worth reading.
    assert all(pq.ParquetFile(warehouse.store / f).num_row_groups == 1 for _, f in new)
    assert not list(warehouse.store.glob("raw_cm/.staging-*"))


def test_key_ranges_only_ever_narrow_to_the_affected_keys() -> None:
    """The range filter that lets the nightly settle skip the history's row groups must pass every
    row with an affected key: a column with a null among the keys gets no range at all (BETWEEN
    never passes a null), the others their exact min and max."""
    import duckdb

    conn = duckdb.connect()
    conn.execute(
        "CREATE TEMP TABLE _affected AS SELECT * FROM (VALUES "
        "(1::UBIGINT, 'ann', DATE '2025-03-02', 'breakfast'), "
        "(2::UBIGINT, 'bob', DATE '2025-03-01', NULL), "
        "(3::UBIGINT, 'cid', NULL, 'lunch')) t(h, person_id, day, period)"
    )
    ranges = ingest_settle._key_ranges(conn, ["person_id", "day", "period"])
    assert ranges == ["\"person_id\" BETWEEN 'ann' AND 'cid'"]
    conn.execute("CREATE TABLE t AS SELECT person_id, day, period FROM _affected")
    kept = conn.execute(f"SELECT count(*) FROM t WHERE {' AND '.join(ranges)}").fetchone()
    assert kept == (3,)
    conn.execute("DELETE FROM _affected WHERE day IS NULL")
    ranges = ingest_settle._key_ranges(conn, ["person_id", "day"])
    assert ranges[1] == "\"day\" BETWEEN DATE '2025-03-01' AND DATE '2025-03-02'"
    conn.execute("DELETE FROM _affected")
    assert ingest_settle._key_ranges(conn, ["person_id"]) == []


def test_the_sync_reports_its_files_as_ingest_files_records_them(tmp_path: Path) -> None:
    """What the ingest asset reports (`SyncResult.summary`, counted by DuckDB) is the recorded
    files' counts, errors and first rows; a night with nothing new keeps every record as it was,
    and a listing that differs in any file is not taken for the recorded one."""
    raw = tmp_path / "raw"
    jan = raw / "cm" / "ann" / "jan.csv"
    export(jan, ["2025-01-01", "2025-01-02"], 100, 1_700_000_000)
    later = ["2025-01-02", "2025-01-03"]
    export(raw / "cm" / "ann" / "feb.csv", later, 200, 1_700_100_000, extra="oops,,x,,,\n")
    shutil.copy2(jan, raw / "cm" / "ann" / "jan copy.csv")  # the same bytes, the same time
    (raw / "cm" / "bob").mkdir()
    (raw / "cm" / "bob" / "broken.csv").write_bytes(b"")
    os.utime(raw / "cm" / "bob" / "broken.csv", (1_700_200_000, 1_700_200_000))
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    memo = tmp_path / "hashes.parquet"
    with warehouse.write() as conn:
        first = sync_source(conn, SOURCE, raw, memo_path=memo)
        recorded = ingest_accounting.recorded_files(conn, "cm")
    s = first.summary
    # jan's 01-02 loses to feb; the copy's two rows are duplicates; feb's bad line is rejected.
    assert (s.files, s.rows_read, s.rows_loaded, s.rows_rejected, s.rows_duplicate) == (
        4,
        7,
        3,
        1,
        3,
    )
    sums = [int(recorded[c].sum()) for c in ("rows_read", "rows_loaded", "rows_rejected")]
    assert [s.rows_read, s.rows_loaded, s.rows_rejected] == sums
    assert (s.unbalanced, s.not_loaded) == (0, 2)
    assert [p for p, _ in s.errors] == ["cm/bob/broken.csv"]
    assert str(s.newest) == "2023-11-17 05:46:40"  # broken.csv's time (UTC)
    assert s.preview["path"].to_list() == recorded["path"].to_list()  # oldest first
    assert s.preview["path"].to_list() == [
        "cm/ann/jan copy.csv",
        "cm/ann/jan.csv",
        "cm/ann/feb.csv",
        "cm/bob/broken.csv",
    ]

    with warehouse.write() as conn:
        second = sync_source(conn, SOURCE, raw, memo_path=memo)
        assert ingest_accounting.recorded_files(conn, "cm").equals(recorded)  # kept, not rewritten
        listing = ingest.list_files(SOURCE, raw, ingest.HashMemo(None))
        ids = dict(listing.select("path", "file_id").iter_rows())
        none = pl.Series("file_id", [], pl.String)

        def recount(listed: pl.DataFrame, changed: pl.Series = none) -> set[str]:
            return set(ingest_accounting.files_to_recount(conn, "cm", listed, changed))

        assert recount(listing) == set()  # listed as recorded, nothing changed
        assert recount(listing, pl.Series([ids["cm/ann/feb.csv"]])) == {ids["cm/ann/feb.csv"]}
        jan, feb, broken = (ids[f"cm/{p}.csv"] for p in ("ann/jan", "ann/feb", "bob/broken"))
        assert ids["cm/ann/jan copy.csv"] == jan
        for differs, files in (
            (listing.head(3), {broken}),  # a file gone
            (listing.filter(pl.col("path") != "cm/ann/jan.csv"), {jan}),  # a copy gone
            (
                pl.concat([listing, listing.tail(1).with_columns(path=pl.lit("cm/bob/new.csv"))]),
                {broken},
            ),
            (listing.with_columns(size_bytes=pl.col("size_bytes") + (pl.col("order") == 2)), {feb}),
            # jan copy's time is gone; jan's is jan copy's, which was the same
            (listing.with_columns(modified_at=pl.col("modified_at").shift(1)), {jan, feb, broken}),
        ):
            assert recount(differs) == files
    assert (second.files_parsed, second.keys_settled) == (0, 0)
    assert (second.summary.files, second.summary.rows_loaded) == (s.files, s.rows_loaded)
    assert second.summary.preview.equals(s.preview)


def test_file_records_are_written_only_where_they_changed(tmp_path: Path) -> None:
    """`record_files` leaves a row equal to its recount in place (nulls included), replaces a
    changed one, removes a gone file's and adds a new file's, and leaves other sources' rows
    alone: the table ends as a full rewrite would, and a night's transaction holds only the
    rows that changed."""
    raw = tmp_path / "raw"
    for name, grams, mtime in (("jan", 100, 1_700_000_000), ("feb", 200, 1_700_100_000)):
        export(raw / "cm" / "ann" / f"{name}.csv", ["2025-01-01"], grams, mtime)
    (raw / "cm" / "bob").mkdir()
    (raw / "cm" / "bob" / "broken.csv").write_bytes(b"")  # the others have a null error
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")

    def rowids(conn: Any) -> dict[str, int]:
        query = "SELECT path, rowid FROM ingest_files WHERE source = 'cm'"
        return dict(conn.execute(query).fetchall())

    with warehouse.write() as conn:
        sync_source(conn, SOURCE, raw, memo_path=tmp_path / "hashes.parquet")
        conn.execute(
            "INSERT INTO ingest_files SELECT * REPLACE ('other' AS source) FROM ingest_files"
        )
        before, others = (ingest_accounting.recorded_files(conn, s) for s in ("cm", "other"))
        assert before["error"].null_count() == 2
        first = rowids(conn)

        jan = pl.col("path") == "cm/ann/jan.csv"
        changed = before.with_columns(
            rows_loaded=pl.when(jan).then(pl.col("rows_loaded") + 1).otherwise("rows_loaded")
        )
        new = before.filter(pl.col("path") == "cm/ann/feb.csv").with_columns(
            path=pl.lit("cm/ann/mar.csv")
        )
        wanted = pl.concat([changed.filter(pl.col("path") != "cm/bob/broken.csv"), new])
        every = pl.concat([before["file_id"], new["file_id"]]).unique()
        ingest_accounting.record_files(conn, "cm", wanted, every)

        after = ingest_accounting.recorded_files(conn, "cm")
        assert after.sort("path").equals(wanted.sort("path"))
        kept = rowids(conn)
        assert kept["cm/ann/feb.csv"] == first["cm/ann/feb.csv"]  # equal: left in place
        assert kept["cm/ann/jan.csv"] != first["cm/ann/jan.csv"]  # a count changed
        assert ingest_accounting.recorded_files(conn, "other").equals(others)

        ingest_accounting.record_files(conn, "cm", after, every)  # the same rows: none moves
        assert rowids(conn) == kept
        # Only the files named are recorded again: the others' rows stay, even left out.
        zeroed = after.filter(jan).with_columns(pl.col("rows_loaded") * 0)
        ingest_accounting.record_files(conn, "cm", zeroed, zeroed["file_id"])
        assert rowids(conn).keys() == kept.keys()
        jan_now = ingest_accounting.recorded_files(conn, "cm").filter(jan)
        assert jan_now["rows_loaded"].to_list() == [0]
