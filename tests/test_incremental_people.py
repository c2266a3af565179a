"""After ingest, the per-person steps recompute only the people whose inputs changed, and end with
the same tables as a run from scratch."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.project import Project
from tests.conftest import make_demo_project, refresh_all, sorted_tables

STEPS = ("diet_daily", "marker_draws", "exposure_windows")
COMPARED = ("diet_daily", "marker_draws", "marker_trends", "exposure_windows", "associations")


# What each step says it recomputed.
REPORT = {
    **dict.fromkeys(STEPS, "people_recomputed"),
    "person_pages": "pages_rendered",
    "dashboards": "pages_rendered",
}


def refresh(project: Project, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return refresh_all(project.root, monkeypatch, REPORT)


def log_a_snack(servings: Path) -> None:
    """Log one more food on the person's first day (their history changes, not its end)."""
    lines = servings.read_text(encoding="utf-8").rstrip("\n").split("\n")
    header, first, rest = lines[0], lines[1], lines[2:]
    servings.write_text("\n".join([header, first, first, *rest]) + "\n", encoding="utf-8")
    stat = servings.stat()
    os.utime(servings, (stat.st_atime, stat.st_mtime + 60))


def test_a_nightly_run_recomputes_only_the_people_whose_data_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_demo_project(tmp_path / "nightly")
    first = refresh(project, monkeypatch)
    pages = first.pop("person_pages")
    assert first.pop("dashboards") == 2  # the index and the cohort page
    assert set(first.values()) == {"all"}  # a first run computes everyone

    again = refresh(project, monkeypatch)
    # Nothing new: no person recomputed, only the index and the cohort page written again.
    assert again == {
        "diet_daily": 0,
        "marker_draws": 0,
        "exposure_windows": 0,
        "person_pages": 0,
        "dashboards": 2,
    }
    assert isinstance(pages, int) and pages > 1

    people = sorted(p for p in (project.raw_dir / "demo" / "cronometer").iterdir() if p.is_dir())
    assert len(people) > 1
    log_a_snack(people[0] / "servings.csv")
    nightly = refresh(project, monkeypatch)
    # One person's diary changed: their days (and windows) are recomputed, nobody's labs are.
    assert nightly["diet_daily"] == 1
    assert nightly["marker_draws"] == 0
    assert nightly["exposure_windows"] in (0, 1)  # 0 if the new day lies in no window
    assert nightly["person_pages"] == 1  # that person's page
    assert nightly["dashboards"] == 2  # the index and the cohort page

    # The same files from scratch give the same tables.
    fresh = make_demo_project(tmp_path / "fresh")
    shutil.copytree(project.raw_dir, fresh.raw_dir, dirs_exist_ok=True)
    refresh(fresh, monkeypatch)
    _assert_same_tables(project, fresh, COMPARED)


def test_a_settings_change_recomputes_everyone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_demo_project(tmp_path / "settings")
    refresh(project, monkeypatch)
    text = project.sources_yaml.read_text(encoding="utf-8")
    project.sources_yaml.write_text(
        text.replace("settings:\n", "settings:\n  acute_crp_mg_l: 12\n", 1), encoding="utf-8"
    )
    after = refresh(project, monkeypatch)
    after.pop("person_pages")
    after.pop("dashboards")
    assert set(after.values()) == {"all"}


def _assert_same_tables(got: Project, want: Project, names: tuple[str, ...]) -> None:
    """The named tables of two projects hold the same rows, floats to the last few bits."""
    got_tables, want_tables = sorted_tables(got, names), sorted_tables(want, names)
    for name in names:
        assert_frame_equal(
            got_tables[name], want_tables[name], check_exact=False, rel_tol=1e-9, abs_tol=1e-12
        )


def _count_groups(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[int]:
    """How many groups of people each `register_person_chunks` call of `module` made."""
    register = module.register_person_chunks
    groups: list[int] = []

    def counted(*args: object, **kwargs: object) -> int:
        groups.append(register(*args, **kwargs))
        return groups[-1]

    monkeypatch.setattr(module, "register_person_chunks", counted)
    return groups


def test_a_first_run_in_groups_of_people_equals_one_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run builds diet_daily, daily_effects and the exposure windows a group of people at
    a time (so memory does not grow with the cohort); a group per person gives the same tables,
    down to the associations fitted on them, as everyone in one group."""
    import pipelines.steps.analysis as analysis_steps
    import pipelines.steps.daily as daily_steps
    import pipelines.steps.features as feature_steps

    whole = make_demo_project(tmp_path / "whole")
    refresh(whole, monkeypatch)

    groups = _count_groups(monkeypatch, feature_steps)
    person_groups = analysis_steps.person_groups
    window_groups: list[int] = []

    def counted_groups(*args: Any) -> list[list[str]]:
        found = person_groups(*args)
        window_groups.append(len(found))
        return found

    monkeypatch.setattr(analysis_steps, "person_groups", counted_groups)
    monkeypatch.setattr(feature_steps, "FULL_BUILD_ROWS", 1)
    monkeypatch.setattr(analysis_steps, "WINDOW_GROUP_PEOPLE", 1)
    monkeypatch.setattr(analysis_steps, "ASSOCIATION_GROUP_ROWS", 1)
    monkeypatch.setattr(daily_steps, "DAILY_BUILD_ROWS", 1)
    grouped = make_demo_project(tmp_path / "grouped")
    refresh(grouped, monkeypatch)
    # diet_daily and daily_effects, then exposure_windows, each in several groups (one a person).
    assert len(groups) == 2 and min(groups) > 1, groups
    assert len(window_groups) == 1 and window_groups[0] > 1, window_groups

    names = ("food_categories", "unmapped_foods", *COMPARED, "daily_effects")
    _assert_same_tables(grouped, whole, names)


def test_associations_fitted_a_group_of_people_at_a_time_are_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The associations step reads the exposure windows a group of people at a time, fits and
    writes the person rows a group of people at a time and pools them a few tests at a time
    (issue 19: its memory no longer grows with the cohort). A group per person gives the same
    table, every column and row, floats bit for bit, as one group; one group gives the models on
    one frame of everyone's windows (the step before the groups), in their order too."""
    import pipelines.analysis.pooling as pooling
    import pipelines.steps.analysis as analysis_steps
    from pipelines.analysis.models import run_all_models
    from pipelines.incremental import STATE_TABLE
    from pipelines.warehouse import table_exists

    project = make_demo_project(tmp_path / "demo")
    refresh(project, monkeypatch)
    settings = project.config().settings
    group_ends = analysis_steps.window_group_ends
    groups: list[int] = []

    def counted_ends(*args: Any) -> list[pl.Expr]:
        groups.append(len(group_ends(*args)))
        return group_ends(*args)

    monkeypatch.setattr(analysis_steps, "window_group_ends", counted_ends)
    stashed: list[int] = []
    pieces: list[int] = []
    stash = analysis_steps.parquet_stash

    def counted_stash(directory: Path) -> Any:
        keep = stash(directory)

        def counted(frame: pl.DataFrame) -> Any:
            # The fitted person rows, a part per group and (marker, window), and the wide
            # table's pieces, a part per group of windows and (marker, window).
            kept = stashed if "scope" in frame.columns else pieces
            kept.append(frame["person_id"].n_unique())
            return keep(frame)

        return counted

    monkeypatch.setattr(analysis_steps, "parquet_stash", counted_stash)

    def fit(group_rows: int, group_people: int) -> pl.DataFrame:
        monkeypatch.setattr(analysis_steps, "ASSOCIATION_GROUP_ROWS", group_rows)
        monkeypatch.setattr(analysis_steps, "ASSOCIATION_FIT_PEOPLE", group_people)
        # The partial pooling, a test at a time or all at once.
        monkeypatch.setattr(pooling, "POOLING_ROWS", group_rows)
        with project.warehouse().write() as conn:
            conn.execute(f"DELETE FROM {STATE_TABLE} WHERE step = 'associations'")
            refit, status = analysis_steps.update_associations(conn, settings)
            table = conn.execute("SELECT * FROM associations").pl()
        assert refit and status["len"].sum() == table.height
        by_status = table.group_by("scope", "status").len().cast({"len": pl.Int64})
        assert status.equals(by_status.sort("scope", "status", nulls_last=True))
        return table

    per_person = fit(1, 1)
    fitted_per_person, stashed[:] = list(stashed), []
    pieces_per_person, pieces[:] = list(pieces), []
    everyone = fit(10**9, 10**9)
    with project.warehouse().write() as conn:
        draws, windows, people, summary, *bio = (
            conn.execute(f"SELECT * FROM {t} ORDER BY ALL").pl()
            for t in ("marker_draws", "exposure_windows", "persons", "diet_summary", "biometrics")
            if table_exists(conn, t)
        )
        people_n = conn.execute("SELECT count(DISTINCT person_id) FROM exposure_windows").fetchone()
    one_frame = run_all_models(draws, windows, people, summary, settings, *bio)
    assert people_n is not None and groups == [people_n[0], 1] and people_n[0] > 2
    # A fit per person, then everyone in one, each a (marker, window) at a time: the wide
    # table too is kept in pieces of a (marker, window), and of a person, then of everyone.
    chunks = len(pieces)
    assert chunks > 1 and max(pieces) == people_n[0]
    assert fitted_per_person == [1] * len(fitted_per_person) and len(stashed) == chunks
    assert people_n[0] * chunks >= len(fitted_per_person) > people_n[0] * (chunks - 1)
    assert set(pieces_per_person) == {1} and len(pieces_per_person) == len(fitted_per_person)
    assert max(stashed) == people_n[0]
    assert per_person.filter(pl.col("scope") == "cohort").height > 0
    assert per_person.filter(pl.col("pooled_effect_pct").is_not_null()).height > 0
    key = ["scope", "person_id", "marker", "feature", "window_days", "method"]
    assert everyone.select(key).is_unique().all()
    assert_frame_equal(
        per_person.sort(key, nulls_last=True),
        everyone.sort(key, nulls_last=True),
        check_exact=True,
    )
    # The table reads in its store shards' order (`pipelines.store`), the fit in its own.
    assert_frame_equal(
        everyone.drop("parameters").sort(key, nulls_last=True),
        one_frame.sort(key, nulls_last=True),
        check_exact=True,
    )


def test_each_group_of_people_reads_its_own_rows_once() -> None:
    """`only_chunk` reads a group as its range of person_ids: every row lands in exactly one
    group, the null person_id's in the last, and a person_id with a quote reads as itself."""
    import duckdb

    from pipelines.steps.features import only_chunk, register_person_chunks

    conn = duckdb.connect()
    people = ["a", "b'c", "b'c", "d", None, "e", "e", "e"]
    conn.execute("CREATE TABLE t (person_id VARCHAR, row INTEGER)")
    conn.executemany("INSERT INTO t VALUES (?, ?)", [[p, i] for i, p in enumerate(people)])
    sql = "SELECT person_id, row FROM t"
    groups = register_person_chunks(conn, [sql], 2)
    assert groups == 4  # a and b'c, d, e (never split), then the null person_id (ordered last)
    read = [conn.execute(f"{only_chunk(conn, sql, g)} ORDER BY row").fetchall() for g in range(4)]
    assert read == [
        [("a", 0), ("b'c", 1), ("b'c", 2)],
        [("d", 3)],
        [("e", 5), ("e", 6), ("e", 7)],
        [(None, 4)],
    ]


def test_groups_read_shard_by_shard_take_each_row_once_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`sorted_groups` reads one sorted query per store shard, in batches, as the groups are
    taken (issue 19: one sort of everything needed memory that grew with the cohort). Every row
    lands in its group once and in its query's order, groups that cross from one shard's query
    into the next included; a group without rows is empty; the last takes the rest."""
    import duckdb

    import pipelines.steps.analysis as analysis_steps

    monkeypatch.setattr(analysis_steps, "STREAM_BATCH_ROWS", 7)
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE t AS SELECT i % 3 AS shard, 'p' || lpad((i % 17)::VARCHAR, 2, '0') "
        "AS person_id, i AS v FROM range(300) r(i)"
    )
    keys = conn.execute("SELECT DISTINCT shard, person_id FROM t ORDER BY ALL").fetchall()
    # Groups of 4 (shard, person) pairs in that order: some end in one shard and start in the
    # next; the second group is cut again at its own end (an empty group), and the last one's
    # end is left open.
    chunks = [keys[i : i + 4] for i in range(0, len(keys), 4)]
    lasts = [chunk[-1] for chunk in chunks]
    lasts.insert(2, lasts[1])
    ends = [
        (pl.col("_shard") < shard) | ((pl.col("_shard") == shard) & (pl.col("person_id") <= p))
        for shard, p in lasts
    ]
    queries = [
        f"SELECT {k} AS _shard, person_id, v FROM t WHERE shard = {k} ORDER BY person_id, v"
        for k in range(3)
    ]
    got = [g.rows() for g in analysis_steps.sorted_groups(conn, queries, ends)]

    def rows_of(chunk: list[tuple[int, str]]) -> list[tuple[int, str, int]]:
        listed = ", ".join(f"({k}, '{p}')" for k, p in chunk)
        return conn.execute(
            f"SELECT shard, person_id, v FROM t WHERE (shard, person_id) IN ({listed}) ORDER BY ALL"
        ).fetchall()

    want = [rows_of(chunk) for chunk in chunks]
    want.insert(2, [])
    assert [len(g) for g in got] == [len(w) for w in want]
    assert got == want
    assert sum(len(g) for g in got) == 300
