"""Groups of person shards as Dagster partitions (`pipelines.defs.partitions`): a run of one
partition recomputes and records only its shards' people, and leaves the other shards' files as
they were; a run of all of them is the step as it was before partitions; a run naming no
partition is refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

import pipelines.incremental as incremental
import pipelines.store as store
from pipelines.defs.partitions import (
    all_partitions_tags,
    partition_keys,
    partition_range_tags,
    shards_of_key,
)
from pipelines.incremental import (
    DAY_STATE_TABLE,
    STATE_TABLE,
    WHOLE,
    plan_days,
    plan_people,
    record,
    record_days,
)
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.store import SHARDS, in_shards, replace_all, shard_of
from pipelines.store_writes import forget
from tests.conftest import DemoRun, make_demo_project, sorted_tables

MARKERS = [dg.AssetKey("marker_draws"), dg.AssetKey("marker_trends")]


def _people(n: int) -> list[str]:
    return [f"p{i:03d}" for i in range(n)]


def test_a_scoped_plan_sees_and_records_only_its_shards() -> None:
    people = _people(40)
    shard = shard_of(people[0], SHARDS)
    mine = [p for p in people if shard_of(p, SHARDS) == shard]
    scope = in_shards([shard], SHARDS)
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE labs AS SELECT unnest(?) AS person_id, 1 AS x", [people])
        conn.execute("CREATE TABLE out (person_id VARCHAR)")
        inputs, outputs = ["SELECT * FROM labs"], ["out"]
        record(conn, plan_people(conn, "step", inputs, outputs, salt=""))
        conn.execute("UPDATE labs SET x = 2")  # everyone changed

        plan = plan_people(conn, "step", inputs, outputs, salt="", scope=scope)
        assert not plan.everyone and plan.people == sorted(mine)
        assert sorted(plan.fingerprints["person_id"]) == sorted(mine)
        record(conn, plan, scope)

        # The scope's people are up to date; everyone else is still to do, their records kept.
        assert plan_people(conn, "step", inputs, outputs, salt="", scope=scope).people == []
        rest = plan_people(conn, "step", inputs, outputs, salt="")
        assert rest.people == sorted(set(people) - set(mine))
        stored = conn.execute(f"SELECT count(*) FROM {STATE_TABLE}").fetchone()
        assert stored == (len(people),)


def test_a_day_plan_reads_a_shard_at_a_time_and_keeps_only_the_changed_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan_days` over the store: each shard's fingerprints come from that shard's files alone,
    and the step's transaction is left holding the changed keys, not a fingerprint per
    person-day (a temp table stays in memory until the transaction ends: issue 19)."""
    people, days = _people(120), 400
    project = Project(tmp_path)
    project.ensure_dirs()
    project.sources_yaml.write_text("sources: []\n", encoding="utf-8")
    warehouse = project.warehouse()

    first = date(2025, 1, 1)
    calendar = pl.date_range(first, first + timedelta(days - 1), eager=True).alias("day")

    def entries(value: float) -> pl.DataFrame:
        """Every person-day; p007's 9th day has `value`, every other 1."""
        frame = pl.DataFrame({"person_id": people}).join(calendar.to_frame(), how="cross")
        changed = (pl.col("person_id") == "p007") & (pl.col("day") == first + timedelta(8))
        return frame.with_columns(value=pl.when(changed).then(value).otherwise(1.0))

    inputs, outputs = ["SELECT person_id, day, value FROM marker_draws"], ["out"]
    with warehouse.write() as conn:
        replace_all(conn, "marker_draws", entries(1.0))
        conn.execute("CREATE TABLE out (person_id VARCHAR)")
        record_days(conn, plan_days(conn, "step", inputs, outputs, salt=""))
    with warehouse.write() as conn:
        replace_all(conn, "marker_draws", entries(2.0))

    seen: dict[int, set[str]] = {}
    shard_views = store.shard_views

    recorded: dict[int, set[str]] = {}

    @contextmanager
    def watched(conn: duckdb.DuckDBPyConnection, shard: int) -> Iterator[None]:
        with shard_views(conn, shard):
            rows = conn.execute("SELECT DISTINCT person_id FROM marker_draws").fetchall()
            seen[shard] = {r[0] for r in rows}
            # The records too are read from the shard's own parts.
            rows = conn.execute(f"SELECT DISTINCT person_id FROM {DAY_STATE_TABLE}").fetchall()
            recorded[shard] = {r[0] for r in rows}
            yield

    monkeypatch.setattr(incremental, "shard_views", watched)
    with warehouse.write() as conn:
        held = "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag = 'IN_MEMORY_TABLE'"
        before = conn.execute(held).fetchone()
        plan = plan_days(conn, "step", inputs, outputs, salt="")
        after = conn.execute(held).fetchone()
        assert (plan.days, plan.people) == (1, ["p007"])
        assert conn.execute("SELECT * FROM _days").fetchall() == [("p007", first + timedelta(8))]
        # A fingerprint per person-day (48,000) held 9.7 MB here; the changed keys, 0.5 MB.
        assert (after[0] if after else 0) - (before[0] if before else 0) < 2_000_000
    assert sorted(seen) == list(range(SHARDS))
    for shard, ids in seen.items():
        assert ids == recorded[shard] == {p for p in people if shard_of(p, SHARDS) == shard}


def test_a_scoped_day_plan_sees_and_records_only_its_shards_days(tmp_path: Path) -> None:
    people = _people(40)
    shard = shard_of(people[0], SHARDS)
    mine = sorted(p for p in people if shard_of(p, SHARDS) == shard)
    scope = in_shards([shard], SHARDS)
    with duckdb.connect() as conn:
        store.attach(conn, tmp_path / "store", read_only=False)  # the records are store parts
        conn.execute(
            "CREATE TABLE entries AS SELECT person_id, DATE '2025-01-01' + d::INTEGER AS day, "
            "1 AS x FROM (SELECT unnest(?) AS person_id) CROSS JOIN range(2) r(d)",
            [people],
        )
        conn.execute("CREATE TABLE out (person_id VARCHAR)")
        inputs, outputs = ["SELECT * FROM entries"], ["out"]
        record_days(conn, plan_days(conn, "step", inputs, outputs, salt=""))
        conn.execute("UPDATE entries SET x = 2 WHERE day = DATE '2025-01-02'")  # everyone's day 2

        plan = plan_days(conn, "step", inputs, outputs, salt="", scope=scope)
        assert not plan.everyone and plan.people == mine and plan.days == len(mine)
        record_days(conn, plan, scope)
        assert plan_days(conn, "step", inputs, outputs, salt="", scope=scope).people == []
        rest = plan_days(conn, "step", inputs, outputs, salt="")
        assert rest.people == sorted(set(people) - set(mine)) and rest.days == len(rest.people)

        # A new salt under the scope: everyone in it, whose records alone are replaced.
        plan = plan_days(conn, "step", inputs, outputs, salt="new", scope=scope)
        assert plan.everyone
        record_days(conn, plan, scope)
        salts = conn.execute(
            f"SELECT shard, count(DISTINCT salt), count(*) FROM (SELECT salt, "
            f"{in_shards([shard], SHARDS)} AS shard FROM {DAY_STATE_TABLE}) GROUP BY ALL"
        ).fetchall()
        assert sorted(salts) == [
            (False, 1, 2 * (len(people) - len(mine))),
            (True, 1, 2 * len(mine)),
        ]


def test_in_shards_refuses_a_shard_the_store_does_not_have() -> None:
    with pytest.raises(ValueError):
        in_shards([SHARDS], SHARDS)
    with pytest.raises(ValueError):
        partition_range_tags("shards-00-03", "15")


def _run(
    job: dg.JobDefinition, instance: dg.DagsterInstance, **kwargs
) -> dg.ExecuteInProcessResult:
    return job.execute_in_process(instance=instance, raise_on_error=False, **kwargs)


def _parts(project: Project, table: str) -> dict[int, list[tuple[str, int]]]:
    """Each shard's parts of `table`: file and modification time (ns)."""
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT shard, file FROM store_parts WHERE table_name = ? ORDER BY shard, part",
            [table],
        ).fetchall()
    root = project.warehouse_path.with_suffix(".store")
    if not root.exists():  # the project's store may live elsewhere: find the files
        root = next(project.root.rglob("store.json")).parent
    parts: dict[int, list[tuple[str, int]]] = {}
    for shard, file in rows:
        parts.setdefault(shard, []).append((file, (root / file).stat().st_mtime_ns))
    return parts


def test_one_partition_run_recomputes_only_its_shards_people_and_keeps_the_others_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.definitions import defs

    project = make_demo_project(tmp_path)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project.root))
    job = defs().resolve_job_def("refresh_all")
    with dg.DagsterInstance.ephemeral() as instance:
        assert _run(job, instance, tags=all_partitions_tags(project)).success
        tables = ("marker_draws", "marker_trends")
        before = sorted_tables(project, tables)
        with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
            people = conn.execute("SELECT DISTINCT person_id FROM lab_results").pl()["person_id"]
        # The demo project has the default 4 partitions of 4 shards each.
        key = next(k for k in partition_keys(4) if shard_of(people[0], SHARDS) in shards_of_key(k))
        shards = set(shards_of_key(key))
        mine = {p for p in people if shard_of(p, SHARDS) in shards}
        assert 0 < len(mine) < people.len()  # the demo's people span several partitions
        # Forget what marker_models last saw: every person is to be recomputed.
        with project.warehouse().write() as conn:
            conn.execute(f"DELETE FROM {STATE_TABLE} WHERE step = 'marker_models'")
        parts = {t: _parts(project, t) for t in tables}

        one = _run(job, instance, asset_selection=MARKERS, tags=partition_range_tags(key, key))
        assert one.success
        done = {
            (e.asset_key.to_user_string(), e.partition)
            for e in one.get_asset_materialization_events()
        }
        assert done == {("marker_draws", key), ("marker_trends", key)}
        with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
            recorded = conn.execute(
                f"SELECT person_id FROM {STATE_TABLE} WHERE step = 'marker_models'"
            ).pl()["person_id"]
        assert set(recorded) == mine
        for table in tables:
            after = _parts(project, table)
            for shard in {shard_of(p, SHARDS) for p in mine}:  # the partition's shards with people
                assert after[shard] != parts[table][shard], (table, shard)  # rewritten
            assert {k: v for k, v in after.items() if k not in shards} == {
                k: v for k, v in parts[table].items() if k not in shards
            }, table
        # Recomputed from the same results: the same rows.
        for name, frame in sorted_tables(project, tables).items():
            assert frame.equals(before[name]), name

        # The rest of the shards: everyone is recorded again, the tables still the same.
        assert _run(
            job, instance, asset_selection=MARKERS, tags=all_partitions_tags(project)
        ).success
        with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
            n = conn.execute(
                f"SELECT count(DISTINCT person_id) FROM {STATE_TABLE} WHERE step = 'marker_models'"
            ).fetchone()
        assert n == (people.len(),)
        for name, frame in sorted_tables(project, tables).items():
            assert frame.equals(before[name]), name


def test_a_run_that_names_no_shards_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster would run the sharded steps and record their materializations without a
    partition; the step fails instead, saying how to start the run."""
    from pipelines.definitions import defs

    project = make_demo_project(tmp_path)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project.root))
    job = defs().resolve_job_def("refresh_all")
    with dg.DagsterInstance.ephemeral() as instance:
        result = _run(job, instance)
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    # The sharded steps with no sharded step upstream (the ingest, one per source); those
    # downstream of them do not start.
    sources = [s.name for s in project.config().sources]
    assert {f.step_key for f in failures} == {f"ingest_{s}" for s in sources}
    for failure in failures:
        assert "names no person shards" in str(failure.event_specific_data)


@pytest.mark.parametrize("partitions", [1, 2, 4, 8, 16])
def test_partitions_group_consecutive_shards_and_cover_each_once(partitions: int) -> None:
    keys = partition_keys(partitions)
    assert len(keys) == partitions
    assert pl.Series(keys).is_sorted()  # a range of keys is a range of shards
    size = SHARDS // partitions
    for shard in range(SHARDS):
        (key,) = [k for k in keys if shard in shards_of_key(k)]
        assert keys.index(key) == shard // size
    assert [s for k in keys for s in shards_of_key(k)] == list(range(SHARDS))


def test_partition_keys_name_their_shards() -> None:
    assert partition_keys(4) == ["shards-00-03", "shards-04-07", "shards-08-11", "shards-12-15"]
    assert partition_keys(1) == ["shards-00-15"]
    assert partition_keys(16)[3] == "shards-03-03"
    assert shards_of_key("shards-04-07") == range(4, 8)
    with pytest.raises(ValueError):
        partition_keys(3)
    with pytest.raises(ValueError):
        shards_of_key("04")


def test_a_night_is_one_range_over_every_partition(tmp_path: Path) -> None:
    project = make_demo_project(tmp_path)
    assert all_partitions_tags(project) == partition_range_tags("shards-00-03", "shards-12-15")
    text = project.sources_yaml.read_text().replace(
        "settings:\n", "settings:\n  person_partitions: 16\n", 1
    )
    project.sources_yaml.write_text(text)
    assert all_partitions_tags(project) == partition_range_tags("shards-00-00", "shards-15-15")


# The per-person steps after marker_models, each writing the table of its name and recording
# what it saw in `plan_people`'s STATE_TABLE (diet_daily: `plan_days`' DAY_STATE_TABLE).
SHARDED = ("diet_daily", "exposure_windows", "daily_effects")
SHARDED_KEYS = [dg.AssetKey(step) for step in SHARDED]
SHARDED_TABLES = SHARDED


def _records(project: Project, step: str) -> set[tuple[str, ...]]:
    """What `step` has a record of: people, or for diet_daily (person, day) keys."""
    table, key = (
        (DAY_STATE_TABLE, "person_id, day::VARCHAR")
        if step == "diet_daily"
        else (STATE_TABLE, "person_id")
    )
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        rows = conn.execute(f"SELECT {key} FROM {table} WHERE step = ?", [step]).fetchall()
    return {tuple(r) for r in rows}


def _forget(project: Project, step: str, where: str) -> set[tuple[str, ...]]:
    """Delete the records of `step` that `where` (SQL on person_id and, for diet_daily, day)
    holds; returns them."""
    before = _records(project, step)
    table = DAY_STATE_TABLE if step == "diet_daily" else STATE_TABLE
    with project.warehouse().write() as conn:
        if table == DAY_STATE_TABLE:  # a store table: its parts holding them are rewritten
            forget(conn, table, f"t.step = '{step}' AND ({where})")
        else:
            conn.execute(f"DELETE FROM {table} WHERE step = ? AND ({where})", [step])
    return before - _records(project, step)


def test_one_partition_of_the_person_steps_rewrites_only_its_shards_then_all_equal_a_plain_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """diet_daily, exposure_windows and daily_effects over one partition: the partition's people
    are recomputed (everyone in it, then one changed person), their shards' parts rewritten, the
    other shards' parts and records untouched; a run of every partition then gives the tables of
    a run that never named a single partition."""
    from pipelines.definitions import defs

    project = make_demo_project(tmp_path)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project.root))
    job = defs().resolve_job_def("refresh_all")
    with dg.DagsterInstance.ephemeral() as instance:
        assert _run(job, instance, tags=all_partitions_tags(project)).success
        plain = sorted_tables(project, SHARDED_TABLES)
        records = {step: _records(project, step) for step in SHARDED}
        people = {step: {r[0] for r in records[step]} - {WHOLE} for step in SHARDED}
        assert all(people.values())  # the demo has rows in each table
        everyone = set().union(*people.values())
        first = shard_of(sorted(everyone)[0], SHARDS)
        key = next(k for k in partition_keys(4) if first in shards_of_key(k))
        shards = set(shards_of_key(key))
        mine = {p for p in everyone if shard_of(p, SHARDS) in shards}
        outside = sorted(everyone - mine)[0]
        assert mine and outside
        # Every step forgets the partition's people (no records: everyone in the scope) and
        # some of a person's outside it (diet_daily: one of their days), whom the partition's
        # run must leave alone: their other records stay, their forgotten ones to do.
        left_out = {
            step: _forget(
                project,
                step,
                "day = (SELECT min(day) FROM person_day_inputs WHERE person_id = "
                f"'{outside}') AND person_id = '{outside}'"
                if step == "diet_daily"
                else f"person_id = '{outside}'",
            )
            for step in SHARDED
        }
        assert all(left_out.values())
        for step in SHARDED:
            _forget(project, step, in_shards(shards, SHARDS))
        parts = {t: _parts(project, t) for t in SHARDED_TABLES}

        one = _run(job, instance, asset_selection=SHARDED_KEYS, tags=partition_range_tags(key, key))
        assert one.success
        done = {
            (e.asset_key.to_user_string(), e.partition)
            for e in one.get_asset_materialization_events()
        }
        assert done == {(step, key) for step in SHARDED}
        for step in SHARDED:
            assert _records(project, step) == records[step] - left_out[step], step
        for table in SHARDED_TABLES:
            after = _parts(project, table)
            for shard in {shard_of(p, SHARDS) for p in people[table] & mine}:
                assert after[shard] != parts[table][shard], (table, shard)  # rewritten
            others = {k: v for k, v in parts[table].items() if k not in shards}
            assert {k: v for k, v in after.items() if k not in shards} == others, table
        for name, frame in sorted_tables(project, SHARDED_TABLES).items():
            assert frame.equals(plain[name]), name

        # A person of the partition changed (their records forgotten): they alone are redone.
        changed = sorted(people["diet_daily"] & people["daily_effects"] & mine)[0]
        for step in SHARDED:
            _forget(project, step, f"person_id = '{changed}'")
        again = _run(
            job, instance, asset_selection=SHARDED_KEYS, tags=partition_range_tags(key, key)
        )
        assert again.success
        metadata = {
            e.asset_key.to_user_string(): e.step_materialization_data.materialization.metadata
            for e in again.get_asset_materialization_events()
        }
        assert metadata["diet_daily"]["people_recomputed"].value == 1
        assert metadata["exposure_windows"]["people_recomputed"].value == 1
        assert metadata["daily_effects"]["people_refit"].value == 1
        for step in SHARDED:
            assert _records(project, step) == records[step] - left_out[step], step

        # Every partition: the person outside is done too, and the tables are a plain run's.
        assert _run(
            job, instance, asset_selection=SHARDED_KEYS, tags=all_partitions_tags(project)
        ).success
        for step in SHARDED:
            assert _records(project, step) == records[step], step
        for name, frame in sorted_tables(project, SHARDED_TABLES).items():
            assert frame.equals(plain[name]), name


def test_a_first_run_of_one_partition_then_the_others_equals_a_run_of_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_run: DemoRun
) -> None:
    """From an empty warehouse: the whole job over the first partition (the sharded tables hold
    its people only, the other shards' parts empty), then over the others: the per-person
    tables are those of a run over every partition at once (the session's demo run)."""
    from pipelines.definitions import defs

    assert demo_run.result.success
    project = make_demo_project(tmp_path)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project.root))
    tables = ("marker_draws", "marker_trends", *SHARDED_TABLES)
    keys = partition_keys(4)
    job = defs().resolve_job_def("refresh_all")
    with dg.DagsterInstance.ephemeral() as instance:
        assert _run(job, instance, tags=partition_range_tags(keys[0], keys[0])).success
        first = sorted_tables(project, tables)
        for name, frame in first.items():
            shards_held = {shard_of(p, SHARDS) for p in frame["person_id"].unique()}
            assert frame.height and shards_held <= set(shards_of_key(keys[0])), name
        assert _run(job, instance, tags=partition_range_tags(keys[1], keys[-1])).success
    expected = sorted_tables(demo_run.project, tables)
    for name, frame in sorted_tables(project, tables).items():
        assert frame.equals(expected[name]), name
