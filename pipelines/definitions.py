"""The Dagster code location: every module under `pipelines/defs/` is loaded automatically."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

import pipelines.defs
from pipelines.defs.executors import executor_for
from pipelines.progress import progress_logger
from pipelines.project import PROJECT_DIR_ENV, Project


@dg.definitions
def defs() -> dg.Definitions:
    # The ingest assets are built from sources.yaml at load time, so the project directory must be
    # known now; default to the working directory, as `dg dev` runs from the project root.
    os.environ.setdefault(PROJECT_DIR_ENV, str(Path.cwd()))
    return dg.Definitions.merge(
        # `load_defs` (deprecated) rather than `load_from_defs_folder`, which needs the project's
        # pyproject.toml above the package: an installed package, or the benchmark's snapshot of
        # pipelines/, has none. pyproject's filterwarnings lets this one deprecation through.
        dg.load_defs(pipelines.defs, project_root=Path(__file__).resolve().parent.parent),
        dg.Definitions(
            # `settings.executor` in sources.yaml, for the jobs' and the UI's "Materialize" alike.
            # By default every run in one process: DuckDB allows one writer and the steps are
            # quick (a subprocess per step cost about 7 s each). Multiprocess and Dask runs hold
            # the run guard in the executor (defs/executors.py).
            executor=executor_for(Project.from_env()),
            # Used by `gutsignal run` only; runs from the UI keep Dagster's default logger.
            loggers={"progress": progress_logger},
        ),
    )


def refresh_all_job(project_dir: str | None = None) -> dg.JobDefinition:
    """The `refresh_all` job of the project in `project_dir` (default: $GUTSIGNAL_PROJECT_DIR or
    the working directory), for `dg.build_reconstructable_job`.

    Every step process (multiprocess, a Dask worker) imports this module and calls this with the
    same arguments to load the job. With the folder among them, a step runs on its run's project
    whatever the process's environment holds: a forkserver's children inherit the environment of
    the server's start, and a Dask worker outlives many runs. The arguments also key Dagster's
    cache of loaded jobs, which would otherwise hand one project's job to another's run."""
    if project_dir is not None:
        os.environ[PROJECT_DIR_ENV] = project_dir
    return defs().resolve_job_def("refresh_all")
