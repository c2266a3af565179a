"""The one resource every asset uses: the project on disk (config, raw files, warehouse)."""

from pathlib import Path

import dagster as dg

from pipelines.config import ProjectConfig
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.warehouse import Warehouse


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


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(
        resources={"project": ProjectResource(project_dir=dg.EnvVar(PROJECT_DIR_ENV))}
    )
