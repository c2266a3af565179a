"""The first step of an ingest: a source's files, listed oldest first and hashed.

A file's identity (`file_id`) is a hash of its source, its bytes and the person its path names;
`HashMemo` keeps the hashes of unchanged files between runs, so a nightly listing costs what the
new files cost.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipelines.config import SourceConfig


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class HashMemo:
    """sha256 per file, remembered with the size and modification time it was computed for.

    Hashing 1 GB of history every night would be work that grows with history; a file whose size
    and mtime are unchanged keeps its hash. Kept beside the warehouse, not in it: it describes the
    files, whatever state the warehouse is in.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: dict[str, list] = {}
        if path is not None and path.exists():
            try:
                self.known = json.loads(path.read_text())
            except (OSError, ValueError):
                self.known = {}  # a damaged memo only costs re-hashing

    def sha256(self, path: Path, rel_path: str, stat: os.stat_result | None = None) -> str:
        """The file's sha256; `stat`, when the caller has it, saves asking for it again."""
        stat = stat or path.stat()
        known = self.known.get(rel_path)
        if known and known[0] == stat.st_size and known[1] == stat.st_mtime_ns:
            return str(known[2])
        sha = sha256_of(path)
        self.known[rel_path] = [stat.st_size, stat.st_mtime_ns, sha]
        return sha

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.known))
            tmp.replace(self.path)


@dataclass(frozen=True)
class FileInfo:
    order: int  # position among the source's files, oldest first: the newest file wins
    path: Path
    rel_path: str
    sha256: str
    file_id: str
    size_bytes: int
    modified_at: datetime


def file_identity(source: SourceConfig, path: Path, sha: str) -> str:
    """What makes two files the same input: their bytes, and the person their path says they
    belong to (with `person: {from_folder: true}`, the same bytes in two people's folders are two
    people's days, not a copy)."""
    owner = source.person.for_file(path) or ""
    return hashlib.sha256(f"{source.name}\0{sha}\0{owner}".encode()).hexdigest()[:16]


def list_files(
    source: SourceConfig, raw_dir: Path, memo: HashMemo, paths: list[Path] | None = None
) -> list[FileInfo]:
    """The source's files (`paths`, when the caller has globbed them), oldest first
    (modification time, then path), hashed."""
    paths = source.files(raw_dir) if paths is None else paths
    stats = sorted(((p.stat(), str(p), p) for p in paths), key=lambda s: (s[0].st_mtime, s[1]))
    # The glob's paths all start with raw_dir: cutting the prefix off is what relative_to does,
    # at a fraction of its cost per file (tens of thousands of files are listed every night).
    prefix = os.path.join(str(raw_dir), "")
    out = []
    for order, (stat, text, path) in enumerate(stats):
        rel_path = (
            text[len(prefix) :] if text.startswith(prefix) else str(path.relative_to(raw_dir))
        )
        sha = memo.sha256(path, rel_path, stat)
        out.append(
            FileInfo(
                order=order,
                path=path,
                rel_path=rel_path,
                sha256=sha,
                file_id=file_identity(source, path, sha),
                size_bytes=stat.st_size,
                modified_at=datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None),
            )
        )
    return out
