"""The one resource every asset uses: the project on disk (config, raw files, warehouse).

The resource holds no state of its own: its only field is the project directory, and every
connection is opened and closed by the step that needs it. What makes a run exclusive and
all-or-nothing (the run lock, the snapshot put back after a failed step, healing, nightly
backups) is `pipelines.runs.guarded_run`, which the resource enters once per run, whoever
launched it: the schedule, the sensor, `gutsignal run` or a materialisation from the UI. A step
failed when the run's event log holds a STEP_FAILURE for it; Dagster has written every step's
outcome there by the time the resource is torn down, so no hook has to be attached anywhere.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from pipelines.config import ProjectConfig
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.runs import guarded_run
from pipelines.warehouse import Warehouse


def run_had_failed_step(context: dg.InitResourceContext) -> bool:
    """Whether any step of the context's run has failed so far."""
    if context.run_id is None or context.instance is None:
        return False
    failures = context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    return bool(failures)


class ProjectResource(dg.ConfigurableResource):
    """The gutsignal project directory, from $GUTSIGNAL_PROJECT_DIR."""

    project_dir: str

    @property
    def project(self) -> Project:
        return Project(Path(self.project_dir).resolve())

    def config(self) -> ProjectConfig:
        return self.project.config()

    def warehouse(self) -> Warehouse:
        return self.project.warehouse()

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator["ProjectResource"]:
        # Sensors and schedules also initialise resources; only runs are guarded.
        if context.run_id is None or context.dagster_run is None:
            yield self
            return

        def log(message: str) -> None:
            if context.log is not None:
                context.log.warning(message)

        with guarded_run(
            self.project,
            context.run_id,
            scheduled=bool(context.dagster_run.tags.get("dagster/schedule_name")),
            failed=lambda: run_had_failed_step(context),
            log=log,
        ):
            yield self


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"project": ProjectResource(project_dir=dg.EnvVar(PROJECT_DIR_ENV))}
    )
