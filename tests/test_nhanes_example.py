"""The NHANES example project end to end: real CRP, demographics and intake files.

A cross-sectional cohort (one undated hs-CRP per person, a two-day recall mean, and DEMO's
survey design and covariates) flows through the warehouse into design-based between-person
models for adults aged 20 or more, with an unweighted model beside each and acute CRP
(> 10 mg/L) excluded. The literature (science.md section 4) expects a higher DII and lower
fibre intake to go with higher CRP; the pipeline must find both directions.
"""

from __future__ import annotations

import os
import runpy
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.stats import norm

from pipelines.cli import main
from pipelines.project import Project

REPO = Path(__file__).resolve().parents[1]
NHANES = REPO.parent / "shared" / "datasets" / "nhanes"
# The reference table as shipped with the shared references, not the pipeline's own copy.
DII_TABLE = REPO.parent / "shared" / "reference" / "dii_shivappa2014.csv"

# The intake file's header -> the DII parameter, for the 28 parameters NHANES reports (science.md
# 6.1, dietaryindex's mapping); written out here so the test does not use the pipeline's mapping.
# The file is already in the table's units (caffeine in g, vitamin A in ug RAE).
NHANES_28 = {
    "Alcohol": "Alcohol",
    "Vitamin B12": "Vitamin B12",
    "Vitamin B6": "Vitamin B6",
    "Beta-carotene": "beta-Carotene",
    "Caffeine": "Caffeine",
    "Carbohydrate": "Carbohydrate",
    "Cholesterol ": "Cholesterol",
    "Energy": "Energy",
    "Total fat": "Total fat",
    "Fiber": "Fibre",
    "Folic acid": "Folic acid",
    "Iron": "Iron",
    "Magnesium": "Magnesium",
    "MUFA": "MUFA",
    "Niacin": "Niacin",
    "n-3 fatty acid": "n-3 fatty acids",
    "n-6 fatty acid": "n-6 fatty acids",
    "Protein": "Protein",
    "PUFA": "PUFA",
    "Riboflavin": "Riboflavin",
    "Saturated fat": "Saturated fat",
    "Selenium": "Selenium",
    "Thiamin": "Thiamin",
    "Vitamin A": "Vitamin A",
    "Vitamin C": "Vitamin C",
    "Vitamin D": "Vitamin D",
    "Vitamin E": "Vitamin E",
    "Zinc": "Zinc",
}


@pytest.fixture(scope="module")
def nhanes_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("nhanes")
    shutil.copy(REPO / "examples" / "nhanes" / "sources.yaml", root / "sources.yaml")
    raw = root / "data" / "raw" / "nhanes"
    raw.mkdir(parents=True)
    for name in ("HSCRP_J.XPT", "DEMO_J.XPT", "nhanes_2011_2018_dii_intake.csv"):
        shutil.copy(NHANES / name, raw / name)
        # Downloaded long ago, as a survey cycle's files usually are.
        long_ago = time.time() - 400 * 86400
        os.utime(raw / name, (long_ago, long_ago))
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


def test_a_published_survey_cycle_is_never_called_stale(nhanes_project: Project) -> None:
    """The example marks its sources `demo: true`: files downloaded 400 days ago are a fixed
    release, not a source that stopped syncing."""
    index = (nhanes_project.dashboards_dir / "index.html").read_text()
    assert "looks stale" not in index
    assert index.count("not checked for freshness") == 3


def test_cross_sectional_draws_and_covariates_reach_the_warehouse(nhanes_project: Project) -> None:
    wh = nhanes_project.warehouse()
    draws = wh.table("marker_draws")
    assert draws["collected_at"].null_count() == draws.height  # no dates in NHANES
    acute = draws.filter(pl.col("acute"))
    assert acute.height > 0 and (acute["excluded_reason"] == "acute").all()
    people = wh.table("persons")
    assert people.filter(pl.col("age").is_not_null() & pl.col("sex").is_not_null()).height == 9254
    summary = wh.table("diet_summary")
    assert summary.height == 13579 and summary["dii_params"].min() >= 28


@pytest.mark.parametrize(("feature", "direction"), [("dii", 1), ("fiber_g", -1)])
def test_dii_and_fibre_against_crp_in_adults(
    nhanes_project: Project, feature: str, direction: int
) -> None:
    """Design-based (WTMEC2YR, 15 strata, 30 PSUs) and unweighted estimates, side by side, on
    the same adults with the same covariates."""
    assoc = nhanes_project.warehouse().query(
        "SELECT * FROM associations WHERE feature = ? ORDER BY method", [feature]
    )
    assert assoc["method"].to_list() == ["ols_between", "survey_wls"]
    plain, survey = assoc.iter_rows(named=True)
    assert plain["family"] == "hscrp|cohort:unweighted" and survey["family"] == "hscrp|cohort"
    # adults 20+ with a non-acute hs-CRP and an intake record: 2,769 people, all with income
    assert survey["n"] == plain["n"] == 2769
    covariates = "age,sex,race_eth,income_poverty"
    if feature == "fiber_g":
        covariates = "energy_kcal," + covariates  # the DII contains energy: never adjusted for it
    assert survey["covariates"] == plain["covariates"] == covariates
    for row in (survey, plain):
        assert row["status"] == "significant"
        assert direction * row["effect_pct"] > 0
        assert direction * row["ci_low_pct"] > 0 or direction * row["ci_high_pct"] < 0
        assert row["ci_low_pct"] < row["effect_pct"] < row["ci_high_pct"]
    assert (
        "weights WTMEC2YR, 15 strata, 30 PSUs, Taylor linearisation, t on 15 df" in (survey["note"])
    )
    # The design widens the interval: clustering within PSUs and unequal weights.
    assert survey["ci_high_pct"] - survey["ci_low_pct"] > plain["ci_high_pct"] - plain["ci_low_pct"]
    if feature == "dii":
        # README table: weighted +7.2% (95% CI +4.2 to +10.3), unweighted +4.4% (+2.5 to +6.4)
        assert survey["effect_pct"] == pytest.approx(7.2, abs=0.1)
        assert plain["effect_pct"] == pytest.approx(4.4, abs=0.1)


def test_persons_carry_the_survey_design(nhanes_project: Project) -> None:
    people = nhanes_project.warehouse().table("persons")
    designed = people.filter(pl.col("weight").is_not_null())
    assert designed.height == 9254
    assert designed.select("stratum", "psu").unique().height == 30
    assert designed["race_eth"].null_count() == 0
    assert designed["income_poverty"].null_count() == 1231


def test_nhanes_gets_its_cohort_dashboard(nhanes_project: Project) -> None:
    cohort = (nhanes_project.dashboards_dir / "cohort.html").read_text(encoding="utf-8")
    assert "Dietary Inflammatory Index" in cohort and "between people" in cohort
    # Every DII there says how many of the 45 parameters it was computed from.
    assert "people; DII from 28 of 45 parameters" in cohort
    assert "DII (score) (28 of 45 parameters)" in cohort
    assert not list(nhanes_project.dashboards_dir.glob("person_*.html"))


def test_dii_equals_the_28_parameter_computation_for_every_participant(
    nhanes_project: Project,
) -> None:
    """Shivappa's formula on the file's own values: z against the global mean and SD, 2 * Phi(z)
    - 1 times the effect score, summed over the 28 parameters NHANES reports."""
    table = {r["parameter"]: r for r in pl.read_csv(DII_TABLE).iter_rows(named=True)}
    intake = pl.read_csv(NHANES / "nhanes_2011_2018_dii_intake.csv", infer_schema_length=None)
    real = intake.filter(pl.col("SEQN") > 3)  # SEQN 1-3 are the synthetic validation people
    assert real.height == 13577
    expected = np.zeros(real.height)
    for header, parameter in NHANES_28.items():
        ref = table[parameter]
        x = real[header].cast(pl.Float64).to_numpy()
        assert not np.isnan(x).any(), header  # every participant reports all 28
        z = (x - ref["global_mean"]) / ref["global_sd"]
        expected += (2 * norm.cdf(z) - 1) * ref["effect_score"]

    got = (
        nhanes_project.warehouse()
        .table("diet_summary")
        .select(pl.col("person_id").cast(pl.Int64).alias("SEQN"), "dii", "dii_params")
    )
    both = real.select("SEQN").with_columns(expected=pl.Series(expected)).join(got, on="SEQN")
    assert both.height == 13577  # every participant has a DII
    assert set(both["dii_params"]) == {28}
    assert np.abs(both["dii"].to_numpy() - both["expected"].to_numpy()).max() < 1e-6


def test_validation_people_through_the_pipeline(nhanes_project: Project) -> None:
    """The file's synthetic SEQN 1 (every parameter at its global mean) and SEQN 2 (mean + 1 SD)
    carry all 45 parameters; the pipeline uses the 29 that have a column (the 28 plus trans fat),
    so SEQN 1 scores 0 and SEQN 2 scores (2 Phi(1) - 1) times those 29 effect scores. (SEQN 3,
    mean - 1 SD, is rejected for its negative trans fat.)"""
    table = pl.read_csv(DII_TABLE)
    used = [*NHANES_28.values(), "Trans fat"]
    effects = table.filter(pl.col("parameter").is_in(used))["effect_score"].sum()
    summary = nhanes_project.warehouse().table("diet_summary")
    rows = {
        r["person_id"]: r
        for r in summary.filter(pl.col("person_id").is_in(["1", "2", "3"])).iter_rows(named=True)
    }
    assert set(rows) == {"1", "2"}
    assert rows["1"]["dii_params"] == rows["2"]["dii_params"] == 29
    assert rows["1"]["dii"] == pytest.approx(0.0, abs=1e-9)
    assert rows["2"]["dii"] == pytest.approx((2 * norm.cdf(1.0) - 1) * effects, abs=1e-9)


def test_weighting_script_prints_the_stored_rows(
    nhanes_project: Project, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """examples/nhanes/weighting.py (the README's table): its fully adjusted columns are the
    rows in `associations`; with age and sex only, the DII estimate is larger both ways."""
    script = runpy.run_path(str(REPO / "examples" / "nhanes" / "weighting.py"))
    monkeypatch.setattr(sys, "argv", ["weighting.py", "--project-dir", str(nhanes_project.root)])
    script["main"]()
    lines = capsys.readouterr().out.splitlines()
    dii = next(line for line in lines if line.startswith("| dii |"))
    cells = [c.strip() for c in dii.strip("|").split("|")]
    assoc = nhanes_project.warehouse().query(
        "SELECT * FROM associations WHERE feature = 'dii' ORDER BY method"
    )
    plain, survey = (script["cell"](r) for r in assoc.iter_rows(named=True))
    assert cells[1] == "2,769"
    assert cells[4:] == [plain, survey]
    unweighted_age_sex, weighted_age_sex = (float(c.split("%")[0]) for c in cells[2:4])
    assert weighted_age_sex > unweighted_age_sex > float(plain.split("%")[0])


def test_cohort_page_says_the_estimates_are_design_based(nhanes_project: Project) -> None:
    cohort = (nhanes_project.dashboards_dir / "cohort.html").read_text(encoding="utf-8")
    assert "Design-based: weighted by the survey weights" in cohort
    assert "weights WTMEC2YR, 15 strata, 30 PSUs" in cohort
    assert "unweighted: +4.4% (95% CI +2.5 to +6.4) per unit of dii" in cohort
