"""A run is exclusive and all-or-nothing for the warehouse (`pipelines.runs.guarded_run`),
checked on a real DuckDB file without Dagster."""

from __future__ import annotations

from pathlib import Path

import pytest
from filelock import FileLock

from pipelines.cli import DEMO_SOURCES_YAML
from pipelines.project import Project
from pipelines.runs import guarded_run, is_guarded
from pipelines.warehouse import Warehouse


def project_with_rows(root: Path, *values: int) -> Project:
    project = Project(root)
    project.ensure_dirs()
    project.sources_yaml.write_text(DEMO_SOURCES_YAML, encoding="utf-8")
    with project.warehouse().write() as conn:
        conn.execute("CREATE TABLE t (v INTEGER)")
        for v in values:
            conn.execute("INSERT INTO t VALUES (?)", [v])
    return project


def rows(project: Project) -> list[int]:
    return sorted(project.warehouse().table("t")["v"].to_list())


def add(project: Project, value: int) -> None:
    with project.warehouse().write() as conn:
        conn.execute("INSERT INTO t VALUES (?)", [value])


def run(project: Project, failed: bool, logs: list[str] | None = None, scheduled: bool = False):
    return guarded_run(
        project,
        "abcdef0123",
        scheduled=scheduled,
        failed=lambda: failed,
        log=(logs if logs is not None else []).append,
    )


def leftovers(project: Project) -> list[Path]:
    return list(project.processed_dir.glob("warehouse.run-*.duckdb"))


def lock_is_free(project: Project) -> bool:
    lock = FileLock(str(project.processed_dir / "run.lock"))
    lock.acquire(timeout=0)
    lock.release()
    return True


def test_a_run_with_a_failed_step_puts_the_warehouse_back(tmp_path: Path) -> None:
    project = project_with_rows(tmp_path, 1)
    with run(project, failed=True):
        add(project, 2)
        assert rows(project) == [1, 2]
    assert rows(project) == [1]
    assert not leftovers(project) and lock_is_free(project)


def test_a_run_without_failures_keeps_its_writes(tmp_path: Path) -> None:
    project = project_with_rows(tmp_path, 1)
    with run(project, failed=False):
        add(project, 2)
    assert rows(project) == [1, 2]
    assert not leftovers(project) and lock_is_free(project)


def test_a_run_that_raises_is_put_back_and_the_error_goes_on(tmp_path: Path) -> None:
    project = project_with_rows(tmp_path, 1)
    with pytest.raises(RuntimeError, match="disk full"), run(project, failed=False):
        add(project, 2)
        raise RuntimeError("disk full")
    assert rows(project) == [1]
    assert not leftovers(project) and lock_is_free(project)


def test_a_first_run_that_fails_leaves_no_half_built_warehouse(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.ensure_dirs()
    project.sources_yaml.write_text(DEMO_SOURCES_YAML, encoding="utf-8")
    with run(project, failed=True):
        with project.warehouse().write() as conn:
            conn.execute("CREATE TABLE t AS SELECT 1 AS v")
    assert not project.warehouse().path.exists()


def test_failure_is_asked_once_every_step_has_ended(tmp_path: Path) -> None:
    project = project_with_rows(tmp_path, 1)
    asked: list[list[int]] = []

    def failed() -> bool:
        asked.append(rows(project))
        return True

    with guarded_run(project, "abcdef0123", scheduled=False, failed=failed, log=lambda _: None):
        add(project, 2)
        assert asked == []
    assert asked == [[1, 2]]  # asked after the body, before the warehouse was put back
    assert rows(project) == [1]


def test_an_interrupted_runs_snapshot_is_restored_before_anything_else(tmp_path: Path) -> None:
    project = project_with_rows(tmp_path, 1)
    # A run killed outright left its snapshot (of the warehouse holding 1) and a half-done write.
    project.warehouse().snapshot(project.processed_dir / "warehouse.run-deadbeef.duckdb")
    add(project, 99)
    logs: list[str] = []
    with run(project, failed=False, logs=logs):
        assert rows(project) == [1]
    assert any("interrupted" in line and "run-deadbeef" in line for line in logs)
    assert not leftovers(project)


def test_a_scheduled_run_keeps_a_backup_first(tmp_path: Path) -> None:
    project = project_with_rows(tmp_path, 1)
    backups = project.processed_dir / "backups"
    with run(project, failed=False, scheduled=False):
        pass
    assert not list(backups.glob("*.duckdb"))
    with run(project, failed=False, scheduled=True):
        add(project, 2)
    (backup,) = backups.glob("warehouse-*.duckdb")
    assert Warehouse(backup).table("t")["v"].to_list() == [1]


def test_a_scheduled_runs_snapshot_is_its_backup_and_a_failure_restores_it(
    tmp_path: Path,
) -> None:
    """One copy of the warehouse per scheduled run: the snapshot is a second name for the
    backup's file. A failed step puts the warehouse back from it, and the backup stays."""
    project = project_with_rows(tmp_path, 1)
    with run(project, failed=True, scheduled=True):
        (backup,) = (project.processed_dir / "backups").glob("warehouse-*.duckdb")
        (snapshot,) = leftovers(project)
        assert snapshot.stat().st_ino == backup.stat().st_ino
        add(project, 2)
    assert rows(project) == [1]
    assert not leftovers(project)
    assert Warehouse(backup).table("t")["v"].to_list() == [1]


def test_the_guard_marks_its_run_for_the_step_processes(tmp_path: Path) -> None:
    project = project_with_rows(tmp_path, 1)
    # A mark left by a killed run must not make a later run's steps think they are guarded.
    stale = project.processed_dir / "run-0000dead.guarded"
    stale.touch()
    assert not is_guarded(project, "abcdef0123")
    with run(project, failed=False):
        assert is_guarded(project, "abcdef0123")
        assert not is_guarded(project, "0000dead") and not stale.exists()
    assert not is_guarded(project, "abcdef0123")
    assert not list(project.processed_dir.glob("run-*.guarded"))


def test_a_runs_snapshot_is_kept_as_the_next_runs_spare(tmp_path: Path) -> None:
    project = project_with_rows(tmp_path, 1)
    warehouse = project.warehouse()
    spare = warehouse.spare(project.processed_dir)
    with run(project, failed=False):
        assert not spare.exists()  # it became this run's snapshot
        add(project, 2)
    assert spare.exists() and not leftovers(project)
    with run(project, failed=True):
        add(project, 3)
    assert rows(project) == [1, 2]  # the spare was brought up to the second run's start


def test_a_damaged_spare_still_gives_an_exact_snapshot(tmp_path: Path) -> None:
    """A refresh killed half-way, or anything else written over the spare, is compared away."""
    project = project_with_rows(tmp_path, 1, 2)
    spare = project.warehouse().spare(project.processed_dir)
    with run(project, failed=False):
        pass
    size = spare.stat().st_size
    spare.write_bytes(b"\0" * (size // 2) + b"garbage" * 100_000)
    with run(project, failed=True):
        (snapshot,) = leftovers(project)
        assert snapshot.read_bytes() == project.warehouse().path.read_bytes()
        add(project, 3)
    assert rows(project) == [1, 2]


def test_a_scheduled_runs_snapshot_never_becomes_the_spare(tmp_path: Path) -> None:
    """It is the backup under a second name: a spare is rewritten in place."""
    project = project_with_rows(tmp_path, 1)
    with run(project, failed=False, scheduled=True):
        add(project, 2)
    (backup,) = (project.processed_dir / "backups").glob("warehouse-*.duckdb")
    assert backup.stat().st_nlink == 1
    assert not project.warehouse().spare(project.processed_dir).exists()
    assert Warehouse(backup).table("t")["v"].to_list() == [1]
