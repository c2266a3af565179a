"""The new-file sensor asks only for the partitions of the people of the files that changed
(`pipelines.ingest.people`, `pipelines.defs.automation.sensors`): a fixed or folder person with no
read, a person column read alone, every partition for a file whose people only the parse can name.
On a real Dagster instance, with files in the shapes of real exports."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipelines.adapters import FORMATS, AdapterError, person_ids
from pipelines.config import PersonSpec, SourceConfig
from pipelines.defs.automation.sensors import (
    SHARDS_TAG,
    new_raw_files,
    shared_inputs_digest,
)
from pipelines.defs.partitions import RANGE_END_TAG, RANGE_START_TAG, all_partitions_tags
from pipelines.defs.resources import ProjectResource
from pipelines.ingest.people import NOT_INGESTED, file_shards
from pipelines.project import PROJECT_DIR_ENV, Project
from pipelines.store import SHARDS, shard_of
from tests.test_fuzz_adapters import CSV_CASES, Case, _settings, csv_files

FIXTURES = Path(__file__).parent / "fixtures"

# Shards (of 16) and partitions (of the default 4): alice 2 (shards-00-03), dave 7 (04-07),
# erin 9 (08-11), bob 12 and ivan 15 (12-15).
SOURCES = """
sources:
  - {name: diary, kind: diet, format: cronometer_servings, path: "cronometer/*/servings.csv",
     person: {from_folder: true}}
  - {name: erin_diary, kind: diet, format: cronometer_servings, path: "erin/servings.csv",
     person: erin}
  - name: clinic_labs
    kind: labs
    format: csv
    path: "labs/*.csv"
    person: {column: Patient}
    columns: {collected_at: Collected, marker: Test, value: Result, unit: Units}
    datetime_format: "%Y-%m-%d %H:%M"
  - {name: portal, kind: labs, format: fhir, path: "fhir/*.json"}
"""
SERVINGS = (
    "Day,Time,Group,Food Name,Amount,Energy (kcal),Protein (g),Carbs (g),Fat (g),Fiber (g),"
    "Sodium (mg),Category\n"
    '2026-10-20,08:00,Breakfast,"Oats, rolled",40.00 g,150.4,5.3,27.0,2.6,4.0,2.0,'
    "Cereal Grains and Pasta\n"
    "2026-10-20,12:30 PM,Lunch,Sauerkraut,100.00 g,19,0.9,4.3,0.1,2.9,661,"
    "Vegetables and Vegetable Products\n"
)
LABS_HEADER = "Patient,Collected,Test,Result,Units\n"


def labs(*people: str) -> str:
    """A clinic's lab CSV with one CRP draw per person (a spreadsheet's padding on the ids)."""
    return LABS_HEADER + "".join(
        f" {p} ,2026-10-0{i + 1} 08:00,CRP,1.{i},mg/L\n" for i, p in enumerate(people)
    )


def partitions_of(request: dg.RunRequest) -> tuple[str, str]:
    return request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]


@pytest.fixture
def project_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "sources.yaml").write_text(SOURCES, encoding="utf-8")
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    return tmp_path


def write(project_dir: Path, rel: str, text: str) -> Path:
    path = project_dir / "data" / "raw" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


class Sensor:
    """Ticks of the sensor on a real instance, each from the cursor the last one left."""

    def __init__(self, project_dir: Path, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.resources = {"project": ProjectResource(project_dir=str(project_dir))}
        self.cursor: str | None = None

    def tick(self) -> dg.RunRequest | None:
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursor, resources=self.resources
        ) as ctx:
            result = new_raw_files(ctx)
        if isinstance(result, dg.SkipReason):
            return None
        assert isinstance(result, dg.SensorResult) and len(result.run_requests or []) == 1
        self.cursor = result.cursor
        return result.run_requests[0]

    def first_request(self, project_dir: Path) -> None:
        """The sensor's first request: every partition, as it knows no earlier settings."""
        write(project_dir, "notes/first.txt", "my exports\n")
        request = self.tick()
        assert request is not None and request.tags[SHARDS_TAG] == "all"


def test_one_persons_new_cronometer_file_asks_for_that_persons_partition_only(
    project_dir: Path,
) -> None:
    with dg.instance_for_test() as instance:
        sensor = Sensor(project_dir, instance)
        assert sensor.tick() is None
        sensor.first_request(project_dir)
        write(project_dir, "cronometer/bob/servings.csv", SERVINGS)
        request = sensor.tick()
        assert request is not None
        assert shard_of("bob", SHARDS) == 12
        assert partitions_of(request) == ("shards-12-15", "shards-12-15")
        assert request.tags[SHARDS_TAG] == "12"
        assert sensor.tick() is None  # nothing changed since

        # A fixed person: that person's shard (erin, 9).
        write(project_dir, "erin/servings.csv", SERVINGS)
        request = sensor.tick()
        assert request is not None
        assert partitions_of(request) == ("shards-08-11", "shards-08-11")


def test_a_cohort_file_asks_for_the_range_of_its_peoples_shards_and_a_removed_one_for_its_former(
    project_dir: Path,
) -> None:
    with dg.instance_for_test() as instance:
        sensor = Sensor(project_dir, instance)
        sensor.first_request(project_dir)
        path = write(project_dir, "labs/clinic.csv", labs("alice", "dave", "erin"))
        request = sensor.tick()
        assert request is not None
        assert partitions_of(request) == ("shards-00-03", "shards-08-11")  # not bob's 12-15
        assert request.tags[SHARDS_TAG] == "2,7,9"
        # The cursor keeps each file's shards, never its people.
        assert json.loads(sensor.cursor or "{}")["labs/clinic.csv"][2] == 1 << 2 | 1 << 7 | 1 << 9

        # Changed: only dave is left in it, but alice's and erin's rows are gone from it too.
        path.write_text(labs("dave"), encoding="utf-8")
        request = sensor.tick()
        assert request is not None
        assert partitions_of(request) == ("shards-00-03", "shards-08-11")
        assert request.tags[SHARDS_TAG] == "2,7,9"
        first_key = request.run_key

        # Removed: its former shards (dave's, 7).
        path.unlink()
        request = sensor.tick()
        assert request is not None
        assert partitions_of(request) == ("shards-04-07", "shards-04-07")
        assert request.tags[SHARDS_TAG] == "7"
        assert request.tags["gutsignal/removed_files"] == "1"
        assert request.run_key != first_key
        assert sensor.tick() is None


def test_changed_settings_ask_for_every_partition_once(project_dir: Path) -> None:
    with dg.instance_for_test() as instance:
        sensor = Sensor(project_dir, instance)
        sensor.first_request(project_dir)
        sources = project_dir / "sources.yaml"
        sources.write_text(sources.read_text() + "settings: {food_overrides: my_foods.csv}\n")
        write(project_dir, "cronometer/bob/servings.csv", SERVINGS)
        request = sensor.tick()
        assert request is not None and request.tags[SHARDS_TAG] == "all"
        assert request.tags.items() >= all_partitions_tags(Project(project_dir)).items()
        # Settled: bob's next file asks for his partition only.
        write(project_dir, "cronometer/bob/servings.csv", SERVINGS + SERVINGS.splitlines()[-1])
        request = sensor.tick()
        assert request is not None and partitions_of(request) == ("shards-12-15", "shards-12-15")


def test_the_shared_inputs_digest_follows_the_food_overrides_file(project_dir: Path) -> None:
    sources = project_dir / "sources.yaml"
    sources.write_text(sources.read_text() + "settings: {food_overrides: my_foods.csv}\n")
    project = Project(project_dir)
    before = shared_inputs_digest(project)  # the overrides file does not exist yet
    (project_dir / "my_foods.csv").write_text("food,category\nkefir,fermented\n")
    after = shared_inputs_digest(project)
    assert after != before
    assert shared_inputs_digest(project) == after


def test_a_file_whose_people_need_the_parse_asks_for_every_partition(project_dir: Path) -> None:
    with dg.instance_for_test() as instance:
        sensor = Sensor(project_dir, instance)
        write(project_dir, "labs/clinic.csv", labs("alice"))
        write(project_dir, "fhir/b.json", (FIXTURES / "fhir" / "bundle.json").read_text())
        request = sensor.tick()
        assert request is not None
        assert request.tags.items() >= all_partitions_tags(Project(project_dir)).items()
        assert request.tags[SHARDS_TAG] == "all"

        # A lab file the reader refuses (no Patient column): every partition too.
        write(project_dir, "labs/broken.csv", "Collected,Test,Result,Units\n")
        request = sensor.tick()
        assert request is not None and request.tags[SHARDS_TAG] == "all"

        # A file outside every source: no shard (only the first partition, for the ingest).
        write(project_dir, "notes/readme.txt", "my exports\n")
        request = sensor.tick()
        assert request is not None and request.tags[SHARDS_TAG] == "none"
        assert partitions_of(request) == ("shards-00-03", "shards-00-03")


def test_a_cursor_from_before_the_shards_is_read_and_its_files_count_as_every_partition_once(
    project_dir: Path,
) -> None:
    path = write(project_dir, "labs/clinic.csv", labs("dave"))
    kept = write(project_dir, "cronometer/bob/servings.csv", SERVINGS)
    old = {
        rel: [p.stat().st_mtime, float(p.stat().st_size)]
        for rel, p in (("labs/clinic.csv", path), ("cronometer/bob/servings.csv", kept))
    }
    with dg.instance_for_test() as instance:
        sensor = Sensor(project_dir, instance)
        sensor.cursor = json.dumps(old)
        assert sensor.tick() is None  # nothing changed: read without error
        path.write_text(labs("dave", "ivan"), encoding="utf-8")
        os.utime(path, (old["labs/clinic.csv"][0] + 5,) * 2)
        request = sensor.tick()
        assert request is not None
        # Its former shards are unknown: every partition, this once.
        assert request.tags[SHARDS_TAG] == "all"
        assert request.tags.items() >= all_partitions_tags(Project(project_dir)).items()
        cursor = json.loads(sensor.cursor or "{}")
        assert cursor["cronometer/bob/servings.csv"] == old["cronometer/bob/servings.csv"]
        path.write_text(labs("ivan"), encoding="utf-8")
        request = sensor.tick()
        assert request is not None
        assert request.tags[SHARDS_TAG] == "7,15"
        assert partitions_of(request) == ("shards-04-07", "shards-12-15")


def test_person_ids_of_a_file_come_from_its_person_column_by_the_formats_rule(
    tmp_path: Path,
) -> None:
    path = tmp_path / "labs.csv"
    path.write_text(labs("alice", "62161.0", "") + ",,,,\n", encoding="utf-8")

    def source(kind: str, person: PersonSpec, **kw: object) -> SourceConfig:
        return SourceConfig(name="s", kind=kind, format="csv", path="*.csv", person=person, **kw)  # type: ignore[arg-type]

    column = PersonSpec(column="patient")
    # Lab CSVs keep an id as written; diet CSVs drop a spreadsheet's ".0" (as their parse does).
    assert person_ids(path, source("labs", column)) == {"alice", "62161.0"}
    diet = source("diet", column, columns={"day": "Collected", "energy_kcal": "Result"})
    assert person_ids(path, diet) == {"alice", "62161"}
    # A fixed or folder person: the file is not opened.
    missing = tmp_path / "bob" / "gone.csv"
    assert person_ids(missing, source("labs", PersonSpec(fixed="erin"))) == {"erin"}
    assert person_ids(missing, source("labs", PersonSpec(from_folder=True))) == {"bob"}


@pytest.mark.parametrize(
    "case",
    [c for c in CSV_CASES if FORMATS[c.source.format].person_rule is not None],
    ids=lambda c: c.id,
)
@_settings(30)
@given(data=st.data())
def test_the_people_read_from_a_person_column_are_all_the_parse_gives(
    case: Case, data: st.DataObject, tmp_path: Path
) -> None:
    """Whatever the file (the fuzz cases' hostile variants) and whichever of its columns names
    the person, every person the parse loads is among those read from that column alone: a
    narrower request would leave someone stale."""
    content, source = data.draw(csv_files(case))
    column = data.draw(st.sampled_from([*case.header, "Patient"]))
    source = replace(source, person=PersonSpec(column=column))
    path = tmp_path / "fuzz.csv"
    path.write_bytes(content)
    try:
        loaded = set(FORMATS[source.format].parse(path, source).rows["person_id"].drop_nulls())
    except AdapterError:
        loaded = set()
    try:
        read = person_ids(path, source)
    except AdapterError:
        return  # the sensor asks for every partition
    assert read is not None and loaded <= read


def test_file_shards_says_why_a_file_has_no_or_unknown_shards(project_dir: Path) -> None:
    write(project_dir, "labs/clinic.csv", labs("alice", "bob"))
    write(project_dir, "labs/empty.csv", LABS_HEADER)
    write(project_dir, "notes.txt", "x")
    write(project_dir, "fhir/b.json", (FIXTURES / "fhir" / "bundle.json").read_text())
    project = Project(project_dir)
    found = file_shards(
        project.config(),
        project.raw_dir,
        ["labs/clinic.csv", "labs/empty.csv", "notes.txt", "fhir/b.json"],
    )
    assert found["labs/clinic.csv"].shards == {2, 12}
    assert found["labs/empty.csv"].shards == frozenset()
    assert found["notes.txt"].shards == frozenset() and found["notes.txt"].note == NOT_INGESTED
    assert found["fhir/b.json"].shards is None and "fhir" in (found["fhir/b.json"].note or "")


def test_a_run_from_the_sensors_request_updates_the_changed_person(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.definitions import defs
    from tests.conftest import make_demo_project

    project = make_demo_project(tmp_path)
    monkeypatch.setenv(PROJECT_DIR_ENV, str(project.root))
    job = defs().resolve_job_def("refresh_all")
    with dg.instance_for_test() as instance:
        assert job.execute_in_process(instance=instance, tags=all_partitions_tags(project)).success
        sensor = Sensor(project.root, instance)
        assert sensor.tick() is not None  # the demo's files: a first tick sees them all
        # bob's new lab result (the demo's labs read the person from the Patient column).
        write(
            project.root,
            "demo/labs/bob_new.csv",
            "Patient,Collected,Test,Result,Units,Reference Range,Flag\n"
            "bob,2026-10-24 08:00,hs-CRP,7.7,mg/L,0.0-3.0,H\n",
        )
        request = sensor.tick()
        assert request is not None
        assert partitions_of(request) == ("shards-12-15", "shards-12-15")
        result = job.execute_in_process(instance=instance, tags=request.tags)
        assert result.success
        marked = {
            (e.asset_key.to_user_string(), e.partition)
            for e in result.get_asset_materialization_events()
            if e.partition is not None
        }
        # Every partitioned asset ran bob's partition only.
        assert {partition for _, partition in marked} == {"shards-12-15"}
        assert {("marker_draws", "shards-12-15"), ("marker_trends", "shards-12-15")} <= marked
    with duckdb.connect(str(project.warehouse_path), read_only=True) as conn:
        rows = conn.execute(
            "SELECT value FROM marker_draws WHERE person_id = 'bob' AND day = DATE '2026-10-24'"
        ).fetchall()
    assert rows and any(abs(v - 7.7) < 1e-9 for (v,) in rows)
