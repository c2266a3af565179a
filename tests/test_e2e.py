"""The whole pipeline on the bundled demo, materialized into a real temp DuckDB file.

The demo has planted effects (docs/DEMO.md): more fermented food lowers CRP, more ultra-processed
food raises it, legumes, fruit and nuts do nothing, and acute spikes sit where they would bias the
result. The pipeline must find the first two, call none of the nulls significant and keep every
acute draw out of the chronic analysis.
"""

from __future__ import annotations

import polars as pl
import pytest

from pipelines.defs.partitions import all_partitions_tags
from pipelines.demo import DEMO_PEOPLE, DEMO_TRUTH
from pipelines.project import PROJECT_DIR_ENV, Project
from tests.conftest import DemoRun


def test_run_succeeds_and_every_check_passes(demo_run: DemoRun) -> None:
    assert demo_run.result.success
    evaluations = demo_run.result.get_asset_check_evaluations()
    assert evaluations, "asset checks should run with the job"
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert failed == []


def test_every_input_row_is_accounted_for(demo_run: DemoRun) -> None:
    wh = demo_run.project.warehouse()
    files = wh.table("ingest_files")
    # Per person: the diary, the labs, the Bearable log and the Oura export.
    assert files.height == 4 * len(DEMO_PEOPLE)
    assert (files["status"] == "loaded").all()
    balance = (
        files["rows_read"] - files["rows_loaded"] - files["rows_rejected"] - files["rows_duplicate"]
    )
    assert (balance == 0).all()
    loaded = dict(files.group_by("source").agg(pl.col("rows_loaded").sum()).iter_rows())
    assert wh.table("diet_entries").height == loaded["demo_cronometer"]
    assert wh.table("lab_results").height == loaded["demo_labs"]
    assert wh.table("rejected_rows").height == files["rows_rejected"].sum()


def test_acute_and_washout_draws_are_excluded(demo_run: DemoRun) -> None:
    draws = demo_run.project.warehouse().table("marker_draws")
    by_day = {(r["person_id"], str(r["day"])): r for r in draws.iter_rows(named=True)}
    for person, day in DEMO_TRUTH["acute_draws"]:
        row = by_day[(person, day)]
        assert row["acute"] and row["excluded_reason"] == "acute"
    for person, day in DEMO_TRUTH["washout_draws"]:
        row = by_day[(person, day)]
        assert not row["acute"] and row["excluded_reason"] == "post_acute_washout"


def test_censored_and_mg_dl_results_are_normalised(demo_run: DemoRun) -> None:
    labs = demo_run.project.warehouse().table("lab_results")
    censored = labs.filter(pl.col("censored") == "<")
    assert censored.height >= 1 and (censored["value"] == 0.3).all()
    mg_dl = labs.filter(pl.col("unit_raw") == "mg/dL")
    assert mg_dl.height >= 1
    raw = mg_dl["value_raw"].cast(pl.Float64)
    assert (mg_dl["value"] - raw * 10).abs().max() < 1e-9
    assert (labs["unit"] == "mg/L").all()


def test_demo_labs_become_hs_crp_and_standard_crp_as_docs_demo_says(demo_run: DemoRun) -> None:
    labs = demo_run.project.warehouse().table("lab_results")
    got = {
        (r["person_id"], str(r["collected_at"].date())): (r["marker"], r["crp_method_basis"])
        for r in labs.iter_rows(named=True)
    }
    expected_markers = set()
    for person in DEMO_PEOPLE:
        for d in DEMO_TRUTH["people"][person]["draws"]:
            marker, basis = got[(person, d["date"])]
            if d["test"] == "CRP" and d["unit"] == "mg/L":  # infections and follow-ups
                expected = (
                    "crp",
                    "no method stated and no sign of a high-sensitivity assay: standard",
                )
            elif d["test"] == "CRP":  # bob's mg/dL row, range 0.0-0.3 mg/dL
                expected = ("hscrp", "reference upper limit <= 3 mg/L: hs")
            else:
                expected = ("hscrp", "name")
            assert (marker, basis) == expected, (person, d)
            expected_markers.add(marker)
    assert expected_markers == {"hscrp", "crp"} == set(labs["marker"])
    # Standard CRP never reaches the chronic analysis of the demo, nor a category.
    trends = demo_run.project.warehouse().table("marker_trends")
    assert trends.filter(pl.col("marker") == "crp")["category"].null_count() == len(DEMO_PEOPLE)
    assert trends.filter(pl.col("marker") == "hscrp")["category"].null_count() == 0


def test_taxonomy_maps_at_least_90_percent_of_demo_energy(demo_run: DemoRun) -> None:
    unmapped = demo_run.project.warehouse().table("unmapped_foods")
    assert (unmapped["energy_share"].sum() if unmapped.height else 0.0) <= 0.10


def _cohort(assoc: pl.DataFrame, feature: str, window: int) -> dict:
    rows = assoc.filter(
        (pl.col("scope") == "cohort")
        & (pl.col("marker") == DEMO_TRUTH["marker"])
        & (pl.col("feature") == feature)
        & (pl.col("window_days") == window)
    )
    assert rows.height == 1, (feature, window)
    return rows.row(0, named=True)


@pytest.mark.parametrize("feature", sorted(DEMO_TRUTH["effects"]))
def test_planted_effects_are_found_with_the_right_sign(demo_run: DemoRun, feature: str) -> None:
    truth = DEMO_TRUTH["effects"][feature]
    assoc = demo_run.project.warehouse().table("associations")
    row = _cohort(assoc, feature, truth["window_days"])
    assert row["status"] == "significant", row
    assert (row["effect_pct"] > 0) == (truth["pct_per_serving"] > 0), row
    assert row["ci_low_pct"] <= row["effect_pct"] <= row["ci_high_pct"]


def test_null_foods_are_never_called_significant(demo_run: DemoRun) -> None:
    assoc = demo_run.project.warehouse().table("associations")
    nulls = assoc.filter(pl.col("feature").is_in(DEMO_TRUTH["null_features"]))
    assert nulls.height > 0
    assert nulls.filter(pl.col("status") == "significant").height == 0


def test_only_planted_foods_are_findings_in_any_scope(demo_run: DemoRun) -> None:
    # Issue 16: on main, alcohol (a null) and foods sharing items with the planted ones were
    # called significant. Adjusted for the core foods and tested once per food, no feature but
    # the planted two is significant, per person or pooled, at any window.
    assoc = demo_run.project.warehouse().table("associations")
    significant = assoc.filter(pl.col("status") == "significant")
    assert set(significant["feature"]) <= set(DEMO_TRUTH["effects"]), significant.select(
        "scope", "person_id", "feature", "window_days", "q"
    )
    primary = assoc.filter(
        (pl.col("scope") == "cohort")
        & (pl.col("marker") == DEMO_TRUTH["marker"])
        & (pl.col("window_role") == "primary")
    )
    assert set(primary["window_days"]) == {28}
    # Foods found only through what they are eaten with are listed as explained, naming it.
    explained = primary.filter(pl.col("status") == "explained")
    for row in explained.iter_rows(named=True):
        assert "explained by" in row["note"] and row["crude_p"] < 0.05, row
    # One exposure is one test: the duplicate spellings are gone.
    assert not {"alcohol_g", "dii", "ultra_processed_energy_pct"} & set(primary["feature"])


def test_associations_carry_n_ci_q_and_parameters(demo_run: DemoRun) -> None:
    assoc = demo_run.project.warehouse().table("associations")
    assert {"person", "cohort"} <= set(assoc["scope"])
    tested = assoc.filter(pl.col("status") != "insufficient_data")
    assert tested.height > 0
    for col in ("n", "effect_pct", "ci_low_pct", "ci_high_pct", "p", "q", "method"):
        assert tested[col].null_count() == 0, col
    assert (tested["q"] >= tested["p"] - 1e-12).all()
    assert assoc["parameters"].null_count() == 0


def test_dashboards_are_written(demo_run: DemoRun) -> None:
    out = demo_run.project.dashboards_dir
    index = (out / "index.html").read_text(encoding="utf-8")
    for person in DEMO_PEOPLE:
        assert person in index
    assert (out / "plotly.min.js").exists()
    pages = list(out.glob("*.html"))
    assert len(pages) >= len(DEMO_PEOPLE) + 2


def test_second_run_changes_nothing(demo_run: DemoRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROJECT_DIR_ENV, str(demo_run.project.root))
    wh = demo_run.project.warehouse()
    before = {t: wh.table(t).height for t in ("diet_entries", "lab_results", "rejected_rows")}
    import dagster as dg

    from pipelines.definitions import defs

    with dg.DagsterInstance.ephemeral() as instance:
        job = defs().resolve_job_def("refresh_all")
        result = job.execute_in_process(
            instance=instance, tags=all_partitions_tags(Project.from_env())
        )
    assert result.success
    after = {t: wh.table(t).height for t in before}
    assert after == before


def test_dashboards_say_what_was_adjusted_for_and_list_explained_foods_apart(
    demo_run: DemoRun,
) -> None:
    import html
    import re

    page = (demo_run.project.dashboards_dir / "cohort.html").read_text(encoding="utf-8")
    findings = [
        html.unescape(re.sub("<[^>]+>", "", f))
        for f in re.findall(r'<div class="finding">(.*?)</div>', page)
    ]
    # One finding per planted food (its 28-day window), each saying what it was adjusted for,
    # energy in words, and its crude estimate; the other windows are its lag shape.
    planted = [
        f for f in findings if "fermented food over" in f or "ultra-processed food over" in f
    ]
    assert len(planted) == len(findings) == 2, findings
    for text in findings:
        assert "over the previous 28 days" in text
        assert "adjusted for" in text and "at the same energy" in text and "crude" in text
    assert "Explained by co-occurring foods" in page
    explained = page[page.index("Explained by co-occurring foods") :]
    explained = explained[: explained.index("</div>")]
    assoc = demo_run.project.warehouse().table("associations")
    names = assoc.filter(
        (pl.col("scope") == "cohort")
        & (pl.col("marker") == DEMO_TRUTH["marker"])
        & (pl.col("status") == "explained")
    )["feature"]
    assert names.len() > 0
    assert explained.count("<li>") == names.len()
