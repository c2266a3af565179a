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
from datetime import datetime
from pathlib import Path

import pytest

from bench.generate import NIGHTS, generate
from tests.conftest import refresh_all

PEOPLE = 3
WORK = {
    "ingest_bench_cronometer": "files_parsed",
    "ingest_bench_labs": "files_parsed",
    "diet_daily": "days_recomputed",
    "marker_draws": "people_recomputed",
    "exposure_windows": "people_recomputed",
    "associations": "refit",
    "person_pages": "pages_rendered",
    "dashboards": "pages_rendered",
}


def refresh(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    return refresh_all(root, monkeypatch, WORK)


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
        "person_pages": PEOPLE,
        "dashboards": 2,  # the index and the cohort page
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
        "person_pages": 1,
        "dashboards": 2,
    }


def test_dashboard_inputs_do_not_depend_on_the_tables_physical_order(tmp_path: Path) -> None:
    """Incremental steps append recomputed people at the end of their tables and DuckDB scans
    big tables in parallel: the dashboards must read the same frames whatever the physical row
    order, or every page's content key changes and every page is rendered every night."""
    import polars as pl
    from polars.testing import assert_frame_equal

    from pipelines.steps.dashboards import load_dashboard_inputs
    from pipelines.warehouse import Warehouse, replace_table

    people = [f"p{i}" for i in range(40)]
    daily = pl.DataFrame(
        {
            "person_id": [p for p in people for _ in range(30)],
            "day": pl.date_range(pl.date(2025, 1, 1), pl.date(2025, 1, 30), eager=True).to_list()
            * len(people),
            "logged": [True] * (30 * len(people)),
        }
    )
    draws = pl.DataFrame({"person_id": people}).with_columns(
        pl.lit(datetime(2025, 1, 31, 8)).cast(pl.Datetime("us")).alias("collected_at")
    )
    windows = pl.DataFrame(
        {
            "person_id": [p for p in people for _ in range(5)],
            "marker": ["crp"] * (5 * len(people)),
            "window_days": [3, 7, 14, 28, 56] * len(people),
            "feature": ["fiber_g"] * (5 * len(people)),
            "value": [float(i) for i in range(5 * len(people))],
            "complete": [True] * (5 * len(people)),
        }
    ).with_columns(pl.lit(datetime(2025, 1, 31, 8)).cast(pl.Datetime("us")).alias("collected_at"))
    # Person and cohort findings (no person), with and without a window, two methods.
    findings = pl.DataFrame(
        {
            "scope": ["person"] * 4 * len(people) + ["cohort"] * 4,
            "person_id": [p for p in people for _ in range(4)] + [None] * 4,
            "marker": "crp",
            "feature": ["fiber_g", "fiber_g", "dii", "dii"] * (len(people) + 1),
            "window_days": [28, None, 28, 7] * len(people) + [None] * 4,
            "method": ["ols"] * 4 * len(people) + ["ols_between", "survey_wls"] * 2,
            "effect_pct": [float(i % 7) for i in range(4 * len(people) + 4)],
        }
    )
    loaded = []
    for seed in (1, 2):
        warehouse = Warehouse(tmp_path / f"w{seed}.duckdb")
        with warehouse.write() as conn:
            for name, frame in (
                ("diet_daily", daily),
                ("marker_draws", draws),
                ("exposure_windows", windows),
                ("persons", pl.DataFrame({"person_id": people})),
                ("associations", findings),
            ):
                replace_table(conn, name, frame.sample(fraction=1.0, shuffle=True, seed=seed))
            every_column = conn.execute("SELECT * FROM associations ORDER BY ALL").pl()
        data = load_dashboard_inputs(warehouse)
        assert data.people is not None
        # Everyone's person tables, read as one group.
        rows = data.people.read(data.people.ids)
        rows.exposure_windows = data.people.windows(data.people.ids)
        loaded.append((data, rows))
        # Sorted by the findings' key, in the order of sorting by every column: the cohort's
        # findings with what the index and cohort page read, the person findings per group.
        person = pl.col("scope") == "person"
        assert_frame_equal(data.associations, every_column.filter(~person))
        assert_frame_equal(rows.associations, every_column.filter(person))
    (first, first_rows), (second, second_rows) = loaded
    for name in ("marker_draws", "associations"):
        assert_frame_equal(getattr(first, name), getattr(second, name))
    for name in ("diet_daily", "exposure_windows", "persons", "associations"):
        assert_frame_equal(getattr(first_rows, name), getattr(second_rows, name))
    assert first_rows.diet_daily["person_id"].is_sorted()
