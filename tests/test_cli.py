"""The `gutsignal` command: helpful messages on empty projects, and a real run on the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import webbrowser
from pathlib import Path

import pytest

from pipelines.cli import main
from tests.conftest import make_demo_project


def test_run_without_sources_yaml_explains_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--project-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "No sources.yaml" in err and "gutsignal demo" in err
    assert "Traceback" not in err
    assert (tmp_path / "data" / "raw").is_dir()  # the layout is created for the user


def test_run_with_no_matching_files_names_the_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - {name: mine, kind: diet, format: cronometer_servings, path: 'x/*.csv'}\n",
        encoding="utf-8",
    )
    code = main(["run", "--project-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "source 'mine', key 'path'" in err and "matches no file" in err


def test_bad_config_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "sources.yaml").write_text(
        "sources:\n  - {name: mine, kind: diet, format: fitbit, path: 'x/*.csv'}\n",
        encoding="utf-8",
    )
    assert main(["run", "--project-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "source 'mine', key 'format'" in err and "Traceback" not in err


def test_validate_reports_rows_and_rejections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_demo_project(tmp_path)
    lab = sorted((project.raw_dir / "demo" / "labs").glob("*.csv"))[0]
    bad = tmp_path / "bad_labs.csv"
    bad.write_text(
        lab.read_text(encoding="utf-8") + "alice,2026-07-01 08:00,CRP,CANCELLED,mg/L,0.0-3.0,\n",
        encoding="utf-8",
    )
    assert (
        main(["validate", str(bad), "--source", "demo_labs", "--project-dir", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "would reject:   1" in out and "CANCELLED" in out and "Nothing was written" in out
    assert not project.warehouse_path.exists()


def test_console_script_runs_the_demo_end_to_end(tmp_path: Path) -> None:
    make_demo_project(tmp_path)
    exe = Path(sys.executable).with_name("gutsignal")
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    proc = subprocess.run(
        [str(exe), "run", "--project-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = tmp_path / "dashboards" / "index.html"
    assert str(index) in proc.stdout
    assert index.exists()
    # progress per step on stderr
    assert "diet_daily" in proc.stderr and "done" in proc.stderr
    # The demo's sources end on a fixed day (demo: true): labelled, never a stale warning.
    text = index.read_text(encoding="utf-8")
    assert "looks stale" not in text and "has no recent data" not in text
    assert "demo data (ends 2026-10-25), not checked for freshness" in text
    # Files written during the run are 0 days old, not -1 (the run's time is cut to the minute).
    assert "(0 days before this run)" in text and "(-1 days" not in text


def test_a_failed_run_leaves_the_warehouse_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = make_demo_project(tmp_path)
    assert main(["run", "--project-dir", str(tmp_path)]) == 0
    wh = project.warehouse()
    before = {t: wh.table(t) for t in ("lab_results", "ingest_files", "associations")}

    # A new lab file arrives, then the analysis step breaks half-way through the run.
    lab = project.raw_dir / "demo" / "labs" / "dave_labs.csv"
    lab.write_text(
        "Patient,Collected,Test,Result,Units,Reference Range,Flag\n"
        "dave,2026-01-05 08:00,CRP,1.5,mg/L,0.0-3.0,\n",
        encoding="utf-8",
    )

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("pipelines.steps.analysis.model_parts", broken)
    capsys.readouterr()
    assert main(["run", "--project-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "disk full" in err and "put back" in err
    for table, frame in before.items():
        assert wh.table(table).equals(frame), table
    assert not list(project.processed_dir.glob("warehouse.run-*.duckdb"))


def test_open_opens_the_index_in_the_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    index = tmp_path / "dashboards" / "index.html"
    index.parent.mkdir()
    index.write_text("<html></html>", encoding="utf-8")
    opened: list[str] = []

    def fake_open(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    assert main(["open", "--project-dir", str(tmp_path)]) == 0
    assert opened == [index.resolve().as_uri()]
    assert str(index.resolve()) in capsys.readouterr().out

    # No browser (a headless server): the path to open by hand, and still a success.
    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    assert main(["open", "--project-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "open this file by hand" in out and str(index.resolve()) in out


def test_open_before_any_run_says_to_run_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    assert main(["open", "--project-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "gutsignal run" in err and "index.html" in err and "Traceback" not in err
    assert opened == []


def test_the_project_folder_comes_from_the_environment_without_a_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_demo_project(tmp_path / "proj")
    monkeypatch.chdir(tmp_path)  # not the project: only the variable points there
    monkeypatch.setenv("GUTSIGNAL_PROJECT_DIR", str(tmp_path / "proj"))
    capsys.readouterr()
    assert main(["sources"]) == 0
    out = capsys.readouterr().out
    assert "demo_cronometer" in out and "demo_labs" in out


def test_make_writes_the_demo_only_where_there_is_no_project(tmp_path: Path) -> None:
    """`make run` / `make dev` on a user's project must not drop the demo's people into its
    data/raw (a source globbing data/raw/** would ingest them); a new folder gets the demo."""
    repo = Path(__file__).resolve().parents[1]
    user = tmp_path / "user"
    (user / "data" / "raw").mkdir(parents=True)
    (user / "sources.yaml").write_text("sources: []\n", encoding="utf-8")
    new = tmp_path / "new"
    new.mkdir()
    for project in (user, new):
        # -o env: the environment is the one running this test; make must not sync it again.
        subprocess.run(
            ["make", "-s", "-o", "env", "starter", f"GUTSIGNAL_PROJECT_DIR={project}"],
            cwd=repo,
            check=True,
            capture_output=True,
        )
    assert not (user / "data" / "raw" / "demo").exists()
    assert (user / "sources.yaml").read_text(encoding="utf-8") == "sources: []\n"
    assert sorted(p.name for p in (new / "data" / "raw" / "demo").iterdir())
    assert (new / "sources.yaml").exists()
