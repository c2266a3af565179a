"""Warehouse backups: a copy before each nightly run, the last N kept, restore, and healing.

Backups live in `data/processed/backups/warehouse-<UTC timestamp>.duckdb`. They are plain DuckDB
files, each self-contained (taken through DuckDB, commits still in the warehouse's `.wal`
included; see `Warehouse.snapshot`): `duckdb -readonly <backup>` opens one for a look before
restoring it. Beside each, `warehouse-<UTC timestamp>.store/` holds the Parquet store of the
per-person tables as it was (hard links to the store's files, which are never changed in place;
see `pipelines.store`). The oldest backup, once rotated out, is kept as `.warehouse.duckdb.spare`,
which the next backup rewrites where it differs instead of copying the whole warehouse anew.

A warehouse file DuckDB cannot open (truncated by a full disk, overwritten) heals at the start of
the next run (`heal`): it is moved aside, and the newest backup that opens takes its place, or,
with none, the run starts from an empty warehouse. Everything in it derives from data/raw/, and the
incremental state (which file was read, what each step last saw) lives in the warehouse too, so
the run re-reads whatever the restored copy lacks, or everything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pipelines.store import beside as store_beside
from pipelines.store_copies import remove_tree
from pipelines.warehouse import Warehouse, file_damage

PREFIX = "warehouse-"


def backup_dir(warehouse: Warehouse) -> Path:
    return warehouse.path.parent / "backups"


def list_backups(warehouse: Warehouse) -> list[Path]:
    """Backups, oldest first."""
    folder = backup_dir(warehouse)
    return sorted(folder.glob(f"{PREFIX}*.duckdb")) if folder.exists() else []


def take_backup(warehouse: Warehouse, keep: int) -> Path | None:
    """Back the warehouse up into the backup folder and keep only the newest `keep` backups;
    None when there is no warehouse yet."""
    folder = backup_dir(warehouse)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    dest = folder / f"{PREFIX}{stamp}.duckdb"
    if not warehouse.snapshot(dest):
        return None
    for old in list_backups(warehouse)[:-keep] if keep > 0 else []:
        # The backup rotated out is where the next one starts from (`Warehouse.snapshot`).
        warehouse.retire(old)
        remove_tree(store_beside(old))
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


def backup_time(backup: Path) -> str:
    """When a backup was taken, from its name: `2026-12-03 02:00 UTC`."""
    try:
        taken = datetime.strptime(backup.stem.removeprefix(PREFIX), "%Y%m%dT%H%M%S%fZ")
    except ValueError:
        return backup.name
    return f"{taken:%Y-%m-%d %H:%M} UTC"


def heal(warehouse: Warehouse) -> str | None:
    """When the warehouse file cannot be opened, move it aside and put the newest backup that
    opens in its place (else nothing, so the run rebuilds it from data/raw/). Returns the one line
    that says which, or None when the warehouse opens (or does not exist yet)."""
    reason = warehouse.damage()
    if reason is None:
        return None
    aside = warehouse.move_aside()
    reason = reason.replace(str(warehouse.path), warehouse.path.name)
    moved = f"The warehouse could not be opened ({reason}); moved it to {aside}"
    for backup in reversed(list_backups(warehouse)):
        if file_damage(backup) is None:
            warehouse.restore(backup)
            return (
                f"{moved} and restored the backup of {backup_time(backup)}; this run re-reads "
                "from data/raw/ what changed since"
            )
    return f"{moved}; no backup opened cleanly, so everything is rebuilt from data/raw/"
