"""Which store shards' person pages a run can leave as they are, decided from what the warehouse
records before anyone's rows are read (`pipelines.steps.pages.update_person_pages`).

A person page and its section file are built from their person's rows of the store tables, the
native `unmapped_foods`, their sources as the page shows them, and what every page shares (the
plan's salts). A store shard's rows are its part files, and a part file never changes once it
has its name (`pipelines.store`): the same part list, the same rows. So a shard's *state*, a
hash of

- its parts of every store table (`page_summaries`, this step's own output, aside),
- what spans shards: the definitions of the warehouse's other views (the canonical views over
  the staging tables) and the rows of `unmapped_foods`,
- the salts of both plans (with the code and DuckDB's version, `full_salt`) and the code that
  reads the pages' rows (`_read_code`: a changed read is a changed page, which the plans see
  in the frames they fingerprint),
- its people's sources, less the clock (`person_sources_frame`: staleness included),
- and the step's own records of its people (`person_inputs`, both plans),

changes whenever a page of the shard could. The step keeps each shard's state in `person_inputs`
under `SHARDS_STEP` (person_id: the shard's number) in the transaction that records the plans;
a shard whose state matches and whose files are all there is left as it is: its rows are not
read, nor fingerprinted, nor summarised again.

In a shard whose state changed (a night on which a tenth of the people sync changes every
shard), the same decision is taken per person: a person's *state* is the same hash with, in
place of the shard's parts, a fingerprint of every row the page and section file read of them
(`PersonGroups.fingerprints`, taken in DuckDB over the shard's parts without reading the rows
out; their windows' as the plan takes them, `pages.window_fingerprints`), with their own sources
and records. It is kept under `PEOPLE_STEP`; a person whose state
matches and whose files are there is left out of the groups read, their records and summary
kept. The other people go through the plan as before. Only for inputs read from the warehouse
(`DashboardInputs.people`): frames handed in are not the store's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

from pipelines.fingerprint import fingerprint
from pipelines.identity import inputs_identity
from pipelines.incremental import ROWS_FINGERPRINT, STATE_SCHEMA, STATE_TABLE, full_salt
from pipelines.reports.inputs import person_page_name, person_section_name
from pipelines.store import PARTS, live_parts, root_of, shard_of
from pipelines.warehouse import insert_frame, table_exists

SHARDS_STEP = "dashboards/shards"
PEOPLE_STEP = "dashboards/people"
# Raised when what a state covers changes, so that every shard is planned once more.
_VERSION = "1"
# This step's own store table: written after the state is taken, and only from what it covers.
_OWN = "page_summaries"


@cache
def _read_code() -> str:
    """A hash of the modules that read what the pages show from the warehouse (the dashboards
    steps, their SQL and the store's reads)."""
    steps = Path(__file__).resolve().parent
    paths = [steps / n for n in ("dashboards.py", "pages.py", "page_shards.py")]
    return fingerprint([*paths, *sorted((steps / "sql").glob("*.sql")), steps.parent / "store.py"])


@dataclass(frozen=True)
class StoreInputs:
    """What the warehouse records of the page inputs: per shard, its parts of every store table
    but `_OWN` (table, files in order), and a hash of what spans shards."""

    parts: dict[int, list[tuple[str, list[str]]]]
    shared: str


def store_inputs(conn: duckdb.DuckDBPyConnection) -> StoreInputs | None:
    """The store's record of the page inputs, or None for a warehouse without `store_parts`
    (whose part names say nothing about their rows)."""
    if not table_exists(conn, PARTS):
        return None
    parts: dict[int, list[tuple[str, list[str]]]] = {}
    stored = live_parts(conn, root_of(conn))
    for table, shards in sorted(stored.items()):
        if table != _OWN:
            for shard, files in shards.items():
                parts.setdefault(shard, []).append((table, files))
    views = conn.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE database_name = current_database() "
        "AND schema_name = 'main' AND NOT internal ORDER BY view_name"
    ).fetchall()
    unmapped = (
        conn.execute(f"SELECT {ROWS_FINGERPRINT} FROM unmapped_foods t").fetchone()
        if table_exists(conn, "unmapped_foods")
        else None
    )
    shared = [[[name, sql] for name, sql in views if name not in stored], unmapped]
    return StoreInputs(parts, json.dumps(shared, default=str))


def shard_states(
    inputs: StoreInputs,
    shards: Collection[int],
    count: int,
    salts: tuple[str, str],
    rows_of: Callable[[int], Sequence[pl.DataFrame]],
) -> dict[int, str]:
    """Each of `shards`' state (the module's docstring). `rows_of(shard)` gives the frames of
    per-person rows a shard's state covers besides its parts (its people's sources,
    `person_sources_frame`, and the step's rows of `person_inputs`, both plans): every row of
    the shard's people, and rows of others are left out. Taken a shard at a time, so that only
    one shard's people's rows and texts are held, not everyone's (a quiet night's peak)."""
    common = _common(inputs, salts)
    states = {}
    for shard in sorted(shards):
        texts = [_texts(df) for df in rows_of(shard)]
        mine = sorted(p for p in set().union(*texts) if shard_of(p, count) == shard)
        states[shard] = _hash(
            [common, json.dumps(inputs.parts.get(shard, []))]
            + [_SEP.join([p, *(t.get(p, "") for t in texts)]) for p in mine]
        )
    return states


def person_states(
    inputs: StoreInputs,
    people: Collection[str],
    salts: tuple[str, str],
    rows: Sequence[pl.DataFrame],
) -> dict[str, str]:
    """Each of `people`'s state (the module's docstring): `rows` the frames of per-person rows it
    covers (their rows' fingerprints, `PersonGroups.fingerprints`, and their windows',
    `pipelines.steps.pages.window_fingerprints`, then their sources and records as for
    `shard_states`). Taken `PEOPLE_PER_PASS` people at a time: the JSON text of every
    person's rows at once was a busy night's peak at 10,000 people."""
    common = _common(inputs, salts)
    ids = list(people)
    states = {}
    for start in range(0, len(ids), PEOPLE_PER_PASS):
        part = ids[start : start + PEOPLE_PER_PASS]
        theirs = pl.Series(part, dtype=pl.String).implode()
        texts = [
            _texts(df.filter(pl.col("person_id").is_in(theirs))) if df.height else {} for df in rows
        ]
        states.update({p: _hash([common, *(t.get(p, "") for t in texts)]) for p in part})
    return states


def _common(inputs: StoreInputs, salts: tuple[str, str]) -> str:
    """What every state holds: what spans shards, the salts and the code."""
    return json.dumps([_VERSION, _read_code(), [full_salt(s) for s in salts], inputs.shared])


# People whose states `person_states` takes at once.
PEOPLE_PER_PASS = 1000

# Between the parts of a state's text: no JSON line holds it.
_SEP = "\x1e"


def _texts(df: pl.DataFrame) -> dict[str, str]:
    """`df`'s rows by their person_id: each row as JSON, a person's sorted, one a line; built in
    Polars (a state covers thousands of people's rows: one Python object per value cost more
    than the rest of the state)."""
    if not df.height:
        return {}
    lines = (
        df.filter(pl.col("person_id").is_not_null())
        .select("person_id", pl.struct(pl.all()).struct.json_encode().alias("_row"))
        .sort("person_id", "_row")
        .group_by("person_id", maintain_order=True)
        .agg(pl.col("_row").str.join("\n"))
    )
    return dict(zip(lines["person_id"].to_list(), lines["_row"].to_list(), strict=True))


def _hash(parts: list[str]) -> str:
    return hashlib.sha256(_SEP.join(parts).encode()).hexdigest()


def unchanged_people(
    conn: duckdb.DuckDBPyConnection, states: dict[str, str], out_dir: Path
) -> set[str]:
    """The people of `states` whose recorded state is the same and whose page and section file
    are in `out_dir`, when the step's summaries (`_OWN`) are there."""
    if not (table_exists(conn, STATE_TABLE) and table_exists(conn, _OWN)):
        return set()
    kept = dict(
        conn.execute(
            f"SELECT person_id, fingerprint FROM {STATE_TABLE} WHERE step = ?", [PEOPLE_STEP]
        ).fetchall()
    )
    return {
        p
        for p, state in states.items()
        if kept.get(p) == state
        and all((out_dir / name(p)).exists() for name in (person_page_name, person_section_name))
    }


def record_person_states(
    conn: duckdb.DuckDBPyConnection, states: dict[str, str], scope: str | None
) -> None:
    """Keep `states` as the people's recorded states, in place of those of `scope` (the run's
    shards; None: everyone's)."""
    within = "" if scope is None else f" AND ({scope})"
    conn.execute(f"DELETE FROM {STATE_TABLE} WHERE step = ?{within}", [PEOPLE_STEP])
    _insert_states(conn, PEOPLE_STEP, states)


def unchanged_shards(
    conn: duckdb.DuckDBPyConnection,
    states: dict[int, str],
    count: int,
    page_step: str,
    out_dir: Path,
) -> set[int]:
    """The shards of `states` whose recorded state is the same and whose people (those with a
    record of `page_step`) all have their page and section file in `out_dir`, when the step's
    summaries (`_OWN`) are there."""
    if not (table_exists(conn, STATE_TABLE) and table_exists(conn, _OWN)):
        return set()  # the shards' summaries are the index's rows: none kept, none to keep
    kept = dict(
        conn.execute(
            f"SELECT person_id, fingerprint FROM {STATE_TABLE} WHERE step = ?", [SHARDS_STEP]
        ).fetchall()
    )
    same = {k for k, state in states.items() if kept.get(str(k)) == state}
    people = conn.execute(
        f"SELECT person_id FROM {STATE_TABLE} WHERE step = ?", [page_step]
    ).fetchall()
    for (person,) in people:
        shard = shard_of(person, count)
        if shard in same and not all(
            (out_dir / name(person)).exists() for name in (person_page_name, person_section_name)
        ):
            same.discard(shard)
    return same


def record_states(conn: duckdb.DuckDBPyConnection, states: dict[int, str]) -> None:
    """Keep `states` as the shards' recorded states (in the step's transaction)."""
    if not states:
        return
    keys = [str(k) for k in states]
    conn.execute(
        f"DELETE FROM {STATE_TABLE} WHERE step = ? AND person_id IN "
        f"({', '.join('?' for _ in keys)})",
        [SHARDS_STEP, *keys],
    )
    _insert_states(conn, SHARDS_STEP, {str(k): state for k, state in states.items()})


def _insert_states(conn: duckdb.DuckDBPyConnection, step: str, states: dict[str, str]) -> None:
    rows = pl.DataFrame(
        {"step": step, "person_id": list(states), "fingerprint": list(states.values()), "salt": ""},
        schema=STATE_SCHEMA,
    )
    insert_frame(conn, STATE_TABLE, rows)


# The source freshness (`pipelines.steps.dashboards`: per source and person, the newest file
# and latest day of data) as last read, with the record it was read under (`freshness_key`):
# both dashboard steps read it instead of scanning the dated tables again while the key holds.
FRESHNESS = "page_freshness"


def freshness_key(conn: duckdb.DuckDBPyConnection, query: str) -> str | None:
    """What the rows of the freshness `query` are a function of (`inputs_identity`: its tables'
    store parts, view definitions and the rows of `ingest_files`); None when that cannot be told
    without reading them."""
    return inputs_identity(conn, [query], _VERSION)


def kept_freshness(conn: duckdb.DuckDBPyConnection, key: str | None) -> pl.DataFrame | None:
    """The freshness rows kept under `key`, in the query's order; None when none are."""
    if key is None or not table_exists(conn, FRESHNESS):
        return None
    rows = conn.execute(
        f"SELECT * EXCLUDE (key) FROM {FRESHNESS} WHERE key = ? ORDER BY source, person_id",
        [key],
    ).pl()
    return rows if rows.height else None


def keep_freshness(conn: duckdb.DuckDBPyConnection, rows: pl.DataFrame, key: str) -> None:
    """Keep `rows` (the freshness read under `key`) in place of those kept before."""
    conn.register("_freshness", rows.with_columns(key=pl.lit(key)).to_arrow())
    try:
        conn.execute(f"CREATE OR REPLACE TABLE {FRESHNESS} AS SELECT * FROM _freshness")
    finally:
        conn.unregister("_freshness")
