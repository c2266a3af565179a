"""The person pages partitioned by person shards (`person_pages`) and the index and cohort page a
fan-in over everyone (`dashboards`), rendered from `page_summaries`: a run of one partition
renders and removes only its people's pages, the index shows its new numbers, and whatever the
order of the partitions' runs, the folder ends as a run of all of them at once writes it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import pytest

from pipelines.defs.partitions import (
    all_partitions_tags,
    partition_keys,
    partition_range_tags,
    shards_of_key,
)
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.reports import person_page_name, person_section_name
from pipelines.reports.page_summary import PageSummary, summaries_frame, summaries_from
from pipelines.store import SHARDS, shard_of
from tests.conftest import DemoRun, copy_project, make_demo_project

# The run's time in the footers (minutes): the only thing two runs of the same data differ in.
_RUN_AT = re.compile(rb"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file of a dashboards folder, the run's time stamps masked."""
    return {p.name: _RUN_AT.sub(b"<run>", p.read_bytes()) for p in sorted(folder.iterdir())}


def _run(project: Project, instance: dg.DagsterInstance, tags: dict[str, str]) -> None:
    from pipelines.definitions import defs

    job = defs().resolve_job_def("refresh_all")
    assert job.execute_in_process(instance=instance, tags=tags).success


def _key_of(person: str) -> str:
    return next(k for k in partition_keys(4) if shard_of(person, SHARDS) in shards_of_key(k))


def _drop_a_day(servings: Path) -> None:
    """Remove every entry of one day in the middle of a diary (its first and last day stay, so
    the data's window does not move)."""
    lines = servings.read_text(encoding="utf-8").rstrip("\n").split("\n")
    days = sorted({line.split(",", 1)[0] for line in lines[1:]})
    gone = days[len(days) // 2]
    kept = [line for line in lines[1:] if not line.startswith(gone + ",")]
    servings.write_text("\n".join([lines[0], *kept]) + "\n", encoding="utf-8")


def test_a_summary_keeps_every_field_through_its_row() -> None:
    full = PageSummary(
        "p1",
        headline="crp",
        latest_value=2.5,
        latest_at="2025-01-02",
        latest_acute=True,
        latest_censored="<",
        category="1-3",
        trend={"slope_pct_per_year": -3.5, "slope_ci_low": float("nan"), "slope_ci_high": None},
        n_draws=4,
        n_chronic=3,
        n_acute=1,
        days_logged=20,
        days_in_range=30,
        dii_params=(10, 25),
        sufficiency_line="hs-CRP: 2 more draws",
        top_findings=["a", "b"],
        n_significant=5,
        n_findings=12,
        warnings=["w"],
    )
    empty = PageSummary("p2")
    back = summaries_from(summaries_frame([full, empty]))
    assert repr(back) == repr([full, empty])  # repr: nan != nan
    assert summaries_from(summaries_frame([])) == []


def test_one_partition_renders_only_its_pages_and_the_index_shows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_run: DemoRun
) -> None:
    """A night over one partition renders its changed person's page and section file and no
    other person's; the index shows that person's new numbers; a run of every partition then
    leaves the folder a never-partitioned run of the same data writes. The run of every
    partition before the night is the session's (`demo_run`), copied."""
    assert demo_run.result.success
    project = copy_project(demo_run.project, tmp_path / "parts")
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project.root))
    out = project.dashboards_dir
    changed = "bob"
    key = _key_of(changed)
    others = [p for p in ("alice", "carol") if _key_of(p) != key]
    assert others  # the demo's people are in more than one partition
    with dg.DagsterInstance.ephemeral() as instance:
        index = (out / "index.html").read_text(encoding="utf-8")
        before = re.search(r"(\d+) / (\d+) days logged", index.split(changed + "</a>", 1)[1])
        assert before is not None
        names = [n(p) for p in others for n in (person_page_name, person_section_name)]
        stamps = {n: (out / n).stat().st_mtime_ns for n in names}
        page = (out / person_page_name(changed)).stat().st_mtime_ns

        _drop_a_day(project.raw_dir / "demo" / "cronometer" / changed / "servings.csv")
        _run(project, instance, partition_range_tags(key, key))
        assert {n: (out / n).stat().st_mtime_ns for n in names} == stamps
        assert (out / person_page_name(changed)).stat().st_mtime_ns != page
        index = (out / "index.html").read_text(encoding="utf-8")
        after = re.search(r"(\d+) / (\d+) days logged", index.split(changed + "</a>", 1)[1])
        assert after is not None
        assert int(after[1]) == int(before[1]) - 1 and after[2] == before[2]

        _run(project, instance, all_partitions_tags(project))
    # The same data, never partitioned: one run of every partition, from scratch.
    fresh = make_demo_project(tmp_path / "fresh")
    shutil.copytree(project.raw_dir, fresh.raw_dir, dirs_exist_ok=True)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(fresh.root))
    with dg.DagsterInstance.ephemeral() as instance:
        _run(fresh, instance, all_partitions_tags(fresh))
    assert _files(out) == _files(fresh.dashboards_dir)


def test_a_first_run_of_one_partition_then_the_others_writes_what_one_run_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo_run: DemoRun
) -> None:
    """From nothing: the first partition's run writes its people's pages and an index of them;
    the others' run then completes the folder as the session's run of every partition wrote it.
    A person who left a partition loses their page; another partition's pages stay."""
    assert demo_run.result.success
    project = make_demo_project(tmp_path)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project.root))
    out = project.dashboards_dir
    keys = partition_keys(4)
    with dg.DagsterInstance.ephemeral() as instance:
        _run(project, instance, partition_range_tags(keys[0], keys[0]))
        mine = sorted(p for p in ("alice", "bob", "carol") if _key_of(p) == keys[0])
        pages = sorted(p.name for p in out.glob("person_*.html"))
        assert pages == [person_page_name(p) for p in mine]
        _run(project, instance, partition_range_tags(keys[1], keys[-1]))
        assert _files(out) == _files(demo_run.project.dashboards_dir)

        # Bob's diary goes: his partition's run removes his page (he has no data left), the
        # other partition's pages stay as they are.
        stale = out / "person_gone.html"  # a page of nobody's shard this run may touch
        stale.write_text("kept")
        alice = (out / person_page_name("alice")).stat().st_mtime_ns
        for source in ("cronometer", "oura", "bearable"):
            shutil.rmtree(project.raw_dir / "demo" / source / "bob")
        (project.raw_dir / "demo" / "labs" / "bob_labs.csv").unlink()
        key = _key_of("bob")
        _run(project, instance, partition_range_tags(key, key))
    assert not (out / person_page_name("bob")).exists()
    assert not (out / person_section_name("bob")).exists()
    assert stale.read_text() == "kept"
    assert (out / person_page_name("alice")).stat().st_mtime_ns == alice
    assert person_page_name("bob") not in (out / "index.html").read_text(encoding="utf-8")
