"""The ingest of some person shards (`pipelines.ingest.scope`, the ingest assets partitioned by
shard): a run parses, forgets and records only the files of its shards' people, sees the others
as they were last ingested, and runs that together cover every shard leave the tables a run of
every shard would."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pipelines.config import PersonSpec, SourceConfig
from pipelines.defs.partitions import partition_range_tags
from pipelines.ingest import SyncResult, sync_source
from pipelines.ingest.files import LISTING_SCHEMA
from pipelines.ingest.scope import Selection, select_files, touches
from pipelines.project import PROJECT_DIR_ENV
from pipelines.store import SHARDS, shard_of
from pipelines.warehouse import Warehouse
from tests.test_incremental_ingest import CountingFormat
from tests.test_ingest import LABS

FIXTURES = Path(__file__).parent / "fixtures"

# alice is in shard 2 (partition shards-00-03), bob in 12 (shards-12-15).
FIRST, LAST = range(0, 4), range(12, 16)
PORTAL = SourceConfig(
    name="portal", kind="labs", format="fhir", path="fhir/*.json", person=PersonSpec()
)


def test_the_people_are_in_the_shards_the_tests_say() -> None:
    assert (shard_of("alice", SHARDS), shard_of("bob", SHARDS)) == (2, 12)


def labs(raw: Path, name: str, rows: list[tuple[str, str, float]], mtime: float) -> None:
    """A lab CSV of (patient, collected, CRP) rows, with a rejected row (no value) per patient."""
    path = raw / "labs" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{p},{when},CRP,{value},mg/L" for p, when, value in rows]
    lines += [f"{p},2025-03-01 08:00,CRP,,mg/L" for p in sorted({p for p, _, _ in rows})]
    path.write_text("Patient,Collected,Test,Result,Units\n" + "\n".join(lines) + "\n")
    os.utime(path, (mtime, mtime))


def sync(
    warehouse: Warehouse, raw: Path, shards: range | None = None, source: SourceConfig = LABS
) -> SyncResult:
    with warehouse.write() as conn:
        return sync_source(conn, source, raw, shards=shards)


def tables(warehouse: Warehouse, source: str = "labs") -> dict[str, pl.DataFrame]:
    """The ingest's tables as stored (order included), less the run's clock and each batch's
    row numbers (`_row`: where a row sat in its parse batch, which depends on how the files
    were cut into runs; the order it gives is the stored order compared here)."""
    return {
        "raw": warehouse.query(f"SELECT * EXCLUDE (_row) FROM raw_{source}"),
        "staging": warehouse.query(f"SELECT * EXCLUDE (_row) FROM stg_{source}"),
        "files": warehouse.query("SELECT * EXCLUDE (ingested_at) FROM ingest_files"),
        "rejects": warehouse.query("SELECT * FROM rejected_rows"),
        "state": warehouse.query(
            "SELECT * EXCLUDE (ingested_at) FROM ingest_state ORDER BY file_id"
        ),
    }


def assert_as_one_run_of_all(warehouse: Warehouse, raw: Path, tmp_path: Path) -> None:
    fresh = Warehouse(tmp_path / "fresh" / "warehouse.duckdb")
    sync(fresh, raw)
    got, want = tables(warehouse), tables(fresh)
    for name in want:
        assert got[name].equals(want[name]), f"{name}\n{got[name]}\n!=\n{want[name]}"
    shutil.rmtree(tmp_path / "fresh")


def test_two_runs_of_some_shards_each_parse_their_own_and_together_equal_one_of_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, warehouse = tmp_path / "raw", Warehouse(tmp_path / "warehouse.duckdb")
    counting = CountingFormat(monkeypatch, "csv")
    labs(raw, "a.csv", [("alice", "2025-01-01 08:00", 1.5)], 1e9)
    labs(raw, "b.csv", [("bob", "2025-01-02 08:00", 2.5)], 1.1e9)

    first = sync(warehouse, raw, FIRST)
    assert counting.files == ["a.csv"]
    assert (first.files_parsed, first.files_deferred) == (1, 1)
    assert warehouse.query("SELECT path FROM ingest_files")["path"].to_list() == ["labs/a.csv"]
    assert warehouse.query("SELECT DISTINCT person_id FROM stg_labs")["person_id"].to_list() == [
        "alice"
    ]

    counting.batches.clear()
    second = sync(warehouse, raw, LAST)
    assert counting.files == ["b.csv"]
    assert (second.files_parsed, second.files_deferred) == (1, 0)
    assert_as_one_run_of_all(warehouse, raw, tmp_path)

    counting.batches.clear()
    assert sync(warehouse, raw).files_parsed == 0  # every shard: nothing left to read
    assert counting.files == []


def test_a_removed_file_leaves_only_with_a_run_of_its_shards(tmp_path: Path) -> None:
    raw, warehouse = tmp_path / "raw", Warehouse(tmp_path / "warehouse.duckdb")
    labs(raw, "a.csv", [("alice", "2025-01-01 08:00", 1.5)], 1e9)
    labs(raw, "b.csv", [("bob", "2025-01-02 08:00", 2.5)], 1.1e9)
    sync(warehouse, raw)
    before = tables(warehouse)
    (raw / "labs" / "b.csv").unlink()

    result = sync(warehouse, raw, FIRST)
    assert (result.files_parsed, result.files_deferred) == (0, 1)
    after = tables(warehouse)
    for name in before:  # bob's file is neither forgotten nor counted as removed
        assert after[name].equals(before[name]), name

    result = sync(warehouse, raw, LAST)
    assert (result.files_parsed, result.files_deferred) == (0, 0)
    assert warehouse.query("SELECT path FROM ingest_files")["path"].to_list() == ["labs/a.csv"]
    assert_as_one_run_of_all(warehouse, raw, tmp_path)


@pytest.mark.parametrize("order", ["new shard first", "old shard first"])
def test_a_changed_file_whose_person_moved_shard(tmp_path: Path, order: str) -> None:
    """The old version's rows leave with a run of the old shard, the new version's arrive with
    a run of the new one; in between, each run sees the other version as it was."""
    raw, warehouse = tmp_path / "raw", Warehouse(tmp_path / "warehouse.duckdb")
    labs(raw, "x.csv", [("alice", "2025-01-01 08:00", 1.5)], 1e9)
    labs(raw, "y.csv", [("alice", "2025-01-05 08:00", 3.0)], 1e9)
    sync(warehouse, raw)
    labs(raw, "x.csv", [("bob", "2025-01-01 08:00", 1.5)], 1.2e9)  # a typo fixed: it was bob

    def people() -> list[str]:
        return warehouse.query("SELECT person_id FROM stg_labs ORDER BY ALL")["person_id"].to_list()

    if order == "new shard first":
        assert sync(warehouse, raw, LAST).files_parsed == 1
        assert people() == ["alice", "alice", "bob"]  # alice's x.csv waits for her shards
        paths = warehouse.query("SELECT path FROM ingest_files ORDER BY ALL")["path"].to_list()
        assert paths == ["labs/x.csv", "labs/x.csv", "labs/y.csv"]
        assert sync(warehouse, raw, FIRST).files_parsed == 0
    else:
        assert sync(warehouse, raw, FIRST).files_parsed == 0
        assert people() == ["alice"]  # the old version is gone, bob's waits for his shards
        assert sync(warehouse, raw, LAST).files_parsed == 1
    assert people() == ["alice", "bob"]
    assert_as_one_run_of_all(warehouse, raw, tmp_path)


def test_a_file_of_unknown_or_several_shards_is_read_by_any_run_of_one_of_them(
    tmp_path: Path,
) -> None:
    """FHIR names its people only in the parse: any run reads it, and its rows land in their own
    shards. A file of alice and bob is read whole by a run of either's shards."""
    raw, warehouse = tmp_path / "raw", Warehouse(tmp_path / "warehouse.duckdb")
    (raw / "fhir").mkdir(parents=True)
    shutil.copy(FIXTURES / "fhir" / "bundle.json", raw / "fhir" / "b.json")
    portal = Warehouse(tmp_path / "portal" / "warehouse.duckdb")
    result = sync(portal, raw, range(5, 6), PORTAL)
    assert (result.files_parsed, result.files_deferred, result.rows_loaded > 0) == (1, 0, True)
    assert sync(portal, raw, range(0, 1), PORTAL).files_parsed == 0

    labs(raw, "ab.csv", [("alice", "2025-01-01 08:00", 1.5), ("bob", "2025-01-01 08:00", 2.0)], 1e9)
    assert sync(warehouse, raw, range(8, 12)).files_parsed == 0  # neither's shards
    assert sync(warehouse, raw, LAST).files_parsed == 1
    assert sync(warehouse, raw, FIRST).files_parsed == 0
    assert_as_one_run_of_all(warehouse, raw, tmp_path)


def test_touches_and_what_a_selection_keeps() -> None:
    scope = frozenset(FIRST)
    assert touches(None, scope) and touches(frozenset(), scope)
    assert touches(frozenset({3, 9}), scope) and not touches(frozenset({12}), scope)

    def files(*rows: tuple[str, str, int]) -> pl.DataFrame:
        """A listing of (path, file_id, day of January) rows, in order."""
        return pl.DataFrame(
            [
                (order, path, file_id, file_id, 1, datetime(2025, 1, day))
                for order, (path, file_id, day) in enumerate(rows)
            ],
            schema=LISTING_SCHEMA,
            orient="row",
        )

    # a.csv is stored and current; x.csv was alice's (X1, stored) and is now bob's (X2, new).
    listing = files(("a.csv", "A", 1), ("x.csv", "X2", 3))
    recorded = files(("x.csv", "X1", 2))

    def select(scope: range) -> Selection:
        return select_files(
            listing,
            {"A"},
            {"X2": frozenset({12})},
            {"X1": frozenset({2})},
            recorded,
            frozenset(scope),
        )

    bobs = select(LAST)  # bob's version is read, alice's kept as recorded, in time order
    assert bobs.listing.select("file_id", "order").rows() == [("A", 0), ("X1", 1), ("X2", 2)]
    assert bobs.listing["path"].to_list() == ["a.csv", "x.csv", "x.csv"]
    assert (bobs.kept, bobs.deferred) == ({"X1"}, 1)
    alices = select(FIRST)  # alice's version is forgotten, bob's waits
    assert alices.listing["file_id"].to_list() == ["A"]
    assert (alices.kept, alices.deferred) == (frozenset(), 1)
    everyone = select(range(SHARDS))  # nothing left: the listing as it was
    assert everyone.listing.equals(listing) and everyone.deferred == 0


def test_the_ingest_asset_runs_the_shards_of_its_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.definitions import defs

    project = tmp_path / "project"
    raw = project / "data" / "raw"
    project.mkdir()
    (project / "sources.yaml").write_text(
        "sources:\n  - name: labs\n    kind: labs\n    format: csv\n    path: labs/*.csv\n"
        "    person: {column: Patient}\n"
        "    columns: {collected_at: Collected, marker: Test, value: Result, unit: Units}\n"
        '    datetime_format: "%Y-%m-%d %H:%M"\n'
    )
    labs(raw, "a.csv", [("alice", "2025-01-01 08:00", 1.5)], 1e9)
    labs(raw, "b.csv", [("bob", "2025-01-02 08:00", 2.5)], 1.1e9)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project))
    key = dg.AssetKey("ingest_labs")

    def run(first: str, last: str) -> tuple[int, int]:
        job = defs().resolve_job_def("refresh_all")
        result = job.execute_in_process(
            instance=instance, asset_selection=[key], tags=partition_range_tags(first, last)
        )
        assert result.success
        (event,) = result.asset_materializations_for_node("ingest_labs")[-1:]
        return int(event.metadata["files_parsed"].value), int(  # type: ignore[arg-type]
            event.metadata["files_deferred"].value  # type: ignore[arg-type]
        )

    with dg.DagsterInstance.ephemeral() as instance:
        assert run("shards-12-15", "shards-12-15") == (1, 1)
        assert run("shards-00-03", "shards-00-03") == (1, 0)
        assert run("shards-00-03", "shards-12-15") == (0, 0)
