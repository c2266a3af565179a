"""A gutsignal project on disk: where its configuration, raw files, warehouse and dashboards live.

<project>/sources.yaml
<project>/data/raw/            exports as dropped by the user (read only)
<project>/data/processed/      warehouse.duckdb
<project>/data/store/          the per-person tables as Parquet by person shard (pipelines.store)
<project>/dashboards/          generated HTML
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipelines.config import ProjectConfig, parse_project_config
from pipelines.warehouse import Warehouse

PROJECT_DIR_ENV = "GUTSIGNAL_PROJECT_DIR"


def load_project_config(path: Path) -> ProjectConfig:
    """Parse and check sources.yaml at `path` against the registered formats.

    Here, above both, because the adapters import `pipelines.config` and config imports no
    adapter; the formats' facts (`pipelines.adapters.Format`) are handed to config."""
    # Imported on use: the adapters load every format's parser, which commands that read no
    # sources.yaml do not need.
    from pipelines.adapters import FORMATS

    return parse_project_config(path, FORMATS)


@dataclass(frozen=True)
class Project:
    root: Path

    @classmethod
    def from_env(cls) -> Project:
        """The project named by $GUTSIGNAL_PROJECT_DIR, or the current directory."""
        return cls(Path(os.environ.get(PROJECT_DIR_ENV) or Path.cwd()).resolve())

    @property
    def sources_yaml(self) -> Path:
        return self.root / "sources.yaml"

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def processed_dir(self) -> Path:
        return self.root / "data" / "processed"

    @property
    def dashboards_dir(self) -> Path:
        return self.root / "dashboards"

    @property
    def warehouse_path(self) -> Path:
        return self.processed_dir / "warehouse.duckdb"

    def warehouse(self) -> Warehouse:
        return Warehouse(self.warehouse_path, store=self.root / "data" / "store")

    def config(self) -> ProjectConfig:
        return load_project_config(self.sources_yaml)

    def ensure_dirs(self) -> None:
        for d in (self.raw_dir, self.processed_dir, self.dashboards_dir):
            d.mkdir(parents=True, exist_ok=True)
