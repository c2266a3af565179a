"""Warehouse backups: a copy before each nightly run, the last N kept, and restore.

Backups live in `data/processed/backups/warehouse-<UTC timestamp>.duckdb`. They are plain DuckDB
files: `duckdb -readonly <backup>` opens one for a look before restoring it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipelines.warehouse import Warehouse

PREFIX = "warehouse-"


def backup_dir(warehouse: Warehouse) -> Path:
    return warehouse.path.parent / "backups"


def list_backups(warehouse: Warehouse) -> list[Path]:
    """Backups, oldest first."""
    folder = backup_dir(warehouse)
    return sorted(folder.glob(f"{PREFIX}*.duckdb")) if folder.exists() else []


def take_backup(warehouse: Warehouse, keep: int) -> Path | None:
    """Copy the warehouse into the backup folder and keep only the newest `keep` copies."""
    folder = backup_dir(warehouse)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest = folder / f"{PREFIX}{stamp}.duckdb"
    if not warehouse.snapshot(dest):
        return None
    for old in list_backups(warehouse)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return dest


def restore_backup(warehouse: Warehouse, name: str | None = None) -> Path:
    """Put a backup back in place: the named one (file name or path), else the newest."""
    backups = list_backups(warehouse)
    if not backups:
        raise FileNotFoundError(f"no backups in {backup_dir(warehouse)}")
    if name is None:
        chosen = backups[-1]
    else:
        matches = [b for b in backups if b.name == Path(name).name]
        if not matches:
            known = ", ".join(b.name for b in backups)
            raise FileNotFoundError(f"no backup named {name!r}; available: {known}")
        chosen = matches[0]
    warehouse.restore(chosen)
    return chosen
