"""Deterministic, seeded demo data: three people's Cronometer diaries, CRP lab results, Bearable
symptom logs and Oura exports.

The demo exists so that `gutsignal run` has something real-looking to chew on and so that tests can
check the pipeline recovers effects that were planted on purpose. Everything below is drawn from one
`numpy.random.Generator(PCG64(seed))`, so the same seed gives byte-identical files.

Generative model (per person, one day at a time over PERIOD_START..PERIOD_END):

1. Habits. Five gut-food categories follow independent "habit phases": every 3 to 9 weeks the
   person's mean daily servings of the category jumps to a different level drawn from
   HABIT_LEVELS. Day-to-day intake is that level times a Gamma(3, 1/3) factor capped at 2.2
   (CV about 55 %), then turned into concrete portions of the category's foods. The phase
   sequences are redrawn (rejection sampling) until, at the person's blood draws, the 28-day
   means of the effect and null categories are nearly uncorrelated (|r| < 0.25), so every
   planted effect and every null is identifiable.
2. Base diet. Breakfast, lunch and dinner templates of everyday foods plus coffee, tea and wine.
   The solid base foods are scaled so the day's energy lands on a person-specific target
   (1,650 to 2,750 kcal): people who eat more pizza eat less rice, as real people do. When the
   planted foods alone would overshoot, a portion switches to its category's lightest food (same
   grams, so the exposure is unchanged); over 98 % of fully logged days land in 1,600-2,800 kcal.
3. Logging. About 8 % of days are not logged at all (a few multi-day gaps plus single days) and
   about 3 % are partial (one or two small entries under 800 kcal). The person still ate normally
   on those days: the true exposure counts everything eaten, logged or not.
4. CRP. Draws every 15 to 42 days (morning). At a chronic draw on day t::

       ln CRP = ln(baseline) + ln(0.75) * F28 + ln(1.30) * U28 + eps,   eps ~ N(0, 0.385)

   where F28 and U28 are the mean daily fermented and ultra-processed servings actually eaten over
   days t-28 .. t-1. Legumes, fruit and nuts/seeds have no effect (negative controls).
5. Quirks. One or two infections per person (CRP 15-80 mg/L) placed at draws where fermented
   intake was low or ultra-processed intake high, each person's first one followed 5-12 days later
   by a still-elevated (5-9 mg/L) draw that only a post-acute washout removes; one censored carol
   result ("<0.3"); one bob result in mg/dL; a few "8.00 fl oz" amounts; blank Time, Caffeine and
   Sodium cells; UTF-8 BOM and CRLF in the Cronometer files.
6. Daily outcomes (outcomes.py; docs/DEMO.md "Daily outcomes"). A Bearable log (bloating and
   stomach pain on 0-4, mood, bowel movements with Bristol types) and an Oura trends export per
   person, with two planted effects on what was actually eaten::

       bloating*   = trait + 0.15 (F_t - mean F) + 0.25 (F_(t-1) - mean F) + weekly + AR(1)
       resting HR  = trait + 3.0 A_(t-1) + weekly + AR(1)

   F the day's high-FODMAP servings (100 g of HIGH_FODMAP_FOODS), A its standard drinks (14 g
   ethanol); bloating is reported rounded and clipped to 0-4. Nothing else depends on food. Days
   go unlogged (Bearable) and nights unmeasured (Oura). Drawn last from each person's stream, so
   the diary and labs are unchanged by them.

`DEMO_TRUTH` (seed 42) and `demo_truth(seed)` describe what was planted and what was generated;
docs/DEMO.md explains it for humans.

The package follows that flow: catalog.py (the fixed world), diary.py (steps 1-3 and the
diary's quirks), labs.py (steps 4-5 and the lab quirks), outcomes.py (step 6), simulate.py (one
seed through all of it, in a fixed order); this module writes the files and the truth.
"""

from __future__ import annotations

import copy
import math
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.demo.catalog import (
    ACUTE_THRESHOLD_MG_L,
    BLOATING_PER_FODMAP_SERVING,
    CENSOR_LIMIT_MG_L,
    CRP_TEST,
    DEFAULT_SEED,
    DEMO_PEOPLE,
    EPS_SD,
    EXTRA_FOODS,
    FERMENTED_RATIO,
    FL_OZ_DRINKS,
    FL_OZ_GRAMS,
    FOODS,
    GROUPS,
    HABIT_LEVELS,
    HIGH_FODMAP_FOODS,
    HS_CRP_TEST,
    LABS_HEADER,
    N_DAYS,
    NULL_CATEGORIES,
    PEOPLE,
    PERIOD_END,
    PERIOD_START,
    PHASE_DAYS,
    PLANTED,
    PLANTED_FOODS,
    RESTING_HR_PER_DRINK,
    SERVING_GRAMS,
    SERVINGS_HEADER,
    STANDARD_CRP_RANGE,
    ULTRA_PROCESSED_RATIO,
    WASHOUT_DAYS,
    WINDOW_DAYS,
    Food,
    Person,
)
from pipelines.demo.simulate import simulate

# The exports' own file names, dated the day after the period ends (the day they were taken).
_EXPORTED = PERIOD_END + timedelta(days=1)
BEARABLE_FILE = f"Bearable App - Data Export. Generated {_EXPORTED:%d-%m-%Y}.csv"
OURA_FILE = f"oura_{_EXPORTED:%Y-%m-%d}_trends.csv"

__all__ = [
    "ACUTE_THRESHOLD_MG_L",
    "BEARABLE_FILE",
    "CENSOR_LIMIT_MG_L",
    "CRP_TEST",
    "DEFAULT_SEED",
    "DEMO_PEOPLE",
    "DEMO_TRUTH",
    "EPS_SD",
    "EXTRA_FOODS",
    "FERMENTED_RATIO",
    "FL_OZ_DRINKS",
    "FL_OZ_GRAMS",
    "FOODS",
    "GROUPS",
    "HABIT_LEVELS",
    "HS_CRP_TEST",
    "LABS_HEADER",
    "NULL_CATEGORIES",
    "N_DAYS",
    "OURA_FILE",
    "PEOPLE",
    "PERIOD_END",
    "PERIOD_START",
    "PHASE_DAYS",
    "PLANTED",
    "PLANTED_FOODS",
    "SERVINGS_HEADER",
    "SERVING_GRAMS",
    "STANDARD_CRP_RANGE",
    "ULTRA_PROCESSED_RATIO",
    "WASHOUT_DAYS",
    "WINDOW_DAYS",
    "Food",
    "Person",
    "demo_truth",
    "generate_demo",
]


def generate_demo(project_dir: Path, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write the demo's raw files under project_dir/data/raw/demo/ and return their paths.

    Deterministic: same seed -> byte-identical files. A file whose bytes would not change is left
    untouched, so re-running does not wake a new-file sensor.
    """
    demo = simulate(seed)
    root = Path(project_dir) / "data" / "raw" / "demo"
    planned: list[tuple[Path, bytes]] = [
        (root / "cronometer" / pid / "servings.csv", demo[pid].servings_csv) for pid in DEMO_PEOPLE
    ]
    planned += [(root / "labs" / f"{pid}_labs.csv", demo[pid].labs_csv) for pid in DEMO_PEOPLE]
    planned += [
        (root / "bearable" / pid / BEARABLE_FILE, demo[pid].bearable_csv) for pid in DEMO_PEOPLE
    ]
    planned += [(root / "oura" / pid / OURA_FILE, demo[pid].oura_csv) for pid in DEMO_PEOPLE]
    for path, payload in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.is_file() and path.read_bytes() == payload):
            path.write_bytes(payload)
    return [path for path, _ in planned]


def demo_truth(seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """What was planted and generated for `seed` (a fresh copy; see DEMO_TRUTH for seed 42)."""
    demo = simulate(seed)
    people = {pid: demo[pid].truth for pid in DEMO_PEOPLE}

    def pairs(key: str) -> list[tuple[str, str]]:
        return [(pid, d["date"]) for pid in DEMO_PEOPLE for d in people[pid]["draws"] if d[key]]

    return copy.deepcopy(
        {
            "seed": seed,
            "period": (PERIOD_START.isoformat(), PERIOD_END.isoformat()),
            "effects": {
                "fermented_servings": {
                    "window_days": WINDOW_DAYS,
                    "pct_per_serving": round(100 * (FERMENTED_RATIO - 1), 6),
                    "log_slope": math.log(FERMENTED_RATIO),
                },
                "ultra_processed_servings": {
                    "window_days": WINDOW_DAYS,
                    "pct_per_serving": round(100 * (ULTRA_PROCESSED_RATIO - 1), 6),
                    "log_slope": math.log(ULTRA_PROCESSED_RATIO),
                },
            },
            "null_features": [f"{c}_servings" for c in NULL_CATEGORIES],
            # Daily outcomes (outcomes.py): per extra daily serving, by lag in days; "primary" is
            # the sum over lags 0-3, what the daily model's one test per food estimates.
            "daily_effects": {
                "bloating": {
                    "scale": "0-4",
                    "feature": "high_fodmap_servings",
                    "source": "demo_bearable",
                    "per_lag": dict(BLOATING_PER_FODMAP_SERVING),
                    "primary": sum(BLOATING_PER_FODMAP_SERVING.values()),
                },
                "resting_hr": {
                    "scale": "unit",
                    "feature": "alcohol_servings",
                    "source": "demo_oura",
                    "per_lag": dict(RESTING_HR_PER_DRINK),
                    "primary": sum(RESTING_HR_PER_DRINK.values()),
                },
            },
            "high_fodmap_foods": sorted(HIGH_FODMAP_FOODS),
            "noise_sd_log": EPS_SD,
            # Routine draws are hs-CRP; infection draws and their follow-ups standard CRP, whose
            # acute values start the washout of the hs-CRP series too.
            "marker": "hscrp",
            "acute_marker": "crp",
            "acute_threshold_mg_l": ACUTE_THRESHOLD_MG_L,
            "washout_days": WASHOUT_DAYS,
            "serving_grams": dict(SERVING_GRAMS),
            "habit_levels": {c: list(v) for c, v in HABIT_LEVELS.items()},
            "planted_categories": {
                name: next((c for c, foods in PLANTED_FOODS.items() if name in foods), None)
                for name in FOODS
            },
            "extra_foods": list(EXTRA_FOODS),
            "fl_oz_grams": FL_OZ_GRAMS,
            "acute_draws": pairs("acute"),
            "washout_draws": pairs("washout"),
            "censored": pairs("censored"),
            "mg_dl": pairs("mg_dl"),
            "acute_details": [
                {"person": pid, **d}
                for pid in DEMO_PEOPLE
                for d in people[pid]["draws"]
                if d["acute"]
            ],
            "people": people,
        }
    )


if TYPE_CHECKING:
    DEMO_TRUTH: dict[str, Any]


def __getattr__(name: str) -> Any:
    # DEMO_TRUTH is built on first use (PEP 562) so importing this module stays instant.
    if name == "DEMO_TRUTH":
        truth = demo_truth(DEFAULT_SEED)
        globals()["DEMO_TRUTH"] = truth
        return truth
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
