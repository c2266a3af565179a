"""A night with nothing new is decided from the inputs' identity (`pipelines.incremental`'s
`inputs_identity`, `quiet_plan`): the store parts and views a step reads, its salt, its scope and
its own records. Each case here is one the shortcut could get wrong by keeping stale rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import incremental
from pipelines.identity import inputs_identity, remembered, tables_read
from pipelines.incremental import (
    DAY_STATE_TABLE,
    STATE_TABLE,
    changed,
    plan_days,
    plan_people,
    record,
    record_days,
    register_people,
)
from pipelines.store import SHARDS, in_shards, replace_all, replace_people, shard_of
from pipelines.store import TABLES as STORE_TABLES
from pipelines.store_writes import forget
from pipelines.warehouse import Warehouse

PEOPLE = ["alice", "bob", "carol"]
DRAWS = "SELECT person_id, value FROM marker_draws"
DAYS = "SELECT person_id, day, value FROM marker_draws"


def draws(people: list[str], value: float) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "person_id": people,
            "day": [date(2026, 1, 1)] * len(people),
            "value": [value] * len(people),
        }
    )


def warehouse_with_draws(tmp_path: Path) -> Warehouse:
    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.write() as conn:
        replace_all(conn, "marker_draws", draws(PEOPLE, 1.0))
        conn.execute("CREATE TABLE out (x INT)")
    return warehouse


def run(
    warehouse: Warehouse,
    inputs: list[str] | None = None,
    salt: str = "",
    scope: str | None = None,
    step: str = "step",
) -> incremental.PersonPlan:
    """Plan and record, as a step that wrote its outputs does."""
    with warehouse.write() as conn:
        plan = plan_people(conn, step, inputs or [DRAWS], ["out"], salt, scope=scope)
        record(conn, plan, scope)
    return plan


def test_nothing_new_is_quiet_and_a_new_part_is_not(tmp_path: Path) -> None:
    warehouse = warehouse_with_draws(tmp_path)
    assert run(warehouse).everyone
    assert run(warehouse).quiet
    with warehouse.write() as conn:
        register_people(conn, ["bob"])
        replace_people(conn, "marker_draws", draws(["bob"], 2.0))
    plan = run(warehouse)
    assert not plan.quiet and plan.people == ["bob"]
    assert run(warehouse).quiet
    # Without the record of what it last saw, a night with nothing new is found the long way,
    # and remembered for the next.
    with warehouse.write() as conn:
        conn.execute("DELETE FROM step_inputs")
    assert not changed(plan := run(warehouse)) and not plan.quiet
    assert run(warehouse).quiet


def test_a_new_salt_a_new_scope_or_new_code_is_not_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = warehouse_with_draws(tmp_path)
    run(warehouse)
    assert run(warehouse).quiet
    assert run(warehouse, salt="other settings").everyone
    assert run(warehouse, salt="other settings").quiet
    scope = in_shards([0, 1, 2, 3], 16)
    assert not run(warehouse, salt="other settings", scope=scope).quiet
    # The code's fingerprint is in every salt.
    monkeypatch.setattr(incremental, "code_fingerprint", lambda exclude=(): "new code")
    assert run(warehouse, salt="other settings").everyone


def test_a_forgotten_or_changed_record_is_not_quiet(tmp_path: Path) -> None:
    warehouse = warehouse_with_draws(tmp_path)
    run(warehouse)
    with warehouse.write() as conn:
        conn.execute(f"DELETE FROM {STATE_TABLE} WHERE person_id = 'bob'")
    plan = run(warehouse)
    assert not plan.quiet and plan.people == ["bob"]
    run(warehouse)
    with warehouse.write() as conn:
        conn.execute(f"DELETE FROM {STATE_TABLE} WHERE step = 'step'")
    assert run(warehouse).everyone


def test_a_rolled_back_step_leaves_the_last_record(tmp_path: Path) -> None:
    """A crash in the middle: the step's record goes back with its tables, so the next run
    still sees the change."""
    warehouse = warehouse_with_draws(tmp_path)
    run(warehouse)
    with warehouse.write() as conn:
        register_people(conn, ["carol"])
        replace_people(conn, "marker_draws", draws(["carol"], 3.0))
    with pytest.raises(RuntimeError), warehouse.write() as conn:
        plan = plan_people(conn, "step", [DRAWS], ["out"], "")
        record(conn, plan)
        raise RuntimeError("killed before the commit")
    assert run(warehouse).people == ["carol"]


def test_an_edited_native_table_or_view_is_not_quiet(tmp_path: Path) -> None:
    warehouse = warehouse_with_draws(tmp_path)
    with warehouse.write() as conn:
        conn.execute("CREATE TABLE extra AS SELECT 'alice' AS person_id, 1 AS v")
        conn.execute(f"CREATE VIEW both_inputs AS {DRAWS} UNION ALL BY NAME SELECT * FROM extra")
    inputs = ["SELECT * FROM both_inputs"]
    run(warehouse, inputs)
    assert run(warehouse, inputs).quiet
    with warehouse.write() as conn:
        conn.execute("UPDATE extra SET v = 2")
    assert run(warehouse, inputs).people == ["alice"]
    assert run(warehouse, inputs).quiet
    with warehouse.write() as conn:
        conn.execute(f"CREATE OR REPLACE VIEW both_inputs AS {DRAWS} WHERE person_id <> 'bob'")
    plan = run(warehouse, inputs)
    assert not plan.quiet and plan.gone == ["bob"]


def test_a_registered_frame_or_temp_table_is_never_quiet(tmp_path: Path) -> None:
    """The person pages plan over frames registered on the connection: they have no identity,
    so every such plan fingerprints its rows."""
    warehouse = warehouse_with_draws(tmp_path)
    for _ in range(3):
        with warehouse.write() as conn:
            conn.register("_frame", draws(PEOPLE, 1.0).to_arrow())
            conn.execute("CREATE TEMP TABLE _temp AS SELECT * FROM marker_draws")
            for source in ("_frame", "_temp"):
                query = f"SELECT person_id, value FROM {source}"
                assert inputs_identity(conn, [query], "") is None
                plan = plan_people(conn, source, [query], ["out"], "")
                assert not plan.quiet
                record(conn, plan)
    with duckdb.connect() as conn:
        assert tables_read(conn, "SELECT * FROM read_parquet('x.parquet')") is None
        assert tables_read(conn, "WITH c AS (SELECT * FROM a) SELECT * FROM c") == {"a"}


def run_days(warehouse: Warehouse) -> incremental.DayPlan:
    """Plan and record a per-day step, as diet_daily does."""
    with warehouse.write() as conn:
        plan = plan_days(conn, "days", [DAYS], ["out"], "")
        record_days(conn, plan)
    return plan


def test_a_day_plan_is_quiet_only_when_nothing_is_new(tmp_path: Path) -> None:
    warehouse = warehouse_with_draws(tmp_path)

    assert run_days(warehouse).everyone
    assert run_days(warehouse).quiet
    with warehouse.write() as conn:
        register_people(conn, ["alice"])
        replace_people(conn, "marker_draws", draws(["alice"], 5.0))
    plan = run_days(warehouse)
    assert not plan.quiet and plan.people == ["alice"] and plan.days == 1
    assert run_days(warehouse).quiet


def test_day_records_are_store_parts_and_a_night_rewrites_only_its_keys_parts(
    tmp_path: Path,
) -> None:
    """The per-day records (`person_day_inputs`) are a store table, as many rows as diet_daily:
    a night's record rewrites only the parts that held its keys' old records, in their shards,
    and its quiet check reads the parts' list, so a record forgotten since still plans again."""
    warehouse = warehouse_with_draws(tmp_path)

    def parts() -> dict[int, list[str]]:
        with warehouse.read() as conn:
            rows = conn.execute(
                "SELECT shard, file FROM store_parts WHERE table_name = ? ORDER BY shard, part",
                [DAY_STATE_TABLE],
            ).fetchall()
        found: dict[int, list[str]] = {}
        for shard, file in rows:
            found.setdefault(shard, []).append(file)
        return found

    assert run_days(warehouse).everyone
    first = parts()
    assert DAY_STATE_TABLE in STORE_TABLES and sum(map(len, first.values())) == SHARDS
    with warehouse.write() as conn:
        register_people(conn, ["alice"])
        replace_people(conn, "marker_draws", draws(["alice"], 5.0))
    assert run_days(warehouse).people == ["alice"]
    night, mine = parts(), shard_of("alice", SHARDS)
    assert {k: f for k, f in night.items() if k != mine} == {
        k: f for k, f in first.items() if k != mine
    }
    assert not set(night[mine]) & set(first[mine])  # alice's old record's part, rewritten
    with warehouse.read() as conn:  # one record a person-day: none lost, none doubled
        assert conn.execute(
            f"SELECT person_id, count(*) FROM {DAY_STATE_TABLE} GROUP BY ALL ORDER BY 1"
        ).fetchall() == [("alice", 1), ("bob", 1), ("carol", 1)]
    assert run_days(warehouse).quiet

    with warehouse.write() as conn:
        forget(conn, DAY_STATE_TABLE, "t.person_id = 'bob'")
    plan = run_days(warehouse)
    assert not plan.quiet and plan.people == ["bob"]
    assert run_days(warehouse).quiet


def test_day_records_kept_in_the_warehouse_file_move_to_the_store_and_still_count(
    tmp_path: Path,
) -> None:
    """A warehouse from before kept `person_day_inputs` as a DuckDB table: its first write
    moves the records into the store, and the plan after finds nothing new to recompute."""
    warehouse = warehouse_with_draws(tmp_path)
    with warehouse.write() as conn:
        record_days(conn, plan_days(conn, "days", [DAYS], ["out"], ""))
        # As a warehouse from before had them: a table of the DuckDB file, not a store view.
        conn.execute(f"CREATE TABLE _old AS SELECT * FROM {DAY_STATE_TABLE}")
        conn.execute(f"DROP VIEW {DAY_STATE_TABLE}")
        conn.execute(f"DELETE FROM store_parts WHERE table_name = '{DAY_STATE_TABLE}'")
        conn.execute(f"ALTER TABLE _old RENAME TO {DAY_STATE_TABLE}")
    with warehouse.write() as conn:
        plan = plan_days(conn, "days", [DAYS], ["out"], "")
        record_days(conn, plan)
        moved = conn.execute(
            "SELECT count(*) FROM store_parts WHERE table_name = ?", [DAY_STATE_TABLE]
        ).fetchone()
    assert not plan.everyone and plan.days == 0 and moved == (SHARDS,)
    with warehouse.write() as conn:
        assert plan_days(conn, "days", [DAYS], ["out"], "").quiet


def test_a_remembered_count_is_taken_again_only_when_its_table_changed(tmp_path: Path) -> None:
    warehouse = warehouse_with_draws(tmp_path)
    counted: list[int] = []

    def count() -> int:
        with warehouse.write() as conn:

            def rows() -> int:
                counted.append(1)
                row = conn.execute("SELECT count(*) FROM marker_draws").fetchone()
                return int(row[0]) if row else 0

            return remembered(conn, ["SELECT count(*) FROM marker_draws"], rows)

    assert count() == 3 and count() == 3
    assert len(counted) == 1
    with warehouse.write() as conn:
        register_people(conn, ["dave"])
        replace_people(conn, "marker_draws", draws(["dave"], 1.0))
    assert count() == 4 and len(counted) == 2
