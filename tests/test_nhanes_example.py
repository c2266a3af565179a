"""The NHANES example project end to end: real CRP, demographics and intake files.

A cross-sectional cohort (one undated hs-CRP per person, a two-day recall mean, age and sex)
flows through the warehouse into between-person models for adults aged 20 or more, with acute
CRP (> 10 mg/L) excluded. The literature (science.md section 4) expects a higher DII and lower
fibre intake to go with higher CRP; the pipeline must find both directions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from pipelines.cli import main
from pipelines.project import Project

REPO = Path(__file__).resolve().parents[1]
NHANES = REPO.parent / "shared" / "datasets" / "nhanes"


@pytest.fixture(scope="module")
def nhanes_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("nhanes")
    shutil.copy(REPO / "examples" / "nhanes" / "sources.yaml", root / "sources.yaml")
    raw = root / "data" / "raw" / "nhanes"
    raw.mkdir(parents=True)
    for name in ("HSCRP_J.XPT", "DEMO_J.XPT", "nhanes_2011_2018_dii_intake.csv"):
        shutil.copy(NHANES / name, raw / name)
    assert main(["run", "--project-dir", str(root)]) == 0
    return Project(root)


def test_every_nhanes_row_is_accounted_for(nhanes_project: Project) -> None:
    files = nhanes_project.warehouse().table("ingest_files")
    assert set(files["status"]) == {"loaded"}
    assert (
        files["rows_read"] - files["rows_loaded"] - files["rows_rejected"] - files["rows_duplicate"]
        == 0
    ).all()
    by_source = {r["source"]: r for r in files.iter_rows(named=True)}
    assert by_source["nhanes_crp"]["rows_read"] == 8366
    assert by_source["nhanes_demographics"]["rows_loaded"] == 9254
    # 13,580 intake rows; the synthetic validation person SEQN 2 has a negative trans fat (-0.6 g),
    # which is rejected, not loaded as intake.
    assert (
        by_source["nhanes_intake"]["rows_loaded"],
        by_source["nhanes_intake"]["rows_rejected"],
    ) == (
        13579,
        1,
    )


def test_cross_sectional_draws_and_covariates_reach_the_warehouse(nhanes_project: Project) -> None:
    wh = nhanes_project.warehouse()
    draws = wh.table("marker_draws")
    assert draws["collected_at"].null_count() == draws.height  # no dates in NHANES
    acute = draws.filter(pl.col("acute"))
    assert acute.height > 0 and (acute["excluded_reason"] == "acute").all()
    people = wh.table("persons")
    assert people.filter(pl.col("age").is_not_null() & pl.col("sex").is_not_null()).height == 9254
    summary = wh.table("diet_summary")
    assert summary.height == 13579 and summary["dii_params"].min() >= 20


@pytest.mark.parametrize(("feature", "direction"), [("dii", 1), ("fiber_g", -1)])
def test_dii_and_fibre_against_crp_in_adults(
    nhanes_project: Project, feature: str, direction: int
) -> None:
    assoc = nhanes_project.warehouse().query(
        "SELECT * FROM associations WHERE method = 'ols_between' AND feature = ?", [feature]
    )
    row = assoc.row(0, named=True)
    # adults 20+ with a non-acute hs-CRP and an intake record: about 2,770 people
    assert 2500 <= row["n"] <= 3100
    assert row["status"] == "significant"
    assert direction * row["effect_pct"] > 0
    assert direction * row["ci_low_pct"] > 0 or direction * row["ci_high_pct"] < 0
    assert "age" in row["note"] and "sex" in row["note"]


def test_nhanes_gets_its_cohort_dashboard(nhanes_project: Project) -> None:
    cohort = (nhanes_project.dashboards_dir / "cohort.html").read_text(encoding="utf-8")
    assert "Dietary Inflammatory Index" in cohort and "between people" in cohort
    assert not list(nhanes_project.dashboards_dir.glob("person_*.html"))
