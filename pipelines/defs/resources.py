"""The one resource every asset uses: the project on disk (config, raw files, warehouse).

It also makes each run atomic and exclusive:
- Runs are serialised by a run lock held from the run's start to its end, whoever launched them
  (the daemon's schedule or sensor, `gutsignal run`, the UI): steps of two runs never interleave.
- Every step commits its own transaction, so on its own a run that fails half-way would leave new
  ingest tables next to old analysis tables. The resource snapshots the warehouse when a run
  starts, the `restore_warehouse_on_failure` hook marks the run as failed, and at the end of a
  failed run the snapshot is put back: the warehouse is exactly as it was before the run.
- A run killed outright (kill -9, power cut) leaves its snapshot behind; the next run finds it and
  restores it before doing anything, so the half-finished run leaves no trace.
- A warehouse file DuckDB cannot open (truncated, overwritten) is moved aside and replaced by the
  newest backup that opens, or rebuilt from data/raw/ (`pipelines.backups.heal`); one log line
  says which.
- Nightly (scheduled) runs also keep a backup copy (`pipelines.backups`).
"""

from pathlib import Path

import dagster as dg
from filelock import FileLock, Timeout
from pydantic import PrivateAttr

from pipelines.backups import heal, take_backup
from pipelines.config import ProjectConfig
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.warehouse import Warehouse

# A nightly refresh of a large cohort can take a while; a second run waits rather than fails.
RUN_LOCK_TIMEOUT_S = 6 * 3600


def _log(context: dg.InitResourceContext, message: str) -> None:
    if context.log is not None:
        context.log.warning(message)


class ProjectResource(dg.ConfigurableResource):
    """The gutsignal project directory, from $GUTSIGNAL_PROJECT_DIR."""

    project_dir: str

    _run_lock: FileLock | None = PrivateAttr(default=None)
    _snapshot: Path | None = PrivateAttr(default=None)
    _had_warehouse: bool = PrivateAttr(default=False)
    _failed: bool = PrivateAttr(default=False)

    @property
    def project(self) -> Project:
        return Project(Path(self.project_dir).resolve())

    def config(self) -> ProjectConfig:
        return self.project.config()

    def warehouse(self) -> Warehouse:
        return self.project.warehouse()

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Sensors and schedules also initialise resources; only runs take a snapshot.
        if context.run_id is None or context.dagster_run is None:
            return
        processed = self.project.processed_dir
        processed.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(processed / "run.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            _log(context, "another gutsignal run is in progress; waiting for it to finish")
            lock.acquire(timeout=RUN_LOCK_TIMEOUT_S)
        self._run_lock = lock
        warehouse = self.warehouse()
        for leftover in sorted(processed.glob("warehouse.run-*.duckdb")):
            # Only a killed run leaves its snapshot: we hold the run lock, nobody else is running.
            _log(context, f"a previous run was interrupted; restoring {leftover.name}")
            warehouse.restore(leftover)
            leftover.unlink()
        healed = heal(warehouse)
        if healed is not None:
            _log(context, healed)
        if context.dagster_run.tags.get("dagster/schedule_name"):
            take_backup(warehouse, keep=self.config().settings.backups_keep)
        self._snapshot = processed / f"warehouse.run-{context.run_id[:8]}.duckdb"
        self._had_warehouse = warehouse.snapshot(self._snapshot)

    def mark_failed(self) -> None:
        self._failed = True

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._snapshot is None:
            return
        try:
            if self._failed:
                if self._had_warehouse:
                    self.warehouse().restore(self._snapshot)
                else:
                    self.warehouse().path.unlink(missing_ok=True)
            self._snapshot.unlink(missing_ok=True)
        finally:
            if self._run_lock is not None:
                self._run_lock.release()


@dg.failure_hook(required_resource_keys={"project"})
def restore_warehouse_on_failure(context: dg.HookContext) -> None:
    """Any failed step makes the run roll the warehouse back when it ends."""
    context.resources.project.mark_failed()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"project": ProjectResource(project_dir=dg.EnvVar(PROJECT_DIR_ENV))}
    )
