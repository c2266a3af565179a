"""sources.yaml parsing: good entries load, bad ones name the entry and the key."""

from pathlib import Path

import pytest

from pipelines.config import ConfigError, load_project_config


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
