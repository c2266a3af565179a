"""The nightly asset check "a raw file line loads at most once" (`check_unique_lines`).

It reads only the files whose rows entered a staging table since it last passed (the ingest lists
them in `lines_to_check`), not the whole history. These tests run the real ingest and the real
canonical view against a warehouse file, then plant duplicates the way a bug would: among the rows
a night loads, and between a re-settled older file's new and old rows. The check must catch both,
keep failing until they are gone, and scan everything once when the list is missing.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from pipelines import store_writes
from pipelines.defs.partitions import all_partitions_tags
from pipelines.ingest import LINES_TO_CHECK, accounting, check_unique_lines, sync_source
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.steps.canonical import build_canonical_table
from pipelines.warehouse import Warehouse
from tests.test_incremental_ingest import HEADER, SOURCE


def export(path: Path, days: list[str], grams: int, mtime: float) -> None:
    """A servings export with two foods per day (grams tell files apart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = "".join(
        f"{d},,Lunch,{food},{grams}.00 g,{grams // 5},2,Vegetables\n"
        for d in days
        for food in ("Kimchi", "Rice")
    )
    path.write_text(HEADER + rows, encoding="utf-8")
    os.utime(path, (mtime, mtime))


class Night:
    """A warehouse that ingests `raw` and rebuilds diet_entries, as the nightly job does."""

    def __init__(self, tmp_path: Path) -> None:
        self.raw = tmp_path / "raw"
        self.memo = tmp_path / "hashes.parquet"
        self.warehouse = Warehouse(tmp_path / "warehouse.duckdb")

    def ingest(self) -> None:
        with self.warehouse.write() as conn:
            sync_source(conn, SOURCE, self.raw, memo_path=self.memo)
            build_canonical_table(conn, "diet_entries", [SOURCE.name])

    def check(self) -> tuple[int, int | None]:
        with self.warehouse.write() as conn:
            return check_unique_lines(conn, "diet_entries", [SOURCE.name])

    def listed(self) -> list[tuple[str | None, str | None]]:
        with self.warehouse.read() as conn:
            return conn.execute(f"SELECT * FROM {LINES_TO_CHECK} ORDER BY ALL").fetchall()

    def file_id(self, rel_path: str) -> str:
        with self.warehouse.read() as conn:
            row = conn.execute("SELECT file_id FROM ingest_files WHERE path = ?", [rel_path])
            found = row.fetchone()
        assert found is not None, rel_path
        return str(found[0])

    def plant(self, file_id: str, day: str) -> None:
        """A second copy of one staging row of `file_id`: one line of the file loaded twice."""
        with self.warehouse.write() as conn:
            planted = conn.execute(
                f"SELECT * FROM stg_cm WHERE file_id = '{file_id}' AND day = DATE '{day}' "
                "ORDER BY line LIMIT 1"
            ).pl()
            with store_writes.appending(conn, "stg_cm") as add:
                add(planted)


def history(night: Night) -> None:
    """Three people's January, ingested and checked once (a full scan: a new warehouse)."""
    for person in ("ann", "bob", "cid"):
        export(night.raw / "cm" / person / "jan.csv", ["2025-01-01", "2025-01-02"], 100, 1e9)
    night.ingest()
    assert night.check() == (0, None)
    assert night.listed() == []


def test_a_night_checks_only_the_files_it_loaded(tmp_path: Path) -> None:
    night = Night(tmp_path)
    history(night)
    export(night.raw / "cm" / "ann" / "feb.csv", ["2025-02-01"], 80, 2e9)
    export(night.raw / "cm" / "bob" / "feb.csv", ["2025-02-01"], 90, 2e9)
    night.ingest()
    new = {night.file_id("cm/ann/feb.csv"), night.file_id("cm/bob/feb.csv")}
    assert {f for _, f in night.listed()} == new
    assert night.check() == (0, 2)
    assert night.listed() == []  # passed: forgotten
    # Nothing loaded since: nothing to read.
    night.ingest()
    assert night.check() == (0, 0)


def test_a_duplicate_among_the_rows_a_night_loads_fails(tmp_path: Path) -> None:
    night = Night(tmp_path)
    history(night)
    export(night.raw / "cm" / "ann" / "feb.csv", ["2025-02-01"], 80, 2e9)
    night.ingest()
    feb = night.file_id("cm/ann/feb.csv")
    night.plant(feb, "2025-02-01")
    assert night.check() == (1, 1)
    # A failure keeps the list: the next night fails again until the duplicate is gone.
    export(night.raw / "cm" / "cid" / "feb.csv", ["2025-02-01"], 70, 2e9)
    night.ingest()
    assert night.check() == (1, 2)
    with night.warehouse.write() as conn:  # the repeated line's rows go, one comes back
        conn.execute(
            "CREATE TEMP TABLE once AS SELECT DISTINCT * FROM stg_cm WHERE file_id = ? AND line "
            "IN (SELECT line FROM stg_cm WHERE file_id = ? GROUP BY line HAVING count(*) > 1)",
            [feb, feb],
        )
        store_writes.forget(
            conn, "stg_cm", "(t.file_id, t.line) IN (SELECT (file_id, line) FROM once)"
        )
        with store_writes.appending(conn, "stg_cm") as add:
            add(conn.execute("SELECT * FROM once").pl())
    assert night.check() == (0, 2)


def test_a_new_row_that_repeats_an_older_row_of_its_file_fails(tmp_path: Path) -> None:
    """ann's January loses 01-02 to a February export; when that export is deleted, 01-02 comes
    back from January. A bug that loaded one of January's 01-01 lines again with it (a row older
    than the night, of the same file) must be caught, though only 01-02 was settled again."""
    night = Night(tmp_path)
    history(night)
    export(night.raw / "cm" / "ann" / "feb.csv", ["2025-01-02", "2025-02-01"], 200, 2e9)
    night.ingest()
    assert night.check() == (0, 1)
    (night.raw / "cm" / "ann" / "feb.csv").unlink()
    night.ingest()
    jan = night.file_id("cm/ann/jan.csv")
    assert [f for _, f in night.listed()] == [jan]  # re-settled rows of the old file
    night.plant(jan, "2025-01-01")  # 01-01 was not settled again: an old row of jan
    assert night.check() == (1, 1)


def test_a_full_rebuild_or_a_missing_list_checks_everything(tmp_path: Path) -> None:
    night = Night(tmp_path)
    history(night)
    # A duplicate in a file already checked is out of the nightly check's reach by design ...
    night.plant(night.file_id("cm/bob/jan.csv"), "2025-01-01")
    assert night.check() == (0, 0)
    # ... but a warehouse without the list (written before it existed) is scanned in full,
    with night.warehouse.write() as conn:
        conn.execute(f"DROP TABLE {LINES_TO_CHECK}")
    assert night.check() == (1, None)
    # and the first ingest that creates the list asks for one full scan too.
    night.ingest()
    assert (None, None) in night.listed()
    assert night.check() == (1, None)


def test_the_dagster_check_reads_the_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real asset check, in a real job: passes, then fails on a planted duplicate."""
    from pipelines.definitions import defs

    project = tmp_path / "project"
    raw = project / "data" / "raw"
    project.mkdir()
    (project / "sources.yaml").write_text(
        "sources:\n  - name: cm\n    kind: diet\n    format: cronometer_servings\n"
        "    path: cm/*/*.csv\n    person: {from_folder: true}\n"
    )
    export(raw / "cm" / "ann" / "jan.csv", ["2025-01-01", "2025-01-02"], 100, 1e9)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    warehouse = Project(project).warehouse()

    def run(*keys: str) -> list[dg.AssetCheckEvaluation]:
        job = defs().resolve_job_def("refresh_all")
        with dg.DagsterInstance.ephemeral() as instance:
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(k) for k in keys],
                tags=all_partitions_tags(Project(project)),
            )
        return [
            e
            for e in result.get_asset_check_evaluations()
            if e.check_name == "diet_entries_unique_lines"
        ]

    [first] = run("ingest_cm", "diet_entries")
    assert first.passed and first.metadata["files_checked"].value == "all"
    export(raw / "cm" / "ann" / "feb.csv", ["2025-02-01"], 80, 2e9)
    [second] = run("ingest_cm", "diet_entries")
    assert second.passed and second.metadata["files_checked"].value == 1
    # A night's ingest whose check did not run (another job), then a bug's duplicate in its rows:
    # the next check still reads that night's file.
    export(raw / "cm" / "ann" / "mar.csv", ["2025-03-01"], 60, 3e9)
    assert run("ingest_cm") == []
    with warehouse.write() as conn:
        with store_writes.appending(conn, "stg_cm") as add:
            add(conn.execute("SELECT * FROM stg_cm WHERE day = DATE '2025-03-01' LIMIT 1").pl())
    [third] = run("diet_entries")
    assert not third.passed
    assert third.metadata["duplicate_keys"].value == 1
    assert third.metadata["files_checked"].value == 1


def test_a_first_build_is_checked_in_passes_that_fit_the_memory_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first build checks every (file, line) key. At 50 M rows one GROUP BY of them overflowed
    DuckDB's memory limit (it does not spill far enough); grouped in passes that split the files,
    the same check fits, and counts every duplicate, whichever pass its file falls in."""
    path = str(tmp_path / "keys.duckdb")
    with duckdb.connect(path) as conn:
        conn.execute(
            "CREATE TABLE t AS SELECT sha256((i // 500)::VARCHAR) AS file_id, "
            "(i % 500)::BIGINT AS line FROM range(1000000) r(i)"
        )
        conn.execute(
            "INSERT INTO t SELECT file_id, line FROM t WHERE line = 7 AND file_id IN "
            "(SELECT DISTINCT file_id FROM t ORDER BY file_id LIMIT 3)"
        )
    with duckdb.connect(path, config={"memory_limit": "30MB"}) as conn:
        monkeypatch.setattr(accounting, "ROWS_PER_PASS", 10_000_000)
        with pytest.raises(duckdb.OutOfMemoryException):
            check_unique_lines(conn, "t", [])
        monkeypatch.setattr(accounting, "ROWS_PER_PASS", 200_000)
        assert check_unique_lines(conn, "t", []) == (3, None)


def test_diet_daily_one_row_per_day_is_checked_shard_by_shard(tmp_path: Path) -> None:
    """diet_daily's "one row per person and day" groups a store shard at a time (its memory a
    shard's, issue 19) and still finds a day repeated in another part of the same shard, and
    only that one; a table without a repeat passes."""
    from datetime import date

    from pipelines.defs.features.checks import diet_daily_unique_days
    from pipelines.store import SHARDS, replace_all, rewrite, shard_of

    people = [f"person-{i}" for i in range(12)]
    assert len({shard_of(p, SHARDS) for p in people}) > 3
    days = pl.DataFrame(
        {
            "person_id": [p for p in people for _ in range(3)],
            "day": [date(2025, 1, d) for _ in people for d in (1, 2, 3)],
            "entries": [2] * 3 * len(people),
        }
    )
    project = Project(tmp_path / "p")
    project.ensure_dirs()
    warehouse = project.warehouse()
    with warehouse.write() as conn:
        replace_all(conn, "diet_daily", days)
        assert diet_daily_unique_days(conn).passed
        # person-5's 2 January again, in a new part of their shard (a rewrite that drops nothing).
        again = days.filter((pl.col("person_id") == "person-5") & (pl.col("day").dt.day() == 2))
        rewrite(conn, "diet_daily", "false", again, people="SELECT 'person-5' AS person_id")
        result = diet_daily_unique_days(conn)
    assert not result.passed
    assert result.metadata["duplicate_days"].value == 1
