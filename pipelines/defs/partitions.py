"""Groups of person shards as Dagster partitions: the one partitions definition of the per-person
assets.

The store keeps every per-person table as Parquet parts by person shard (`pipelines.store`,
`shard_of`, 16 shards). A Dagster partition is a group of consecutive shards, as many groups as
`settings.person_partitions` says (default 4; a divisor of the 16 shards). Its key names the
shards it holds: with 4 partitions, "shards-00-03" .. "shards-12-15"; with 16, "shards-00-00" ..
"shards-15-15". Shard i belongs to partition i // (16 / partitions). Dagster plans and records
every partition of a run as its own events, so fewer, larger partitions cost a night less, while
the store keeps the shard as its unit of storage and the steps' scoped plans take any shards.

The definition is built when the code location loads, from the project's sources.yaml
(`person_partitions`), as the schedule's timezone is: the assets that use it are made in a
`@dg.definitions` function.

A run carries a range of partitions in the run tags Dagster reads (`partition_range_tags`); with
`BackfillPolicy.single_run()` one run takes any range, so a normal night asks for all of them
(`all_partitions_tags`): one step per asset, as without partitions. Every launcher (the schedule,
the sensor, `gutsignal run`, the benchmark, the tests) names the range. A run without one would
still execute the partitioned assets, but Dagster would record their materializations without a
partition, so `shards_of_run` refuses it.
"""

import re
from typing import Any

import dagster as dg

# Dagster's run tags for a range of partitions; not re-exported by `dagster`.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG as RANGE_END_TAG,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_START_TAG as RANGE_START_TAG,
)

from pipelines.project import Project
from pipelines.settings import Settings
from pipelines.store import SHARDS

_KEY = re.compile(r"shards-(\d{2})-(\d{2})")


def partition_keys(partitions: int, shards: int = SHARDS) -> list[str]:
    """The partition keys when `shards` store shards are split into `partitions` groups."""
    if partitions < 1 or shards % partitions:
        raise ValueError(f"{partitions} partitions do not divide {shards} shards evenly")
    size = shards // partitions
    return [f"shards-{g * size:02d}-{(g + 1) * size - 1:02d}" for g in range(partitions)]


def shards_of_key(key: str) -> range:
    """The store shards of one partition key ("shards-04-07" -> 4, 5, 6, 7)."""
    match = _KEY.fullmatch(key)
    if match is None:
        raise ValueError(f"{key!r} is not a partition of person shards, e.g. 'shards-00-03'")
    first, last = int(match[1]), int(match[2])
    return range(first, last + 1)


def configured_partitions(project: Project) -> int:
    """`settings.person_partitions` of the project (the default without a sources.yaml)."""
    if not project.sources_yaml.exists():
        return Settings().person_partitions
    return project.config().settings.person_partitions


def person_shards(project: Project) -> dg.StaticPartitionsDefinition:
    """The partitions definition of every per-person asset of the project."""
    return dg.StaticPartitionsDefinition(partition_keys(configured_partitions(project)))


def partition_range_tags(first: str, last: str) -> dict[str, str]:
    """The run tags of a run over the partitions `first` to `last` (keys such as
    "shards-04-07"); whether they are partitions of the job is checked when the run starts."""
    for key in (first, last):
        shards_of_key(key)
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def all_partitions_tags(project: Project) -> dict[str, str]:
    """The run tags of a run over every person shard of the project: a night's run."""
    keys = partition_keys(configured_partitions(project))
    return partition_range_tags(keys[0], keys[-1])


def shards_of_run(context: dg.AssetExecutionContext) -> list[int]:
    """The store shards the running step is for: those of its partition (range)."""
    if not context.has_partition_key and not context.has_partition_key_range:
        raise dg.Failure(
            "This run names no person shards. Start it with a partition range over all "
            "partitions, e.g. shards-00-03...shards-12-15 (`gutsignal run` and the schedule do)."
        )
    return sorted({s for key in context.partition_keys for s in shards_of_key(key)})


def all_people() -> dict[str, Any]:
    """The decorator arguments every unpartitioned asset shares (the ingest, the canonical tables
    and the cohort steps, which span everyone): a writer of the warehouse (the `duckdb_writer`
    pool), run once in a run of any range of partitions. The single-run backfill policy says so to
    Dagster: without it on every asset of the job, `dg launch --job refresh_all --partition-range
    ...` refuses the range (it would need a daemon's backfill, a run per partition)."""
    return {"backfill_policy": dg.BackfillPolicy.single_run(), "pool": "duckdb_writer"}


def per_person(partitions_def: dg.PartitionsDefinition) -> dict[str, Any]:
    """The decorator arguments every per-person asset shares: partitioned by the groups of person
    shards, any range of them in one run (one step per asset, as without partitions), and a
    writer of the warehouse (the `duckdb_writer` pool)."""
    return {
        "partitions_def": partitions_def,
        "backfill_policy": dg.BackfillPolicy.single_run(),
        "pool": "duckdb_writer",
    }
