"""The new-file sensor. It starts RUNNING, like the nightly schedule.

It runs the person-shard partitions (`pipelines.defs.partitions`) of the people of the files that
are new, changed or removed under data/raw/, worked out before the run parses them and without
the warehouse (`pipelines.ingest.people`): from a file's fixed person with no read, or from its
person column alone. A changed or removed file's former shards count too (its people may have
left it), so the cursor keeps each file's shards beside its (mtime, size): `[mtime, size, mask]`,
bit i of the mask set for shard i, UNKNOWN (-1) when only the parse can name its people. A run
carries one range of partitions, so the request spans the first to the last partition holding a
shard; the ones between cost a plan each. A file whose people are unknown asks for every partition.

What every person's results depend on beside their own rows (sources.yaml, the food overrides it
names, the code) is kept in the cursor as one digest (`shared_inputs_digest`). When it changed
since the sensor's last request, every partition runs: a run of some shards would leave the
others on the old settings, and a column a new food category adds cannot be added to some shards
only.
"""

import hashlib
import json
import logging
from collections import defaultdict
from pathlib import Path

import dagster as dg

from pipelines.config import ConfigError

# Dagster collects every definition at the top level of a module: through its module, the job
# stays collected once, from jobs.py.
from pipelines.defs._versions import CODE_VERSION
from pipelines.defs.automation import jobs
from pipelines.defs.partitions import (
    all_partitions_tags,
    configured_partitions,
    partition_keys,
    partition_range_tags,
)
from pipelines.defs.resources import ProjectResource
from pipelines.ingest.people import FileShards, file_shards
from pipelines.project import Project
from pipelines.store import SHARDS

UNKNOWN = -1  # the mask of a file whose people only the parse can name: every shard
SHARDS_TAG = "gutsignal/changed_shards"
# The cursor's key for `shared_inputs_digest`: never a file's path (those are relative).
SHARED_KEY = "/shared inputs"


def raw_file_state(raw_dir: Path) -> dict[str, list[float]]:
    """(mtime, size) of every file under data/raw/, keyed by relative path."""
    if not raw_dir.exists():
        return {}
    state = {}
    for path in sorted(raw_dir.rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            stat = path.stat()
            state[str(path.relative_to(raw_dir))] = [stat.st_mtime, float(stat.st_size)]
    return state


def shard_mask(shards: frozenset[int] | None) -> int:
    """The cursor's int for a set of shards (UNKNOWN for None)."""
    return UNKNOWN if shards is None else sum(1 << s for s in shards)


def mask_shards(entry: list[float]) -> set[int] | None:
    """The shards a cursor entry records: None when unknown, as in a cursor from before the
    shards were kept (`[mtime, size]`)."""
    if len(entry) < 3 or entry[2] == UNKNOWN:
        return None
    mask = int(entry[2])
    return {s for s in range(mask.bit_length()) if mask >> s & 1}


def range_tags(project: Project, shards: set[int] | None) -> dict[str, str]:
    """The run tags of the partitions from the first to the last holding one of `shards` (every
    partition for None; the first one for no shard, so the run still ingests the files)."""
    if shards is None:
        return all_partitions_tags(project)
    keys = partition_keys(configured_partitions(project))
    size = SHARDS // len(keys)
    first, last = (min(shards), max(shards)) if shards else (0, 0)
    return partition_range_tags(keys[first // size], keys[last // size])


def shared_inputs_digest(project: Project) -> str:
    """A hash of sources.yaml, the food overrides file it names and the code version: what every
    person's results depend on beside their own rows."""
    digest = hashlib.sha256(CODE_VERSION.encode())
    paths = [project.sources_yaml]
    try:
        config = project.config()
        if config.settings.food_overrides:
            paths.append(config.path.parent / config.settings.food_overrides)
    except ConfigError:
        pass  # its bytes are hashed below; the files' shards are then unknown anyway
    for path in paths:
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


def _shards_of(project: Project, paths: list[str]) -> dict[str, FileShards]:
    try:
        config = project.config()
    except ConfigError as exc:
        return {p: FileShards(None, f"sources.yaml cannot be read ({exc})") for p in paths}
    return file_shards(config, project.raw_dir, paths)


def _log_notes(log: logging.Logger, found: dict[str, FileShards]) -> None:
    """One line per kind of note (a night may bring thousands of files)."""
    by_note = defaultdict(list)
    for path, shards in found.items():
        if shards.note is not None:
            by_note[shards.note].append(path)
    for note, paths in sorted(by_note.items()):
        listed = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        every = " (every partition)" if found[paths[0]].shards is None else ""
        log.info(f"data/raw/ {listed}: {note}{every}")


@dg.sensor(
    job=jobs.refresh_all,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a refresh of the person shards of files added, changed or removed under "
    "data/raw/.",
)
def new_raw_files(context: dg.SensorEvaluationContext, project: ProjectResource):
    """Compare data/raw/ with the state stored in the cursor; one run per batch of changes."""
    previous: dict[str, list[float]] = json.loads(context.cursor) if context.cursor else {}
    shared_before = previous.pop(SHARED_KEY, None)
    current = raw_file_state(project.project.raw_dir)
    changed = sorted(p for p, s in current.items() if previous.get(p, [])[:2] != s)
    removed = sorted(set(previous) - set(current))
    if not changed and not removed:
        return dg.SkipReason("no new or changed files under data/raw/")

    found = _shards_of(project.project, changed)
    _log_notes(context.log, found)
    shards: set[int] | None = set()
    # A file's new shards, and a changed or removed file's former ones.
    for known in [found[p].shards for p in changed] + [
        mask_shards(previous[p]) for p in changed + removed if p in previous
    ]:
        shards = None if shards is None or known is None else shards | set(known)
    shared = shared_inputs_digest(project.project)
    if shared != shared_before:
        context.log.info(
            "sources.yaml, the food overrides or the code changed since the sensor's last "
            "request (or it has made none): every partition"
        )
        shards = None
    cursor: dict[str, object] = {
        p: [*state, shard_mask(found[p].shards)] if p in found else previous[p]
        for p, state in current.items()
    }
    cursor[SHARED_KEY] = shared

    state = {p: current[p] for p in changed} | {p: None for p in removed}
    digest = hashlib.sha256(json.dumps(state).encode()).hexdigest()
    tags = {
        "gutsignal/changed_files": str(len(changed)),
        SHARDS_TAG: "all" if shards is None else ",".join(map(str, sorted(shards))) or "none",
        **range_tags(project.project, shards),
    }
    if removed:
        tags["gutsignal/removed_files"] = str(len(removed))
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"raw-files-{digest[:16]}", tags=tags)],
        cursor=json.dumps(cursor),
    )
