"""The one resource every asset uses: the project on disk (config, raw files, warehouse).

It also makes each run atomic. Every step commits its own transaction, so on its own a run that
fails half-way would leave new ingest tables next to old analysis tables. The resource therefore
snapshots the warehouse when a run starts, the `restore_warehouse_on_failure` hook marks the run
as failed, and at the end of a failed run the snapshot is put back: the warehouse is exactly as
it was before the run.
"""

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

from pipelines.config import ProjectConfig
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.warehouse import Warehouse


class ProjectResource(dg.ConfigurableResource):
    """The gutsignal project directory, from $GUTSIGNAL_PROJECT_DIR."""

    project_dir: str

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
        self._snapshot = self.project.processed_dir / f"warehouse.run-{context.run_id[:8]}.duckdb"
        self._had_warehouse = self.warehouse().snapshot(self._snapshot)

    def mark_failed(self) -> None:
        self._failed = True

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._snapshot is None:
            return
        if self._failed:
            if self._had_warehouse:
                self.warehouse().restore(self._snapshot)
            else:
                self.warehouse().path.unlink(missing_ok=True)
        self._snapshot.unlink(missing_ok=True)


@dg.failure_hook(required_resource_keys={"project"})
def restore_warehouse_on_failure(context: dg.HookContext) -> None:
    """Any failed step makes the run roll the warehouse back when it ends."""
    context.resources.project.mark_failed()


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"project": ProjectResource(project_dir=dg.EnvVar(PROJECT_DIR_ENV))}
    )
