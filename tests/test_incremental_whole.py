"""Steps whose output spans everyone (persons, food categories, diet_summary, data_sufficiency,
associations) run when any of their inputs changed and otherwise keep their tables and say
"changed": false. They share the per-person steps' plan (`plan_whole` over `plan_people`).
"""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from polars.testing import assert_frame_equal

from pipelines import store
from pipelines.incremental import changed, plan_whole, record
from tests.conftest import DemoRun, copy_project, make_demo_project, refresh_all, sorted_tables

REPORT = {
    "persons": "changed",
    "food_categories": "changed",
    "unmapped_foods": "changed",
    "diet_summary": "changed",
    "data_sufficiency": "changed",
    "associations": "refit",
}
TABLES = ("persons", "food_categories", "unmapped_foods", "diet_summary", "data_sufficiency")


def _touch(path: Path) -> None:
    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 60))


def _first_run_said(demo_run: DemoRun) -> dict[str, object]:
    """Per asset in REPORT, what the session's first run of the demo said it did."""
    assert demo_run.result.success
    said = {}
    for event in demo_run.result.get_asset_materialization_events():
        key = event.asset_key.to_user_string()
        if key in REPORT and event.materialization is not None:
            said[key] = event.materialization.metadata[REPORT[key]].value
    assert sorted(said) == sorted(REPORT)
    return said


def test_whole_steps_say_nothing_changed_and_run_again_when_an_input_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_run: DemoRun
) -> None:
    """The first run is the session's run of the demo (`demo_run`), copied: its whole steps said
    they changed; every later run is this test's own, on the copy."""
    first = _first_run_said(demo_run)
    assert all(first.values()), first
    project = copy_project(demo_run.project, tmp_path / "nightly")

    counted = ("refit", "dagster/row_count", "significant")
    quiet = refresh_all(project.root, monkeypatch, {**REPORT, "associations": counted})
    # A table kept as it was is still reported whole: its rows and significant ones, counted in
    # DuckDB rather than read out as a frame of every row (issue 19).
    with project.warehouse().read() as conn:
        counts = conn.execute(
            "SELECT count(*), count(*) FILTER (status = 'significant') FROM associations"
        ).fetchone()
    assert counts is not None and counts[0] > 0
    assert quiet.pop("associations") == (False, *counts)
    assert not any(quiet.values()), quiet

    # The same rows stored in another order are no change: a plan on float sums (whose last
    # bits depend on the order of addition, as in DuckDB's parallel aggregation) saw one.
    with project.warehouse().write() as conn:
        staging = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_name LIKE 'stg_%'"
            ).fetchall()
        ]
        for name in staging:
            store.replace_all(conn, name, f"FROM {name} ORDER BY hash(line) DESC")
    reordered = refresh_all(project.root, monkeypatch, REPORT)
    assert not any(reordered.values()), reordered

    # One more line of a food alice already logs, on a new day after her diary: the foods'
    # categories, the people and the draws do not change, nor does unmapped_foods (every demo
    # food is mapped).
    servings = project.raw_dir / "demo" / "cronometer" / "alice" / "servings.csv"
    text = servings.read_text(encoding="utf-8").rstrip("\r\n")
    last_day, rest = text.rsplit("\n", 1)[1].split(",", 1)
    next_day = date.fromisoformat(last_day) + timedelta(days=1)
    servings.write_text(f"{text}\n{next_day.isoformat()},{rest}\n", encoding="utf-8")
    _touch(servings)
    night = refresh_all(project.root, monkeypatch, REPORT)
    assert not night["unmapped_foods"] and not night["food_categories"]
    assert not night["persons"] and not night["data_sufficiency"] and not night["diet_summary"]

    # A food no category knows, the next day: unmapped_foods changes, and lists it.
    day_after = (next_day + timedelta(days=1)).isoformat()
    line = f"{day_after},8:00 AM,Snacks,Zzyzx qwerty,30.00 g,150.00,0,,15,1,1,9,1,2,100,Zzyzx"
    text = servings.read_text(encoding="utf-8").rstrip("\r\n")
    servings.write_text(f"{text}\n{line}\n", encoding="utf-8")
    _touch(servings)
    assert refresh_all(project.root, monkeypatch, REPORT)["unmapped_foods"]
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        listed = conn.execute("SELECT * FROM unmapped_foods").pl()
    assert "zzyzx" in str(listed.rows()).lower(), listed

    # An overrides file is a setting of the food categories only.
    (project.root / "my_foods.csv").write_text(
        "food,match,categories\nkimchi,contains,fermented\n", encoding="utf-8"
    )
    yaml = project.sources_yaml.read_text(encoding="utf-8")
    project.sources_yaml.write_text(
        yaml.replace("settings:\n", "settings:\n  food_overrides: my_foods.csv\n", 1),
        encoding="utf-8",
    )
    edited = refresh_all(project.root, monkeypatch, REPORT)
    assert edited["food_categories"] and not edited["persons"]
    (project.root / "my_foods.csv").write_text(
        "food,match,categories\nkimchi,contains,fermented;dairy\n", encoding="utf-8"
    )
    assert refresh_all(project.root, monkeypatch, REPORT)["food_categories"]

    # Whatever was skipped, the tables equal a run from scratch on the same files.
    fresh = make_demo_project(tmp_path / "fresh")
    shutil.copytree(project.raw_dir, fresh.raw_dir, dirs_exist_ok=True)
    shutil.copy(project.sources_yaml, fresh.sources_yaml)
    shutil.copy(project.root / "my_foods.csv", fresh.root / "my_foods.csv")
    refresh_all(fresh.root, monkeypatch, REPORT)
    got, want = sorted_tables(project, TABLES), sorted_tables(fresh, TABLES)
    for name in TABLES:
        assert_frame_equal(got[name], want[name])


def _plan_and_record(conn: duckdb.DuckDBPyConnection) -> bool:
    plan = plan_whole(conn, "step", ["SELECT * FROM t"], ["out"], salt="")
    record(conn, plan)
    return changed(plan)


def test_plan_whole_sees_every_column_and_keeps_an_empty_input_quiet() -> None:
    with duckdb.connect() as conn:
        conn.execute("CREATE TABLE out (x INT)")
        conn.execute("CREATE TABLE t (person_id VARCHAR, v INT)")
        assert _plan_and_record(conn)  # first run
        assert not _plan_and_record(conn)  # an empty input stays unchanged
        conn.execute("INSERT INTO t VALUES ('a', 1), ('b', 2)")
        assert _plan_and_record(conn)
        assert not _plan_and_record(conn)
        # The same values under other people: the person_id is part of each row's hash.
        conn.execute("UPDATE t SET person_id = CASE person_id WHEN 'a' THEN 'c' ELSE 'b' END")
        assert _plan_and_record(conn)
        conn.execute("INSERT INTO t VALUES ('b', 2)")  # a duplicate row counts
        assert _plan_and_record(conn)
        conn.execute("DROP TABLE out")  # a missing output is rebuilt
        assert _plan_and_record(conn)
