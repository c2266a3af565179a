"""The Dagster code location: every module under `pipelines/defs/` is loaded automatically."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg

import pipelines.defs
from pipelines.progress import progress_logger
from pipelines.project import PROJECT_DIR_ENV


@dg.definitions
def defs() -> dg.Definitions:
    # The ingest assets are built from sources.yaml at load time, so the project directory must be
    # known now; default to the working directory, as `dg dev` runs from the project root.
    os.environ.setdefault(PROJECT_DIR_ENV, str(Path.cwd()))
    return dg.Definitions.merge(
        dg.load_defs(pipelines.defs, project_root=Path(__file__).resolve().parent.parent),
        dg.Definitions(
            # Every run in one process, the jobs' and the UI's "Materialize" alike: DuckDB allows
            # one writer, the steps are quick (a subprocess per step cost about 7 s each), and
            # the run guard (defs/resources.py) is entered once for the whole run.
            executor=dg.in_process_executor,
            # Used by `gutsignal run` only; runs from the UI keep Dagster's default logger.
            loggers={"progress": progress_logger},
        ),
    )
