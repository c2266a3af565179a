"""Faults for real: kill -9 mid-run, overlapping runs, an outside reader, backups and restore.

Every run here is the real `gutsignal` console script in a subprocess on the demo project, and
every check compares the warehouse with the one a clean, uninterrupted run produces.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pipelines import store_writes
from pipelines.cli import main
from pipelines.defs.partitions import all_partitions_tags
from pipelines.project import Project
from tests.conftest import copy_project, make_demo_project

EXE = Path(sys.executable).with_name("gutsignal")
TABLES = (
    "ingest_files",
    "rejected_rows",
    "diet_entries",
    "lab_results",
    "persons",
    "diet_daily",
    "marker_draws",
    "exposure_windows",
    "associations",
    "daily_effects",
)
# Columns that record when something happened, not what the data is.
VOLATILE = ("ingested_at", "modified_at")


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}


def run(root: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(EXE), "run", "--project-dir", str(root)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=timeout,
        check=False,
    )


def state(project: Project) -> dict[str, pl.DataFrame]:
    out = {}
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        for table in TABLES:
            df = conn.execute(f"SELECT * FROM {table}").pl()
            df = df.drop([c for c in VOLATILE if c in df.columns])
            out[table] = df.sort(df.columns, nulls_last=True)
    return out


def assert_same_state(a: Project, b: Project) -> None:
    sa, sb = state(a), state(b)
    for table in TABLES:
        assert sa[table].equals(sb[table]), f"{table} differs from a clean run"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Project:
    project = make_demo_project(tmp_path_factory.mktemp("clean"))
    proc = run(project.root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return project


def kill_after(root: Path, marker: str, delay: float) -> str:
    """Start a run, SIGKILL it `delay` seconds after a stderr line containing `marker`."""
    proc = subprocess.Popen(
        [str(EXE), "run", "--project-dir", str(root)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env(),
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if marker in line:
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-2000:]
    return "".join(seen)


@pytest.mark.parametrize(
    ("marker", "delay"),
    [
        ("ingest_demo_cronometer done", 0.0),  # between ingest steps
        ("diet_daily done", 0.05),  # while the next steps are writing the warehouse
        ("associations done", 0.1),  # while dashboards are being written
    ],
)
def test_kill_9_at_any_point_then_the_next_run_equals_a_clean_run(
    tmp_path: Path, clean: Project, marker: str, delay: float
) -> None:
    # An earlier, complete run: the module's clean run, copied (each case ran it again before).
    project = copy_project(clean, tmp_path / "project")
    kill_after(project.root, marker, delay)
    assert list(project.processed_dir.glob("warehouse.run-*.duckdb")), "snapshot left by the kill"

    again = run(project.root)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "interrupted" in again.stderr  # the leftover snapshot was found and restored
    assert not list(project.processed_dir.glob("warehouse.run-*.duckdb"))
    assert_same_state(project, clean)
    # no half-written dashboards: no temp files, every page complete
    leftovers = [
        p.name for p in project.dashboards_dir.iterdir() if not p.name.endswith((".html", ".js"))
    ]
    assert leftovers == []  # no temp file
    for page in project.dashboards_dir.glob("*.html"):
        assert page.read_text(encoding="utf-8").rstrip().endswith("</html>"), page.name


def test_two_overlapping_runs_are_serialised(tmp_path: Path, clean: Project) -> None:
    project = make_demo_project(tmp_path)
    procs = [
        subprocess.Popen(
            [str(EXE), "run", "--project-dir", str(project.root)],
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outputs]
    assert any("waiting" in err for _, err in outputs)  # the second one said it was waiting
    assert_same_state(project, clean)


def test_an_outside_reader_during_a_run_makes_it_wait_not_fail(
    tmp_path: Path, clean: Project
) -> None:
    project = copy_project(clean, tmp_path / "project")  # after a complete run
    # A user opens the warehouse in a DuckDB shell while the next run starts.
    released = threading.Event()

    def reader() -> None:
        with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
            conn.execute("SELECT count(*) FROM diet_entries").fetchone()
            time.sleep(4)
        released.set()

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.5)
    proc = run(project.root)
    thread.join()
    assert released.is_set()
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_nightly_runs_keep_the_last_n_backups_and_restore_brings_one_back(
    tmp_path: Path, clean: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.backups import list_backups, take_backup

    project = copy_project(clean, tmp_path)  # after a complete run
    wh = project.warehouse()
    good = wh.table("lab_results")
    for _ in range(4):
        take_backup(wh, keep=3)
    assert len(list_backups(wh)) == 3

    with wh.write() as conn:  # something goes badly wrong (lab_results is a view over it)
        store_writes.forget(conn, "stg_demo_labs", "true")
    assert wh.table("lab_results").is_empty()

    assert main(["restore", "--project-dir", str(tmp_path)]) == 0
    assert "Restored" in capsys.readouterr().out
    assert wh.table("lab_results").equals(good)


def test_a_scheduled_run_backs_up_the_warehouse_first(
    tmp_path: Path, clean: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from pipelines.backups import list_backups
    from pipelines.project import PROJECT_DIR_ENV

    project = copy_project(clean, tmp_path)  # after a complete run
    before = project.warehouse().table("lab_results")
    assert list_backups(project.warehouse()) == []

    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    from pipelines.definitions import defs

    job = defs().resolve_job_def("refresh_all")
    with dg.DagsterInstance.ephemeral() as instance:
        # what the daemon's nightly tick launches: the job, tagged with the schedule's name
        result = job.execute_in_process(
            instance=instance,
            tags={
                "dagster/schedule_name": "nightly_refresh",
                **all_partitions_tags(Project.from_env()),
            },
        )
    assert result.success
    (backup,) = list_backups(project.warehouse())
    with duckdb.connect(str(backup), read_only=True) as conn:
        assert conn.execute("SELECT * FROM lab_results").pl().equals(before)


def heal_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "could not be opened" in line]


def test_a_truncated_warehouse_without_backups_is_rebuilt_from_raw(
    tmp_path: Path, clean: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy_project(clean, tmp_path / "p")
    damaged = project.warehouse_path
    good_bytes = damaged.read_bytes()
    damaged.write_bytes(good_bytes[: len(good_bytes) // 2])
    capsys.readouterr()

    assert main(["run", "--project-dir", str(project.root)]) == 0
    (line,) = heal_lines(capsys.readouterr().err)
    assert "no backup opened cleanly, so everything is rebuilt from data/raw/" in line
    (aside,) = project.processed_dir.glob("warehouse.damaged-*.duckdb")
    assert aside.name in line
    assert aside.read_bytes() == good_bytes[: len(good_bytes) // 2]  # kept as it was found
    # The hash memo beside the warehouse does not make the rebuild skip any file.
    assert (project.processed_dir / "file_hashes").is_dir()
    assert_same_state(project, clean)


def test_a_warehouse_with_a_garbage_header_comes_back_from_the_newest_backup_that_opens(
    tmp_path: Path, clean: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.backups import backup_time, list_backups, take_backup

    project = copy_project(clean, tmp_path / "p")
    wh = project.warehouse()
    good = take_backup(wh, keep=7)
    assert good is not None
    broken = take_backup(wh, keep=7)  # a newer backup that is itself damaged: skipped
    assert broken is not None
    broken.write_bytes(b"\0" * 1000)
    assert list_backups(wh) == [good, broken]
    # A lab file arrives after the good backup; then the warehouse's first bytes are overwritten.
    lab = project.raw_dir / "demo" / "labs" / "dave_labs.csv"
    lab.write_text(
        "Patient,Collected,Test,Result,Units,Reference Range,Flag\n"
        "dave,2026-01-05 08:00,CRP,1.5,mg/L,0.0-3.0,\n",
        encoding="utf-8",
    )
    with open(project.warehouse_path, "r+b") as f:
        f.write(b"\xde\xad\xbe\xef" * 1024)
    capsys.readouterr()

    assert main(["run", "--project-dir", str(project.root)]) == 0
    (line,) = heal_lines(capsys.readouterr().err)
    assert "not a valid DuckDB database file" in line
    assert f"restored the backup of {backup_time(good)}" in line
    assert list(project.processed_dir.glob("warehouse.damaged-*.duckdb"))
    labs = wh.table("lab_results")
    assert "dave" in labs["person_id"].to_list()  # the file added since the backup was read
    before = clean.warehouse().table("lab_results")
    assert labs.height == before.height + 1

    # A warehouse that opens is left alone, and nothing is said about it.
    capsys.readouterr()
    assert main(["run", "--project-dir", str(project.root)]) == 0
    assert heal_lines(capsys.readouterr().err) == []
    assert len(list(project.processed_dir.glob("warehouse.damaged-*.duckdb"))) == 1
