"""The one resource every asset uses: the project on disk (config, raw files, warehouse).

The resource holds no state of its own: its only field is the project directory, and every
connection is opened and closed by the step that needs it. What makes a run exclusive and
all-or-nothing (the run lock, the snapshot put back after a failed step, healing, nightly
backups) is `pipelines.runs.guarded_run`, which the resource enters once per run, whoever
launched it: the schedule, the sensor, `gutsignal run` or a materialisation from the UI. A step
failed when the run's event log holds a STEP_FAILURE for it; Dagster has written every step's
outcome there by the time the resource is torn down, so no hook has to be attached anywhere.

That holds when the run's steps share one process. With a process per step (the multiprocess
and Dask executors, `settings.executor`) each step initialises the resource; the executor holds
the guard for the whole run then (defs/executors.py), and a step finding it held enters nothing.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from pipelines.config import ProjectConfig
from pipelines.defs.executors import run_had_failed_step
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.runs import guarded_run, is_guarded
from pipelines.warehouse import Warehouse


def _failed_so_far(context: dg.InitResourceContext) -> bool:
    if context.run is None or context.instance is None:
        return False
    return run_had_failed_step(context.instance, context.run.run_id)


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
        run = context.run
        if run is None:
            yield self
            return
        if is_guarded(self.project, run.run_id):
            # A step process of a run whose orchestrating process holds the guard.
            yield self
            return

        def log(message: str) -> None:
            if context.log is not None:
                context.log.warning(message)

        with guarded_run(
            self.project,
            run.run_id,
            scheduled=bool(run.tags.get("dagster/schedule_name")),
            failed=lambda: _failed_so_far(context),
            log=log,
        ):
            yield self


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"project": ProjectResource(project_dir=dg.EnvVar(PROJECT_DIR_ENV))}
    )
