"""The dashboards step reads, plans and renders the person pages a group of people at a time (issue
19: its memory does not grow with the cohort): a group per person writes the same files and
records the same plan as one group, and as the pages rendered from everyone's frames at once."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from pipelines.project import Project
from pipelines.reports import dashboards
from pipelines.steps import dashboards as step
from pipelines.steps import page_shards
from pipelines.steps import pages as pages_step
from tests.conftest import everyone_in_frames, make_demo_project, refresh_all

RUN_AT = "2026-12-05 03:00 UTC"


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _person_pages(written: list[Path]) -> set[str]:
    return {p.name for p in written if p.name.startswith("person_")}


def test_the_step_in_groups_of_people_equals_one_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_demo_project(tmp_path / "demo")
    refresh_all(project.root, monkeypatch, {})
    warehouse = project.warehouse()
    groups: list[list[str]] = []
    windows: list[list[str]] = []  # the people whose windows were read
    read_group = step._read_group

    def counted(*args: Any) -> Any:
        ids, read = args[-2:]
        if read is step._person_tables:
            groups.append(ids)
        elif read is step._windows:
            windows.append(ids)
        return read_group(*args)

    monkeypatch.setattr(step, "_read_group", counted)

    def run(out: Path, group_people: int) -> tuple[list[Path], step.PersonPlan]:
        monkeypatch.setattr(dashboards, "RENDER_GROUP_PEOPLE", group_people)
        data = step.load_dashboard_inputs(warehouse)
        data.run_info["run_at"] = RUN_AT
        groups.clear()
        windows.clear()
        return step.update_dashboards(warehouse, out, data, workers=1)

    one, one_plan = run(tmp_path / "one", 10**6)
    assert len(groups) == 1
    people = groups[0]
    assert len(people) > 2
    many, many_plan = run(tmp_path / "many", 1)
    assert groups == [[p] for p in people]  # a group per person, in the order they are read
    # Everyone's section file is rendered: their windows are read with their group.
    assert windows == groups

    # Every file the same, and so is what the plan recorded (the out folder is in the salt).
    # A page and a section file each.
    assert _person_pages(one) == _person_pages(many)
    assert len(_person_pages(many)) == 2 * len(people)
    assert _files(tmp_path / "one") == _files(tmp_path / "many")
    assert many_plan.everyone and many_plan.people == []
    assert_frame_equal(
        one_plan.fingerprints.sort("person_id"), many_plan.fingerprints.sort("person_id")
    )

    # The pages from everyone's frames at once, in one DashboardInputs, are the same files too.
    whole = everyone_in_frames(step.load_dashboard_inputs(warehouse))
    whole.run_info["run_at"] = RUN_AT
    dashboards.write_dashboards(tmp_path / "whole", whole, workers=1)
    assert _files(tmp_path / "whole") == _files(tmp_path / "many")

    # A night with nothing new renders no person page, planned a group at a time or in one,
    # and reads nobody's windows (only section files show them). With the shards' and people's
    # states forgotten, every group is planned, each against its own people's records: the
    # others are not "gone" from it (kept once per group, that list grew with the square of
    # the people).
    with warehouse.write() as conn:
        conn.execute(
            "DELETE FROM person_inputs WHERE step IN (?, ?)",
            [page_shards.SHARDS_STEP, page_shards.PEOPLE_STEP],
        )
    planned: list[Any] = []
    plan_pages = pages_step.plan_pages

    def kept(*args: Any) -> Any:
        planned.append(plan_pages(*args))
        return planned[-1]

    monkeypatch.setattr(pages_step, "plan_pages", kept)
    again, plan = run(tmp_path / "many", 1)
    assert not plan.everyone and _person_pages(again) == set()
    assert windows == []
    assert len(planned) == len(people)
    assert all(p.gone == [] and p.fingerprints.height == 1 for ps in planned for p in ps)
    again, plan = run(tmp_path / "many", 10**6)
    assert not plan.everyone and _person_pages(again) == set()
    assert windows == []
    assert _files(tmp_path / "many") == _files(tmp_path / "one")


def test_a_moved_project_reads_the_same_rows_shard_by_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each group's rows are read from its people's shards only, and in a moved project (whose
    read-only connections read through temporary views of the same names) every column once."""
    project = make_demo_project(tmp_path / "old")
    refresh_all(project.root, monkeypatch, {})

    def everyone(root: Path) -> dict[str, Any]:
        people = step.load_dashboard_inputs(Project(root).warehouse()).people
        assert people is not None
        # Grouped by store shard (`_read_group` reads one shard's files for a one-shard group).
        shard = {p: step.shard_of(p, step.SHARDS) for p in people.ids}
        assert [shard[p] for p in people.ids] == sorted(shard.values())
        ids = sorted(people.ids)
        one = {p: people.read([p]) for p in ids}
        whole = people.read(ids)
        for name in ("diet_daily", "associations", "marker_draws", "persons"):
            mine = [getattr(one[p], name) for p in ids]
            assert_frame_equal(pl.concat([m for m in mine if m.height]), getattr(whole, name))
        return {"inputs": whole, "windows": people.windows(ids)}

    before = everyone(tmp_path / "old")
    shutil.move(tmp_path / "old", tmp_path / "new")
    after = everyone(tmp_path / "new")
    for name in ("diet_daily", "associations", "marker_draws", "persons", "data_sufficiency"):
        assert_frame_equal(getattr(after["inputs"], name), getattr(before["inputs"], name))
    assert_frame_equal(after["windows"], before["windows"])
