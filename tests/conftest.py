"""Shared fixtures: a demo project built once per session, in a temp folder, for real.

`make test` runs the suite in one pytest-xdist worker process per core (the Makefile says why
--dist worksteal). A session fixture is then built once per worker that needs it, and tests run
beside a neighbour: a test writes only under its tmp_path (or tmp_path_factory), never the
checkout; each test has its own DAGSTER_HOME (`_isolated_project_env`); a port is asked of the
OS (port 0), never fixed; and a test that compares timings compares two runs in its own process
(best of several), never against a fixed number of seconds.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest

from pipelines.cli import DEMO_SOURCES_YAML
from pipelines.defs.partitions import all_partitions_tags
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.reports.inputs import DashboardInputs
from pipelines.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[1]


def make_demo_project(root: Path) -> Project:
    from pipelines.demo import generate_demo

    project = Project(root)
    project.ensure_dirs()
    generate_demo(root, seed=42)
    project.sources_yaml.write_text(DEMO_SOURCES_YAML, encoding="utf-8")
    return project


def copy_project(built: Project, root: Path) -> Project:
    """A copy at `root` of a project a complete run has built: the state "after an earlier run"
    without running it again (a full run is the costliest thing in the suite). The files keep
    their mtimes (the ingest's memo of sizes and mtimes sees nothing new), and one read-write
    connection points the warehouse's views at the copy's store, as the first run in a moved
    project folder would (`pipelines.store`, `attach`). `built` is only read."""
    shutil.copytree(built.root, root, dirs_exist_ok=True)
    project = Project(root)
    with project.warehouse().write():
        pass
    return project


# A run of the job alone (no schedule, sensor, daemon or second process reads its instance) is
# run on an in-memory Dagster instance (`DagsterInstance.ephemeral`, what `gutsignal run` uses
# without DAGSTER_HOME): the same job and events, without a SQLite event log that opens,
# commits and closes a database file per event (a quiet run of the demo: 13.7 s on disk, 8.4 s
# in memory). The tests of schedules, sensors and executors keep an instance on disk.


def refresh_all(
    root: Path, monkeypatch: pytest.MonkeyPatch, report: dict[str, str | tuple[str, ...]]
) -> dict[str, object]:
    """Run the real refresh_all job on the project at `root`; return, per asset in `report`,
    the value of the named metadata field of its materialization (what the step says it did),
    or a tuple of the values of a tuple of fields."""
    from pipelines.definitions import defs

    monkeypatch.setenv(PROJECT_DIR_ENV, str(root))
    with dg.DagsterInstance.ephemeral() as instance:
        job = defs().resolve_job_def("refresh_all")
        result = job.execute_in_process(
            instance=instance, tags=all_partitions_tags(Project.from_env())
        )
        assert result.success
        done = {}
        for key, field in report.items():
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None and event.asset_materialization is not None
            metadata = event.asset_materialization.metadata
            done[key] = (
                tuple(metadata[f].value for f in field)
                if isinstance(field, tuple)
                else metadata[field].value
            )
    return done


def everyone_in_frames(data: DashboardInputs) -> DashboardInputs:
    """`data` (as `load_dashboard_inputs` reads it, the person tables a group at a time) with
    every person's rows in its frames, read as one group: the inputs as a caller that builds
    them from frames hands them over (`people` None)."""
    assert data.people is not None
    rows = data.people.read(data.people.ids)
    cohort = data.associations
    if "scope" in cohort.columns:
        cohort = cohort.filter(pl.col("scope").ne_missing("person"))
    return replace(
        data,
        people=None,
        persons=rows.persons,
        diet_daily=rows.diet_daily,
        # Every column of their draws: the cohort-wide read has only the cohort page's.
        marker_draws=rows.marker_draws,
        marker_trends=rows.marker_trends,
        # The cohort findings, then every person finding: the order of a read of them all.
        associations=pl.concat([cohort, rows.associations], how="diagonal_relaxed"),
        exposure_windows=data.people.windows(data.people.ids),
        data_sufficiency=rows.data_sufficiency,
        biometrics=rows.biometrics,
        daily_effects=rows.daily_effects,
    )


def sorted_tables(project: Project, names: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    """Warehouse tables sorted by every column: comparable whatever order the rows were written."""
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        out = {}
        for name in names:
            df = conn.execute(f"SELECT * FROM {name}").pl()
            out[name] = df.sort(df.columns, nulls_last=True)
    return out


def report_line(config: pytest.Config, line: str) -> None:
    """Show `line` in the terminal, even with -q. In an xdist worker the line goes to the
    controller (with the worker's output) and is shown in the summary at the end."""
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput.setdefault("report_lines", []).append(line)
        return
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


_WORKER_LINES: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist, in the controller: keep the lines a worker passed to `report_line`."""
    _WORKER_LINES.extend(getattr(node, "workeroutput", {}).get("report_lines", []))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _WORKER_LINES:
        terminalreporter.write_line(line)


# The files whose tests take most of a worker's time (full pipeline runs, subprocesses, the tiny
# benchmark), with their rough cost in seconds on one CI worker (`--durations`). Only the order
# and the ratios matter; a file left out counts as light. Measure again when a file's cost
# changes a lot (`PYTEST_ADDOPTS=--durations=80 make test`, summed per file).
HEAVY_FILES = {
    "test_reliability.py": 200,
    "test_page_shards.py": 110,
    "test_shards.py": 110,
    "test_nightly_work.py": 85,
    "test_incremental_people.py": 75,
    "test_bench_smoke.py": 70,
    "test_executors.py": 50,
    "test_incremental_days.py": 45,
    "test_incremental_whole.py": 45,
}


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With N xdist workers: put the heavy files first in each worker's share, spread so the
    shares' heavy seconds are even.

    --dist worksteal gives the first worker the first len(items) // N tests, the next the next
    share, and so on, and a worker that runs dry steals the tail of another's queue. A heavy file
    at the end of a share (as alphabetical order left test_reliability.py) is then the last thing
    running, the other worker idle; first in its share, it runs while the light tests around it
    are shared out. A file's tests stay together, in their order: its module fixtures are built
    once. Every worker collects the same items and computes the same order (xdist requires it)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2 or len(items) < workers:
        return
    sizes, left = [], len(items)
    for remaining in range(workers, 0, -1):  # xdist's split: len(pending) // nodes_remaining
        sizes.append(left // remaining)
        left -= sizes[-1]
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(item.path.name, []).append(item)
    heavy = sorted((name for name in by_file if name in HEAVY_FILES), key=lambda n: -HEAVY_FILES[n])
    shares: list[list[pytest.Item]] = [[] for _ in sizes]
    load = [0] * workers
    for name in heavy:  # the heaviest first, each to the share with the least so far that fits
        fits = [i for i in range(workers) if len(shares[i]) + len(by_file[name]) <= sizes[i]]
        if not fits:
            return  # a share too small for a whole file (a -k run): keep the collected order
        target = min(fits, key=lambda i: load[i])
        shares[target].extend(by_file[name])
        load[target] += HEAVY_FILES[name]
    light = iter(item for item in items if item.path.name not in HEAVY_FILES)
    for share, size in zip(shares, sizes, strict=True):
        share.extend(next(light) for _ in range(size - len(share)))
    items[:] = [item for share in shares for item in share]


@pytest.fixture(autouse=True)
def _isolated_project_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test may read the developer's own project, or write the checkout's Dagster instance,
    by accident.

    `make test` exports DAGSTER_HOME=<checkout>/.dagster_home (the Makefile does for every
    target), so a `gutsignal run` inside a test would record its run in the checkout's instance
    and claim the "duckdb_writer" pool slot there; the suite runs in two worker processes, which
    would then share that SQLite instance and its one slot. Each test gets a home of its own
    with the project's dagster.yaml, so the CLI still runs on an instance on disk set up as a
    user's (tests that want no home, or another one, monkeypatch it themselves)."""
    if not os.environ.get("GUTSIGNAL_KEEP_PROJECT_ENV"):
        monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path / "no-project"))
    home = tmp_path_factory.mktemp("dagster_home")  # beside tmp_path: tests list what is in it
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))


class DemoRun:
    def __init__(self, project: Project, result: dg.ExecuteInProcessResult) -> None:
        self.project = project
        self.result = result


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoRun]:
    """The whole pipeline, materialized once on the demo into a temp DuckDB file."""
    project = make_demo_project(tmp_path_factory.mktemp("demo"))
    previous = os.environ.get(PROJECT_DIR_ENV)
    os.environ[PROJECT_DIR_ENV] = str(project.root)
    try:
        from pipelines.definitions import defs

        with dg.DagsterInstance.ephemeral() as instance:
            job = defs().resolve_job_def("refresh_all")
            result = job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                tags=all_partitions_tags(Project.from_env()),
            )
            yield DemoRun(project, result)
    finally:
        if previous is None:
            os.environ.pop(PROJECT_DIR_ENV, None)
        else:
            os.environ[PROJECT_DIR_ENV] = previous


@pytest.fixture
def warehouse(tmp_path: Path) -> Warehouse:
    """An empty warehouse file: the dashboards step keeps its plans' records there."""
    w = Warehouse(tmp_path / "warehouse.duckdb")
    with w.write():
        pass
    return w
