"""The store shards of a raw file's people, known before the file is parsed (the new-file sensor).

A run of some person-shard partitions recomputes only their people, so whoever starts one for
new files must know the shards of those files' people beforehand, and must never open the
warehouse to find out (a sensor runs beside the runs that write it). `file_shards` works it out
from sources.yaml and the file alone, as cheaply as the source allows:

- a fixed person (`person: alice`), or one named by the folder: that id, the file unread;
- a person column: the distinct ids of that column, read by the format's own reader and rule
  (`pipelines.adapters.person_ids`), so an id is exactly what the parse would give;
- a format whose ids need the whole parse (FHIR, Synthea, NHANES) or a file its reader refuses:
  unknown (None), which the caller must read as every shard;
- a file no source's glob matches: no shards, it is not ingested.

Every error is an answer, never a failure: an unknown file only widens what the caller runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipelines.adapters import person_ids
from pipelines.config import ProjectConfig, SourceConfig
from pipelines.store import SHARDS, shard_of


@dataclass(frozen=True)
class FileShards:
    """The shards of one file's people (None: unknown, every shard) and, when that is not the
    plain answer, why (for the sensor's log)."""

    shards: frozenset[int] | None
    note: str | None = None


NOT_INGESTED = "matches no source's path in sources.yaml: not ingested"


def file_shards(
    config: ProjectConfig, raw_dir: Path, rel_paths: list[str], shards: int = SHARDS
) -> dict[str, FileShards]:
    """The shards of the people of each of `rel_paths` (files under `raw_dir`), over every
    source whose glob matches the file."""
    matched: dict[str, list[SourceConfig]] = {p: [] for p in rel_paths}
    for source in config.sources:
        for rel in source.files(raw_dir):
            if rel in matched:
                matched[rel].append(source)
    return {
        rel: _of_file(raw_dir / rel, sources, shards)
        if sources
        else FileShards(frozenset(), NOT_INGESTED)
        for rel, sources in matched.items()
    }


def _of_file(path: Path, sources: list[SourceConfig], shards: int) -> FileShards:
    found: set[int] = set()
    for source in sources:
        of_source = source_file_shards(path, source, shards)
        if of_source.shards is None:
            return of_source
        found.update(of_source.shards)
    return FileShards(frozenset(found))


def source_file_shards(path: Path, source: SourceConfig, shards: int = SHARDS) -> FileShards:
    """The shards of the people of `path` read as a file of `source` (the ingest of a run of some
    shards asks this of each new file, `pipelines.ingest.scope`)."""
    try:
        people = person_ids(path, source)
    # Whatever stops the reader (a Polars panic is a BaseException) leaves the file's
    # people unknown; the run that parses it reports the error.
    except (Exception, pl.exceptions.PanicException) as exc:
        return FileShards(None, f"not readable as source {source.name!r} ({exc})")
    if people is None:
        return FileShards(
            None, f"format {source.format!r} names its people only in the whole parse"
        )
    return FileShards(frozenset(shard_of(person, shards) for person in people))
