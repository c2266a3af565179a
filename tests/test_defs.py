"""Definitions load; the nightly schedule and the new-file sensor work on a real instance."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from pipelines.defs.automation import new_raw_files
from pipelines.defs.resources import ProjectResource
from pipelines.project import PROJECT_DIR_ENV

REPO = Path(__file__).resolve().parent.parent

SOURCES = """
settings: {timezone: Europe/Berlin}
sources:
  - {name: alice_diet, kind: diet, format: cronometer_servings, path: "cronometer/*/servings.csv"}
  - name: clinic_labs
    kind: labs
    format: csv
    path: "labs/*.csv"
    person: {column: Patient}
"""


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "sources.yaml").write_text(SOURCES, encoding="utf-8")
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    return tmp_path


def load_defs() -> dg.Definitions:
    from pipelines.definitions import defs

    return defs()


def test_definitions_load_with_one_ingest_asset_per_source(project_dir: Path) -> None:
    defs = load_defs()
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"ingest_alice_diet", "ingest_clinic_labs"} <= keys
    assert {
        "diet_entries",
        "lab_results",
        "persons",
        "food_categories",
        "unmapped_foods",
        "diet_daily",
        "marker_draws",
        "marker_trends",
        "exposure_windows",
        "associations",
        "dashboards",
    } <= keys


def test_definitions_load_without_sources_yaml(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    dg.Definitions.validate_loadable(load_defs())


def test_nightly_schedule_runs_at_two_in_configured_timezone(project_dir: Path) -> None:
    schedule = load_defs().resolve_schedule_def("nightly_refresh")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 1, 2, 2, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        )
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert len(requests) == 1
    assert schedule.job_name == "refresh_all"


def test_sensor_starts_a_run_for_new_or_changed_files_only(project_dir: Path) -> None:
    sensor = load_defs().resolve_sensor_def("new_raw_files")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    raw = project_dir / "data" / "raw"
    resources = {"project": ProjectResource(project_dir=str(project_dir))}
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> dg.SensorResult | dg.SkipReason:
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=resources
            ) as ctx:
                return new_raw_files(ctx)

        assert isinstance(tick(None), dg.SkipReason)  # empty data/raw: nothing to do

        (raw / "labs").mkdir()
        (raw / "labs" / "a.csv").write_text("Patient,Date\n", encoding="utf-8")
        first = tick(None)
        assert isinstance(first, dg.SensorResult) and len(first.run_requests or []) == 1
        cursor = first.cursor
        assert "labs/a.csv" in json.loads(cursor or "{}")

        assert isinstance(tick(cursor), dg.SkipReason)  # nothing changed since

        (raw / "labs" / "a.csv").write_text("Patient,Date\nalice,2025-01-01\n", encoding="utf-8")
        changed = tick(cursor)
        assert isinstance(changed, dg.SensorResult) and len(changed.run_requests or []) == 1
        assert changed.run_requests[0].run_key != first.run_requests[0].run_key


def test_instance_config_queues_runs_and_serialises_duckdb_writers(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    old = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
            concurrency = instance.get_concurrency_config()
            assert concurrency.run_queue_config.max_concurrent_runs == 1
            assert concurrency.pool_config.default_pool_limit == 1
            assert not instance.telemetry_enabled
    finally:
        if old is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = old


def test_every_warehouse_writer_is_in_the_duckdb_pool(project_dir: Path) -> None:
    defs = load_defs()
    graph = defs.resolve_asset_graph()
    writers = [k for k in graph.get_all_asset_keys() if k.to_user_string() != "dashboards"]
    for key in writers:
        node = graph.get(key)
        assert node.pools == {"duckdb_writer"}, key
