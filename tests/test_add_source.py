"""Adding a CSV-shaped source is a sources.yaml entry and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.project import PROJECT_DIR_ENV
from tests.conftest import make_demo_project

NEW_SOURCE = """
  - name: klinik_labs
    kind: labs
    format: csv
    path: klinik/*.csv
    person: {column: Patient}
    columns: {collected_at: Datum, marker: Analyse, value: Ergebnis, unit: Einheit,
              reference_range: Referenz}
    date_format: "%d.%m.%Y"
    delimiter: ";"
    decimal: ","
    encoding: latin-1
"""

# A German lab portal export: semicolons, decimal commas, day-first dates, Latin-1 text.
KLINIK_CSV = (
    "Patient;Datum;Analyse;Ergebnis;Einheit;Referenz\n"
    "alice;03.02.2026;CRP (hochsensitiv);1,8;mg/l;<5,0\n"
    "alice;17.03.2026;CRP;0,21;mg/dl;<0,5\n"
    "alice;02.04.2026;Blutzucker (nüchtern);91;mg/dl;70-99\n"
)


def test_a_new_source_by_configuration_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_demo_project(tmp_path)
    with project.sources_yaml.open("a", encoding="utf-8") as fh:
        fh.write(NEW_SOURCE)
    (project.raw_dir / "klinik").mkdir()
    (project.raw_dir / "klinik" / "befunde.csv").write_bytes(KLINIK_CSV.encode("latin-1"))

    # It shows up as its own asset in the Dagster definitions...
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path))
    from pipelines.definitions import defs

    keys = {k.to_user_string() for k in defs().resolve_asset_graph().get_all_asset_keys()}
    assert "ingest_klinik_labs" in keys

    # ...and a run loads it next to the demo sources, with every row accounted for.
    assert main(["run", "--project-dir", str(tmp_path)]) == 0
    wh = project.warehouse()
    files = wh.query("SELECT * FROM ingest_files WHERE source = 'klinik_labs'")
    assert files.row(0, named=True)["rows_read"] == 3
    assert files.row(0, named=True)["rows_loaded"] == 2
    assert files.row(0, named=True)["rows_rejected"] == 1
    labs = wh.query(
        "SELECT value, unit, value_raw FROM lab_results WHERE source = 'klinik_labs' "
        "ORDER BY collected_at"
    )
    assert labs["value"].to_list() == pytest.approx([1.8, 2.1])
    assert labs["unit"].to_list() == ["mg/L", "mg/L"]
    rejected = wh.query(
        "SELECT line, reason, value FROM rejected_rows WHERE source = 'klinik_labs'"
    )
    assert rejected.row(0, named=True)["line"] == 4
    assert "not a known inflammation marker" in rejected.row(0, named=True)["reason"]
    assert rejected.row(0, named=True)["value"] == "Blutzucker (nüchtern)"
