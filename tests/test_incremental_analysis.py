"""Exposure windows and associations do no work on a night that changes none of their inputs.

A window reads only the diary days just before a chronic draw, so a new day after a person's last
draw leaves their windows, and so every association, as they were. A backfilled day inside a
window recomputes that person's windows and refits the models. Either way the tables equal a run
from scratch on the same files.
"""

from __future__ import annotations

import os
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.config import Settings
from pipelines.project import Project
from pipelines.steps.analysis import window_days_sql
from tests.conftest import make_demo_project, refresh_all, sorted_tables

COMPARED = ("diet_daily", "exposure_windows", "associations")


REPORT = {
    "diet_daily": "people_recomputed",
    "exposure_windows": "people_recomputed",
    "associations": "refit",
}


def refresh(project: Project, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return refresh_all(project.root, monkeypatch, REPORT)


def add_diary_line(servings: Path, day: str) -> None:
    """Log one more food (a copy of the file's last line) on `day`."""
    text = servings.read_text(encoding="utf-8").rstrip("\r\n")
    last = text.rsplit("\n", 1)[1].split(",", 1)[1]
    servings.write_text(f"{text}\n{day},{last}\n", encoding="utf-8")
    stat = servings.stat()
    os.utime(servings, (stat.st_atime, stat.st_mtime + 60))


def last_chronic_draw(project: Project, person: str) -> str:
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        row = conn.execute(
            "SELECT max(day) FROM marker_draws WHERE person_id = ? AND excluded_reason IS NULL",
            [person],
        ).fetchone()
    assert row is not None and row[0] is not None
    return row[0].isoformat()


def test_windows_and_associations_skip_a_night_that_touches_no_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_demo_project(tmp_path / "nightly")
    first = refresh(project, monkeypatch)
    assert first == {"diet_daily": "all", "exposure_windows": "all", "associations": True}
    servings = project.raw_dir / "demo" / "cronometer" / "alice" / "servings.csv"

    # A day after alice's diary ends (and so after her last draw): her days change, no window.
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        row = conn.execute(
            "SELECT max(day) + 1 FROM diet_daily WHERE person_id = 'alice'"
        ).fetchone()
    assert row is not None
    assert row[0].isoformat() > last_chronic_draw(project, "alice")
    add_diary_line(servings, row[0].isoformat())
    after = refresh(project, monkeypatch)
    assert after == {"diet_daily": 1, "exposure_windows": 0, "associations": False}

    # One more food on her last logged day before her last draw: it lies in her windows.
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        row = conn.execute(
            "SELECT max(day) FROM diet_daily WHERE person_id = 'alice' AND logged AND day < ?",
            [last_chronic_draw(project, "alice")],
        ).fetchone()
    assert row is not None and row[0] is not None
    assert row[0] >= date.fromisoformat(last_chronic_draw(project, "alice")) - timedelta(days=3)
    add_diary_line(servings, row[0].isoformat())
    backfill = refresh(project, monkeypatch)
    assert backfill == {"diet_daily": 1, "exposure_windows": 1, "associations": True}

    fresh = make_demo_project(tmp_path / "fresh")
    shutil.copytree(project.raw_dir, fresh.raw_dir, dirs_exist_ok=True)
    refresh(fresh, monkeypatch)
    got, want = sorted_tables(project, COMPARED), sorted_tables(fresh, COMPARED)
    for name in COMPARED:
        assert_frame_equal(got[name], want[name], check_exact=False, rel_tol=1e-9, abs_tol=1e-12)


def test_window_inputs_are_the_days_before_chronic_draws_only() -> None:
    """The rows the windows read: the longest window's days before each chronic draw."""
    settings = Settings(windows=(3, 7))
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE diet_daily AS SELECT 'a' AS person_id, DATE '2025-01-01' + i::INTEGER AS day "
        "FROM range(30) t(i) UNION ALL SELECT 'b', DATE '2025-01-10'"
    )
    conn.execute(
        "CREATE TABLE marker_draws AS SELECT * FROM (VALUES "
        "('a', DATE '2025-01-11', NULL), ('a', DATE '2025-01-25', 'acute'), "
        "('b', NULL, NULL)) t(person_id, day, excluded_reason)"
    )
    days = conn.execute(f"SELECT person_id, day FROM ({window_days_sql(settings)}) ORDER BY 2").pl()
    # 7 days before the chronic draw on the 11th; nothing around the acute one; b has no dated draw.
    assert days["person_id"].unique().to_list() == ["a"]
    assert [d.day for d in days["day"]] == [4, 5, 6, 7, 8, 9, 10]


def test_windows_built_a_person_at_a_time_equal_everyone_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """exposure_windows is built a group of people at a time (issue 19: memory flat in the
    cohort), on a first run and on a night that changes some people; a group of one person gives
    the same table, floats bit for bit, as one group of everyone. Unlogged days, an excluded
    draw, an undated draw and a draw without a person."""
    import pipelines.steps.analysis as analysis_steps
    from pipelines.store import attach as attach_store

    settings = Settings(windows=(3, 7))

    def warehouse(name: str, nobody: bool = True) -> duckdb.DuckDBPyConnection:
        """Four people's days and draws; with a draw without a person when `nobody` (which
        makes every run recompute everyone: it cannot be attributed to anyone's recompute)."""
        conn = duckdb.connect()
        attach_store(conn, tmp_path / name, read_only=False)
        conn.execute(
            "CREATE TABLE diet_daily AS SELECT p AS person_id, DATE '2025-01-01' + i::INTEGER "
            "AS day, i % 5 <> 0 AS logged, (i * k % 7)::DOUBLE / 3 AS fiber_g, "
            "CASE WHEN i % 4 = 0 THEN NULL ELSE (i * k % 11)::DOUBLE * 100 END AS sodium_mg, "
            "(i % 3)::DOUBLE AS vegetables_servings "
            "FROM range(60) t(i), (VALUES ('a', 1), ('b', 2), ('c', 3), ('d', 5)) v(p, k)"
        )
        conn.execute(
            "CREATE TABLE marker_draws AS SELECT person_id, 'crp' AS marker, "
            "day::TIMESTAMP + INTERVAL 8 HOUR AS collected_at, day, excluded_reason FROM (VALUES "
            "('a', DATE '2025-01-20', NULL), ('a', DATE '2025-02-25', NULL), "
            "('b', DATE '2025-01-30', NULL), ('b', DATE '2025-02-10', 'acute'), "
            "('c', NULL, NULL), ('c', DATE '2025-02-01', NULL), ('d', DATE '2025-03-01', NULL), "
            "(NULL, DATE '2025-02-01', NULL)) t(person_id, day, excluded_reason)"
        )
        if not nobody:
            conn.execute("DELETE FROM marker_draws WHERE person_id IS NULL")
        return conn

    def run(conn: duckdb.DuckDBPyConnection, people_per_group: int) -> tuple[list[str], int]:
        """The people recomputed ("*" for everyone) and in how many groups."""
        groups: list[int] = []
        person_groups = analysis_steps.person_groups

        def counted(*args: Any) -> list[list[str]]:
            found = person_groups(*args)
            groups.append(len(found))
            return found

        with monkeypatch.context() as patch:
            patch.setattr(analysis_steps, "person_groups", counted)
            patch.setattr(analysis_steps, "WINDOW_GROUP_PEOPLE", people_per_group)
            plan = analysis_steps.update_exposure_windows(conn, settings)
        return (["*"] if plan.everyone else plan.touched), sum(groups)

    def table(conn: duckdb.DuckDBPyConnection) -> pl.DataFrame:
        return conn.execute("SELECT * FROM exposure_windows ORDER BY ALL").pl()

    grouped, whole = warehouse("grouped"), warehouse("whole")
    assert run(grouped, 1) == (["*"], 4)
    assert run(whole, 1_000) == (["*"], 1)
    assert set(table(whole)["feature"]) >= {"fiber_g", "sodium_mg", "dii_window"}
    assert set(table(whole)["person_id"]) == {"a", "b", "c", "d"}
    assert_frame_equal(table(grouped), table(whole), check_exact=True)

    # A night that changes a window day of a and of d: each rebuilt in a group of their own.
    nightly = warehouse("nightly", nobody=False)
    assert run(nightly, 1) == (["*"], 4)
    before = table(nightly)
    change = (
        "UPDATE diet_daily SET fiber_g = fiber_g + 1 WHERE (person_id = 'a' AND "
        "day = DATE '2025-01-19') OR (person_id = 'd' AND day = DATE '2025-02-27')"
    )
    nightly.execute(change)
    assert run(nightly, 1) == (["a", "d"], 2)
    fresh = warehouse("fresh", nobody=False)
    fresh.execute(change)
    assert run(fresh, 1_000) == (["*"], 1)
    assert_frame_equal(table(nightly), table(fresh), check_exact=True)
    assert not table(nightly).equals(before)
