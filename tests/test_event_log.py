"""The project's Dagster event log (`pipelines.event_log`, named in dagster.yaml): the same run
history as Dagster's own SQLite class, read and written through connections kept open."""

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from pipelines.event_log import OPEN_FILES, KeptOpenSqliteEventLogStorage

REPO = Path(__file__).resolve().parents[1]


@dg.asset
def upstream() -> int:
    return 1


@dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="downstream")])
def downstream(context: dg.AssetExecutionContext, upstream: int) -> Iterator[object]:
    context.log.info("a line of the run's log")
    yield dg.Output(upstream + 1, metadata={"rows": upstream + 1})
    yield dg.AssetCheckResult(passed=upstream + 1 > 0)


JOB = dg.define_asset_job("two_assets")
DEFS = dg.Definitions(assets=[upstream, downstream], jobs=[JOB])


def dagster_home(path: Path, project_settings: bool) -> Path:
    """An instance folder with the project's dagster.yaml, or with Dagster's defaults."""
    path.mkdir(parents=True)
    if project_settings:
        shutil.copyfile(REPO / "dagster.yaml", path / "dagster.yaml")
    return path


@contextmanager
def instance_at(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The instance as Dagster's CLI, UI and daemon open it: from DAGSTER_HOME."""
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        yield instance


def run(instance: dg.DagsterInstance) -> str:
    result = DEFS.resolve_job_def("two_assets").execute_in_process(instance=instance)
    assert result.success
    return result.run_id


def history(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str | None]]:
    """A run's events as the UI lists them: type and step, in order."""
    return [
        (e.dagster_event_type.value if e.dagster_event_type else "LOG", e.step_key)
        for e in instance.all_logs(run_id)
    ]


@contextmanager
def sqlite_connections() -> Iterator[list[str]]:
    """The file of every SQLite connection opened meanwhile, through any SQLAlchemy engine."""
    opened: list[str] = []

    def count(dbapi_connection: object, _record: object) -> None:
        assert isinstance(dbapi_connection, sqlite3.Connection)
        (path,) = [row[2] for row in dbapi_connection.execute("PRAGMA database_list")]
        opened.append(path)

    event.listen(Engine, "connect", count)
    try:
        yield opened
    finally:
        event.remove(Engine, "connect", count)


def event_log(files: list[str]) -> list[str]:
    """The event log's files (`history/runs/*.db`) among `files`."""
    return [f for f in files if Path(f).parent.name == "runs" and f.endswith(".db")]


def open_run_files(instance: dg.DagsterInstance) -> list[str]:
    """The run files (not the index) of the instance's event log this process has open."""
    runs = os.path.join(instance.root_directory, "history", "runs")
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    return sorted(
        t
        for t in targets
        if t.startswith(runs) and ".db" in t and not os.path.basename(t).startswith("index.")
    )


def test_the_projects_instance_stores_a_run_as_dagsters_own_class_does_through_open_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with instance_at(dagster_home(tmp_path / "default", False), monkeypatch) as instance:
        assert type(instance.event_log_storage).__name__ == "SqliteEventLogStorage"
        run(instance)  # the files made, so both runs below store into files that exist
        with sqlite_connections() as dagsters:
            theirs = history(instance, run(instance))
    with instance_at(dagster_home(tmp_path / "project", True), monkeypatch) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, KeptOpenSqliteEventLogStorage)
        assert Path(storage._base_dir) == tmp_path / "project" / "history" / "runs"
        run(instance)
        with sqlite_connections() as ours:
            run_id = run(instance)
        # The same events, stored and read back in the same order.
        assert history(instance, run_id) == theirs
        assert len(theirs) > 20
        latest = instance.get_latest_materialization_event(dg.AssetKey("downstream"))
        assert latest is not None and latest.run_id == run_id
        assert latest.asset_materialization is not None
        assert latest.asset_materialization.metadata["rows"].value == 2
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("downstream"), "positive")]
        )
        assert check[dg.AssetCheckKey(dg.AssetKey("downstream"), "positive")].run_id == run_id
    # Dagster's class opened a connection to its files for every event, and more; this one a
    # few to set up the run's new file, then that file's and the index's, kept open.
    assert len(event_log(dagsters)) > len(theirs)
    assert len(event_log(ours)) < 10, ours


def test_history_written_by_dagsters_own_class_is_read_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's instance from before: the same files, read by the project's class."""
    home = dagster_home(tmp_path / "home", False)
    with instance_at(home, monkeypatch) as instance:
        run_id = run(instance)
        before = history(instance, run_id)
        (latest,) = instance.fetch_materializations(dg.AssetKey("downstream"), limit=1).records
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    with instance_at(home, monkeypatch) as instance:
        assert isinstance(instance.event_log_storage, KeptOpenSqliteEventLogStorage)
        assert history(instance, run_id) == before
        (again,) = instance.fetch_materializations(dg.AssetKey("downstream"), limit=1).records
        assert again.storage_id == latest.storage_id and again.run_id == run_id
        # And the runs after it carry on the same history.
        later = run(instance)
        assert [r.dagster_run.run_id for r in instance.get_run_records()] == [later, run_id]


def test_only_the_files_used_last_stay_open_and_a_wipe_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with instance_at(dagster_home(tmp_path / "home", True), monkeypatch) as instance:
        runs = [run(instance) for _ in range(OPEN_FILES + 3)]
        for run_id in runs:  # as the UI reads one run after another
            assert history(instance, run_id)
        still_open = open_run_files(instance)
        assert 0 < len({t.split(".db")[0] for t in still_open}) <= OPEN_FILES, still_open
        instance.wipe()
        assert not instance.get_run_records()
        assert open_run_files(instance) == []
        assert not list((tmp_path / "home" / "history" / "runs").glob("*-*.db"))


def test_an_instance_opened_from_another_folder_is_refused_with_both_folders_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The event log's folder comes from DAGSTER_HOME: opened another way, it would be another
    instance's history."""
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home(tmp_path / "set", True)))
    elsewhere = dagster_home(tmp_path / "elsewhere", True)
    with pytest.raises(dg.DagsterInvariantViolationError) as error:
        dg.DagsterInstance.from_config(str(elsewhere))
    assert str(elsewhere) in str(error.value) and str(tmp_path / "set") in str(error.value)
    assert "DAGSTER_HOME" in str(error.value)
