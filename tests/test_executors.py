"""The same `refresh_all` job on three executors (`settings.executor` in sources.yaml): in one
process, with a process per step, and on a Dask cluster (distributed.LocalCluster, two worker
processes). Each run gets its own copy of the demo project and its own persistent Dagster
instance, and each must leave exactly the warehouse the single-process run leaves.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from distributed import Client, LocalCluster

from pipelines.cli import main
from pipelines.definitions import defs, refresh_all_job
from pipelines.defs.partitions import all_partitions_tags
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.steps import pages
from pipelines.steps.page_shards import PEOPLE_STEP, SHARDS_STEP
from tests.conftest import REPO, make_demo_project

# What may differ between two runs on the same files; every other column of every table and
# view must be equal, row for row.
# - `ingested_at`: the wall-clock time each file was read (the run's time, nothing more).
# - `store_parts.file`: a part file's name is unique (a uuid), new on every write.
IGNORED_COLUMNS = {
    "ingest_files": ("ingested_at",),
    "ingest_state": ("ingested_at",),
    "store_parts": ("file",),
    # The key the source freshness is kept under, and the versions a step's inputs and kept
    # counts are recorded under (`pipelines.identity`), hash the part files' names.
    "page_freshness": ("key",),
    "input_memos": ("version",),
    "step_inputs": ("version",),
}
# - `person_inputs.salt` of the dashboards step's two plans (pages and section files): a hash of
#   what every page (section) shares, which includes the absolute path of the dashboards folder
#   (files written elsewhere are not the ones the step knows about), so it differs between two
#   project copies by design. The other steps' salts are compared: they hold the settings, which
#   must not see the executor.
IGNORED_SALT_STEPS = (pages.STEP, pages.SECTION_STEP)
# - the person-page step's shard and person states (`page_shards`): hashes of the part files'
#   names or of the people's rows, and of the salts above.
IGNORED_FINGERPRINT_STEPS = (SHARDS_STEP, PEOPLE_STEP)
FILES_MTIME = 1_790_000_000  # 2026-09-21
# Dagster mirrors a step's output into its compute log with a `tail` subprocess; on a Dask worker
# whose stdout is a file (as under CI) that `tail` never ends, and each step waited 60 s for it.
# The runs here keep no compute logs (README: running on Dask).
NO_COMPUTE_LOGS = {
    "compute_logs": {
        "module": "dagster._core.storage.noop_compute_log_manager",
        "class": "NoOpComputeLogManager",
    }
}


@contextmanager
def project_env(root: Path) -> Iterator[None]:
    """$GUTSIGNAL_PROJECT_DIR for a module-scoped fixture (monkeypatch is per test)."""
    previous = os.environ.get(PROJECT_DIR_ENV)
    os.environ[PROJECT_DIR_ENV] = str(root)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROJECT_DIR_ENV, None)
        else:
            os.environ[PROJECT_DIR_ENV] = previous


def demo_with_executor(root: Path, executor: str | None) -> Project:
    """The demo project, its sources.yaml choosing the executor (None: the default)."""
    project = make_demo_project(root)
    # The same files, to the modification time `ingest_files` records: the copies are only
    # written a few seconds apart.
    for path in project.raw_dir.rglob("*"):
        os.utime(path, (FILES_MTIME, FILES_MTIME))
    if executor is not None:
        text = project.sources_yaml.read_text(encoding="utf-8")
        assert text.count("settings:\n") == 1
        text = text.replace("settings:\n", f"settings:\n  executor: {executor}\n")
        project.sources_yaml.write_text(text, encoding="utf-8")
    return project


def reconstructable_job(project: Project) -> dg.ReconstructableJob:
    return dg.build_reconstructable_job(
        "pipelines.definitions", "refresh_all_job", reconstructable_args=(str(project.root),)
    )


def run_refresh_all(
    project: Project,
    dagster_home: Path,
    succeed: bool = True,
    groups: tuple[str, ...] = (),
) -> dg.ExecuteJobResult:
    """The job as Dagster launches it, reconstructable by every step process, on a persistent
    instance of its own (step processes and Dask workers open it from its reference); only the
    assets of `groups` when given."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    job = reconstructable_job(project)
    with project_env(project.root):
        graph = defs().resolve_asset_graph()
    selection = sorted(dg.AssetSelection.groups(*groups).resolve(graph)) if groups else None
    with (
        project_env(project.root),
        dg.instance_for_test(temp_dir=str(dagster_home), overrides=NO_COMPUTE_LOGS) as instance,
        dg.execute_job(
            job,
            instance=instance,
            asset_selection=selection,
            tags=all_partitions_tags(Project.from_env()),
        ) as result,
    ):
        if succeed:
            assert result.success, [e.message for e in result.all_events if e.is_failure]
        return result


def step_pids(result: dg.ExecuteJobResult) -> set[int]:
    return {e.pid for e in result.all_events if e.is_step_start and e.pid is not None}


def warehouse_tables(project: Project) -> dict[str, pl.DataFrame]:
    """Every table and view, less the ignored columns, sorted by every column."""
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables ORDER BY table_name"
            ).fetchall()
        ]
        tables = {name: conn.execute(f'SELECT * FROM "{name}"').pl() for name in names}
    out = {}
    for name, df in tables.items():
        df = df.drop(IGNORED_COLUMNS.get(name, ()))
        if name == "person_inputs":
            df = df.with_columns(
                pl.when(pl.col("step").is_in(IGNORED_SALT_STEPS))
                .then(None)
                .otherwise(pl.col("salt"))
                .alias("salt"),
                pl.when(pl.col("step").is_in(IGNORED_FINGERPRINT_STEPS))
                .then(None)
                .otherwise(pl.col("fingerprint"))
                .alias("fingerprint"),
            )
        out[name] = df.sort(df.columns, nulls_last=True)
    return out


def assert_same_warehouse(
    got: Project, expected: Project, tables: tuple[str, ...] | None = None
) -> None:
    """`got`'s warehouse equals `expected`'s: every table, or the named `tables`."""
    assert not list(got.processed_dir.glob("warehouse.run-*.duckdb")), "a snapshot was left"
    assert not list(got.processed_dir.glob("run-*.guarded")), "a run's guard mark was left"
    have, want = warehouse_tables(got), warehouse_tables(expected)
    if tables is None:
        assert sorted(have) == sorted(want)
        # Not equal because both are empty: the demo fills every table of the data flow.
        tables = ("diet_entries", "lab_results", "diet_daily", "marker_draws", "associations")
    else:
        want = {name: want[name] for name in tables}
    for name in tables:
        assert want[name].height > 0, name
    for name, df in want.items():
        assert have[name].schema == df.schema, name
        differing = [c for c in df.columns if not have[name][c].equals(df[c])]
        assert not differing, (name, differing)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("in_process")
    project = demo_with_executor(root / "project", None)
    result = run_refresh_all(project, root / "dagster_home")
    # Every step in this very process: the resource held the run guard.
    assert step_pids(result) == {os.getpid()}
    return project


def test_the_default_executor_is_in_process(in_process: Project) -> None:
    with project_env(in_process.root):
        assert refresh_all_job().executor_def.name == "in_process"


def test_gutsignal_run_needs_a_dagster_home_for_other_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = demo_with_executor(tmp_path / "project", "{kind: multiprocess}")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    assert main(["run", "--project-dir", str(project.root)]) == 2
    assert "set DAGSTER_HOME" in capsys.readouterr().err
    assert not project.warehouse_path.exists()


# The multiprocess run covers ingest and the canonical tables: a process per step costs about
# 4 s each, so the whole job took 80 s of the suite; the Dask test below runs it all.
MULTIPROCESS_GROUPS = ("ingest", "warehouse")
MULTIPROCESS_TABLES = ("ingest_files", "diet_entries", "lab_results", "persons")


def test_multiprocess_executor_writes_the_same_warehouse(
    in_process: Project, tmp_path: Path
) -> None:
    project = demo_with_executor(tmp_path / "project", "{kind: multiprocess}")
    with project_env(project.root):
        assert refresh_all_job().executor_def.name == "multiprocess"
    result = run_refresh_all(project, tmp_path / "dagster_home", groups=MULTIPROCESS_GROUPS)
    pids = step_pids(result)
    assert len(pids) > 1 and os.getpid() not in pids
    assert_same_warehouse(project, in_process, MULTIPROCESS_TABLES)


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[LocalCluster]:
    # The workers start before any project exists and know nothing of it: the job's pointer
    # names the folder (`refresh_all_job(project_dir)`), which they share with us.
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster


def dask_project(root: Path, cluster: LocalCluster) -> Project:
    scheduler = cluster.scheduler_address
    return demo_with_executor(root, f'{{kind: dask, scheduler: "{scheduler}"}}')


def test_dask_executor_on_a_cluster_writes_the_same_warehouse(
    in_process: Project,
    dask_cluster: LocalCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    project = dask_project(tmp_path / "project", dask_cluster)
    with project_env(project.root):
        assert refresh_all_job().executor_def.name == "dask"
    # As a user runs it: `gutsignal run` reads settings.executor and submits the job.
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    # The project's instance settings with the compute logs README asks of Dask runs: each
    # worker stores its steps' events through the project's event log (`pipelines.event_log`).
    settings = (REPO / "dagster.yaml").read_text(encoding="utf-8")
    (dagster_home / "dagster.yaml").write_text(
        f"{settings}\ncompute_logs: {json.dumps(NO_COMPUTE_LOGS['compute_logs'])}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    # As README sets up a worker: DAGSTER_HOME in its environment (the event log's folder).
    home = str(dagster_home)
    with Client(dask_cluster) as client:
        client.run(lambda: os.environ.update(DAGSTER_HOME=home))
    assert main(["run", "--project-dir", str(project.root)]) == 0, capsys.readouterr().err
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        pids = {
            e.dagster_event.pid
            for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
            if e.dagster_event is not None
        }
    with Client(dask_cluster) as client:
        workers = set(client.run(os.getpid).values())
    assert len(workers) == 2
    assert pids and pids <= workers, (pids, workers)
    assert_same_warehouse(project, in_process)

    # All or nothing across the workers: a new person's diary goes through every step up to
    # the person pages, which then fail (their folder is a file); the run's guard, held by the
    # executor in this process, puts back the warehouse of before the run.
    before = warehouse_tables(project)
    dave = project.raw_dir / "demo" / "cronometer" / "dave"
    dave.mkdir()
    shutil.copy(dave.parent / "alice" / "servings.csv", dave / "servings.csv")
    shutil.rmtree(project.dashboards_dir)
    project.dashboards_dir.write_text("not a folder", encoding="utf-8")
    failed = run_refresh_all(project, tmp_path / "dagster_home", succeed=False)
    assert not failed.success
    outcomes = {
        e.step_key: e.event_type_value
        for e in failed.all_events
        if e.is_step_success or e.is_step_failure
    }
    assert outcomes["person_pages"] == "STEP_FAILURE"
    assert outcomes["diet_entries"] == outcomes["associations"] == "STEP_SUCCESS"
    after = warehouse_tables(project)
    assert sorted(after) == sorted(before)
    for name, df in before.items():
        assert after[name].equals(df), name
    assert not list(project.processed_dir.glob("warehouse.run-*.duckdb"))
    assert not list(project.processed_dir.glob("run-*.guarded"))
