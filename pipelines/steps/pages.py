"""The person-page step and the index step of the dashboards (`pipelines.steps.dashboards` reads
what they show): which person pages of a run's person shards to render and which of the section
files beside them (their findings and lag-window scan), each by its own inputs, and what the index
shows of each person, kept in `page_summaries` (`update_person_pages`); then the index and the
cohort page from those rows alone (`update_index`).
"""

from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import duckdb
import polars as pl

from pipelines.incremental import (
    ROWS_FINGERPRINT,
    STATE_SCHEMA,
    STATE_TABLE,
    PersonPlan,
    full_salt,
    in_scope,
    nothing_plan,
    plan_people,
    record,
)
from pipelines.reports.dashboards import (
    DashboardInputs,
    PageInputs,
    shared_page_inputs,
    shared_section_inputs,
    summaries_frame,
    summaries_from,
    write_index_pages,
    write_person_pages,
    write_plotly_js,
)
from pipelines.reports.inputs import Renders, normalise, person_order
from pipelines.reports.page_inputs import person_sources_frame
from pipelines.reports.page_summary import SUMMARY_SCHEMA, PageSummary
from pipelines.reports.sources import person_sources, run_time
from pipelines.steps.features import full_build_shards, replace_shards, shard_scope
from pipelines.steps.page_shards import (
    StoreInputs,
    keep_freshness,
    person_states,
    record_person_states,
    record_states,
    shard_states,
    store_inputs,
    unchanged_people,
    unchanged_shards,
)
from pipelines.store import (
    MANIFEST,
    SHARDS,
    replace_all,
    root_of,
    shard_count,
    shard_of,
    shard_sql,
)
from pipelines.warehouse import Warehouse, table_exists

STEP = "dashboards"
# The section files beside the person pages (findings and lag-window scan) are planned apart:
# their inputs change far less often than a page's (a new diary day changes a page, not them).
SECTION_STEP = "dashboards/lag"


class PagePlans(NamedTuple):
    """A group's plans: which person pages to render and which section files."""

    pages: PersonPlan
    sections: PersonPlan


def _plan(
    conn: duckdb.DuckDBPyConnection,
    step: str,
    tables: dict[str, pl.DataFrame],
    salt: str,
    scope: str | None,
) -> PersonPlan:
    views = {name: f"_page_{name}" for name in tables}
    for name, view in views.items():
        conn.register(view, tables[name].to_arrow())
    try:
        return plan_people(
            conn,
            step,
            inputs=[f"SELECT * FROM {v} WHERE person_id IS NOT NULL" for v in views.values()],
            outputs=[],  # the files: a missing one is rendered (`write_dashboards`)
            salt=salt,
            scope=scope,
        )
    finally:
        for view in views.values():
            conn.unregister(view)


def plan_pages(
    conn: duckdb.DuckDBPyConnection, pages: PageInputs, scope: str | None = None
) -> PagePlans:
    """Which person pages of a group to render, and which of their section files: the people
    whose page inputs (section inputs) changed since they were last written, or everyone when
    what every page (every section) shares changed (`pages.shared`, `pages.sections_shared`, the
    salts). Two fingerprints per person, of the one `plan_people`, under two step names.

    The fingerprints are taken of the frames the pages are built from, not of the warehouse
    tables again: they cover exactly what a page shows (the columns, the rows of followed people,
    the person-scope findings), and a step between the read and this plan cannot slip in rows
    the pages never saw. Rows without a person are on no person page (the index and cohort page,
    always written, show them; the counts in the pipeline-wide warnings are in the salt).
    The one exception are the section files' windows, by far the largest of their inputs: they
    are read only for the section files rendered, so the plan has them as a fingerprint per
    person taken in the warehouse (`window_fingerprints`) among `pages.sections`.
    `scope` (the run's person shards, `plan_people`) plans against their people's records only.
    """
    return PagePlans(
        _plan(conn, STEP, pages.tables, pages.shared, scope),
        _plan(conn, SECTION_STEP, pages.sections, pages.sections_shared, scope),
    )


def window_fingerprints(
    conn: duckdb.DuckDBPyConnection, table: str, scope: str | None = None
) -> pl.DataFrame:
    """Per person (of `scope`, when given), one fingerprint of their complete exposure windows in
    `table` (person_id, windows): every column of the rows `_windows` reads for their section
    file, taken inside DuckDB, so that a night that renders no section file reads no window."""
    columns = (
        {d[0] for d in conn.execute(f"SELECT * FROM {table} LIMIT 0").description}
        if table_exists(conn, table)
        else set()
    )
    if not {"person_id", "complete"} <= columns:  # no window is complete
        return pl.DataFrame(schema={"person_id": pl.String, "windows": pl.String})
    return conn.execute(
        f"SELECT person_id, {ROWS_FINGERPRINT} AS windows "
        f"FROM (SELECT * FROM {table} WHERE complete AND {scope or 'true'}) t GROUP BY person_id"
    ).pl()


def _whole_plan(groups: list[PersonPlan], step: str, salt: str) -> PersonPlan:
    """The groups' plans (of `step`) as one, to record: everyone's fingerprints. Everyone's
    files were rendered when every group rendered all of its people (a new salt, or no record
    yet); the files of people gone are removed by `write_dashboards`, so `gone` is not worked
    out."""
    if not groups:
        empty = pl.DataFrame(schema={"person_id": pl.String, "fingerprint": pl.String})
        return PersonPlan(step, True, [], [], empty, full_salt(salt))
    return PersonPlan(
        step,
        all(g.everyone for g in groups),
        sorted(p for g in groups for p in g.people),
        [],
        pl.concat([g.fingerprints for g in groups]),
        groups[0].salt,
    )


SUMMARIES = "page_summaries"


def update_person_pages(
    warehouse: Warehouse,
    out_dir: Path,
    data: DashboardInputs,
    workers: int | None = None,
    shards: Collection[int] | None = None,
) -> tuple[list[Path], PersonPlan]:
    """Write the person pages and section files of the people of `data` (those of the store
    shards `shards`, as `load_dashboard_inputs` read them; None: everyone), rendering only those
    whose inputs changed (all on a first run), and record what they were built from and what the
    index and cohort page show of each (`page_summaries`) once they are written and synced: a run
    that fails before that leaves the old records, so the next run renders the same files again.
    A run of some shards plans, records and removes the pages of their people only. Returns the
    files written and the pages' plan.

    Read from the warehouse (`data.people`), a store shard whose recorded state still holds
    (`pipelines.steps.page_shards`) is left as it is before anyone's rows are read: a quiet night
    reads, plans and records nothing. The source freshness `data` scanned is kept for the fan-in
    and the next run (`page_shards.keep_freshness`).

    Each group of people is planned as it comes (`write_person_pages` hands over its inputs), so
    only one group's inputs are in memory at a time."""
    salt, sections_salt = shared_page_inputs(data, out_dir), shared_section_inputs(out_dir)
    groups: list[PagePlans] = []
    inputs: StoreInputs | None = None
    with warehouse.read() as conn:
        if data.people is not None:
            # Frames handed in are not the store's: only a read from the warehouse is planned
            # shard by shard first (`pipelines.steps.page_shards`).
            root = root_of(conn)
            count = shard_count(root) if (root / MANIFEST).exists() else SHARDS
            run = sorted(range(count) if shards is None else {int(k) for k in shards})
            inputs = store_inputs(conn)
        if inputs is not None:
            salts = (salt, sections_salt)
            states = shard_states(inputs, run, count, salts, _shard_rows(conn, data, count))
            kept = unchanged_shards(conn, states, count, STEP, out_dir)
            if kept:
                # Only the other shards are read, planned, rendered and recorded.
                shards = [k for k in run if k not in kept]
                data = _of_shards(data, set(shards), count)
        shards_scope = scope = shard_scope(conn, shards) if shards != [] else None
    if shards == []:  # every shard left as it is
        if data.freshness_key is not None:
            with warehouse.write() as conn:
                _keep_freshness(conn, data)
        # Every shard left as it is: the step has nothing to do.
        return [write_plotly_js(out_dir)], nothing_plan(STEP)
    # Taken in connections of their own, over the parts of the shards left.
    ids, rows = _fingerprints(data) if inputs is not None else ([], None)
    same: set[str] = set()
    people_rows: list[pl.DataFrame] = []  # what the people's states hold besides the step's own
    with warehouse.read() as conn:
        recorded = _records(conn)
        if data.people is not None:
            # Of the run's shards: the people left out have no plan to take them. Also what the
            # people's states hold of their windows (`PersonGroups.fingerprints` has none).
            windows = window_fingerprints(conn, "exposure_windows", shards_scope)
        if inputs is not None and rows is not None:
            # In the shards that changed, the same decision per person, before their rows are
            # read: the people whose state holds are left out, their records and summaries kept.
            people_rows = [rows, windows, _sources(data)]
            same = unchanged_people(
                conn, person_states(inputs, ids, salts, [*people_rows, recorded]), out_dir
            )
            if same:
                data = _without(data, same)
                scope = _and_not(shards_scope)
    # Each group is planned against the step's records, read once into an in-memory database,
    # instead of in a warehouse connection of its own.
    with duckdb.connect() as memory:
        _hold(memory, same)
        if recorded.height:
            memory.register("_recorded", recorded.to_arrow())
            memory.execute(f"CREATE TABLE {STATE_TABLE} AS SELECT * FROM _recorded")
            memory.unregister("_recorded")
        if data.people is None:
            # The section files are built from the windows handed over, not the warehouse's.
            if data.exposure_windows.width:
                memory.register("_windows", data.exposure_windows.to_arrow())
            windows = window_fingerprints(memory, "_windows")
        # The people of the run's shards who had a page: theirs are the files it may remove
        # (None: the run is everyone's, and so is every person file in the folder).
        owned: list[str] | None = None
        if scope is not None:
            owned = (
                memory.execute(
                    f"SELECT DISTINCT person_id FROM {STATE_TABLE} WHERE step = ? AND {scope}",
                    [STEP],
                )
                .pl()["person_id"]
                .to_list()
                if recorded.height
                else []
            )

        def plan_group(
            group: list[str], tables: dict[str, pl.DataFrame], sections: dict[str, pl.DataFrame]
        ) -> Renders:
            mine = windows.filter(
                pl.col("person_id").is_in(pl.Series(group, dtype=pl.String).implode())
            )
            sections = {**sections, "windows": mine}
            # Against the records of the group's people only: planned against every record of
            # the run, each group's plan listed the rest of the cohort as gone, and the plans
            # kept for recording held that list once per group (issue 19: +40 MB at 10,000
            # people, quadratic in the people).
            members = pl.DataFrame({"person_id": group}, schema={"person_id": pl.String})
            memory.register(_GROUP, members.to_arrow())
            try:
                page_inputs = PageInputs(tables, salt, sections, sections_salt)
                plans = plan_pages(memory, page_inputs, _within_group(scope))
            finally:
                memory.unregister(_GROUP)
            groups.append(plans)
            pages, scans = plans
            return Renders(
                None if pages.everyone else frozenset(pages.people),
                None if scans.everyone else frozenset(scans.people),
            )

        written, summaries = write_person_pages(out_dir, data, workers, plan_group, owned)
    plans = PagePlans(
        _whole_plan([g.pages for g in groups], STEP, salt),
        _whole_plan([g.sections for g in groups], SECTION_STEP, sections_salt),
    )
    with warehouse.write() as conn:
        _hold(conn, same)
        for plan in plans:
            record(conn, plan, scope)
        _store_summaries(conn, summaries, shards, shards_scope, same)
        if inputs is not None:
            # Taken of what the run started from, with the records it has just written.
            done = shards if shards is not None else run
            rows_of = _shard_rows(conn, data, count)
            record_states(conn, shard_states(inputs, done, count, salts, rows_of))
            if people_rows:
                them = person_states(inputs, ids, salts, [*people_rows, _records(conn)])
                record_person_states(conn, them, shards_scope)
        _keep_freshness(conn, data)
    return written, plans.pages


def _keep_freshness(conn: duckdb.DuckDBPyConnection, data: DashboardInputs) -> None:
    """Keep the source freshness `data` scanned, for the fan-in and the next run."""
    if data.freshness_key is not None:
        keep_freshness(conn, data.source_freshness, data.freshness_key)


def _records(conn: duckdb.DuckDBPyConnection, scope: str | None = None) -> pl.DataFrame:
    """The step's records of both plans (`person_inputs`), of `scope` (None: everyone's)."""
    if not table_exists(conn, STATE_TABLE):
        return pl.DataFrame(schema=STATE_SCHEMA)
    return conn.execute(
        in_scope(f"SELECT * FROM {STATE_TABLE} WHERE step IN (?, ?)", scope), [STEP, SECTION_STEP]
    ).pl()


def _sources(data: DashboardInputs, freshness: pl.DataFrame | None = None) -> pl.DataFrame:
    """The people's sources as their pages show them, less the clock: everyone's of `data`, or
    those of the people of `freshness` (rows of `data.source_freshness`). Built from the frames
    `person_sources` reads only."""
    d = normalise(
        DashboardInputs(
            source_freshness=data.source_freshness if freshness is None else freshness,
            ingest_files=data.ingest_files,
            run_info=data.run_info,
            demo_sources=data.demo_sources,
        )
    )
    return person_sources_frame(person_sources(d, run_time(d.run_info)))


def _shard_rows(
    conn: duckdb.DuckDBPyConnection, data: DashboardInputs, count: int
) -> Callable[[int], list[pl.DataFrame]]:
    """What a shard's state holds besides its parts (`page_shards.shard_states`), one shard's
    people at a time: their sources as their pages show them and the step's records of them.
    Everyone's at once, as Python objects and JSON text, was a quiet night's peak (+70 MB at
    10,000 people against +20 MB at 2,000)."""
    fresh = data.source_freshness
    shard = pl.Series(
        [shard_of(p, count) for p in fresh["person_id"]] if "person_id" in fresh.columns else [],
        dtype=pl.Int64,
    )

    def rows_of(k: int) -> list[pl.DataFrame]:
        theirs = fresh.filter(shard == k) if shard.len() else fresh
        return [_sources(data, theirs), _records(conn, f"{shard_sql(count)} = {int(k)}")]

    return rows_of


def _of_shards(data: DashboardInputs, shards: set[int], count: int) -> DashboardInputs:
    """`data` with the person groups of the people of `shards` only."""
    assert data.people is not None
    ids = [p for p in data.people.ids if shard_of(p, count) in shards]
    return replace(data, people=replace(data.people, ids=ids))


def _without(data: DashboardInputs, people: set[str]) -> DashboardInputs:
    """`data` with the person groups of everyone but `people`."""
    assert data.people is not None
    ids = [p for p in data.people.ids if p not in people]
    return replace(data, people=replace(data.people, ids=ids))


def _fingerprints(data: DashboardInputs) -> tuple[list[str], pl.DataFrame | None]:
    """The people of `data` and their rows' fingerprints (`PersonGroups.fingerprints`); None
    when `data` cannot fingerprint its rows."""
    people = data.people
    if people is None or people.fingerprints is None or not people.ids:
        return [], None
    return people.ids, people.fingerprints(people.ids)


# The people whose state held (`update_person_pages`), registered in each connection whose
# queries take the run's scope less them (`_and_not`).
_HELD = "_held_people"


# The people of the group being planned, registered in the plans' in-memory database.
_GROUP = "_page_group"


def _within_group(scope: str | None) -> str:
    """`scope` (None: everyone) narrowed to the people of the group being planned (`_GROUP`)."""
    group = f"person_id IN (SELECT person_id FROM {_GROUP})"
    return group if scope is None else f"({scope}) AND {group}"


def _and_not(scope: str | None) -> str:
    """`scope` (None: everyone) less the people registered as `_HELD` (`_hold`). A table, not a
    list of their ids: a NOT IN list of 1,800 ids (a night a tenth syncs) cost each query that
    took the scope ten times its work."""
    others = f"person_id NOT IN (SELECT person_id FROM {_HELD})"
    return others if scope is None else f"({scope}) AND {others}"


def _hold(conn: duckdb.DuckDBPyConnection, people: Collection[str]) -> None:
    """`people` as `_HELD` in `conn`, for `_and_not`."""
    held = pl.DataFrame({"person_id": sorted(people)}, schema={"person_id": pl.String})
    conn.register(_HELD, held.to_arrow())


def _store_summaries(
    conn: duckdb.DuckDBPyConnection,
    summaries: list[PageSummary],
    shards: Collection[int] | None,
    scope: str | None,
    held: Collection[str] = (),
) -> None:
    """Replace the rows of `page_summaries` of the run's shards (`scope`) with `summaries` and
    the kept rows of `held` (their people whose state held); all of them without a scope, or on
    the table's first run: the other shards' parts start empty. Rows that did not change are not
    written again: a quiet night writes no file."""
    rows = summaries_frame(summaries).sort("person_id")
    if table_exists(conn, SUMMARIES):
        kept = conn.execute(
            in_scope(f"SELECT * FROM {SUMMARIES}", scope) + " ORDER BY person_id"
        ).pl()
        if held:
            theirs = kept.filter(
                pl.col("person_id").is_in(pl.Series(list(held), dtype=pl.String).implode())
            )
            rows = pl.concat([rows, theirs.select(rows.columns).cast(rows.schema)])
            rows = rows.sort("person_id")
        if kept.columns == rows.columns and kept.equals(rows):
            return
    replaced = full_build_shards(conn, [SUMMARIES], shards, scope)
    if replaced is None:
        replace_all(conn, SUMMARIES, rows)
        return
    conn.register("_summaries", rows.to_arrow())
    try:
        replace_shards(conn, SUMMARIES, "SELECT * FROM _summaries", replaced)
    finally:
        conn.unregister("_summaries")


def update_index(warehouse: Warehouse, out_dir: Path, data: DashboardInputs) -> list[Path]:
    """Write the index and the cohort page from everyone's row of `page_summaries` (written by
    the person-page step, shard by shard) and what `data` holds across everyone; returns their
    paths. Nobody's tables are read or summarised again."""
    with warehouse.read() as conn:
        rows = (
            conn.execute(f"SELECT * FROM {SUMMARIES}").pl()
            if table_exists(conn, SUMMARIES)
            else pl.DataFrame(schema=SUMMARY_SCHEMA)
        )
    order = {pid: i for i, pid in enumerate(person_order(rows["person_id"].to_list()))}
    rows = rows.sort(pl.col("person_id").replace_strict(order, return_dtype=pl.Int64))
    return write_index_pages(out_dir, data, summaries_from(rows))
