"""Privacy promises: the UI listens on loopback only, metadata carries counts not contents,
personal files are git-ignored."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DemoRun, make_demo_project

REPO = Path(__file__).resolve().parents[1]


def test_dagster_metadata_and_logs_carry_no_diary_contents_or_lab_values(
    demo_run: DemoRun,
) -> None:
    wh = demo_run.project.warehouse()
    foods = set(wh.table("diet_entries")["food"].unique().to_list())
    values = {r for r in wh.table("lab_results")["value_raw"].unique().to_list() if len(r) > 2}
    texts = []
    materializations = 0
    for event in demo_run.result.all_events:
        texts.append(event.message or "")
        data = event.event_specific_data
        materialization = getattr(data, "materialization", None)
        if materialization is not None:
            materializations += 1
            # Step timings are the run's own numbers: a 0.71 s step is not a 0.71 mg/L result.
            texts += [
                str(v.value) for k, v in materialization.metadata.items() if k != "seconds_by_step"
            ]
    assert materializations >= 10  # the check below looked at real metadata
    blob = "\n".join(texts)
    assert not [f for f in foods if f in blob]
    assert not [v for v in values if f" {v} " in blob or f"|{v}|" in blob]


@pytest.mark.parametrize(
    "path",
    [
        "data/raw/cronometer/me/servings.csv",
        "data/processed/warehouse.duckdb",
        # the store of record holds every parsed row (raw_ and stg_ tables included)
        "data/store/store.json",
        "data/store/stg_cronometer/shard=03/part-0a1b.parquet",
        "dashboards/index.html",
        "examples/nhanes/data/raw/nhanes/HSCRP_J.XPT",
        "examples/nhanes/dashboards/cohort.html",
        ".dagster_home/storage/runs.db",
    ],
)
def test_personal_files_are_git_ignored(path: str) -> None:
    if not (REPO / ".git").exists() or shutil.which("git") is None:
        pytest.fail("the privacy check needs the git checkout (CI runs in a clone)")
    result = subprocess.run(
        ["git", "check-ignore", "-q", path], cwd=REPO, check=False, capture_output=True
    )
    assert result.returncode == 0, f"{path} would be committed"


def test_every_folder_the_project_writes_personal_data_to_is_git_ignored() -> None:
    """Derived from the project's own paths, so a new data folder cannot be left out."""
    from pipelines.project import Project

    project = Project(REPO)
    folders = [
        project.raw_dir,
        project.processed_dir,
        project.warehouse().store,
        project.dashboards_dir,
    ]
    for folder in folders:
        probe = (folder / "some-person" / "file.csv").relative_to(REPO)
        result = subprocess.run(
            ["git", "check-ignore", "-q", str(probe)], cwd=REPO, check=False, capture_output=True
        )
        assert result.returncode == 0, f"{probe} would be committed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening_addresses(port: int) -> set[str]:
    out = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=False).stdout
    found = set()
    for line in out.splitlines():
        local = line.split()[3]
        host, _, p = local.rpartition(":")
        if p == str(port):
            found.add(host)
    return found


def test_the_dagster_ui_listens_on_loopback_only(tmp_path: Path) -> None:
    if shutil.which("ss") is None:
        pytest.fail("`ss` (iproute2) is needed to check listening sockets")
    project = make_demo_project(tmp_path / "project")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "GUTSIGNAL_PROJECT_DIR": str(project.root)}
    dg = Path(sys.executable).with_name("dg")
    # The exact command `make dev` runs.
    proc = subprocess.Popen(
        [str(dg), "dev", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        addresses: set[str] = set()
        while time.monotonic() < deadline and not addresses:
            time.sleep(1)
            addresses = _listening_addresses(port)
        assert addresses == {"127.0.0.1"}, addresses
    finally:
        # `dg dev` may ignore SIGTERM (dagster-notes.md): kill the whole process group.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_makefile_dev_target_binds_loopback() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    dev = makefile[makefile.index("\ndev:") :].split("\n\n")[0]
    assert "--host 127.0.0.1" in dev and "0.0.0.0" not in makefile
