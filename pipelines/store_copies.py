"""Copies of the store for the run's snapshot and the backups (`pipelines.runs`,
`pipelines.backups`, `Warehouse.snapshot` and `restore`).

A part file is never changed in place (`pipelines.store`), so a copy of the store is a tree of
hard links: cheap, and it keeps the files its own warehouse copy names, whatever the live store
removes later. A write's staging folders are left out: their files are not part of any table.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from pipelines.store import STAGING_PREFIX


def link_tree(src: Path, dest: Path) -> None:
    """A copy of the store `src` at `dest` made of hard links (its files are never changed in
    place); a file copy where the filesystem refuses a link. Nothing when `src` does not exist."""
    remove_tree(dest)
    if not src.exists():
        return
    partial = dest.with_name(f".{dest.name}.partial")
    remove_tree(partial)
    shutil.copytree(src, partial, copy_function=_link_or_copy, ignore=_staging_folders)
    os.replace(partial, dest)


def put_back(snapshot: Path, root: Path) -> None:
    """Make the store at `root` hold exactly what the store snapshot `snapshot` holds (nothing
    when there is none: a snapshot of a warehouse from before the store)."""
    incoming = root.with_name(f".{root.name}.restoring")
    outgoing = root.with_name(f".{root.name}.replaced")
    remove_tree(incoming)
    remove_tree(outgoing)
    if snapshot.exists():
        shutil.copytree(snapshot, incoming, copy_function=_link_or_copy, ignore=_staging_folders)
    if root.exists():
        os.replace(root, outgoing)
    if incoming.exists():
        os.replace(incoming, root)
    remove_tree(outgoing)


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _link_or_copy(src: str, dest: str) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)


def _staging_folders(_folder: str, names: Iterable[str]) -> list[str]:
    return [n for n in names if n.startswith(STAGING_PREFIX)]
