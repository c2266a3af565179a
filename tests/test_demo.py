"""The seeded demo generator: file formats, determinism, and the truth it plants.

Everything here reads the generated files back with Python's csv module (not with the pipeline's
adapters), so these tests pin down what the demo promises independently of the pipeline.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import re
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipelines import demo
from pipelines.demo import DEMO_PEOPLE, demo_truth, generate_demo

CATEGORY_LABELS = {
    "Dairy and Egg Products",
    "Vegetables and Vegetable Products",
    "Beverages",
    "Baked Products",
    "Sweets",
    "Fats and Oils",
    "Legumes and Legume Products",
    "Fruits and Fruit Juices",
    "Nut and Seed Products",
    "Finfish and Shellfish Products",
    "Beef Products",
    "Sausages and Luncheon Meats",
    "Cereal Grains and Pasta",
    "Snacks",
    "Fast Foods",
    "Breakfast Cereals",
    "Soups, Sauces, and Gravies",
    "Poultry Products",
}
AMOUNT_RE = re.compile(r"^(\d+\.\d{2}) (g|fl oz)$")
TIME_RE = re.compile(r"^(1[0-2]|[1-9]):[0-5]\d (AM|PM)$")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tmp_path_factory.mktemp("demo42")
    generate_demo(project, seed=42)
    return project / "data" / "raw" / "demo"


def servings_path(root: Path, person: str) -> Path:
    return root / "cronometer" / person / "servings.csv"


def labs_path(root: Path, person: str) -> Path:
    return root / "labs" / f"{person}_labs.csv"


def read_servings(root: Path, person: str) -> list[dict[str, str]]:
    with servings_path(root, person).open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def read_labs(root: Path, person: str) -> list[dict[str, str]]:
    with labs_path(root, person).open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def grams_of(amount: str) -> float:
    m = AMOUNT_RE.match(amount)
    assert m, amount
    qty = float(m.group(1))
    return qty * demo.FL_OZ_GRAMS if m.group(2) == "fl oz" else qty


def reported_mg_l(row: dict[str, str]) -> float | None:
    if row["Result"].startswith("<"):
        return None
    value = float(row["Result"])
    return value * 10 if row["Units"] == "mg/dL" else value


# --------------------------------------------------------------------------------------------
# Files and determinism


def test_writes_exactly_the_promised_files(tmp_path: Path) -> None:
    paths = generate_demo(tmp_path)
    root = tmp_path / "data" / "raw" / "demo"
    expected = [servings_path(root, p) for p in DEMO_PEOPLE] + [
        labs_path(root, p) for p in DEMO_PEOPLE
    ]
    expected += [root / "bearable" / p / demo.BEARABLE_FILE for p in DEMO_PEOPLE]
    expected += [root / "oura" / p / demo.OURA_FILE for p in DEMO_PEOPLE]
    assert paths == expected
    assert sorted(p for p in root.rglob("*") if p.is_file()) == sorted(expected)


def test_same_seed_is_byte_identical_and_other_seed_differs(tmp_path: Path) -> None:
    a = generate_demo(tmp_path / "a", seed=42)
    b = generate_demo(tmp_path / "b", seed=42)
    c = generate_demo(tmp_path / "c", seed=7)
    for pa, pb, pc in zip(a, b, c, strict=True):
        assert pa.read_bytes() == pb.read_bytes()
        assert pa.read_bytes() != pc.read_bytes()


def test_rerun_does_not_touch_unchanged_files(tmp_path: Path) -> None:
    paths = generate_demo(tmp_path)
    before = [p.stat().st_mtime_ns for p in paths]
    generate_demo(tmp_path)
    assert [p.stat().st_mtime_ns for p in paths] == before


def test_demo_truth_is_the_seed_42_truth() -> None:
    from pipelines.demo import DEMO_TRUTH

    assert DEMO_TRUTH == demo_truth(42)
    assert DEMO_TRUTH["effects"]["fermented_servings"]["pct_per_serving"] == pytest.approx(-25.0)
    assert DEMO_TRUTH["effects"]["ultra_processed_servings"]["pct_per_serving"] == pytest.approx(
        30.0
    )
    assert DEMO_TRUTH["effects"]["fermented_servings"]["window_days"] == 28
    assert DEMO_TRUTH["null_features"] == [
        "legumes_servings",
        "fruit_servings",
        "nuts_seeds_servings",
    ]
    assert DEMO_TRUTH["period"] == ("2024-11-04", "2026-10-25")
    assert set(DEMO_TRUTH["people"]) == set(DEMO_PEOPLE)


@pytest.mark.parametrize("seed", [7])
def test_every_seed_plants_the_same_kinds_of_quirk(seed: int) -> None:
    truth = demo_truth(seed)
    assert {p for p, _ in truth["acute_draws"]} == set(DEMO_PEOPLE)
    assert {p for p, _ in truth["washout_draws"]} == set(DEMO_PEOPLE)
    assert [p for p, _ in truth["censored"]] == ["carol"]
    assert [p for p, _ in truth["mg_dl"]] == ["bob"]
    for person in DEMO_PEOPLE:
        analysable = [d for d in truth["people"][person]["draws"] if d["chronic_analysable"]]
        assert len(analysable) >= 10


# --------------------------------------------------------------------------------------------
# Cronometer servings export


def test_servings_have_bom_crlf_and_exact_header(demo_dir: Path) -> None:
    for person in DEMO_PEOPLE:
        raw = servings_path(demo_dir, person).read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")
        assert raw.endswith(b"\r\n")
        assert raw.count(b"\n") == raw.count(b"\r\n")
        header = raw[3:].split(b"\r\n", 1)[0].decode()
        assert header == ",".join(demo.SERVINGS_HEADER)
        assert header == (
            "Day,Time,Group,Food Name,Amount,Energy (kcal),Alcohol (g),Caffeine (mg),Carbs (g),"
            "Fiber (g),Sugars (g),Fat (g),Saturated (g),Protein (g),Sodium (mg),Category"
        )


def test_food_names_with_commas_are_quoted_and_round_trip(demo_dir: Path) -> None:
    for person in DEMO_PEOPLE:
        text = servings_path(demo_dir, person).read_bytes().decode("utf-8-sig")
        assert '"Yogurt, Greek, Plain, Whole Milk"' in text
        assert ",Kimchi," in text  # no comma, so no quotes
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert all(len(r) == len(demo.SERVINGS_HEADER) for r in rows)
        names = {r[3] for r in rows[1:]}
        assert names <= set(demo.FOODS)
        assert {"Beef, Ground, 85% Lean, Cooked", "Soups, Sauces, and Gravies"} & (
            names | {r[15] for r in rows[1:]}
        )


def test_servings_cells_follow_cronometer_quirks(demo_dir: Path) -> None:
    for person in DEMO_PEOPLE:
        rows = read_servings(demo_dir, person)
        assert {r["Group"] for r in rows} == set(demo.GROUPS)
        assert {r["Category"] for r in rows} <= CATEGORY_LABELS
        for r in rows:
            date.fromisoformat(r["Day"])
            assert r["Time"] == "" or TIME_RE.match(r["Time"]), r["Time"]
            assert AMOUNT_RE.match(r["Amount"]), r["Amount"]
        blank_time = sum(r["Time"] == "" for r in rows) / len(rows)
        assert 0.25 < blank_time < 0.42
        fl_oz = [r for r in rows if r["Amount"].endswith("fl oz")]
        assert 3 <= len(fl_oz) <= 80
        assert all(
            r["Amount"] == "8.00 fl oz" and r["Food Name"] in demo.FL_OZ_DRINKS for r in fl_oz
        )
        assert any(r["Caffeine (mg)"] == "" for r in rows)
        assert any(r["Sodium (mg)"] == "" for r in rows)
        assert all(r["Energy (kcal)"] != "" for r in rows)


def test_nutrients_come_from_the_per_100g_table(demo_dir: Path) -> None:
    rows = read_servings(demo_dir, "alice")
    for r in rows[:500]:
        food = demo.FOODS[r["Food Name"]]
        grams = grams_of(r["Amount"])
        assert float(r["Energy (kcal)"]) == pytest.approx(food.kcal * grams / 100, abs=0.006)
        assert float(r["Fiber (g)"]) == pytest.approx(food.fiber_g * grams / 100, abs=0.006)
        assert r["Category"] == food.category_label
    wine = next(r for r in rows if r["Food Name"] == "Red Wine")
    assert float(wine["Alcohol (g)"]) > 10


def test_logging_gaps_and_energy(demo_dir: Path) -> None:
    truth = demo_truth(42)
    n_days = (demo.PERIOD_END - demo.PERIOD_START).days + 1
    for person in DEMO_PEOPLE:
        rows = read_servings(demo_dir, person)
        kcal: dict[str, float] = defaultdict(float)
        count: dict[str, int] = defaultdict(int)
        for r in rows:
            kcal[r["Day"]] += float(r["Energy (kcal)"])
            count[r["Day"]] += 1
        assert len(kcal) >= 365
        assert min(kcal) >= demo.PERIOD_START.isoformat()
        assert max(kcal) <= demo.PERIOD_END.isoformat()
        t = truth["people"][person]
        all_days = {(demo.PERIOD_START + timedelta(d)).isoformat() for d in range(n_days)}
        assert all_days - set(kcal) == set(t["unlogged_days"])
        assert 0.06 < len(t["unlogged_days"]) / n_days < 0.10
        assert 0.02 < len(t["partial_days"]) / n_days < 0.04
        for day in t["partial_days"]:
            assert 1 <= count[day] <= 2 and kcal[day] < 800
        full = np.array([kcal[d] for d in kcal if d not in set(t["partial_days"])])
        assert full.min() >= 1600
        assert np.mean((full >= 1600) & (full <= 2800)) > 0.98
        assert full.max() < 3500


# --------------------------------------------------------------------------------------------
# Lab results


def test_lab_files_look_like_a_portal_export(demo_dir: Path) -> None:
    for person in DEMO_PEOPLE:
        assert labs_path(demo_dir, person).read_text().splitlines()[0] == (
            "Patient,Collected,Test,Result,Units,Reference Range,Flag"
        )
        rows = read_labs(demo_dir, person)
        assert {r["Patient"] for r in rows} == {person}
        assert {r["Test"] for r in rows} <= {"C-Reactive Protein, High Sensitivity", "CRP"}
        assert sum(r["Test"] == "CRP" for r in rows) < len(rows) / 3
        for r in rows:
            at = datetime.strptime(r["Collected"], "%Y-%m-%d %H:%M")
            assert 6 <= at.hour < 12
            value = reported_mg_l(r)
            assert r["Flag"] == ("H" if value is not None and value > 3.0 else "")
            # Standard CRP (infections and their follow-ups) has a standard range: the pipeline
            # reads it as marker crp, never pooled with the routine hs-CRP draws.
            expected = (
                "0.0-0.3"
                if r["Units"] == "mg/dL"
                else "0.0-5.0"
                if r["Test"] == "CRP"
                else "0.0-3.0"
            )
            assert r["Reference Range"] == expected
        units = [r["Units"] for r in rows]
        assert units.count("mg/L") >= len(units) - 1


def test_draws_cover_the_period_every_two_to_six_weeks(demo_dir: Path) -> None:
    washout = set(demo_truth(42)["washout_draws"])
    for person in DEMO_PEOPLE:
        days = [
            date.fromisoformat(r["Collected"][:10])
            for r in read_labs(demo_dir, person)
            if (person, r["Collected"][:10]) not in washout
        ]
        assert days == sorted(days)
        gaps = [(b - a).days for a, b in itertools.pairwise(days)]
        assert all(14 <= g <= 42 for g in gaps), gaps
        assert (days[0] - demo.PERIOD_START).days <= 42
        assert (demo.PERIOD_END - days[-1]).days <= 42


def test_acute_washout_censored_and_mg_dl_rows_exist_as_the_truth_says(demo_dir: Path) -> None:
    truth = demo_truth(42)
    labs = {(p, r["Collected"][:10]): r for p in DEMO_PEOPLE for r in read_labs(demo_dir, p)}
    acute = truth["acute_draws"]
    assert {p for p, _ in acute} == set(DEMO_PEOPLE)
    infections = [d for d in truth["acute_details"] if d["kind"] == "acute"]
    for person in DEMO_PEOPLE:
        # One or two planted infections; a routine draw may also cross 10 mg/L by chance.
        assert 1 <= sum(d["person"] == person for d in infections) <= 2
    for d in infections:
        value = reported_mg_l(labs[(d["person"], d["date"])])
        assert value is not None and 15 <= value <= 80
    for key in acute:
        value = reported_mg_l(labs[key])
        assert value is not None and value > 10
    # Every person has an infection followed 5-12 days later by a still-elevated draw that only
    # a post-acute washout removes.
    for person in DEMO_PEOPLE:
        followups = [
            (a, w)
            for p, a in acute
            for q, w in truth["washout_draws"]
            if p == q == person and 5 <= (date.fromisoformat(w) - date.fromisoformat(a)).days <= 12
        ]
        assert followups, person
        for _, w in followups:
            value = reported_mg_l(labs[(person, w)])
            assert value is not None and 5 <= value < 10
    assert set(truth["acute_draws"]) == {k for k, r in labs.items() if (reported_mg_l(r) or 0) > 10}
    # Infections sit where the diet already looks inflammatory, so leaving them in inflates
    # both planted effects.
    assert all(
        "low fermented" in d["note"] or "high ultra-processed" in d["note"] for d in infections
    )
    assert len(truth["censored"]) == 1
    (censored,) = truth["censored"]
    assert censored[0] == "carol" and labs[censored]["Result"] == "<0.3"
    assert len(truth["mg_dl"]) == 1
    (mg_dl,) = truth["mg_dl"]
    assert mg_dl[0] == "bob"
    assert labs[mg_dl]["Units"] == "mg/dL" and re.match(r"^\d\.\d\d$", labs[mg_dl]["Result"])


# --------------------------------------------------------------------------------------------
# The planted effect, recomputed from the files


def exposure_table(root: Path) -> list[dict[str, Any]]:
    """One row per analysable draw: person, ln CRP, and 28-day means from LOGGED rows."""
    truth = demo_truth(42)
    excluded = set(truth["acute_draws"]) | set(truth["washout_draws"]) | set(truth["censored"])
    category_of = {f: c for c, foods in demo.PLANTED_FOODS.items() for f in foods}
    out = []
    for person in DEMO_PEOPLE:
        daily: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for r in read_servings(root, person):
            day = daily[date.fromisoformat(r["Day"])]
            cat = category_of.get(r["Food Name"])
            if cat is not None:
                day[cat] += grams_of(r["Amount"]) / demo.SERVING_GRAMS[cat]
        for r in read_labs(root, person):
            drawn = date.fromisoformat(r["Collected"][:10])
            if (person, drawn.isoformat()) in excluded:
                continue
            window = [drawn - timedelta(days=k) for k in range(1, 29)]
            logged = [daily[d] for d in window if d in daily]
            value = reported_mg_l(r)
            assert value is not None
            out.append(
                {
                    "person": person,
                    "ln_crp": math.log(value),
                    **{c: sum(d[c] for d in logged) / len(logged) for c in demo.PLANTED},
                }
            )
    return out


def fit(rows: list[dict[str, Any]], features: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """OLS of ln CRP on features with one intercept per person: (coefficients, standard errors)."""
    people = sorted({r["person"] for r in rows})
    x = np.array(
        [[r[f] for f in features] + [float(r["person"] == p) for p in people] for r in rows]
    )
    y = np.array([r["ln_crp"] for r in rows])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ beta
    sigma2 = resid @ resid / (len(y) - x.shape[1])
    se = np.sqrt(np.diag(sigma2 * np.linalg.inv(x.T @ x)))
    return beta[: len(features)], se[: len(features)]


def test_planted_effects_are_recovered_from_the_logged_files(demo_dir: Path) -> None:
    rows = exposure_table(demo_dir)
    assert len(rows) >= 40
    beta, se = fit(rows, ["fermented", "ultra_processed"])
    assert beta[0] < 0, beta
    assert beta[1] > 0, beta
    # Loose: logging gaps attenuate a little, but the truth should sit within the 99% CI.
    assert abs(beta[0] - math.log(0.80)) < 2.6 * se[0]
    assert abs(beta[1] - math.log(1.15)) < 2.6 * se[1]


def test_true_exposures_reproduce_the_planted_model() -> None:
    truth = demo_truth(42)
    rows = [
        {
            "person": p,
            "ln_crp": math.log(d["true_crp_mg_l"]),
            "fermented": d["true_fermented_servings_28d"],
            "ultra_processed": d["true_ultra_processed_servings_28d"],
        }
        for p in DEMO_PEOPLE
        for d in truth["people"][p]["draws"]
        if d["chronic_analysable"]
    ]
    beta, se = fit(rows, ["fermented", "ultra_processed"])
    assert abs(beta[0] - math.log(0.80)) < 2.6 * se[0]
    assert abs(beta[1] - math.log(1.15)) < 2.6 * se[1]


def test_null_foods_are_not_entangled_with_the_planted_ones(demo_dir: Path) -> None:
    rows = exposure_table(demo_dir)
    for person in DEMO_PEOPLE:
        mine = [r for r in rows if r["person"] == person]
        for null in demo.NULL_CATEGORIES:
            for effect in ("fermented", "ultra_processed"):
                r = np.corrcoef([m[null] for m in mine], [m[effect] for m in mine])[0, 1]
                assert abs(r) < 0.4, (person, null, effect, r)
