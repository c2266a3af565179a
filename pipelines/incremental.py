"""Recompute only the people (or person-days) whose inputs changed since a step last ran.

Every per-person step (marker_draws and marker_trends, exposure_windows) depends on a person's own
rows only. Before it runs, `plan_people` fingerprints each person's input rows inside
DuckDB (a count plus two order-independent sums of row hashes per input) and compares them with
the fingerprints stored when the step last finished (`person_inputs`). Only new or changed people
are recomputed; people whose inputs are gone lose their rows. Anything that affects everyone (the
settings, the code and data tables of the transforms, global inputs such as the food categories)
goes into a salt: when it changes, the step recomputes everyone, exactly as a first run does.

The dashboards plan their person pages the same way (`pipelines.steps.pages.plan_pages`):
the inputs are the frames each page is built from, the salt what every page shares, and a page
is rendered only for a new or changed person (or when its file is missing).

A nightly run that adds one person's day therefore recomputes that person, not the cohort; a run
where every person has a new day still recomputes every person (their whole history, since each
step's output for a person depends on all of it).

diet_daily goes further: each of its rows depends on one person-day's inputs, so `plan_days` keys
the same fingerprints by (person_id, day) and the step recomputes only the changed days (plus the
changed people's gap days, which it rebuilds from their range). A night on which everyone adds a
day then costs the new days. Its diary rows enter the fingerprints as their provenance (file and
line, `row_identity`) rather than their values: the fingerprints still read every row, but two
columns of it.

Steps whose output spans everyone (persons, the food categories, diet_summary, data_sufficiency,
the associations with their cohort models and FDR families) use `plan_whole`: all their input rows
form one group, so they run when any input row, setting or code changed, and otherwise keep their
tables and say so ("changed": false in their metadata).

A night with nothing new is decided before any row is read or hashed (`pipelines.identity`, issue
19): the store's parts are immutable files with names never used twice, so the parts an input
table lists (`store_parts`) stand for its rows, as a native table's few rows stand for
themselves. A step records, with its fingerprints, the identity of its input tables, its salt
and its scope, and the fingerprint of those very records (`step_inputs`); the next plan that
finds all of it the same has nothing to recompute and says so without fingerprinting a row.
Anything it cannot identify (a registered frame, a temp table, a file read directly) takes
the full plan, as does a record changed or forgotten since.
"""

from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb
import polars as pl

# ROWS_FINGERPRINT is used by the steps through this module too.
from pipelines.fingerprint import fingerprint
from pipelines.identity import ROWS_FINGERPRINT as ROWS_FINGERPRINT
from pipelines.identity import inputs_identity
from pipelines.literals import sql_text
from pipelines.store import PARTS, replace_all, rewrite, shard_sql, shard_views, store_shards
from pipelines.warehouse import create_table, ident, insert_frame, table_exists

STATE_TABLE = "person_inputs"
STATE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "step": pl.String,
    "person_id": pl.String,
    "fingerprint": pl.String,
    "salt": pl.String,
}


@dataclass(frozen=True)
class PersonPlan:
    """What a step has to recompute."""

    step: str
    everyone: bool  # no usable state: recompute every person (and replace the step's tables)
    people: list[str]  # new or changed people (when not everyone)
    gone: list[str]  # people without inputs any more: their rows go
    fingerprints: pl.DataFrame  # person_id, fingerprint: stored by `record` once the step wrote
    salt: str
    inputs: str | None = None  # `inputs_identity` of what was planned, remembered by `record`
    quiet: bool = False  # nothing new (`quiet_plan`): no fingerprints taken, nothing to record

    @property
    def touched(self) -> list[str]:
        """Everyone whose rows the step deletes before inserting the recomputed ones."""
        return sorted({*self.people, *self.gone})


@cache
def code_fingerprint(exclude: tuple[str, ...] = ()) -> str:
    """A hash of the transform and analysis code, the core modules and the data tables they read.

    `exclude` names data files a step reads only through an input it fingerprints itself (for
    diet_daily, taxonomy.csv reaches it through food_categories, fingerprinted per day).
    """
    import pipelines.analysis as analysis_package
    import pipelines.transforms as transforms_package

    root = Path(inspect.getfile(transforms_package)).parent.parent
    paths = sorted(Path(inspect.getfile(transforms_package)).parent.glob("*.py"))
    paths += sorted(Path(inspect.getfile(analysis_package)).parent.glob("*.py"))
    # Every data table, the compressed food reference vocabulary included.
    paths += [root / "schema.py", root / "config.py", root / "settings.py"]
    paths += sorted((root / "data").glob("*.csv*"))
    # The core modules the transforms share with the adapters.
    paths += [root / "text.py", root / "rules.py", root / "lab_vocabulary.py"]
    return fingerprint([p for p in paths if p.name not in exclude])


def row_identity(conn: duckdb.DuckDBPyConnection, table: str, values: list[str]) -> str:
    """A SQL expression that stands for a row of canonical `table` in a fingerprint: its
    provenance (`file_id`, `line`) when it came through the ingest, else its `values` (the
    columns a step reads).

    Hashing the provenance instead of the values is what makes a per-day plan cheap at 10 M
    diary rows, and it misses no change, because an ingested row's values are a function of its
    file's bytes, its line and the parse, and each of those shows in the fingerprint:

    - the bytes: `file_id` hashes the file's sha256 (with its source and person), so an edited
      file is a new file_id and its rows new rows; a removed file's rows are gone;
    - which file's rows count for a key (the newest file wins, whatever the source's file order):
      a different winner is a different file_id;
    - the line: a raw line loads at most once (`pipelines.ingest.accounting`), so (file_id, line)
      is one row;
    - the parse (adapter code, schema, rules, the source's configuration): a file is parsed
      again only under a new `source_fingerprint`, which `parse_salt` puts in the step's salt,
      or on a later day for a row once rejected as in the future, which can only add rows (new
      lines);
    - the canonical view's casts: schema.py is in the code fingerprint.

    The ingest never changes a staging row in place (a file's rows are deleted and inserted
    whole). A row without a file_id or line (a table written by hand, or by a test) enters with
    its values, as every row did before. The values are named only when the table holds such a
    row, counted from its two provenance columns: naming them at all made the fingerprint read
    every value column of every row. A row that comes or goes without provenance changes the
    count, so the next plan's expression follows it; a provenance row hashes the same either way.
    """
    columns = ", ".join(ident(c) for c in values)
    have = {d[0] for d in conn.execute(f"SELECT * FROM {ident(table)} LIMIT 0").description}
    if not {"file_id", "line"} <= have:
        return f"hash({columns})"
    row = conn.execute(
        f"SELECT count(*) FROM {ident(table)} WHERE file_id IS NULL OR line IS NULL"
    ).fetchone()
    if row == (0,):
        return "hash(file_id, line)"
    return (
        f"CASE WHEN file_id IS NULL OR line IS NULL THEN hash({columns}) "
        "ELSE hash(file_id, line) END"
    )


def parse_salt(conn: duckdb.DuckDBPyConnection) -> str:
    """The parse fingerprints the staging rows were read with, one per source (`ingest_state`):
    part of the salt of a step whose inputs enter as their `row_identity`. A changed parser or
    source configuration re-reads every file of the source, so the set changes."""
    if not table_exists(conn, "ingest_state"):
        return ""
    rows = conn.execute(
        "SELECT DISTINCT source, fingerprint FROM ingest_state ORDER BY ALL"
    ).fetchall()
    return ",".join(f"{source}:{fp}" for source, fp in rows)


def full_salt(salt: str, exclude_data: tuple[str, ...] = ()) -> str:
    """The step's salt with the code's fingerprint and the DuckDB version: DuckDB's hash() is
    only promised to be stable within one version."""
    return hashlib.sha256(
        f"{code_fingerprint(exclude_data)}\0{duckdb.__version__}\0{salt}".encode()
    ).hexdigest()[:16]


# Inputs by identity, not by rows (issue 19) --------------------------------------------------

INPUTS_TABLE = "step_inputs"
INPUTS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "step": pl.String,
    "version": pl.String,
}


def _version(conn: duckdb.DuckDBPyConnection, step: str, identity: str, scope: str | None) -> str:
    """`identity` with the run's scope and the step's own records as they are now: a record
    changed or forgotten since (a crash put back, a test, a hand) is not a quiet night."""
    signature = []
    if table_exists(conn, STATE_TABLE):
        row = conn.execute(
            f"SELECT {ROWS_FINGERPRINT} FROM {STATE_TABLE} t WHERE step = ?", [step]
        ).fetchone()
        signature.append(str(row[0] if row else ""))
    if table_exists(conn, DAY_STATE_TABLE) and table_exists(conn, PARTS):
        # The per-day records are store parts, immutable and never named twice: their list
        # stands for their rows, where fingerprinting every row read the whole table each night
        # (1.8 M rows at 10,000 people, kept in DuckDB's buffers: issue 19).
        row = conn.execute(
            f"SELECT string_agg(file, ',' ORDER BY shard, part) FROM {PARTS} WHERE table_name = ?",
            [DAY_STATE_TABLE],
        ).fetchone()
        signature.append(str(row[0] if row else ""))
    return hashlib.sha256(f"{identity}\0{scope or ''}\0{'|'.join(signature)}".encode()).hexdigest()


def remember(
    conn: duckdb.DuckDBPyConnection, step: str, identity: str | None, scope: str | None
) -> None:
    """Keep what `step` has just been brought up to date with (`quiet_plan`), after its records
    were stored: the inputs' identity, the scope and those records. Without an identity, forget
    it. In the step's transaction, so it commits with the step's tables and records."""
    if identity is None and not table_exists(conn, INPUTS_TABLE):
        return
    if not table_exists(conn, INPUTS_TABLE):
        create_table(conn, INPUTS_TABLE, INPUTS_SCHEMA)
    conn.execute(f"DELETE FROM {INPUTS_TABLE} WHERE step = ?", [step])
    if identity is not None:
        version = _version(conn, step, identity, scope)
        conn.execute(f"INSERT INTO {INPUTS_TABLE} VALUES (?, ?)", [step, version])


def is_quiet(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    identity: str | None,
    outputs: list[str],
    scope: str | None,
) -> bool:
    """Whether `step` last recorded exactly these inputs (`inputs_identity`), under this scope,
    with its records and output tables still as it left them: then it has nothing to do."""
    if identity is None or not table_exists(conn, INPUTS_TABLE):
        return False
    row = conn.execute(f"SELECT version FROM {INPUTS_TABLE} WHERE step = ?", [step]).fetchone()
    return (
        row is not None
        and all(table_exists(conn, t) for t in outputs)
        and row[0] == _version(conn, step, identity, scope)
    )


def quiet_plan(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    identity: str | None,
    outputs: list[str],
    scope: str | None = None,
) -> PersonPlan | None:
    """The plan of a night with nothing new for `step` (`is_quiet`), or None."""
    if not is_quiet(conn, step, identity, outputs, scope):
        return None
    return nothing_plan(step, identity)


def nothing_plan(step: str, identity: str | None = None) -> PersonPlan:
    """The plan of a run in which `step` has nothing to do: nobody to recompute, no fingerprints
    taken, nothing to record (`quiet_plan`, and a step that finds it out another way)."""
    empty = pl.DataFrame(schema={"person_id": pl.String, "fingerprint": pl.String})
    return PersonPlan(step, False, [], [], empty, "", identity, quiet=True)


def quiet_days(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    identity: str | None,
    outputs: list[str],
    scope: str | None = None,
) -> DayPlan | None:
    """`quiet_plan` for a per-day step."""
    if not is_quiet(conn, step, identity, outputs, scope):
        return None
    return DayPlan(step, False, 0, [], "", identity, quiet=True)


def _fingerprints_sql(inputs: list[str], keys: list[str]) -> str:
    """SQL: every key (`keys` columns) of the `inputs` and its fingerprint, "f0|f1|..." of each
    input's `ROWS_FINGERPRINT` of the key's rows ("-" for an input without any), in one query:
    a query per input cost more than the hashing for small inputs."""
    by = ", ".join(keys)
    parts = [
        f"(SELECT {by}, {ROWS_FINGERPRINT} AS f{i} FROM ({sql}) t GROUP BY {by})"
        for i, sql in enumerate(inputs)
    ]
    joined = parts[0] + "".join(f" FULL JOIN {p} USING ({by})" for p in parts[1:])
    fingerprint = " || '|' || ".join(f"coalesce(f{i}, '-')" for i in range(len(parts)))
    return f"SELECT {by}, {fingerprint} AS fingerprint FROM {joined}"


def plan_people(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    inputs: list[str],
    outputs: list[str],
    salt: str,
    scope: str | None = None,
    identity: str | None = None,
) -> PersonPlan:
    """Compare each person's input rows (`inputs`: queries with a `person_id` column) with what
    `step` last saw. Everyone is recomputed when an output table is missing, the salt changed, or
    a row has no person_id (it could not be attributed to anyone's recompute).

    `scope` (SQL on `person_id`, e.g. `pipelines.store.in_shards`) plans only the people it
    holds, against their records alone: "everyone" then means everyone in the scope, and the
    plan's fingerprints are theirs, for `record` with the same scope.

    First, and in place of all that when it holds, `quiet_plan`: the same input tables, salt and
    records as when the step last recorded. `identity` is the step's own `inputs_identity` when
    its salt is worked out from its inputs (read only when the shortcut misses); by default
    that of `inputs` and `salt`."""
    salt = full_salt(salt)
    assert inputs, "a step has at least one input"
    if identity is None:
        identity = inputs_identity(conn, inputs, salt)
    quiet = quiet_plan(conn, step, identity, outputs, scope)
    if quiet is not None:
        return quiet
    within = "true" if scope is None else scope
    query = in_scope(_fingerprints_sql(inputs, ["person_id"]), scope)
    fingerprints = conn.execute(query).pl()
    has_null_person = fingerprints["person_id"].null_count() > 0

    stored = pl.DataFrame(schema={"person_id": pl.String, "fingerprint": pl.String})
    stored_salts: set[str] = set()
    if table_exists(conn, STATE_TABLE):
        state = conn.execute(
            f"SELECT person_id, fingerprint, salt FROM {STATE_TABLE} WHERE step = ? AND {within}",
            [step],
        ).pl()
        stored = state.select("person_id", "fingerprint")
        stored_salts = set(state["salt"].to_list())
    outputs_exist = all(table_exists(conn, t) for t in outputs)
    everyone = not outputs_exist or stored.height == 0 or stored_salts != {salt} or has_null_person
    if everyone:
        return PersonPlan(step, True, [], [], fingerprints, salt, identity)
    changed = fingerprints.join(stored, on=["person_id", "fingerprint"], how="anti")
    gone = stored.join(fingerprints, on="person_id", how="anti")
    if changed.height == 0 and gone.height == 0:
        # Nothing new, found the long way: the records hold; the next such night is quiet.
        remember(conn, step, identity, scope)
    return PersonPlan(
        step,
        False,
        sorted(changed["person_id"].to_list()),
        sorted(gone["person_id"].to_list()),
        fingerprints,
        salt,
        identity,
    )


def record(conn: duckdb.DuckDBPyConnection, plan: PersonPlan, scope: str | None = None) -> None:
    """Store the fingerprints the step has just been brought up to date with: of everyone, or of
    the people in `scope` (the plan's, see `plan_people`), keeping the others' as they are.
    A quiet plan has nothing to store. The plan's `inputs` are remembered with the records."""
    if plan.quiet:
        return
    if not table_exists(conn, STATE_TABLE):
        create_table(conn, STATE_TABLE, STATE_SCHEMA)
    within = "" if scope is None else f" AND ({scope})"
    conn.execute(f"DELETE FROM {STATE_TABLE} WHERE step = ?{within}", [plan.step])
    rows = plan.fingerprints.with_columns(
        pl.lit(plan.step).alias("step"), pl.lit(plan.salt).alias("salt")
    ).select(list(STATE_SCHEMA))
    insert_frame(conn, STATE_TABLE, rows)
    remember(conn, plan.step, plan.inputs, scope)


def plan_whole(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    inputs: list[str],
    outputs: list[str],
    salt: str,
    identity: str | None = None,
) -> PersonPlan:
    """The plan of a step whose output spans everyone (the cohort models, the persons table): it
    recomputes everything or nothing. All input rows count as one group, fingerprinted whole by
    `plan_people`; `changed(plan)` says whether the step has to run. `inputs` need no person_id.
    `identity` as for `plan_people` (the step's own, when `inputs` are a digest of its tables)."""
    if identity is None:
        identity = inputs_identity(conn, inputs, full_salt(salt))
    # Each row enters through its hash, so every column counts (person_id included). A constant
    # first row keeps the group there when an input is empty (else every run would be a first).
    whole = [
        f"SELECT '{WHOLE}' AS person_id, NULL::UBIGINT AS row_hash UNION ALL "
        f"SELECT '{WHOLE}', hash(x) FROM ({sql}) x"
        for sql in inputs
    ]
    return plan_people(conn, step, whole, outputs, salt, identity=identity)


WHOLE = "*"  # the one group of `plan_whole`


def changed(plan: PersonPlan) -> bool:
    """Whether a step has anything to recompute."""
    return plan.everyone or bool(plan.touched)


def only_people(sql: str, people_table: str = "_people") -> str:
    """`sql` restricted to the people in the temp table made by `register_people`."""
    return f"SELECT * FROM ({sql}) WHERE person_id IN (SELECT person_id FROM {people_table})"


def register_people(conn: duckdb.DuckDBPyConnection, people: list[str]) -> None:
    """A temp table `_people` holding `people`, for `only_people` and
    `pipelines.store.replace_people`."""
    frame = pl.DataFrame({"person_id": people}, schema={"person_id": pl.String})
    conn.register("_people_frame", frame.to_arrow())
    try:
        conn.execute("CREATE OR REPLACE TEMP TABLE _people AS SELECT * FROM _people_frame")
    finally:
        conn.unregister("_people_frame")


# Per (person, day) -----------------------------------------------------------------------------
#
# diet_daily's row for a person-day depends on that day's inputs only (its gap rows aside, which
# the step rebuilds per person), so it can be recomputed by day: a night on which every person
# adds a day then costs the new days, not everyone's history.

DAY_STATE_TABLE = "person_day_inputs"
DAY_STATE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "step": pl.String,
    "person_id": pl.String,
    "day": pl.Date,
    "fingerprint": pl.String,
    "salt": pl.String,
}


@dataclass(frozen=True)
class DayPlan:
    """What a per-day step has to recompute. The changed (person_id, day) keys, new, changed or
    gone, are in the temp table `_days` and their people in `_people` (for `only_days`,
    `only_people` and the step's rewrite of the keys); the current fingerprints are in
    `_day_inputs` until `record_days` stores them, except when everyone is recomputed: then
    `record_days` takes them afresh from `fingerprints`."""

    step: str
    everyone: bool  # no usable state: recompute every person-day (and replace the step's tables)
    days: int  # changed keys (when not everyone)
    people: list[str]  # people with a changed key (when not everyone)
    salt: str
    inputs: str | None = None  # `inputs_identity` of what was planned, remembered by `record_days`
    quiet: bool = False  # nothing new (`quiet_days`): no fingerprints taken, nothing to record
    fingerprints: str = ""  # the query of every key and its fingerprint (in the plan's scope)


def plan_days(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    inputs: list[str],
    outputs: list[str],
    salt: str,
    exclude_data: tuple[str, ...] = (),
    scope: str | None = None,
    identity: str | None = None,
) -> DayPlan:
    """Compare each person-day's input rows (`inputs`: queries with `person_id` and `day`
    columns) with what `step` last saw, like `plan_people` does per person. Everyone is
    recomputed when an output table is missing, the salt changed, or a row has no person_id or no
    day. The fingerprints never leave DuckDB: there are as many as person-days.

    `scope` (SQL on `person_id`, as for `plan_people`) plans only the days of the people it
    holds, against their records alone: "everyone" then means everyone in the scope, and
    `record_days` with the same scope stores only theirs.

    First, as `plan_people` does, `quiet_days`; `identity` as there."""
    salt = full_salt(salt, exclude_data)
    assert inputs, "a step has at least one input"
    if identity is None:
        identity = inputs_identity(conn, inputs, salt)
    quiet = quiet_days(conn, step, identity, outputs, scope)
    if quiet is not None:
        return quiet
    within = "true" if scope is None else scope
    query = in_scope(_fingerprints_sql(inputs, ["person_id", "day"]), scope)
    stored_salts: set[str] = set()
    if table_exists(conn, DAY_STATE_TABLE):
        stored_salts = {
            r[0]
            for r in conn.execute(
                f"SELECT DISTINCT salt FROM {DAY_STATE_TABLE} WHERE step = ? AND {within}",
                [step],
            ).fetchall()
        }
    outputs_exist = all(table_exists(conn, t) for t in outputs)
    # Decided before the fingerprints are taken: there are as many as person-days, and a first
    # build held them all (1.8 M at 10,000 people) while it built the days (issue 19).
    if not outputs_exist or stored_salts != {salt}:
        return DayPlan(step, True, 0, [], salt, identity, fingerprints=query)
    if not _changed_days(conn, step, query, within):
        return DayPlan(step, True, 0, [], salt, identity, fingerprints=query)
    conn.execute("CREATE OR REPLACE TEMP TABLE _people AS SELECT DISTINCT person_id FROM _days")
    days = conn.execute("SELECT count(*) FROM _days").fetchone()
    people = [r[0] for r in conn.execute("SELECT person_id FROM _people ORDER BY 1").fetchall()]
    if not people:
        remember(conn, step, identity, scope)  # nothing new, found the long way
    return DayPlan(
        step, False, int(days[0]) if days else 0, people, salt, identity, fingerprints=query
    )


def _changed_days(conn: duckdb.DuckDBPyConnection, step: str, query: str, within: str) -> bool:
    """Fill the temp table `_days` with the keys whose fingerprint (`query`) differs from the
    one `step` recorded, or that only one side has (new, changed or gone), and `_day_inputs` with
    their fingerprints (`record_days` stores no others). False, and neither, when a row has no
    person or no day.

    A store shard at a time, in one statement each: a person-day's rows are all in its person's
    shard, so each shard's fingerprints are taken from its own files (`shard_views`) and compared
    with its people's records, and DuckDB's aggregate and join hold one shard's person-days. No
    fingerprint but a changed key's is kept: a temp table made inside the step's transaction
    stays in memory until it ends, even once replaced or dropped, and the whole cohort's
    fingerprints held 1.8 M rows at 10,000 people (issue 19: +213 MB)."""
    shards = store_shards(conn)
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE _changed (person_id VARCHAR, day DATE, fingerprint VARCHAR)"
    )
    for shard in range(shards):
        # The records are a store table too: each pass reads its shard's parts of them only.
        with shard_views(conn, shard):
            # The last filter keeps a native table's rows, read whole in every pass, to one
            # pass; after the join, it is worked out for the changed keys alone.
            conn.execute(
                f"INSERT INTO _changed SELECT person_id, day, c.fingerprint FROM ({query}) c "
                f"FULL JOIN (SELECT person_id, day, fingerprint FROM {DAY_STATE_TABLE} "
                f"WHERE step = ? AND {within}) s USING (person_id, day) "
                f"WHERE c.fingerprint IS DISTINCT FROM s.fingerprint AND {shard_sql(shards)} = ?",
                [step, shard],
            )
    # A row without a person or a day has no record to match: it is always in `_changed`.
    row = conn.execute(
        "SELECT count(*) FROM _changed WHERE person_id IS NULL OR day IS NULL"
    ).fetchone()
    if not (row and row[0]):
        conn.execute("CREATE OR REPLACE TEMP TABLE _days AS SELECT person_id, day FROM _changed")
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE _day_inputs AS "
            "SELECT * FROM _changed WHERE fingerprint IS NOT NULL"
        )
    conn.execute("DROP TABLE _changed")
    return not (row and row[0])


def record_days(conn: duckdb.DuckDBPyConnection, plan: DayPlan, scope: str | None = None) -> None:
    """Store the fingerprints the step has just been brought up to date with: all of them (of
    everyone, or of the people in `scope`, the plan's) after recomputing everyone, else only the
    changed keys' (the rest are already stored). A quiet plan has nothing to store. The plan's
    `inputs` are remembered with the records."""
    if plan.quiet:
        return
    # A store table (`pipelines.store`), of DAY_STATE_SCHEMA's columns: the shards of the keys
    # written have the parts that held their old records rewritten, and the new ones in a part
    # at their end.
    mine = f"t.step = {sql_text(plan.step)}"
    records = (
        f"SELECT {sql_text(plan.step)} AS step, person_id::VARCHAR AS person_id, "
        "day::DATE AS day, fingerprint::VARCHAR AS fingerprint, "
        f"{sql_text(plan.salt)} AS salt FROM "
    )
    if plan.everyone:
        # Taken now, not kept from the plan: the step does not change its inputs.
        fresh = records + f"({plan.fingerprints})"
        if not table_exists(conn, DAY_STATE_TABLE):
            # The first record makes the table (a plan of changed days needs one to compare).
            replace_all(conn, DAY_STATE_TABLE, fresh)
        else:
            # The scope (SQL on person_id) reads the record's own column: `t` is the only table.
            within = "" if scope is None else f" AND ({scope})"
            rewrite(conn, DAY_STATE_TABLE, mine + within, fresh, None)
    else:
        rewrite(
            conn,
            DAY_STATE_TABLE,
            # IN, not a correlated EXISTS (see `replace_changed_days`).
            f"{mine} AND (t.person_id, t.day) IN (SELECT person_id, day FROM _days)",
            records + "_day_inputs SEMI JOIN _days USING (person_id, day)",
            "SELECT person_id FROM _people",
        )
    remember(conn, plan.step, plan.inputs, scope)


def in_scope(sql: str, scope: str | None) -> str:
    """`sql` (a query with a person_id column) restricted to the people of `scope` (None: all)."""
    return sql if scope is None else f"SELECT * FROM ({sql}) WHERE {scope}"


def only_days(sql: str) -> str:
    """`sql` restricted to the (person_id, day) keys in `_days` (made by `plan_days`)."""
    return f"SELECT t.* FROM ({sql}) t SEMI JOIN _days USING (person_id, day)"
