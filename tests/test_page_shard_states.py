"""The person-page step leaves a store shard as it is when its state (its parts, its people's
sources and records, what every page shares) is what the step recorded and its files are there:
a quiet night reads nobody's rows; a changed part, a deleted page or a changed salt brings its
shard (or every shard) back into the plan. The source freshness is kept with the record it was
read under, and read back while that holds."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.incremental import register_people
from pipelines.project import Project
from pipelines.reports import person_page_name, person_section_name
from pipelines.steps import dashboards as step
from pipelines.steps import pages
from pipelines.steps.page_shards import FRESHNESS
from pipelines.store import MANIFEST, SHARD_FUNCTION, SHARDS, replace_people, shard_of
from tests.conftest import make_demo_project, refresh_all

_RUN_AT = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: _RUN_AT.sub(b"<run>", p.read_bytes()) for p in sorted(folder.iterdir())}


def _inputs(project: Project) -> step.DashboardInputs:
    """What the person-page asset reads (`pipelines.defs.reports.assets._inputs`)."""
    data = step.load_dashboard_inputs(project.warehouse())
    config = project.config()
    data.pseudonymise_cohort = config.settings.pseudonymise_cohort
    data.demo_sources = frozenset(s.name for s in config.sources if s.demo)
    return data


def _counted_nights(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> tuple[Callable[[], set[str]], list[str]]:
    """A night of the person-page step on `project` (returns the pages it wrote) and the people
    whose tables the last night read, in the order of its groups."""
    read: list[str] = []
    read_group = step._read_group

    def counted(*args: Any) -> Any:
        if args[-1] is step._person_tables:
            read.extend(args[-2])
        return read_group(*args)

    monkeypatch.setattr(step, "_read_group", counted)

    def night() -> set[str]:
        read.clear()
        written, _ = step.update_person_pages(
            project.warehouse(), project.dashboards_dir, _inputs(project)
        )
        return {p.name for p in written if p.suffix == ".html"}

    return night, read


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    project = make_demo_project(tmp_path / "demo")
    refresh_all(project.root, monkeypatch, {})  # renders every page and records the states
    return project


def test_only_the_shards_whose_state_changed_are_read_and_planned(
    demo: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse, out = demo.warehouse(), demo.dashboards_dir
    night, read = _counted_nights(demo, monkeypatch)

    full = _files(out)
    people = step.load_dashboard_inputs(warehouse).people
    assert people is not None and len(people.ids) > 1
    alice = people.ids[0]
    shard = shard_of(alice, SHARDS)
    mates = {p for p in people.ids if shard_of(p, SHARDS) == shard}

    # Nothing new: nobody's rows are read.
    assert night() == set()
    assert read == []

    # A deleted page: its shard is read and planned again, the page written as it was.
    (out / person_page_name(alice)).unlink()
    assert night() == {person_page_name(alice)}
    assert set(read) == mates
    assert _files(out) == full

    # A changed row of alice's in the store: a new part in her shard only.
    with warehouse.write() as conn:
        rows = conn.execute("SELECT * FROM diet_daily WHERE person_id = ?", [alice]).pl()
        register_people(conn, [alice])
        replace_people(conn, "diet_daily", rows.with_columns(pl.col("fiber_g") + 1.0))
    assert night() == {person_page_name(alice)}
    assert set(read) == mates
    assert night() == set()
    assert read == []

    # What every page shares (here the code that renders them): every shard again.
    monkeypatch.setattr(pages, "shared_page_inputs", lambda data, out_dir: "another salt")
    assert night() == {person_page_name(p) for p in people.ids}


def test_the_source_freshness_is_read_back_while_its_record_holds(demo: Project) -> None:
    warehouse = demo.warehouse()
    with warehouse.read() as conn:
        schema = step._schema(conn)
        kept, key = step._source_freshness(conn, schema)
        assert key is None  # kept by the person-page step of the run: not scanned again
    with warehouse.write() as conn:
        conn.execute(f"DROP TABLE {FRESHNESS}")
    with warehouse.read() as conn:
        scanned, key = step._source_freshness(conn, schema)
    assert key is not None and scanned.height
    assert_frame_equal(kept, scanned)

    # Kept again by the next person-page run; a new file's time is a new record: scanned.
    step.update_person_pages(warehouse, demo.dashboards_dir, _inputs(demo))
    with warehouse.write() as conn:
        assert step._source_freshness(conn, schema)[1] is None
        conn.execute("UPDATE ingest_files SET modified_at = modified_at + INTERVAL 1 DAY")
        moved, key = step._source_freshness(conn, schema)
    assert key is not None
    assert moved["newest_file_at"].max() > scanned["newest_file_at"].max()


@pytest.fixture
def one_shard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """The demo with every person in one store shard: a changed row changes everyone's shard."""
    project = make_demo_project(tmp_path / "demo")
    store = project.root / "data" / "store"
    store.mkdir(parents=True, exist_ok=True)
    (store / MANIFEST).write_text(json.dumps({"shards": 1, "shard": SHARD_FUNCTION}))
    refresh_all(project.root, monkeypatch, {})
    return project


def test_in_a_changed_shard_only_the_people_whose_rows_changed_are_read(
    one_shard: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse, out = one_shard.warehouse(), one_shard.dashboards_dir
    night, read = _counted_nights(one_shard, monkeypatch)

    with warehouse.read() as conn:
        summaries = conn.execute("SELECT * FROM page_summaries ORDER BY person_id").pl()
    people = step.load_dashboard_inputs(warehouse).people
    assert people is not None and len(people.ids) > 1
    alice, others = people.ids[0], set(people.ids[1:])
    assert night() == set() and read == []

    # A changed row of alice's: her shard (everyone's) changed, only she is read and rendered,
    # the others' files, records and summaries kept.
    with warehouse.write() as conn:
        rows = conn.execute("SELECT * FROM diet_daily WHERE person_id = ?", [alice]).pl()
        register_people(conn, [alice])
        replace_people(conn, "diet_daily", rows.with_columns(pl.col("fiber_g") + 1.0))
    before = _files(out)
    assert night() == {person_page_name(alice)}
    assert read == [alice]
    after = _files(out)
    assert {n for n in after if after[n] != before.get(n)} == {person_page_name(alice)}
    with warehouse.read() as conn:
        now = conn.execute("SELECT * FROM page_summaries ORDER BY person_id").pl()
    assert now["person_id"].to_list() == summaries["person_id"].to_list()
    assert_frame_equal(
        now.filter(pl.col("person_id") != alice), summaries.filter(pl.col("person_id") != alice)
    )
    assert night() == set() and read == []

    # The pages are those a run of everyone writes.
    shutil.rmtree(out)
    step.update_person_pages(warehouse, out, _inputs(one_shard))
    rendered = _files(out)
    assert rendered == {n: after[n] for n in rendered} and len(rendered) == len(after) - 2

    # What every page shares: everyone again.
    monkeypatch.setattr(pages, "shared_page_inputs", lambda data, out_dir: "another salt")
    assert night() == {person_page_name(p) for p in people.ids}
    assert set(read) == others | {alice}


def test_a_changed_window_brings_back_its_person_only(
    one_shard: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A person's state holds their windows as the plan fingerprints them (not among their rows'
    # fingerprints): a changed window is a changed state, and a new section file.
    warehouse, out = one_shard.warehouse(), one_shard.dashboards_dir
    night, read = _counted_nights(one_shard, monkeypatch)
    with warehouse.read() as conn:
        row = conn.execute(
            "SELECT min(person_id) FROM exposure_windows WHERE complete AND value > 0"
        ).fetchone()
    assert row is not None and row[0] is not None
    person = row[0]
    assert night() == set() and read == []
    before = _files(out)

    with warehouse.write() as conn:
        rows = conn.execute("SELECT * FROM exposure_windows WHERE person_id = ?", [person]).pl()
        register_people(conn, [person])
        doubled = pl.when(pl.col("complete")).then(pl.col("value") * 2).otherwise(pl.col("value"))
        replace_people(conn, "exposure_windows", rows.with_columns(doubled.alias("value")))
    night()
    assert read == [person]
    after = _files(out)
    assert {n for n in after if after[n] != before.get(n)} == {person_section_name(person)}


def test_a_state_covers_its_shards_people_rows_and_nothing_else() -> None:
    """`shard_states` and `person_states`: a shard's state changes with a row of one of its
    people and with its own parts, not with another shard's people nor with the order of the
    rows; a person's state with their own rows only, and a person without rows has one too."""
    from pipelines.steps import page_shards
    from pipelines.steps.page_shards import StoreInputs, person_states, shard_states

    count = 4
    people = [f"p{i:02d}" for i in range(12)]
    alice = people[0]
    shard = shard_of(alice, count)
    others = [k for k in range(count) if k != shard]
    assert others and any(shard_of(p, count) == shard for p in people[1:])
    sources = pl.DataFrame(
        {
            "person_id": [*people, alice, None],
            "source": ["cm"] * len(people) + ["labs", "cm"],
            "latest_day": [date(2025, 1, i + 1) for i in range(len(people) + 2)],
            "stale": [False] * (len(people) + 2),
        }
    )
    records = pl.DataFrame({"person_id": people[:5], "fingerprint": ["1:2:3"] * 5})
    inputs = StoreInputs({k: [("diet_daily", [f"part-{k}.parquet"])] for k in range(count)}, "")
    salts = ("page salt", "section salt")

    def shards(frames: list[pl.DataFrame], parts: StoreInputs = inputs) -> dict[int, str]:
        return shard_states(parts, range(count), count, salts, lambda _: frames)

    def persons(frames: list[pl.DataFrame]) -> dict[str, str]:
        return person_states(inputs, [*people, "nobody"], salts, frames)

    before, each = shards([sources, records]), persons([sources, records])
    assert sorted(before) == list(range(count)) and len(set(before.values())) == count
    # Taken a shard at a time from each shard's people's rows only: the same states.
    asked: list[int] = []

    def theirs(shard: int) -> list[pl.DataFrame]:
        asked.append(shard)
        mine = pl.col("person_id").map_elements(lambda p: shard_of(p, count), pl.Int64) == shard
        return [sources.filter(mine), records.filter(mine)]

    assert shard_states(inputs, range(count), count, salts, theirs) == before
    assert asked == list(range(count))
    assert len(set(each.values())) == len(people) + 1
    # Taken a few people at a time (13 people, 5 at a time): the same states.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(page_shards, "PEOPLE_PER_PASS", 5)
        assert persons([sources, records]) == each
    # The same rows in another order, and an empty frame for one with no rows at all.
    shuffled = [sources.reverse(), records.sample(fraction=1.0, shuffle=True, seed=1)]
    assert shards(shuffled) == before and persons(shuffled) == each
    empty = pl.DataFrame()
    no_records = records.clear()
    assert shards([sources, empty]) == shards([sources, no_records])
    assert persons([sources, empty]) == persons([sources, no_records])

    # One of alice's rows changes: her shard's state and hers, nobody else's.
    moved = sources.with_columns(
        stale=pl.when(pl.col("person_id") == alice).then(True).otherwise(pl.col("stale"))
    )
    after, each_after = shards([moved, records]), persons([moved, records])
    assert {k for k in before if before[k] != after[k]} == {shard}
    assert {p for p in each if each[p] != each_after[p]} == {alice}
    # A shard's own parts are in its state; another shard's are not.
    parts = dict(inputs.parts)
    parts[others[0]] = [("diet_daily", ["part-new.parquet"])]
    changed = shards([sources, records], StoreInputs(parts, ""))
    assert {k for k in before if before[k] != changed[k]} == {others[0]}
