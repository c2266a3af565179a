"""sources.yaml parsing: good entries load, bad ones name the entry and the key."""

import dataclasses
from pathlib import Path

import pydantic
import pytest

from pipelines.config import ConfigError, ExecutorSettings, Settings, result_settings
from pipelines.project import load_project_config
from pipelines.settings import PERSON_PARTITIONS
from pipelines.store import SHARDS


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sources.yaml"
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """
settings: {timezone: Europe/Berlin, acute_crp_mg_l: 8}
sources:
  - name: alice_cronometer
    kind: diet
    format: cronometer_servings
    path: cronometer/alice/*.csv
    person: alice
  - name: clinic_labs
    kind: labs
    format: csv
    path: labs/*.csv
    person: {column: patient}
    columns: {collected_at: Date, marker: Test, value: Result, unit: Units}
    date_format: "%d/%m/%Y"
    delimiter: ";"
    decimal: ","
    encoding: latin-1
"""


def test_good_config_loads(tmp_path: Path) -> None:
    config = load_project_config(write(tmp_path, GOOD))
    assert [s.name for s in config.sources] == ["alice_cronometer", "clinic_labs"]
    alice, clinic = config.sources
    assert alice.person.fixed == "alice"
    assert clinic.person.column == "patient"
    assert clinic.decimal == "," and clinic.delimiter == ";" and clinic.encoding == "latin-1"
    assert config.settings.timezone == "Europe/Berlin"
    assert config.settings.acute_crp_mg_l == 8
    assert config.settings.windows == (3, 7, 14, 28, 56)


def test_from_folder_person(tmp_path: Path) -> None:
    config = load_project_config(
        write(
            tmp_path,
            "sources:\n  - {name: d, kind: diet, format: cronometer_servings, path: '*/x.csv',"
            " person: {from_folder: true}}\n",
        )
    )
    assert config.sources[0].person.for_file(Path("/raw/bob/x.csv")) == "bob"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{name: a, kind: diet, format: nope, path: x}", "source 'a', key 'format'"),
        ("{name: a, kind: food, format: csv, path: x}", "source 'a', key 'kind'"),
        ("{name: a, kind: labs, format: csv, path: x, colums: {}}", "unknown key(s) ['colums']"),
        ("{name: A-b, kind: labs, format: csv, path: x}", "key 'name'"),
        ("{name: a, kind: labs, format: csv}", "key 'path' is required"),
        ("{name: a, kind: labs, format: csv, path: /etc/*.csv}", "key 'path'"),
        ("{name: a, kind: labs, format: csv, path: x, delimiter: ';;'}", "key 'delimiter'"),
        ("{name: a, kind: labs, format: csv, path: x, person: {col: p}}", "key 'person'"),
        (
            "{name: a, kind: labs, format: cronometer_servings, path: x}",
            "format 'cronometer_servings' reads ['diet']",
        ),
        (
            "{name: a, kind: labs, format: csv, path: x, crp_method: high}",
            "source 'a', key 'crp_method': expected 'hs' (high-sensitivity CRP) or 'standard', "
            "not 'high'",
        ),
        (
            "{name: a, kind: diet, format: csv, path: x, crp_method: hs}",
            "source 'a', key 'crp_method': only a labs source",
        ),
        (
            "{name: a, kind: diet, format: csv, path: x, demo: 'true'}",
            "source 'a', key 'demo': expected true or false, not 'true'",
        ),
        (
            "{name: a, kind: diet, format: csv, path: x, encoding: utf-9}",
            "source 'a', key 'encoding': 'utf-9' is not a text encoding Python knows",
        ),
        (
            "{name: a, kind: diet, format: csv, path: x, encoding: 8}",
            "source 'a', key 'encoding': 8 is not a text encoding",
        ),
        (
            "{name: a, kind: diet, format: csv, path: x, options: [level, entries]}",
            "source 'a', key 'options': expected a mapping of option names to values",
        ),
        (
            "{name: a, kind: diet, format: csv, path: x, description: 42}",
            "source 'a', key 'description': expected text (quote it), not 42",
        ),
    ],
)
def test_bad_entries_name_entry_and_key(tmp_path: Path, entry: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_project_config(write(tmp_path, f"sources:\n  - {entry}\n"))
    assert expected in str(err.value)


def test_duplicate_names_and_unknown_settings(tmp_path: Path) -> None:
    dup = "sources:\n" + "  - {name: a, kind: labs, format: csv, path: x}\n" * 2
    with pytest.raises(ConfigError, match="used twice"):
        load_project_config(write(tmp_path, dup))
    with pytest.raises(ConfigError, match=r"key .settings.*acute_crp"):
        load_project_config(write(tmp_path, "settings: {acute_crp: 3}\nsources: []\n"))


def test_multiple_testing_procedure_is_read_and_checked(tmp_path: Path) -> None:
    assert load_project_config(write(tmp_path, "sources: []\n")).settings.multiple_testing == "holm"
    cfg = load_project_config(write(tmp_path, "settings: {multiple_testing: bh}\nsources: []\n"))
    assert cfg.settings.multiple_testing == "bh"
    with pytest.raises(ConfigError, match=r"key 'settings.multiple_testing': 'fdr' is not one of"):
        load_project_config(write(tmp_path, "settings: {multiple_testing: fdr}\nsources: []\n"))


def test_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gutsignal demo"):
        load_project_config(tmp_path / "sources.yaml")


def test_crp_method_is_read_for_labs_sources(tmp_path: Path) -> None:
    text = GOOD.replace(
        "    encoding: latin-1\n", "    encoding: latin-1\n    crp_method: standard\n"
    )
    clinic = load_project_config(write(tmp_path, text)).source("clinic_labs")
    assert clinic.crp_method == "standard"
    assert load_project_config(write(tmp_path, GOOD)).source("clinic_labs").crp_method is None


def load_settings(tmp_path: Path, block: str) -> Settings:
    return load_project_config(write(tmp_path, f"settings: {block}\nsources: []\n")).settings


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        # Each would have been accepted before: strings are not numbers, 2.7 is not truncated.
        ("{fdr: five percent}", "key 'settings.fdr': 'five percent' is not a number"),
        ("{min_n_person: 2.7}", "key 'settings.min_n_person': 2.7 is not a whole number"),
        ("{acute_washout_days: -3}", "key 'settings.acute_washout_days': -3 must be at least 0"),
        ("{backups_keep: seven}", "key 'settings.backups_keep': 'seven' is not a whole number"),
        ("{min_n_person: '8'}", "key 'settings.min_n_person': '8' is not a whole number"),
        ("{fdr: 0}", "key 'settings.fdr': 0 must be greater than 0"),
        ("{fdr: 1.5}", "key 'settings.fdr': 1.5 must be less than 1"),
        ("{min_logged_fraction: 2}", "key 'settings.min_logged_fraction': 2 must be at most 1"),
        ("{timezone: Mars/Olympus}", "key 'settings.timezone': 'Mars/Olympus' is not an IANA"),
        ("{windows: [7, -3]}", "key 'settings.windows', item 2: -3 must be greater than 0"),
        ("{windows: [7, 2.5]}", "key 'settings.windows', item 2: 2.5 is not a whole number"),
        ("{windows: []}", "key 'settings.windows': [] is empty"),
        ("{windows: 7}", "key 'settings.windows': 7 is not a list"),
        ("{primary_window_days: 0}", "key 'settings.primary_window_days': 0 must be greater"),
        ("{cohort_min_age: -1}", "key 'settings.cohort_min_age': -1 must be at least 0"),
        ("{pseudonymise_cohort: 1}", "key 'settings.pseudonymise_cohort': 1 is not true or false"),
        ("{food_overrides: ' '}", "key 'settings.food_overrides': ' ' is blank"),
        ("{person_partitions: 3}", "key 'settings.person_partitions': 3 is not one of 1, 2, 4"),
        ("{person_partitions: 32}", "key 'settings.person_partitions': 32 is not one of 1, 2,"),
        ("{person_partitions: 0}", "key 'settings.person_partitions': 0 is not one of 1, 2, 4"),
        ("{person_partitions: '4'}", "key 'settings.person_partitions': '4' is not a whole"),
    ],
)
def test_bad_settings_name_key_value_and_expectation(
    tmp_path: Path, block: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, block)
    assert f"{tmp_path / 'sources.yaml'}, {expected}" in str(err.value)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("{executor: {kind: dask}}", "key 'settings.executor.scheduler': missing; kind: dask"),
        ("{executor: {kind: spark}}", "key 'settings.executor.kind': 'spark' is not one of"),
        (
            "{executor: {kind: multiprocess, scheduler: 'tcp://h:8786'}}",
            "key 'settings.executor.scheduler': only read with kind: dask",
        ),
        (
            "{executor: {kind: dask, schedular: 'tcp://h:8786'}}",
            "key 'settings.executor': unknown key(s) ['schedular']",
        ),
        (
            "{executor: {kind: dask, scheduler: 'h:8786'}}",
            "key 'settings.executor.scheduler': 'h:8786' is not a Dask scheduler address",
        ),
        (
            "{executor: {kind: dask, scheduler: 8786}}",
            "key 'settings.executor.scheduler': 8786 is not a string",
        ),
        ("{executor: dask}", "key 'settings.executor': 'dask' is not a mapping"),
    ],
)
def test_bad_executor_settings_name_the_key(tmp_path: Path, block: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, block)
    assert f"{tmp_path / 'sources.yaml'}, {expected}" in str(err.value)


@pytest.mark.parametrize("partitions", [1, 2, 4, 8, 16])
def test_person_partitions_are_the_divisors_of_the_store_shards(
    tmp_path: Path, partitions: int
) -> None:
    assert SHARDS % partitions == 0
    settings = load_settings(tmp_path, f"{{person_partitions: {partitions}}}")
    assert settings.person_partitions == partitions
    assert load_settings(tmp_path, "{}").person_partitions == 4
    assert PERSON_PARTITIONS == tuple(n for n in range(1, SHARDS + 1) if SHARDS % n == 0)


def test_executor_settings_load(tmp_path: Path) -> None:
    assert load_settings(tmp_path, "{}").executor == ExecutorSettings(kind="in_process")
    assert load_settings(tmp_path, "{executor: {kind: multiprocess}}").executor.kind == (
        "multiprocess"
    )
    dask = load_settings(tmp_path, '{executor: {kind: dask, scheduler: "tcp://10.0.0.5:8786"}}')
    assert dask.executor == ExecutorSettings(kind="dask", scheduler="tcp://10.0.0.5:8786")
    # Checked in code too, not only from YAML.
    with pytest.raises(pydantic.ValidationError, match="needs the scheduler"):
        ExecutorSettings(kind="dask")


def test_every_bad_setting_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path, "{fdr: 2, min_n_cohort: 0}")
    assert "'settings.fdr'" in str(err.value) and "'settings.min_n_cohort'" in str(err.value)


def test_valid_settings_load_with_ints_for_floats(tmp_path: Path) -> None:
    settings = load_settings(
        tmp_path,
        "{logged_min_kcal: 800, fdr: 0.1, acute_crp_mg_l: 8, cohort_min_age: 20, windows: [7, 28],"
        " min_logged_fraction: 1, backups_keep: 0, timezone: America/New_York,"
        " pseudonymise_cohort: true, food_overrides: my_foods.csv}",
    )
    assert settings.logged_min_kcal == 800.0 and isinstance(settings.logged_min_kcal, float)
    assert settings.fdr == 0.1 and settings.cohort_min_age == 20.0
    assert settings.windows == (7, 28)
    assert settings.timezone == "America/New_York" and settings.pseudonymise_cohort is True


def test_settings_defaults_are_unchanged(tmp_path: Path) -> None:
    expected = {
        "timezone": "UTC",
        "acute_crp_mg_l": 10.0,
        "acute_washout_days": 14,
        "visit_merge_days": 14,
        "windows": (3, 7, 14, 28, 56),
        "primary_window_days": 28,
        "min_logged_fraction": 0.8,
        "logged_min_kcal": 800.0,
        "logged_min_entries": 3,
        "fdr": 0.05,
        "multiple_testing": "holm",
        "min_n_person": 8,
        "min_n_cohort": 20,
        "cohort_min_age": None,
        "backups_keep": 7,
        "pseudonymise_cohort": False,
        "food_overrides": None,
    }
    # The settings that salt the steps are exactly those of before `executor` and
    # `daily_outcomes` existed: a project upgraded to this version recomputes nothing for them.
    assert result_settings(Settings()) == expected
    assert result_settings(load_settings(tmp_path, "{}")) == expected
    assert dataclasses.asdict(Settings()) == {
        **expected,
        "person_partitions": 4,
        "executor": {"kind": "in_process", "scheduler": None},
        "daily_outcomes": {
            "foods": None,
            "lags": (0, 1, 2, 3),
            "window_days": 7,
            "min_logged_fraction": 0.8,
            "min_days": 56,
            "min_df": 20,
            "multiple_testing": "bh",
            "fdr": 0.05,
            "hac_lag_rule": "sqrt",
        },
    }
    assert load_project_config(write(tmp_path, "sources: []\n")).settings == Settings()


def test_settings_in_code_are_checked_and_stay_a_frozen_dataclass() -> None:
    bh = dataclasses.replace(Settings(), multiple_testing="bh")
    assert bh.multiple_testing == "bh" and Settings(windows=(7,)).windows == (7,)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bh.fdr = 0.1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        Settings(min_n_person=2.7)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", ["date_format", "datetime_format"])
def test_non_string_date_format_is_a_config_error(tmp_path: Path, key: str) -> None:
    entry = f"{{name: a, kind: labs, format: csv, path: x, {key}: 5}}"
    with pytest.raises(ConfigError, match=f"source 'a', key '{key}': expected a format string"):
        load_project_config(write(tmp_path, f"sources:\n  - {entry}\n"))


def test_demo_marks_a_source_as_a_fixed_sample(tmp_path: Path) -> None:
    config = load_project_config(write(tmp_path, GOOD))
    assert not any(s.demo for s in config.sources)  # real sources by default
    text = GOOD.replace("    person: alice\n", "    person: alice\n    demo: true\n")
    config = load_project_config(write(tmp_path, text))
    assert config.source("alice_cronometer").demo
    assert not config.source("clinic_labs").demo


def test_encoding_options_and_description_that_are_right_load(tmp_path: Path) -> None:
    config = load_project_config(
        write(
            tmp_path,
            "sources:\n  - {name: a, kind: diet, format: csv, path: x, encoding: latin-1,\n"
            "     options: {period: day}, description: 'Klinik export, 2024'}\n",
        )
    )
    source = config.sources[0]
    assert source.encoding == "latin-1" and source.options == {"period": "day"}
