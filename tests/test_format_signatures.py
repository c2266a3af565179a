"""A file of another format is refused, naming the format that reads it (issue 15, item 3).

Every built-in CSV diet format is given every other format's real-shaped fixture (and lab files):
each refuses it with a message that names the file, the format that fits and the setting to use,
while its own fixture still loads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.adapters import FORMATS, AdapterError
from pipelines.adapters.base import lines_of
from pipelines.adapters.signatures import SIGNATURES
from pipelines.config import PersonSpec, SourceConfig
from pipelines.ingest import ingest_source

FIXTURES = Path(__file__).parent / "fixtures"
DIET = FIXTURES / "diet_adapters"

# format -> a fixture of its own real shape
OWN = {
    "cronometer_servings": FIXTURES / "adapters" / "cronometer_servings.csv",
    "cronometer_daily_summary": DIET / "dailysummary_completed_false.csv",
    "cronometer_biometrics": DIET / "cronometer_biometrics.csv",
    "myfitnesspal": DIET / "Nutrition-Summary-2026-01-01-to-2026-01-03.csv",
}
# files that are not diet at all, and the format (setting) a message must name for them
LABS = {
    FIXTURES / "synthea" / "observations.csv": "format: synthea_observations",
    FIXTURES / "adapters" / "labs_portal.csv": "format: csv with kind: labs",
}
# the Group variant and a Servings file named like a Daily Nutrition export
EXTRA = {
    DIET / "dailysummary_groups.csv": "cronometer_daily_summary",
    DIET / "servings_named_dailysummary" / "dailysummary.csv": "cronometer_servings",
}


def source(fmt: str, kind: str = "diet") -> SourceConfig:
    return SourceConfig(
        name="my_diary", kind=kind, format=fmt, path="*.csv", person=PersonSpec(fixed="alice")
    )


@pytest.mark.parametrize("fmt", sorted(OWN))
def test_each_format_reads_its_own_fixture(fmt: str) -> None:
    result = FORMATS[fmt].parse(OWN[fmt], source(fmt))
    assert lines_of(result.rows) > 0
    assert result.rows_read == lines_of(result.rows) + result.rejects.height


PAIRS = [
    (path, other, fits)
    for other in sorted(OWN)
    for path, fits in [*((OWN[f], f) for f in sorted(OWN)), *EXTRA.items()]
    if fits != other
]


@pytest.mark.parametrize(("path", "fmt", "fits"), PAIRS, ids=[f"{f}-as-{o}" for p, o, f in PAIRS])
def test_another_diet_format_is_refused_naming_the_right_one(
    path: Path, fmt: str, fits: str
) -> None:
    with pytest.raises(AdapterError) as caught:
        FORMATS[fmt].parse(path, source(fmt))
    message = str(caught.value)
    assert message.startswith(f"{path}: this file looks like ")
    assert f"not a {fmt} file" in message
    assert f"Set `format: {fits}" in message
    assert "source 'my_diary'" in message


@pytest.mark.parametrize("fmt", sorted(OWN))
@pytest.mark.parametrize("path", sorted(LABS), ids=lambda p: p.name)
def test_lab_files_given_to_a_diet_format_are_refused(path: Path, fmt: str) -> None:
    with pytest.raises(AdapterError, match="lab results") as caught:
        FORMATS[fmt].parse(path, source(fmt))
    assert f"Set `{LABS[path]}" in str(caught.value)


def test_a_diet_file_given_to_synthea_is_refused() -> None:
    with pytest.raises(AdapterError, match="Set `format: myfitnesspal`"):
        FORMATS["synthea_observations"].parse(OWN["myfitnesspal"], source("synthea_observations"))


def test_the_mfp_food_level_shape_names_its_option(tmp_path: Path) -> None:
    path = tmp_path / "mfp_foods.csv"
    path.write_text(
        "Date,Meal,Food,Calories,Fat (g),Carbohydrates (g),Fiber,Protein (g),Sodium (mg)\n"
        "2026-01-01,Breakfast,Oatmeal,150,3,27,4,5,0\n"
    )
    with pytest.raises(AdapterError, match=r"Set `format: myfitnesspal with options: \{level"):
        FORMATS["cronometer_daily_summary"].parse(path, source("cronometer_daily_summary"))


def test_signatures_name_registered_formats() -> None:
    assert {s.format for s in SIGNATURES} <= set(FORMATS)


def test_a_refused_file_is_an_ingest_error_and_the_others_load(tmp_path: Path) -> None:
    """The Servings file named dailysummary.csv loads nothing (it used to load one food as the
    day's total); the source's real Daily Nutrition file next to it still loads."""
    raw = tmp_path / "raw"
    (raw / "cm" / "alice").mkdir(parents=True)
    wrong = DIET / "servings_named_dailysummary" / "dailysummary.csv"
    (raw / "cm" / "alice" / "dailysummary.csv").write_bytes(wrong.read_bytes())
    (raw / "cm" / "alice" / "daily_nutrition.csv").write_bytes(
        OWN["cronometer_daily_summary"].read_bytes()
    )
    src = SourceConfig(
        name="cm_daily",
        kind="diet",
        format="cronometer_daily_summary",
        path="cm/*/*.csv",
        person=PersonSpec(from_folder=True),
    )
    result = ingest_source(src, raw)
    files = {r["path"]: r for r in result.files.iter_rows(named=True)}
    refused = files["cm/alice/dailysummary.csv"]
    assert refused["status"] == "error"
    assert (refused["rows_read"], refused["rows_loaded"]) == (0, 0)
    assert "looks like a Cronometer Servings export" in refused["error"]
    assert "Set `format: cronometer_servings`" in refused["error"]
    good = files["cm/alice/daily_nutrition.csv"]
    assert (good["status"], good["rows_read"], good["rows_loaded"], good["rows_rejected"]) == (
        "loaded",
        5,
        4,
        1,
    )
