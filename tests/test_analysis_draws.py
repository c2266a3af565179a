"""marker_draws rules (acute, washout, detection limit, visits) and per-person trends."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from pipelines.analysis.draws import MARKER_DRAWS_SCHEMA, build_marker_draws, marker_trends, rcv_pct
from pipelines.config import Settings
from pipelines.schema import LAB_RESULT_SCHEMA, conform

T0 = datetime(2024, 1, 1, 8, 30)
SETTINGS = Settings()


def lab(rows: list[tuple]) -> pl.DataFrame:
    """rows: (person_id, day offset from T0, marker, value[, censored])."""
    records = [
        {
            "person_id": r[0],
            "collected_at": T0 + timedelta(days=r[1]),
            "marker": r[2],
            "value": r[3],
            "censored": r[4] if len(r) > 4 else None,
            "line": i + 2,
        }
        for i, r in enumerate(rows)
    ]
    return conform(pl.DataFrame(records), LAB_RESULT_SCHEMA)


def by_line(draws: pl.DataFrame, line: int) -> dict:
    return draws.filter(pl.col("line") == line).row(0, named=True)


def test_output_schema_and_empty_input() -> None:
    out = build_marker_draws(lab([("a", 0, "hscrp", 1.0)]), SETTINGS)
    for col, dtype in MARKER_DRAWS_SCHEMA.items():
        assert out.schema[col] == dtype
    empty = build_marker_draws(pl.DataFrame(schema=LAB_RESULT_SCHEMA), SETTINGS)
    assert empty.height == 0
    assert set(MARKER_DRAWS_SCHEMA) <= set(empty.columns)


def test_acute_flag_only_above_threshold_and_only_for_crp() -> None:
    out = build_marker_draws(
        lab(
            [
                ("a", 0, "hscrp", 10.0),  # at the threshold: not acute
                ("b", 0, "hscrp", 10.5),
                ("c", 0, "esr", 50.0),  # ESR has no acute rule
                ("d", 0, "hscrp", 160.0, ">"),
            ]
        ),
        SETTINGS,
    )
    assert [by_line(out, line)["acute"] for line in (2, 3, 4, 5)] == [False, True, False, True]
    assert by_line(out, 3)["excluded_reason"] == "acute"
    assert by_line(out, 2)["excluded_reason"] is None
    # The threshold is a setting, not a constant.
    strict = build_marker_draws(lab([("a", 0, "hscrp", 9.0)]), Settings(acute_crp_mg_l=8.0))
    assert strict["acute"].to_list() == [True]


def test_washout_excludes_up_to_14_days_after_acute_but_not_15() -> None:
    out = build_marker_draws(
        lab(
            [
                ("a", 0, "hscrp", 35.0),
                ("a", 14, "hscrp", 2.0),  # day 14: still washing out
                ("b", 0, "hscrp", 35.0),
                ("b", 15, "hscrp", 2.0),  # day 15: kept
                ("a", 5, "esr", 20.0),  # another marker is not affected
                ("c", 3, "hscrp", 2.0),  # another person is not affected
            ]
        ),
        SETTINGS,
    )
    assert by_line(out, 3)["excluded_reason"] == "post_acute_washout"
    assert by_line(out, 3)["acute"] is False
    assert by_line(out, 5)["excluded_reason"] is None
    assert by_line(out, 6)["excluded_reason"] is None
    assert by_line(out, 7)["excluded_reason"] is None


def test_censored_value_becomes_lod_over_sqrt2_and_stays_flagged() -> None:
    out = build_marker_draws(lab([("a", 0, "hscrp", 0.3, "<"), ("a", 40, "hscrp", 1.2)]), SETTINGS)
    row = by_line(out, 2)
    assert row["value"] == pytest.approx(0.3 / math.sqrt(2))
    assert row["log_value"] == pytest.approx(math.log(0.3 / math.sqrt(2)))
    assert row["below_lod"] is True and row["censored"] == "<"
    assert row["excluded_reason"] is None
    assert by_line(out, 3)["below_lod"] is False


def test_draws_5_days_apart_become_one_visit_with_geometric_mean() -> None:
    out = build_marker_draws(
        lab([("a", 0, "hscrp", 2.0), ("a", 5, "hscrp", 8.0), ("a", 40, "hscrp", 3.0)]), SETTINGS
    )
    visit, merged, later = by_line(out, 2), by_line(out, 3), by_line(out, 4)
    assert visit["excluded_reason"] is None
    assert visit["value"] == pytest.approx(4.0)  # sqrt(2 * 8)
    assert visit["log_value"] == pytest.approx(math.log(4.0))
    assert visit["n_results"] == 2
    assert visit["collected_at"] == T0
    assert visit["draw_value"] == 2.0
    assert merged["excluded_reason"] == "merged_into_visit"
    assert merged["draw_value"] == 8.0
    assert merged["visit_id"] == visit["visit_id"]
    assert later["excluded_reason"] is None and later["n_results"] == 1
    assert later["visit_id"] != visit["visit_id"]


def test_visits_are_anchored_at_their_first_draw() -> None:
    # 0, 10, 20: the draw on day 20 is 20 days from the visit's start, so it starts a new visit.
    # 14 days apart is not "less than 14": two visits.
    out = build_marker_draws(
        lab(
            [
                ("a", 0, "hscrp", 1.0),
                ("a", 10, "hscrp", 4.0),
                ("a", 20, "hscrp", 2.0),
                ("b", 0, "hscrp", 1.0),
                ("b", 14, "hscrp", 2.0),
            ]
        ),
        SETTINGS,
    )
    reasons = [by_line(out, line)["excluded_reason"] for line in range(2, 7)]
    assert reasons == [None, "merged_into_visit", None, None, None]
    assert by_line(out, 2)["value"] == pytest.approx(2.0)


def test_acute_draws_are_not_merged_into_visits() -> None:
    out = build_marker_draws(lab([("a", 0, "hscrp", 2.0), ("a", 3, "hscrp", 30.0)]), SETTINGS)
    assert by_line(out, 2)["excluded_reason"] is None
    assert by_line(out, 2)["value"] == 2.0
    assert by_line(out, 3)["excluded_reason"] == "acute"


def test_every_input_row_appears_exactly_once() -> None:
    rng = np.random.default_rng(7)
    rows = [
        (
            f"p{rng.integers(4)}",
            int(rng.integers(0, 200)),
            str(rng.choice(["hscrp", "esr"])),
            float(rng.lognormal(0.5, 1.2)),
            "<" if rng.random() < 0.05 else None,
        )
        for _ in range(300)
    ]
    rows.append(("p0", 3, "hscrp", None))  # unusable, still kept
    rows.append(("p0", 3, "hscrp", 0.0))
    results = lab(rows)
    out = build_marker_draws(results, SETTINGS)
    assert out.height == results.height
    assert sorted(out["line"].to_list()) == sorted(results["line"].to_list())
    assert out.filter(pl.col("excluded_reason") == "unusable_value").height == 2
    # Visit ids are unique among analysable rows, and every merged row points at one of them.
    chronic = out.filter(pl.col("excluded_reason").is_null())
    assert chronic["visit_id"].n_unique() == chronic.height
    merged = out.filter(pl.col("excluded_reason") == "merged_into_visit")
    assert set(merged["visit_id"]) <= set(chronic["visit_id"])
    # n_results of the visits adds up to the analysable results.
    assert chronic["n_results"].sum() == chronic.height + merged.height


def test_theil_sen_recovers_a_planted_minus_30_percent_per_year_trend() -> None:
    rng = np.random.default_rng(3)
    days = np.arange(0, 3 * 365, 30)
    years = days / 365.25
    values = 3.0 * np.exp(np.log(0.7) * years + rng.normal(0, 0.2, days.size))
    out = marker_trends(
        build_marker_draws(
            lab([("a", int(d), "hscrp", float(v)) for d, v in zip(days, values, strict=True)]),
            SETTINGS,
        )
    )
    row = out.row(0, named=True)
    assert row["n_chronic"] == days.size
    assert row["slope_pct_per_year"] == pytest.approx(-30.0, abs=8.0)
    assert row["slope_ci_low"] < -30.0 < row["slope_ci_high"]


def test_trend_needs_four_chronic_values() -> None:
    out = marker_trends(
        build_marker_draws(
            lab(
                [
                    ("a", 0, "hscrp", 1.0),
                    ("a", 30, "hscrp", 2.0),
                    ("a", 60, "hscrp", 30.0),
                    ("a", 90, "hscrp", 1.5),
                ]
            ),
            SETTINGS,
        )
    )
    row = out.row(0, named=True)
    assert row["n_draws"] == 4 and row["n_chronic"] == 3
    assert row["slope_pct_per_year"] is None
    assert row["latest_value"] == 1.5 and row["latest_acute"] is False


def test_rcv_matches_science_reference() -> None:
    up, down = rcv_pct(0.052, 0.422)
    assert up == pytest.approx(210.0, abs=1.0)
    assert down == pytest.approx(-68.0, abs=1.0)
    # Symmetric on the log scale.
    assert math.log1p(up / 100) == pytest.approx(-math.log1p(down / 100))


def test_trends_baseline_category_and_real_change() -> None:
    # Baseline from the last 5 chronic values; the latest is compared with the values before it.
    rows = [("a", 30 * k, "hscrp", v) for k, v in enumerate([0.8, 1.0, 1.2, 1.0, 0.9, 3.5])]
    rows += [("b", 30 * k, "hscrp", v) for k, v in enumerate([2.0, 2.2, 1.8, 2.6])]
    rows += [("c", 0, "esr", 10.0), ("c", 30, "esr", 40.0)]
    rows += [("d", 0, "hscrp", 0.8), ("d", 30, "hscrp", 25.0)]  # latest draw acute
    out = marker_trends(build_marker_draws(lab(rows), SETTINGS)).sort("person_id")
    a, b, c, d = out.iter_rows(named=True)
    assert a["baseline"] == pytest.approx(1.0)  # median of 1.0, 1.2, 1.0, 0.9, 3.5
    assert a["category"] == "1-3"
    assert a["latest_change_pct"] == pytest.approx(250.0)  # 3.5 vs median(0.8, 1.0, 1.2, 1.0, 0.9)
    assert a["change_is_real"] is True
    assert a["rcv_up_pct"] == pytest.approx(210.0, abs=1.0)
    assert "210%" in a["rcv_rule"] and "68%" in a["rcv_rule"]
    assert b["latest_change_pct"] == pytest.approx(30.0)
    assert b["change_is_real"] is False
    assert c["category"] is None and c["rcv_up_pct"] is None and c["change_is_real"] is None
    assert "No reference change value" in c["rcv_rule"]
    assert d["latest_acute"] is True and d["latest_value"] == 25.0
    assert d["baseline"] == 0.8 and d["category"] == "<1"


# ---- hs-CRP and standard CRP: two markers, never pooled ----------------------------------------


def test_standard_crp_below_its_limit_is_never_chronic_nor_categorised() -> None:
    # A GP's standard CRP "<5" between hs-CRP draws: it says only "below 5 mg/L", which is the
    # whole chronic range. As LOD/sqrt(2) it would read as a chronic 3.54 and a "high" category.
    labs = lab(
        [
            ("a", 0, "hscrp", 0.8),
            ("a", 30, "hscrp", 1.2),
            ("a", 45, "crp", 5.0, "<"),
            ("a", 60, "hscrp", 0.9),
            ("a", 90, "hscrp", 1.1),
        ]
    )
    draws = build_marker_draws(labs, SETTINGS)
    censored = by_line(draws, 4)
    assert censored["marker"] == "crp"
    assert censored["excluded_reason"] == "below_detection_limit"
    assert censored["below_lod"] is True
    assert censored["draw_value"] == pytest.approx(5.0 / math.sqrt(2))  # drawn, not analysed
    trends = {t["marker"]: t for t in marker_trends(draws).to_dicts()}
    assert trends["crp"]["n_chronic"] == 0
    assert trends["crp"]["baseline"] is None
    assert trends["crp"]["category"] is None
    assert trends["crp"]["latest_censored"] == "<"
    hs = trends["hscrp"]
    assert (hs["n_chronic"], hs["baseline"], hs["category"]) == (4, pytest.approx(1.0), "1-3")
    # hs-CRP below its own (low) limit stays analysable at LOD/sqrt(2).
    low = build_marker_draws(lab([("b", 0, "hscrp", 0.15, "<")]), SETTINGS).row(0, named=True)
    assert low["excluded_reason"] is None and low["value"] == pytest.approx(0.15 / math.sqrt(2))


def test_trends_and_categories_are_per_marker_and_for_hs_crp_only() -> None:
    rows = [("a", 30 * k, "hscrp", v) for k, v in enumerate([1.0, 1.2, 0.8, 1.0])]
    rows += [("a", 30 * k + 5, "crp", v) for k, v in enumerate([6.0, 8.0, 7.0, 9.0])]
    trends = {
        t["marker"]: t for t in marker_trends(build_marker_draws(lab(rows), SETTINGS)).to_dicts()
    }
    assert trends["hscrp"]["baseline"] == pytest.approx(1.0)
    assert trends["hscrp"]["n_chronic"] == 4
    assert trends["hscrp"]["category"] == "1-3"
    assert trends["crp"]["baseline"] == pytest.approx(7.5)
    assert trends["crp"]["n_chronic"] == 4
    assert trends["crp"]["category"] is None  # a standard CRP of 7.5 gets no ">3" category
    assert trends["crp"]["rcv_up_pct"] is None  # Macy's CVs are for the hs assay


def test_acute_standard_crp_starts_the_hs_crp_washout() -> None:
    draws = build_marker_draws(
        lab(
            [
                ("a", 0, "hscrp", 1.0),
                ("a", 10, "crp", 35.0),  # an infection, seen by a standard CRP
                ("a", 12, "esr", 40.0),  # other markers keep their own washout
                ("a", 20, "hscrp", 4.0),  # 10 days later: still washing out
                ("a", 30, "hscrp", 1.2),  # 20 days later: kept
            ]
        ),
        SETTINGS,
    )
    assert by_line(draws, 3)["excluded_reason"] == "acute"
    assert by_line(draws, 4)["excluded_reason"] is None
    assert by_line(draws, 5)["excluded_reason"] == "post_acute_washout"
    assert by_line(draws, 6)["excluded_reason"] is None
