"""Person shards as Dagster partitions: the one partitions definition of the per-person assets.

The store keeps every per-person table as Parquet parts by person shard (`pipelines.store`,
`shard_of`): partition "03" of an asset is its rows (and its work) for the people of shard 3.
An asset that spans everyone (the cohort models, the index page) stays unpartitioned, downstream
of every partition of the sharded ones.

A run carries a range of shards in the run tags Dagster reads (`shard_range_tags`); with
`BackfillPolicy.single_run()` one run takes any range, so a normal night asks for all of them
(`ALL_SHARDS`): one step per asset, as without partitions. Every launcher (the schedule, the
sensor, `gutsignal run`, the benchmark, the tests) names the range. A run without one would still
execute the sharded assets, but Dagster would record their materializations without a partition,
so `shards_of_run` refuses it.
"""

import dagster as dg

# Dagster's run tags for a range of partitions; not re-exported by `dagster`.
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG as RANGE_END_TAG,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_START_TAG as RANGE_START_TAG,
)

from pipelines.store import SHARDS

SHARD_KEYS = [f"{k:02d}" for k in range(SHARDS)]

person_shards = dg.StaticPartitionsDefinition(SHARD_KEYS)


def shard_range_tags(first: str = SHARD_KEYS[0], last: str = SHARD_KEYS[-1]) -> dict[str, str]:
    """The run tags of a run over the shards `first` to `last` (keys such as "03")."""
    for key in (first, last):
        if key not in SHARD_KEYS:
            raise ValueError(f"{key!r} is not a shard: one of {SHARD_KEYS[0]}..{SHARD_KEYS[-1]}")
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


ALL_SHARDS = shard_range_tags()


def shards_of_run(context: dg.AssetExecutionContext) -> list[int]:
    """The shards the running step is for: its partition (range)."""
    if not context.has_partition_key and not context.has_partition_key_range:
        raise dg.Failure(
            "This run names no person shards. Start it with a partition range: all shards are "
            f"{SHARD_KEYS[0]}...{SHARD_KEYS[-1]} (`gutsignal run` and the schedule do)."
        )
    return [int(k) for k in context.partition_keys]
