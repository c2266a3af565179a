"""A nightly run's work grows with the new data, not with the history.

The same cohort is generated with a short and a four-times-longer history; one more day for every
person is then dropped in and the real `refresh_all` job runs. Each incremental step reports how
much it did (asset metadata), and those counts must be the same for both histories: the files
read, the person-days rebuilt, the people whose windows or draws were recomputed, whether the
models were refit and the pages rendered. Counts, not seconds: the benchmark times it
(`make bench`, stages (f) and (g)).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from bench.generate import NIGHTS, generate
from pipelines.project import PROJECT_DIR_ENV

PEOPLE = 3
WORK = {
    "ingest_bench_cronometer": "files_parsed",
    "ingest_bench_labs": "files_parsed",
    "diet_daily": "days_recomputed",
    "marker_draws": "people_recomputed",
    "exposure_windows": "people_recomputed",
    "associations": "refit",
    "dashboards": "pages_rendered",
}


def refresh(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Run refresh_all on the project at `root`; return what each step says it did."""
    from pipelines.definitions import defs

    monkeypatch.setenv(PROJECT_DIR_ENV, str(root))
    with dg.instance_for_test() as instance:
        result = defs().resolve_job_def("refresh_all").execute_in_process(instance=instance)
        assert result.success
        work = {}
        for key, field in WORK.items():
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            assert event is not None and event.asset_materialization is not None
            work[key] = event.asset_materialization.metadata[field].value
    return work


def add_night(root: Path, folder: str) -> None:
    pending = root / folder
    for path in sorted(pending.rglob("*.csv")):
        dest = root / "data" / "raw" / path.relative_to(pending)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), dest)


@pytest.mark.parametrize("days", [30, 120])
def test_a_nightly_run_does_the_same_work_whatever_the_history(
    days: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / f"history-{days}"
    generate(root, PEOPLE, days, seed=3, jobs=1)
    add_night(root, NIGHTS[0][0])
    first = refresh(root, monkeypatch)
    assert first["diet_daily"] == "all" and first["ingest_bench_cronometer"] > PEOPLE

    # Every person syncs one day, after all their lab draws (the generator's draws are in the
    # history): their days and pages are rebuilt; no window, draw or model changes.
    add_night(root, NIGHTS[1][0])
    assert refresh(root, monkeypatch) == {
        "ingest_bench_cronometer": PEOPLE,
        "ingest_bench_labs": 0,
        "diet_daily": PEOPLE,
        "marker_draws": 0,
        "exposure_windows": 0,
        "associations": False,
        "dashboards": PEOPLE + 2,  # the person pages, the index and the cohort page
    }

    # One person in ten syncs (person 1 of 3): only their day and page.
    add_night(root, NIGHTS[2][0])
    assert refresh(root, monkeypatch) == {
        "ingest_bench_cronometer": 1,
        "ingest_bench_labs": 0,
        "diet_daily": 1,
        "marker_draws": 0,
        "exposure_windows": 0,
        "associations": False,
        "dashboards": 1 + 2,
    }
