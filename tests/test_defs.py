"""Definitions load; the nightly schedule and the new-file sensor work on a real instance."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from pipelines.defs.automation.sensors import new_raw_files
from pipelines.defs.partitions import all_partitions_tags, partition_range_tags, person_shards
from pipelines.defs.resources import ProjectResource
from pipelines.project import PROJECT_DIR_ENV, Project
from tests.conftest import make_demo_project

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
        "daily_effects",
        "person_pages",
        "dashboards",
    } <= keys


def test_person_partitions_come_from_the_project_when_definitions_load(project_dir: Path) -> None:
    def partitions(defs: dg.Definitions) -> list[str]:
        job = defs.resolve_job_def("refresh_all")
        assert job.partitions_def is not None
        return list(job.partitions_def.get_partition_keys())

    assert partitions(load_defs()) == [
        "shards-00-03",
        "shards-04-07",
        "shards-08-11",
        "shards-12-15",
    ]
    sources = project_dir / "sources.yaml"
    sources.write_text(SOURCES.replace("{timezone:", "{person_partitions: 16, timezone:"))
    assert partitions(load_defs()) == [f"shards-{i:02d}-{i:02d}" for i in range(16)]
    # What the schedule and the sensor ask for (their ticks: the tests below).
    assert all_partitions_tags(Project(project_dir)) == {
        "dagster/asset_partition_range_start": "shards-00-00",
        "dagster/asset_partition_range_end": "shards-15-15",
    }


def test_definitions_load_without_sources_yaml(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    dg.Definitions.validate_loadable(load_defs())


def test_nightly_schedule_runs_at_two_in_configured_timezone(project_dir: Path) -> None:
    schedule = load_defs().resolve_schedule_def("nightly_refresh")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    # The context closed with the instance: one left open can leave the closed instance's
    # state storage current for the definitions loaded by a later test.
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 1, 2, 2, 0, tzinfo=ZoneInfo("Europe/Berlin")),
        ) as context,
    ):
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert len(requests) == 1
    assert schedule.job_name == "refresh_all"
    # Every person shard, in the one run.
    assert requests[0].tags.items() >= all_partitions_tags(Project.from_env()).items()


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
        # The sensor's first request: every partition, as it knows no earlier settings
        # (test_sensor_shards.py has the partitions of the people of a file).
        every_partition = partition_range_tags("shards-00-03", "shards-12-15")
        assert first.run_requests[0].tags.items() >= every_partition.items()
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
    # The dashboards too: they record which inputs their person pages were built from.
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.pools == {"duckdb_writer"}, key


def test_every_run_is_one_process_the_uis_materialisations_too(project_dir: Path) -> None:
    defs = load_defs()
    # "Materialize all" in the UI launches the implicit asset job: it must not spawn a process
    # per step (about 7 s each) nor enter the run guard once per step.
    assert defs.resolve_implicit_global_asset_job_def().executor_def.name == "in_process"
    assert defs.resolve_job_def("refresh_all").executor_def.name == "in_process"


def test_a_failed_materialisation_from_the_ui_puts_the_warehouse_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run guard needs no hook on the job: a run of the implicit asset job (what the UI
    launches) with a failed step leaves the warehouse exactly as before."""
    from tests.conftest import make_demo_project

    project = make_demo_project(tmp_path)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    with dg.DagsterInstance.ephemeral() as instance:
        job = load_defs().resolve_implicit_global_asset_job_def()
        assert job.execute_in_process(
            instance=instance, tags=all_partitions_tags(Project.from_env())
        ).success
        wh = project.warehouse()
        before = {t: wh.table(t) for t in ("lab_results", "ingest_files", "associations")}
        # New lab rows are ingested, then the analysis step breaks.
        (project.raw_dir / "demo" / "labs" / "dave_labs.csv").write_text(
            "Patient,Collected,Test,Result,Units,Reference Range,Flag\n"
            "dave,2026-01-05 08:00,CRP,1.5,mg/L,0.0-3.0,\n",
            encoding="utf-8",
        )

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("disk full")

        monkeypatch.setattr("pipelines.steps.analysis.model_parts", broken)
        result = job.execute_in_process(
            instance=instance, raise_on_error=False, tags=all_partitions_tags(Project.from_env())
        )
        assert not result.success
        assert any(e.event_type_value == "STEP_FAILURE" for e in result.all_events)
    for table, frame in before.items():
        assert wh.table(table).equals(frame), table
    assert not list(project.processed_dir.glob("warehouse.run-*.duckdb"))


def test_every_asset_carries_the_code_version_of_what_shapes_it(project_dir: Path) -> None:
    from pipelines.defs._versions import CODE_VERSION, REPORTS_VERSION
    from pipelines.ingest import source_fingerprint
    from pipelines.project import Project

    graph = load_defs().resolve_asset_graph()
    versions = {k.to_user_string(): graph.get(k).code_version for k in graph.get_all_asset_keys()}
    assert all(versions.values()), [k for k, v in versions.items() if not v]
    for source in Project(project_dir).config().sources:
        assert versions[f"ingest_{source.name}"] == source_fingerprint(source)
    assert versions["associations"] == CODE_VERSION
    assert versions["dashboards"] == versions["person_pages"] == REPORTS_VERSION


def test_stale_sources_fail_a_dagster_freshness_check_and_demo_sources_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rule as the dashboards' (pipelines/reports/freshness.py), as a WARN asset check
    on each ingest asset, so the UI and alerts see a stale export too."""
    from pipelines.cli import DEMO_SOURCES_YAML
    from tests.conftest import make_demo_project

    project = make_demo_project(tmp_path)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))

    def freshness_checks() -> dict[str, dg.AssetCheckEvaluation]:
        with dg.DagsterInstance.ephemeral() as instance:
            result = (
                load_defs()
                .resolve_job_def("refresh_all")
                .execute_in_process(instance=instance, tags=all_partitions_tags(Project.from_env()))
            )
        assert result.success
        return {
            e.asset_key.to_user_string(): e
            for e in result.get_asset_check_evaluations()
            if e.check_name == "source_fresh"
        }

    checks = freshness_checks()
    assert set(checks) == {
        "ingest_demo_cronometer",
        "ingest_demo_labs",
        "ingest_demo_bearable",
        "ingest_demo_oura",
    }
    for check in checks.values():
        assert check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert check.description == "demo data, not checked for freshness"

    # The same files as a real source: the demo's diary ends 2026-10-25, months before today.
    project.sources_yaml.write_text(
        DEMO_SOURCES_YAML.replace("    demo: true\n", "").replace(
            "    demo: true             # a fixed sample ending 2026-10-25: labelled demo data, "
            "not stale\n",
            "",
        ),
        encoding="utf-8",
    )
    assert "demo: true" not in project.sources_yaml.read_text()
    checks = freshness_checks()
    diet = checks["ingest_demo_cronometer"]
    assert not diet.passed and diet.severity == dg.AssetCheckSeverity.WARN
    assert "its latest data is from 2026-10-25" in (diet.description or "")
    assert diet.metadata["latest_day"].value == "2026-10-25"


def test_dg_launch_runs_the_whole_job_over_a_range_of_partitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dg launch --job refresh_all --partition-range` from the checkout (README), on the
    project GUTSIGNAL_PROJECT_DIR names: Dagster's CLI takes a range only when every asset of
    the job has the single-run backfill policy, unpartitioned ones too; the run then builds
    everything once, the per-person assets for every partition of the range."""
    project = make_demo_project(tmp_path / "project")
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    keys = person_shards(project).get_partition_keys()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        PROJECT_DIR_ENV: str(project.root),
        # This checkout's code whatever the virtualenv was installed from.
        "PYTHONPATH": str(REPO),
    }
    dg_cli = Path(sys.executable).with_name("dg")
    # From the checkout, as `make dev` runs `dg`: Dagster lays the working directory's .env over
    # the environment, so the checkout must not carry one that names a project (it did: the
    # run then refreshed the checkout's own project, not the one named here).
    proc = subprocess.run(
        [
            str(dg_cli),
            "launch",
            "--job",
            "refresh_all",
            "--partition-range",
            f"{keys[0]}...{keys[-1]}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (project.dashboards_dir / "index.html").exists()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("diet_daily")) == set(keys)
        persons = instance.get_latest_materialization_event(dg.AssetKey("persons"))
        assert persons is not None and persons.asset_materialization is not None
        assert persons.asset_materialization.partition is None
