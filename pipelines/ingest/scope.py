"""Which files an ingest of some person shards reads, forgets and records (the ingest assets are
partitioned by person shard, `pipelines.defs.partitions`).

A run of every shard handles every new, changed and removed file (`sync_source` without
`shards`). A run of some shards handles only the files whose people are in them, and sees every
other file as it was when it was last ingested:

- a new or changed file is parsed when the shards of its people, worked out before the parse as
  the new-file sensor does (`pipelines.ingest.people.source_file_shards`), meet the run's;
- a stored file that is gone (removed, changed, or read by an older parser) is forgotten when
  the shards its stored rows are in meet the run's; else its rows, state, rejects and
  `ingest_files` rows stay exactly as recorded (it is listed as recorded: path, content, size,
  time), so it still takes part in the settle of its keys and is not counted as removed;
- a file whose people only the parse can tell (FHIR, Synthea and NHANES without a fixed person,
  a file its reader refuses), or with no people at all (no stored rows, an empty file), is
  handled by any run. Only the parse can say whose it is, and left to a run of "its" shards it
  would wait for a run of every shard. Parsing it in a run of other shards is safe: its rows go
  to their own shards' parts of `raw_<source>` and `stg_<source>` (the settle works on the
  shards of the keys it touches, whatever the run's), so the warehouse holds what a run of
  every shard would; the per-person steps of the other shards see the new rows when those
  shards run (their people's inputs changed). The sensor asks for every partition for such a
  file anyway.

A file whose people span the run's shards and others is handled whole (its rows in the other
shards too), for the same reason. A changed file whose person moved shard is two files here: the
old version's rows leave with a run of the old shard, the new version's arrive with a run of the
new one (the sensor's request covers both: the cursor keeps a file's former shards).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from pipelines import store
from pipelines.config import SourceConfig
from pipelines.ingest.accounting import recorded_listing
from pipelines.ingest.files import LISTING_SCHEMA, first_copies
from pipelines.ingest.people import source_file_shards
from pipelines.ingest.tables import raw_table
from pipelines.warehouse import ident

Shards = frozenset[int] | None  # None: unknown, every shard


@dataclass(frozen=True)
class Selection:
    """The files a run of some shards works with."""

    listing: pl.DataFrame  # as `list_files` gives it: the files this run sees, oldest first
    kept: frozenset[str]  # stored files left as recorded, whatever their state says
    deferred: int  # files (by identity) left for a run of their shards


def run_scope(conn: duckdb.DuckDBPyConnection, shards: Collection[int] | None) -> frozenset[int]:
    """The store shards a run of `shards` handles; empty for every shard (`shards` None or all
    of the store's), which is the ingest as without partitions."""
    if shards is None:
        return frozenset()
    count = store.shard_count(store.root_of(conn))
    scope = frozenset(shards)
    return frozenset() if scope >= set(range(count)) else scope


def touches(shards: Shards, scope: frozenset[int]) -> bool:
    """Whether a run of `scope` handles a file of `shards` (see the module docstring)."""
    return shards is None or not shards or bool(shards & scope)


def select_files(
    listing: pl.DataFrame,
    current: set[str],
    new_shards: dict[str, Shards],
    old_shards: dict[str, frozenset[int]],
    recorded: pl.DataFrame,
    scope: frozenset[int],
) -> Selection:
    """The files a run of the shards `scope` sees (pure; see the module docstring).

    `listing`: the source's files now; `current`: the stored files read by this parser and
    still listed; `new_shards`: the shards of every other listed file (by file_id);
    `old_shards`: the shards of the stored rows of every stored file that is not current;
    `recorded`: the `ingest_files` rows of those, as listed when they were last ingested (a
    `LISTING_SCHEMA` frame, like `listing`). A gone file with no recorded row is handled
    (forgotten): it cannot be listed as it was."""
    have_record = set(recorded["file_id"])
    handled = {f for f, s in new_shards.items() if touches(s, scope)} | {
        f for f, s in old_shards.items() if touches(s, scope) or f not in have_record
    }
    kept = frozenset(old_shards.keys() - handled)
    left = (new_shards.keys() | old_shards.keys()) - handled
    if not left:
        return Selection(listing, frozenset(), 0)
    seen = listing.filter(pl.col("file_id").is_in(list(current | handled)))
    as_recorded = recorded.filter(pl.col("file_id").is_in(list(kept)))
    # Oldest first, as `list_files` orders them: the settle's newest file wins.
    merged = pl.concat([seen, as_recorded]).sort("modified_at", "path", maintain_order=True)
    ordered = merged.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias("order"))
    return Selection(ordered, kept, len(left))


def scoped_selection(
    conn: duckdb.DuckDBPyConnection,
    source: SourceConfig,
    raw_dir: Path,
    listing: pl.DataFrame,
    stored: set[str],
    reusable: set[str],
    scope: frozenset[int],
) -> Selection:
    """`select_files` for a source: the shards of its new files' people (read before the parse)
    and of its gone files' stored rows, and their `ingest_files` rows. `stored`: every file_id
    in `ingest_state`; `reusable`: those read by this parser."""
    count = store.shard_count(store.root_of(conn))
    firsts = first_copies(listing)
    current = reusable & set(firsts["file_id"])
    new_shards = {
        file_id: source_file_shards(raw_dir / path, source, count).shards
        for file_id, path in firsts.select("file_id", "path").iter_rows()
        if file_id not in current
    }
    gone = sorted(stored - current)
    old_shards: dict[str, frozenset[int]] = {f: frozenset() for f in gone}
    recorded = pl.DataFrame(schema=LISTING_SCHEMA)
    if gone:
        found: dict[str, set[int]] = {}
        raw = ident(raw_table(source.name))
        for file_id, shard in conn.execute(
            f"SELECT DISTINCT file_id, {store.shard_sql(count)} FROM {raw} "
            "WHERE file_id IN (SELECT unnest(?::VARCHAR[]))",
            [gone],
        ).fetchall():
            found.setdefault(file_id, set()).add(int(shard))
        old_shards |= {f: frozenset(s) for f, s in found.items()}
        recorded = recorded_listing(conn, source.name, gone)
    return select_files(listing, current, new_shards, old_shards, recorded, scope)
