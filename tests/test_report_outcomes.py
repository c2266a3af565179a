"""The person page's daily outcomes (symptoms, wearable signals): the panel on the timeline's time
axis, the findings per outcome in words, the weeks of logging still needed, and the page read
from a real warehouse with and without the `biometrics` readings and `daily_effects` tests.
"""

from __future__ import annotations

import json
import math
import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines.analysis.daily_outcomes import daily_outcome_effects
from pipelines.reports import figures, person_page_name, write_dashboards
from pipelines.reports.outcome_power import (
    Z,
    days_needed,
    detectable_change,
    more_weeks,
    typical_se,
)
from pipelines.reports.outcome_text import effect_sentence, measure_in_sentence, outcome_sections
from pipelines.steps.dashboards import load_dashboard_inputs
from pipelines.warehouse import Warehouse, replace_table
from tests.conftest import everyone_in_frames
from tests.test_reports import (
    ALL_PAGES,
    PEOPLE,
    make_inputs,
    nightly,
    with_person,
)

# --------------------------------------------------------------------------------------------
# The weeks of logging still needed


def test_weeks_needed_against_a_hand_computation() -> None:
    # z_0.975 + z_0.80 = 1.959964 + 0.841621
    assert Z == pytest.approx(2.801585, abs=1e-6)
    # 60 days, SE 0.5: 60 * (0.5 * 2.801585 / 1)^2 = 117.733 days, 57.73 more: 9 weeks.
    assert days_needed(60, 0.5, 1.0) == pytest.approx(117.733, abs=1e-3)
    assert more_weeks(60, 0.5, 1.0) == 9
    # A 2 bpm change with SE 1.4 bpm over 84 days: 84 * (1.4 * 2.801585 / 2)^2 = 323.0 days.
    assert more_weeks(84, 1.4, 2.0) == math.ceil((323.0 - 84) / 7)
    assert more_weeks(60, 0.2, 1.0) == 0  # 18.8 days would do: already enough
    assert more_weeks(60, 20.0, 1.0) is None  # decades: out of reach
    assert typical_se([0.3, None, 0.5, float("nan"), 0.4]) == 0.4
    assert typical_se([None]) is None


def test_the_change_to_detect_per_scale() -> None:
    assert detectable_change("bloating", "0-10") == (1.0, "1 point")
    assert detectable_change("bristol_stool", "bristol_1-7") == (1.0, "1 type")
    assert detectable_change("resting_hr", "unit") == (2.0, "2 bpm")
    assert detectable_change("hrv_rmssd", "unit") == (5.0, "5 ms")
    assert detectable_change("urgency", "yes_no")[0] == 0.1
    assert detectable_change("mystery_gauge", "unit") is None


# --------------------------------------------------------------------------------------------
# Findings in words


def _row(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "person_id": "alice",
        "measure": "bloating",
        "scale": "0-10",
        "unit": None,
        "feature": "high_fodmap_servings",
        "lag": "0-3",
        "lag_from": 0,
        "lag_to": 3,
        "window_role": "primary",
        "n_days": 84,
        "estimate": 0.8,
        "se": 0.25,
        "ci_low": 0.3,
        "ci_high": 1.3,
        "p": 0.002,
        "q": 0.012,
        "status": "significant",
        "note": None,
    }
    return base | kw


def _shape(estimates: dict[str, float], **kw: object) -> list[dict[str, object]]:
    rows = []
    for lag, est in estimates.items():
        lo, _, hi = lag.partition("-")
        shape = {
            "lag": lag,
            "lag_from": int(lo),
            "lag_to": int(hi or lo),
            "window_role": "lag_shape",
            "estimate": est,
            "ci_low": est - 0.4,
            "ci_high": est + 0.4,
            "status": "not_significant",
        }
        rows.append(_row(**(shape | kw)))
    return rows


def test_effect_sentence_says_size_ci_units_and_lag() -> None:
    shape = _shape({"0": 0.1, "1": 0.5, "2": 0.15, "3": 0.05, "4-10": 0.2})
    assert effect_sentence(_row(), shape) == (
        "Bloating 0.80 points higher (95% CI 0.30 to 1.3) with one extra serving a day of "
        "high-FODMAP food on that day and each of the 3 days before; largest the day after "
        "(lag 1). q = 0.01, 84 days."
    )
    # A lower heart rate: the largest single day is the most negative one; units are bpm.
    hr = _row(measure="resting_hr", scale="unit", unit="bpm", estimate=-2.1, ci_low=-3.4)
    text = effect_sentence(hr, _shape({"0": -1.5, "1": 0.2, "2": -0.1, "3": -0.3}))
    assert text.startswith("Resting heart rate 2.1 bpm lower (95% CI -3.4 to 1.3)")
    assert "largest on the same day (lag 0)" in text
    # Stool form says which way; a yes/no measure is in percentage points of days.
    bristol = _row(measure="bristol_stool", scale="bristol_1-7", estimate=0.6)
    assert "0.60 Bristol types higher (looser stools)" in effect_sentence(bristol, [])
    urgency = _row(measure="urgency", scale="yes_no", estimate=0.12, ci_low=0.04, ci_high=0.2)
    assert "Urgency 12 percentage points on more days (95% CI 4.0 to 20)" in effect_sentence(
        urgency, []
    )
    # A significant trailing window is named with its own estimate.
    window = _shape({"4-10": 0.6}, status="significant")
    assert "intake 4 to 10 days before counts too (0.60 points higher" in effect_sentence(
        _row(), window
    )


def test_sections_per_outcome_with_honest_text_when_nothing_is_found() -> None:
    rows = [
        _row(),
        *_shape({"0": 0.1, "1": 0.5, "2": 0.15, "3": 0.05}),
        _row(feature="dairy_servings", estimate=0.1, q=0.6, status="not_significant"),
        _row(
            feature="alcohol_servings",
            estimate=None,
            se=None,
            q=None,
            status="insufficient_data",
            note="no intake of this food recorded",
        ),
        # Resting heart rate: nothing significant.
        _row(measure="resting_hr", scale="unit", unit="bpm", estimate=0.4, se=1.2, q=0.7,
             status="not_significant"),
        # Bristol: too few days for any test.
        *[
            _row(measure="bristol_stool", scale="bristol_1-7", feature=f, estimate=None, se=None,
                 q=None, status="insufficient_data", n_days=30,
                 note="30 usable days for 36 terms; at least 56 days needed")
            for f in ("dairy_servings", "high_fodmap_servings")
        ],
    ]  # fmt: skip
    sections = {s.title: s for s in outcome_sections(rows)}
    assert list(sections) == [
        "Bloating (0-10)",
        "Stool form (Bristol 1-7)",
        "Resting heart rate (bpm)",
    ]
    bloating = sections["Bloating (0-10)"]
    assert len(bloating.findings) == 1 and "largest the day after" in bloating.findings[0]
    assert "2 foods tested" in bloating.summary and "1 significant" in bloating.summary
    assert "Not tested: alcoholic drinks (no intake of this food recorded)" in bloating.summary
    # Median SE of the tested foods 0.25, 84 days: 84 * (0.25 * 2.8016)^2 = 41 days: enough.
    assert bloating.next_question.startswith("Already enough: 84 complete days detect a change of")
    hr = sections["Resting heart rate (bpm)"]
    assert hr.findings == []
    assert "none is significantly associated with resting heart rate" in hr.summary
    # 84 * (1.2 * 2.8016 / 2)^2 = 237.4 days: 154 more, 22 weeks.
    assert hr.next_question.startswith(
        "About 22 more weeks of complete daily logging to detect a change of 2 bpm in resting "
        "heart rate"
    )
    stool = sections["Stool form (Bristol 1-7)"]
    assert stool.summary == (
        "Not enough data to test any food against stool form yet: 30 usable days for 36 terms; "
        "at least 56 days needed."
    )
    assert stool.next_question.startswith("Keep logging: 30 complete days so far")
    assert outcome_sections([]) == []


# --------------------------------------------------------------------------------------------
# The panel


def _readings() -> pl.DataFrame:
    d0 = date(2025, 3, 1)
    return pl.DataFrame(
        {
            "person_id": ["alice"] * 8,
            "day": [d0, d0 + timedelta(1), d0 + timedelta(2), d0 + timedelta(2), d0 + timedelta(3),
                    d0 + timedelta(20), d0, d0 + timedelta(1)],
            "metric": ["bloating"] * 6 + ["resting_hr"] * 2,
            "value": [1.0, 2.0, 3.0, 5.0, 4.0, 6.0, 58.0, 60.0],
            "unit": [None] * 6 + ["bpm", "bpm"],
            "scale": ["0-10"] * 6 + ["unit", "unit"],
        }
    )  # fmt: skip


def test_outcome_points_average_a_day_and_roll_over_calendar_days() -> None:
    points = figures.outcome_points(_readings())
    bloat = points.filter(pl.col("metric") == "bloating")
    assert bloat["value"].to_list() == [1.0, 2.0, 4.0, 4.0, 6.0]  # day 3's two readings: 4
    # 7-day mean of the days' means, from the third reading on; day 21 stands alone: no mean.
    assert bloat["mean7"].to_list()[:2] == [None, None]
    assert bloat["mean7"][2] == pytest.approx(7 / 3)
    assert bloat["mean7"][3] == pytest.approx(11 / 4)
    assert bloat["mean7"][4] is None
    assert figures.outcome_points(pl.DataFrame(schema=dict(points.schema))).is_empty()


def test_panel_rows_share_one_time_axis_with_the_given_range() -> None:
    points = figures.outcome_points(_readings())
    span = figures.page_span([date(2025, 1, 6)], points["day"].to_list())
    assert span == ["2025-01-03", "2025-03-24"]
    fig = figures.outcome_panel(points, span, "Daily")
    assert fig is not None
    layout = fig["layout"]
    assert layout["xaxis"]["range"] == span
    assert layout["xaxis2"]["matches"] == "x"  # zooming one row zooms both
    assert layout["yaxis"]["range"] == [-0.5, 10.5]  # the whole 0-10 scale
    assert "range" not in layout["yaxis2"]  # bpm autoranges
    assert [t["yaxis"] for t in fig["data"]] == ["y", "y", "y2", "y2"]
    titles = [a["text"] for a in layout["annotations"]]
    assert titles == ["Bloating (0-10)", "Resting heart rate (bpm)"]
    assert figures.outcome_panel(points.clear(), span, "Daily") is None
    # A short span is padded to three weeks, as the timeline pads a single draw.
    assert figures.page_span([date(2025, 3, 1)]) == [
        "2025-02-16",
        "2025-03-14",
    ]  # 13 days each side
    assert figures.page_span([]) is None


# --------------------------------------------------------------------------------------------
# The page, from a real warehouse


def _full_diet(data_diet: pl.DataFrame) -> pl.DataFrame:
    """The fixture's diet logged every day (a usable day needs the days before it logged)."""
    rng = np.random.default_rng(3)
    servings = [c for c in data_diet.columns if c.endswith("_servings")]
    return data_diet.with_columns(
        pl.lit(True).alias("logged"),
        *[
            pl.col(c).fill_null(pl.Series(rng.poisson(1.2, data_diet.height).astype(float)))
            for c in servings
        ],
    )


def _outcomes(diet: pl.DataFrame, person: str, seed: int) -> pl.DataFrame:
    """Bloating 0-10 one point higher the day after each extra high-FODMAP serving; resting HR
    without any food effect; and a Cronometer weight (no scale), which is on no panel."""
    mine = diet.filter(pl.col("person_id") == person).sort("day")
    rng = np.random.default_rng(seed)
    fodmap = mine["high_fodmap_servings"].to_numpy()
    n = len(fodmap)
    bloating = np.clip(3 + np.r_[0.0, fodmap[:-1]] + rng.normal(0, 0.8, n), 0, 10).round(1)
    days = mine["day"].to_list()
    return pl.concat(
        [
            pl.DataFrame({"metric": "bloating", "value": bloating, "unit": None, "scale": "0-10"}),
            pl.DataFrame(
                {"metric": "resting_hr", "value": 60 + rng.normal(0, 2, n), "unit": "bpm",
                 "scale": "unit"}
            ),
            pl.DataFrame({"metric": "weight", "value": [70.0] * n, "unit": "kg", "scale": None}),
        ],
        how="vertical_relaxed",
    ).with_columns(
        person_id=pl.lit(person), day=pl.Series(days * 3)
    ).select("person_id", "day", "metric", "value", "unit", "scale")  # fmt: skip


def _warehouse(path: Path, outcomes: bool) -> Warehouse:
    data = make_inputs(people=["alice"])
    diet = _full_diet(data.diet_daily)
    wh = Warehouse(path)
    with wh.write() as conn:
        replace_table(conn, "diet_daily", diet)
        replace_table(conn, "marker_draws", data.marker_draws)
        if outcomes:
            readings = _outcomes(diet, "alice", 7)
            replace_table(conn, "biometrics", readings)
            daily = readings.filter(pl.col("scale").is_not_null())
            effects = daily_outcome_effects(daily, diet)
            # Someone with no diary or draws (no page): their tests are not read.
            ghost = effects.head(1).with_columns(person_id=pl.lit("ghost"))
            replace_table(conn, "daily_effects", pl.concat([effects, ghost]))
    return wh


def _figure(page: str, div_id: str) -> dict[str, object]:
    """The figure JSON plotly.io wrote into the page for `div_id`."""
    match = re.search(
        r'Plotly\.newPlot\(\s*"' + div_id + r'",\s*(\[.*?\]),\s*(\{.*?\}),\s*\{"displaylogo"',
        page,
        re.S,
    )
    assert match, div_id
    return {"data": json.loads(match[1]), "layout": json.loads(match[2])}


def test_page_shows_outcomes_on_the_timeline_axis_from_a_real_warehouse(tmp_path: Path) -> None:
    loaded = everyone_in_frames(
        load_dashboard_inputs(_warehouse(tmp_path / "wh.duckdb", outcomes=True))
    )
    assert set(loaded.biometrics["metric"]) == {"bloating", "resting_hr"}  # no weight
    assert set(loaded.daily_effects["person_id"]) == {"alice"}
    assert "daily_effects" in loaded.run_info["upstream"]
    write_dashboards(tmp_path / "out", loaded, workers=1)
    page = (tmp_path / "out" / person_page_name("alice")).read_text(encoding="utf-8")
    assert 'id="outcomes"' in page
    panel, timeline = _figure(page, "outcomes"), _figure(page, "timeline")
    # One time axis: the panel's range is the timeline's (its bottom axis, which the top follows).
    assert panel["layout"]["xaxis"]["range"] == timeline["layout"]["xaxis2"]["range"]
    assert len(panel["data"]) == 4
    text = re.sub(r"<[^>]+>", " ", page)
    # The planted effect is found, in the outcome's own units, at its lag.
    assert re.search(
        r"Bloating \d\.\d+ points higher \(95% CI [\d.]+ to [\d.]+\) with one extra serving a "
        r"day of high-FODMAP food on that day and each of the 3 days before; largest the day "
        r"after \(lag 1\)",
        text,
    ), text[text.find("Foods and daily") :][:2000]
    assert "What the data can answer next:" in text
    assert re.search(r"(Already enough:|About \d+ more weeks?) [^.]*change of 2 bpm", text)
    assert "association, not causation" in text


def test_page_without_outcomes_has_no_panel_and_no_error(tmp_path: Path) -> None:
    loaded = everyone_in_frames(
        load_dashboard_inputs(_warehouse(tmp_path / "wh.duckdb", outcomes=False))
    )
    assert loaded.biometrics.is_empty() and loaded.daily_effects.is_empty()
    write_dashboards(tmp_path / "out", loaded, workers=1)
    page = (tmp_path / "out" / person_page_name("alice")).read_text(encoding="utf-8")
    assert 'id="outcomes"' not in page and 'id="daily-outcomes"' not in page
    assert "Daily symptoms and wearable signals" not in page
    timeline = _figure(page, "timeline")
    assert "range" not in timeline["layout"]["xaxis2"]  # fits its own data, as before


def test_a_persons_new_outcome_reading_or_test_renders_their_page_only(
    tmp_path: Path,
    warehouse: Warehouse,
) -> None:
    def with_outcomes() -> object:
        data = make_inputs()
        readings = pl.concat([_outcomes(data.diet_daily, p, k) for k, p in enumerate(PEOPLE)])
        data.biometrics = readings
        data.daily_effects = pl.DataFrame(
            [_row(person_id=p) for p in PEOPLE] + [_row(person_id=p, measure="resting_hr",
             scale="unit", unit="bpm", se=1.0) for p in PEOPLE]
        )  # fmt: skip
        return data

    out = tmp_path / "out"
    assert nightly(warehouse, out, with_outcomes()) == ALL_PAGES
    assert nightly(warehouse, out, with_outcomes()) == set()
    reading = with_outcomes()
    with_person(reading, "biometrics", PEOPLE[0], pl.col("value") + 1)
    assert nightly(warehouse, out, reading) == {person_page_name(PEOPLE[0])}
    test = with_outcomes()
    with_person(test, "biometrics", PEOPLE[0], pl.col("value") + 1)
    with_person(test, "daily_effects", PEOPLE[1], pl.col("se") * 2)
    assert nightly(warehouse, out, test) == {person_page_name(PEOPLE[1])}
    page = (out / person_page_name(PEOPLE[1])).read_text(encoding="utf-8")
    assert "Daily symptoms and wearable signals" in page


def test_measure_names_inside_a_sentence_keep_acronyms_and_brands() -> None:
    assert measure_in_sentence("bloating") == "bloating"
    assert measure_in_sentence("mood") == "mood"
    assert measure_in_sentence("hrv_rmssd") == "heart-rate variability (RMSSD)"
    assert measure_in_sentence("oura_readiness_score") == "Oura readiness score"
