"""The scale benchmark at a tiny scale: it runs, reports every stage and loses no row.

Behaviour only: wall-clock numbers are facts for bench/results.md, never asserted here.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from bench import run as bench_run
from bench.generate import DIARY_GLOB, MANIFEST, NEXT_DAY_DIR, NIGHTS, generate
from bench.stages import BASELINES, LABELS, STAGES
from bench.targets import LAB_PORTAL_FILES
from pipelines.demo import SERVINGS_HEADER

REPO = Path(__file__).resolve().parent.parent
PEOPLE, DAYS = 3, 40


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every generated file, by relative path (the manifest's timing left out)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def test_generator_is_deterministic_and_writes_cronometer_exports(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", PEOPLE, DAYS, seed=7, jobs=1)
    args = ["--people", str(PEOPLE), "--days", str(DAYS), "--seed", "7", "--jobs", "2"]
    cli = subprocess.run(
        [sys.executable, "-m", "bench.generate", *args, "--out", str(tmp_path / "b")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert cli.returncode == 0, cli.stderr
    generate(tmp_path / "c", PEOPLE, DAYS, seed=8, jobs=1)

    a, b, c = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert a == b  # same seed, other worker count, through the CLI: byte-identical
    assert a != c  # another seed: other data
    second = json.loads((tmp_path / "b" / MANIFEST).read_text())
    assert {k: v for k, v in first.items() if k != "seconds"} == {
        k: v for k, v in second.items() if k != "seconds"
    }

    raw = tmp_path / "a" / "data" / "raw"
    diaries = sorted(raw.glob(DIARY_GLOB))
    assert len(diaries) == first["diary_files"] == PEOPLE * 2  # Jan and Feb for 40 days
    head = diaries[0].read_bytes()
    assert head.startswith(b"\xef\xbb\xbf" + ",".join(SERVINGS_HEADER).encode() + b"\r\n")
    next_day = list((tmp_path / "a" / NEXT_DAY_DIR).rglob("*.csv"))
    assert len(next_day) == PEOPLE
    # The whole nightly job's two nights: every person, then every tenth person (person 1 of 3).
    nights = {folder: sorted((tmp_path / "a" / folder).rglob("*.csv")) for folder, _ in NIGHTS}
    assert [len(nights[f]) for f, _ in NIGHTS] == [PEOPLE, PEOPLE, 1]
    assert nights["night_tenth"][0].parent.name == "p00001"
    days = [{p.name for p in nights[f]} for f, _ in NIGHTS]
    assert all(len(d) == 1 for d in days) and len(set.union(*days)) == 3  # three distinct days
    assert (tmp_path / "a" / "sources.yaml").is_file()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, Path]:
    tmp = tmp_path_factory.mktemp("bench")
    workdir, results = tmp / "work", tmp / "results.md"
    args = ["--scale", "tiny", "--workdir", str(workdir), "--keep", "--results", str(results)]
    code = bench_run.main([*args, "--json", str(tmp / "results.json")])
    assert code == 0
    return json.loads((tmp / "results.json").read_text()), results, workdir


def test_results_file_has_every_stage_and_the_baseline(tiny_run: tuple[dict, Path, Path]) -> None:
    report, results, _ = tiny_run
    text = results.read_text(encoding="utf-8")
    for stage, label in LABELS.items():
        assert report["stages"][stage]["status"] == "ok", (stage, report["stages"][stage])
        assert label in text
    assert "DuckDB read_csv (baseline)" in text and "read_csv(" in text
    for target in ("2x DuckDB read_csv", "10% of full ingest", "< 60 s", "< 2 min"):
        assert target in text
    assert "## Machine" in text and "cores" in text
    # Every stage reports its time, throughput and peak memory, measured on the code snapshot
    # taken when the run started.
    snapshot = str(Path(report["workdir"]) / "code" / "pipelines")
    for stage in STAGES:
        numbers = report["stages"][stage]
        assert numbers["seconds"] is not None and numbers["peak_rss_mb"] > 0
        if stage not in BASELINES:
            assert numbers["code_path"] == snapshot, stage


def test_job_stages_report_each_steps_own_peak(tiny_run: tuple[dict, Path, Path]) -> None:
    """(e) to (h) name the steps that held the most memory, each peak the step's own: at least
    its RSS when it started, at most the stage's peak, which the resets must not lower below
    the highest step's."""
    report, results, _ = tiny_run
    for stage in ("job_first", "night_all", "night_tenth", "night_quiet"):
        numbers = report["stages"][stage]
        peaks = numbers["step_peaks"]
        assert 1 <= len(peaks) <= 6, stage
        for key, step in peaks.items():
            assert 0 < step["start_mb"] <= step["peak_mb"] <= numbers["peak_rss_mb"], (stage, key)
        assert max(p["peak_mb"] for p in peaks.values()) <= numbers["peak_rss_mb"]
        assert list(peaks.values()) == sorted(peaks.values(), key=lambda p: -p["peak_mb"])
    assert "## Where the memory goes" in results.read_text(encoding="utf-8")


def test_staging_rows_equal_duckdb_read_csv_rows(tiny_run: tuple[dict, Path, Path]) -> None:
    report, _, workdir = tiny_run
    checks = report["checks"]
    assert checks["staging_rows"] == checks["duckdb_rows"] == checks["generated_rows"] > 0
    assert checks["incremental_staging_rows"] == checks["incremental_expected_rows"]
    ingest = report["stages"]["ingest"]
    assert ingest["rows_loaded"] == ingest["rows"] and ingest["rows_rejected"] == 0

    # Independently of the runner: after the nightly day the staging table holds exactly what
    # DuckDB reads from every diary file now under data/raw/.
    project = workdir / "project"
    glob = str(project / "data" / "raw" / DIARY_GLOB)
    duck = duckdb.sql(f"SELECT count(*) FROM read_csv('{glob}', union_by_name = true)").fetchone()
    con = duckdb.connect(str(project / "data" / "processed" / "warehouse.duckdb"), read_only=True)
    try:
        staged = con.execute('SELECT count(*) FROM "stg_bench_cronometer"').fetchone()
    finally:
        con.close()
    assert duck is not None and staged is not None
    assert staged[0] == duck[0] == checks["final_staging_rows"] == checks["final_expected_rows"]


def test_labs_ingest_of_many_small_files_loses_no_row(tiny_run: tuple[dict, Path, Path]) -> None:
    """The labs-throughput stage runs the real ingest on the many-small-files lab set: every row
    DuckDB reads from those files is read, and loaded, rejected or counted as duplicate."""
    report, results, _ = tiny_run
    labs = report["stages"]["labs_ingest"]
    assert labs["files"] == LAB_PORTAL_FILES["tiny"] and labs["files_failed"] == 0
    checks = report["checks"]
    assert checks["labs_rows_read"] == checks["labs_duckdb_rows"] == checks["labs_generated_rows"]
    assert labs["rows_loaded"] + labs["rows_rejected"] + labs["rows_duplicate"] == labs["rows"]
    # Non-marker tests (sodium, glucose, ...) are rejected with a reason; the markers load.
    assert labs["rows_loaded"] > 0 and labs["rows_rejected"] > 0 and labs["rows_duplicate"] == 0
    text = results.read_text(encoding="utf-8")
    assert "labs ingest >= 100,000 rows/s on many small files" in text
    assert "labs: DuckDB read_csv, schema given" in text


def test_nightly_jobs_recompute_only_who_synced(tiny_run: tuple[dict, Path, Path]) -> None:
    """The whole nightly job is the real refresh_all job: it reads only the night's files and
    rebuilds only the days of the people who synced (every person, then person 1 of 3)."""
    report, results, _ = tiny_run
    stages = report["stages"]
    first = stages["job_first"]["work"]
    assert first["diet_daily: people_recomputed"] == "all"
    for stage, people in (("night_all", PEOPLE), ("night_tenth", 1)):
        work = stages[stage]["work"]
        assert work["ingest_bench_cronometer: files_parsed"] == people, (stage, work)
        assert work["ingest_bench_labs: files_parsed"] == 0
        assert work["diet_daily: people_recomputed"] == people
        assert work["diet_daily: days_recomputed"] == people  # one new day each
        # The new days come after every lab draw: no window, no draw changes.
        assert work["exposure_windows: people_recomputed"] == 0
        assert work["marker_draws: people_recomputed"] == 0
    text = results.read_text(encoding="utf-8")
    assert "whole nightly job, every person with a new day, <= 15% of a full rebuild" in text


def test_a_quiet_night_changes_nothing_and_says_so(tiny_run: tuple[dict, Path, Path]) -> None:
    """(h): a night on which nobody synced reads no file, recomputes nobody, renders only the
    index and cohort page, and every step that plans says it changed nothing."""
    report, results, _ = tiny_run
    _assert_quiet(report["stages"]["night_quiet"])
    assert "whole nightly job with nothing new, 200 people, < 5 s" in results.read_text("utf-8")


def test_a_quiet_night_run_without_the_busy_nights_is_quiet_too(tmp_path: Path) -> None:
    """`--stages ...,job_first,night_quiet` (how issue 19's figure is measured): the nights left
    out keep their files out of data/raw/, so (h) still reads nothing and the row checks hold."""
    stages = "baseline_schema,ingest,prepare,analysis,job_first,night_quiet"
    args = ["--scale", "tiny", "--workdir", str(tmp_path / "work"), "--stages", stages]
    out = tmp_path / "results.json"
    assert bench_run.main([*args, "--results", str(tmp_path / "r.md"), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["stages"]["night_all"]["status"] == "skipped"
    _assert_quiet(report["stages"]["night_quiet"])
    checks = report["checks"]
    assert checks["staging_rows"] == checks["duckdb_rows"] == checks["generated_rows"] > 0
    assert checks["final_staging_rows"] == checks["final_expected_rows"] == checks["staging_rows"]


def _assert_quiet(quiet: dict) -> None:
    assert quiet["status"] == "ok" and quiet["seconds"] > 0
    work = quiet["work"]
    counts = {k: v for k, v in work.items() if not k.endswith((": changed", ": refit"))}
    flags = {k: v for k, v in work.items() if k.endswith((": changed", ": refit"))}
    assert counts["ingest_bench_cronometer: files_parsed"] == 0
    assert counts["dashboards: pages_rendered"] == 2  # index and cohort
    assert all(v == 0 for k, v in counts.items() if k != "dashboards: pages_rendered"), counts
    assert flags and not any(flags.values()), flags


def test_a_stage_reports_its_own_peak_not_its_parents() -> None:
    """A stage's peak RSS is its own process's (`stage_peak_mb`): Linux starts a forked child's
    `ru_maxrss` at the parent's RSS, so wait4's number showed the bench's 855 MB for every
    stage that used less."""
    held = bytearray(400 * 2**20)
    held[::4096] = b"\x01" * len(held[::4096])  # touch every page: 400 MB resident
    child = subprocess.Popen(
        [sys.executable, "-c", "from bench.stages import stage_peak_mb; print(stage_peak_mb())"],
        stdout=subprocess.PIPE,
        cwd=Path(bench_run.__file__).resolve().parent.parent,
    )
    _, status, usage = os.wait4(child.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and child.stdout is not None
    reported = float(child.stdout.read())
    del held
    assert usage.ru_maxrss / 1024 > 400  # the parent's RSS, as wait4 tells it
    assert 10 < reported < 300


STEP_PEAKS_SCRIPT = """
import json
from types import SimpleNamespace as NS
from bench.stages import StepPeaks, stage_peak_mb

stored = []
instance = NS(event_log_storage=NS(store_event=stored.append))
peaks = StepPeaks()
peaks.watch(instance)

def event(step, kind):
    instance.event_log_storage.store_event(
        NS(step_key=step, dagster_event=NS(event_type_value=kind))
    )

event("big", "STEP_START")
held = bytearray(300 * 2**20)
held[::4096] = b"\\x01" * len(held[::4096])  # touch every page: 300 MB resident
del held
event("big", "STEP_SUCCESS")
event("small", "STEP_START")
event("small", "STEP_SUCCESS")
print(json.dumps({"steps": peaks.top(6), "stage": stage_peak_mb(), "stored": len(stored)}))
"""


def test_step_peaks_are_each_steps_own() -> None:
    """`StepPeaks` resets the high-water mark when a step starts: a step after one that held
    300 MB reports its own peak, not the 300 MB, while the stage's peak keeps them; every event
    still reaches the event log."""
    out = subprocess.run(
        [sys.executable, "-c", STEP_PEAKS_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    numbers = json.loads(out.stdout)
    big, small = numbers["steps"]["big"], numbers["steps"]["small"]
    assert numbers["stored"] == 4
    assert big["peak_mb"] - big["start_mb"] > 280
    assert small["peak_mb"] < big["peak_mb"] - 250
    assert numbers["stage"] >= big["peak_mb"]
