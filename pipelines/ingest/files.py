"""The first step of an ingest: a source's files, listed oldest first and hashed.

The listing is one frame, a row per file (`LISTING_SCHEMA`), not a Python object per file: a
source can hold tens of thousands of files, listed every run, and a `Path`, a record and a memo
entry per file came to about 2 KB each, which made the ingest's memory grow with the history
(issue 19). A file's identity (`file_id`) is a hash of its source, its bytes and the person its
path names; `HashMemo` keeps the hashes of unchanged files between runs, so a nightly listing
costs what the new files cost.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from pipelines.config import SourceConfig
from pipelines.schema import conform

LISTING_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "order": pl.Int64,  # position among the source's files, oldest first: the newest file wins
    "path": pl.String,  # relative to data/raw/, as `ingest_files` records it
    "sha256": pl.String,
    "file_id": pl.String,
    "size_bytes": pl.Int64,
    "modified_at": pl.Datetime("us"),
}
_MEMO_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "path": pl.String,
    "size_bytes": pl.Int64,
    "mtime_ns": pl.Int64,
    "sha256": pl.String,
}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class HashMemo:
    """sha256 per file, remembered with the size and modification time it was computed for.

    Hashing 1 GB of history every night would be work that grows with history; a file whose size
    and mtime are unchanged keeps its hash. Kept beside the warehouse (a Parquet file), not in
    it: it describes the files, whatever state the warehouse is in.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known = pl.DataFrame(schema=_MEMO_SCHEMA)
        # Whether `known` differs from the file: only then is it written again (a night with
        # nothing new wrote the same 60,000 rows, a good part of its ingest's memory).
        self.changed = True
        if path is not None and path.exists():
            try:
                self.known = conform(pl.read_parquet(path), _MEMO_SCHEMA)
                self.changed = False
            except (OSError, pl.exceptions.PolarsError):
                pass  # a damaged memo only costs re-hashing

    def hashes(self, raw_dir: Path, files: pl.DataFrame) -> pl.Series:
        """The sha256 of each of `files` (path under `raw_dir`, size_bytes, mtime_ns), hashing
        only those the memo does not know at their size and time. The memo then holds these
        files: a removed file's entry goes with it."""
        key = ["path", "size_bytes", "mtime_ns"]
        n = self.known.height
        if files.height >= n and files.head(n).select(key).equals(self.known.select(key)):
            # The memo's files at the same sizes and times, listed first and in the same order
            # (the memo is saved in the listing's), then only newer files, if any: most nights.
            # Compared column by column, and only the new files hashed, without the join's copy
            # of every file's row (a third of a quiet ingest's memory at 60,000 files, 40 MB of
            # a night's at 82,000).
            added = files.slice(n).select(key)
            if added.height:
                shas = [sha256_of(raw_dir / p) for p in added["path"]]
                added = added.with_columns(pl.Series("sha256", shas, pl.String))
                self.known = pl.concat([self.known, added])
                self.changed = True
            return self.known["sha256"]
        known = files.select(key).join(self.known, on=key, how="left", maintain_order="left")
        if known.height != files.height:
            # A memo that holds a file and state twice (damaged, or edited by hand) would list
            # the file twice. Checked here rather than made unique on every read: that doubled
            # the memo's memory at 60,000 files (issue 19).
            known = known.unique(key, keep="last", maintain_order=True)
        todo = known.filter(pl.col("sha256").is_null())["path"]
        # Unless a file is new or changed, or one is gone (the memo had more rows), the memo
        # ends as it began.
        self.changed |= not todo.is_empty() or known.height != self.known.height
        hashed = pl.DataFrame(
            {"path": todo, "new": [sha256_of(raw_dir / p) for p in todo]},
            schema={"path": pl.String, "new": pl.String},
        )
        self.known = known.join(hashed, on="path", how="left", maintain_order="left").select(
            *key, pl.coalesce("sha256", "new").alias("sha256")
        )
        return self.known["sha256"]

    def save(self) -> None:
        if self.path is not None and self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            self.known.write_parquet(tmp)
            tmp.replace(self.path)


def file_identity(source: SourceConfig, path: Path, sha: str) -> str:
    """What makes two files the same input: their bytes, and the person their path says they
    belong to (with `person: {from_folder: true}`, the same bytes in two people's folders are two
    people's days, not a copy)."""
    owner = source.person.for_file(path) or ""
    return hashlib.sha256(f"{source.name}\0{sha}\0{owner}".encode()).hexdigest()[:16]


def list_files(
    source: SourceConfig, raw_dir: Path, memo: HashMemo, paths: list[str] | None = None
) -> pl.DataFrame:
    """The source's files (`paths` relative to `raw_dir`, when the caller has globbed them) as a
    `LISTING_SCHEMA` frame, oldest first (modification time, then path), hashed."""
    paths = source.files(raw_dir) if paths is None else paths
    sizes, mtimes_ns, modified = [], [], []
    for path in paths:
        stat = os.stat(os.path.join(raw_dir, path))
        sizes.append(stat.st_size)
        mtimes_ns.append(stat.st_mtime_ns)
        modified.append(datetime.fromtimestamp(stat.st_mtime, UTC).replace(tzinfo=None))
    files = pl.DataFrame(
        {"path": paths, "size_bytes": sizes, "mtime_ns": mtimes_ns, "modified_at": modified},
        schema={
            "path": pl.String,
            "size_bytes": pl.Int64,
            "mtime_ns": pl.Int64,
            "modified_at": pl.Datetime("us"),
        },
    ).sort("modified_at", "path")
    files = files.with_columns(memo.hashes(raw_dir, files))
    file_ids = [
        file_identity(source, raw_dir / path, sha)
        for path, sha in zip(files["path"], files["sha256"], strict=True)
    ]
    return files.select(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("order"),
        "path",
        "sha256",
        pl.Series("file_id", file_ids, dtype=pl.String),
        "size_bytes",
        "modified_at",
    )


def first_copies(listing: pl.DataFrame) -> pl.DataFrame:
    """Each file_id's first (oldest) file of `listing`: the copy that is read. Its other files
    hold the same bytes for the same person, so their rows are all duplicates."""
    first = listing["file_id"].is_first_distinct()
    # Most listings hold no copy: then the listing itself, not a copy of every file's row.
    return listing if first.all() else listing.filter(first)
