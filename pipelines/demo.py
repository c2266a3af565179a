"""Deterministic, seeded demo data: three people's Cronometer diaries and CRP lab results.

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

       ln CRP = ln(baseline) + ln(0.75) * F28 + ln(1.25) * U28 + eps,   eps ~ N(0, 0.385)

   where F28 and U28 are the mean daily fermented and ultra-processed servings actually eaten over
   days t-28 .. t-1. Legumes, fruit and nuts/seeds have no effect (negative controls).
5. Quirks. One or two infections per person (CRP 15-80 mg/L) placed at draws where fermented
   intake was low or ultra-processed intake high, each person's first one followed 5-12 days later
   by a still-elevated (5-9 mg/L) draw that only a post-acute washout removes; one censored carol
   result ("<0.3"); one bob result in mg/dL; a few "8.00 fl oz" amounts; blank Time, Caffeine and
   Sodium cells; UTF-8 BOM and CRLF in the Cronometer files.

`DEMO_TRUTH` (seed 42) and `demo_truth(seed)` describe what was planted and what was generated;
docs/DEMO.md explains it for humans.
"""

from __future__ import annotations

import bisect
import copy
import csv
import functools
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

DEFAULT_SEED = 42
DEMO_PEOPLE: tuple[str, ...] = ("alice", "bob", "carol")
PERIOD_START = date(2024, 11, 4)
PERIOD_END = date(2026, 10, 25)
N_DAYS = (PERIOD_END - PERIOD_START).days + 1

FL_OZ_GRAMS = 29.5735
WINDOW_DAYS = 28
FERMENTED_RATIO = 0.75  # CRP multiplier per daily serving of fermented food
ULTRA_PROCESSED_RATIO = 1.30  # CRP multiplier per daily serving of ultra-processed food
EPS_SD = 0.385  # ln-scale SD: within-person CV of about 40 %
ACUTE_THRESHOLD_MG_L = 10.0
WASHOUT_DAYS = 14
CENSOR_LIMIT_MG_L = 0.3

SERVINGS_HEADER: tuple[str, ...] = (
    "Day",
    "Time",
    "Group",
    "Food Name",
    "Amount",
    "Energy (kcal)",
    "Alcohol (g)",
    "Caffeine (mg)",
    "Carbs (g)",
    "Fiber (g)",
    "Sugars (g)",
    "Fat (g)",
    "Saturated (g)",
    "Protein (g)",
    "Sodium (mg)",
    "Category",
)
LABS_HEADER: tuple[str, ...] = (
    "Patient",
    "Collected",
    "Test",
    "Result",
    "Units",
    "Reference Range",
    "Flag",
)
HS_CRP_TEST = "C-Reactive Protein, High Sensitivity"
# Infection draws are a standard CRP ordered by a GP: no method in the name, and a standard
# reference range, so the pipeline reads them as marker `crp` (never pooled with hs-CRP).
CRP_TEST = "CRP"
STANDARD_CRP_RANGE = "0.0-5.0"
GROUPS: tuple[str, ...] = ("Breakfast", "Lunch", "Dinner", "Snacks")


@dataclass(frozen=True)
class Food:
    """One food as Cronometer would export it: nutrients per 100 g, None = not reported."""

    name: str
    category_label: str
    kcal: float
    alcohol_g: float
    caffeine_mg: float | None
    carbs_g: float
    fiber_g: float
    sugars_g: float
    fat_g: float
    sat_fat_g: float
    protein_g: float
    sodium_mg: float | None
    portion_g: float  # a typical single portion, used when turning servings into entries
    drink: bool = False


_D, _V, _B, _L = (
    "Dairy and Egg Products",
    "Vegetables and Vegetable Products",
    "Beverages",
    "Legumes and Legume Products",
)
_FR, _N, _C = "Fruits and Fruit Juices", "Nut and Seed Products", "Cereal Grains and Pasta"

# Values per 100 g, rounded from USDA SR Legacy / FoodData Central entries of the same foods.
# fmt: off
FOODS: dict[str, Food] = {f.name: f for f in (
    # name, Category, kcal, alcohol, caffeine, carbs, fiber, sugars, fat, sat, protein, sodium, g
    Food("Kefir, Plain, Lowfat", _D, 41, 0, 0, 4.48, 0, 4.6, 0.93, 0.6, 3.79, 40, 240, True),
    Food("Yogurt, Greek, Plain, Whole Milk", _D, 97, 0, 0, 3.98, 0, 4.0, 5.0, 2.4, 9.0, 35, 170),
    Food("Sauerkraut, Canned", _V, 19, 0, 0, 4.28, 2.9, 1.78, 0.14, 0.03, 0.91, 661, 70),
    Food("Kimchi", _V, 15, 0, None, 2.4, 1.6, 1.06, 0.51, 0.07, 1.1, 498, 75),
    Food("Miso", _L, 198, 0, None, 25.37, 5.4, 6.2, 6.01, 1.02, 12.79, 3728, 20),
    Food("Cola, Regular", _B, 37, 0, 9.6, 9.56, 0, 8.97, 0.02, 0, 0.07, 4, 250, True),
    Food("Potato Chips, Salted", "Snacks", 536, 0, 0, 52.9, 4.4, 0.28, 34.6, 3.4, 6.56, 525, 45),
    Food("Frankfurter, Beef", "Sausages and Luncheon Meats", 322, 0, 0, 2.71, 0, 1.09, 29.36,
         11.69, 11.24, 1090, 90),
    Food("Instant Noodles, Ramen", "Soups, Sauces, and Gravies", 440, 0, None, 60.3, 2.3, 1.8,
         17.6, 7.9, 9.2, 1750, 85),
    Food("Chocolate Chip Cookies", "Baked Products", 488, 0, 10, 64.3, 2.4, 33.5, 24.3, 8.3, 5.0,
         340, 45),
    Food("Frozen Pizza, Pepperoni", "Fast Foods", 270, 0, None, 27.5, 2.0, 3.6, 13.0, 5.3, 11.0,
         640, 200),
    Food("Frosted Flakes Cereal", "Breakfast Cereals", 375, 0, 0, 89.5, 2.1, 35.7, 0.5, 0.1, 4.5,
         440, 40),
    Food("Lentils, Boiled", _L, 116, 0, 0, 20.13, 7.9, 1.8, 0.38, 0.05, 9.02, 2, 150),
    Food("Chickpeas, Canned, Drained", _L, 139, 0, None, 22.5, 7.6, 0.5, 2.77, 0.29, 7.05, 246,
         120),
    Food("Apple, Raw", _FR, 52, 0, 0, 13.81, 2.4, 10.39, 0.17, 0.03, 0.26, 1, 180),
    Food("Banana, Raw", _FR, 89, 0, 0, 22.84, 2.6, 12.23, 0.33, 0.11, 1.09, 1, 118),
    Food("Blueberries, Raw", _FR, 57, 0, 0, 14.49, 2.4, 9.96, 0.33, 0.03, 0.74, 1, 75),
    Food("Almonds, Raw", _N, 579, 0, 0, 21.55, 12.5, 4.35, 49.93, 3.8, 21.15, 1, 28),
    Food("Walnuts, English", _N, 654, 0, 0, 13.71, 6.7, 2.61, 65.21, 6.13, 15.23, 2, 28),
    Food("Oats, Rolled, Dry", _C, 379, 0, 0, 67.7, 10.1, 0.99, 6.52, 1.11, 13.15, 6, 50),
    Food("Brown Rice, Cooked", _C, 123, 0, 0, 25.58, 1.6, 0.24, 0.97, 0.26, 2.74, 4, 180),
    Food("White Rice, Cooked", _C, 130, 0, 0, 28.17, 0.4, 0.05, 0.28, 0.08, 2.69, 1, 180),
    Food("Pasta, Cooked", _C, 158, 0, 0, 30.86, 1.8, 0.56, 0.93, 0.18, 5.8, 1, 200),
    Food("Whole Wheat Bread", "Baked Products", 252, 0, 0, 42.71, 6.0, 4.41, 3.5, 0.72, 12.45,
         450, 70),
    Food("White Bread", "Baked Products", 266, 0, 0, 49.2, 2.7, 5.3, 3.29, 0.72, 7.64, 490, 60),
    Food("Sourdough Bread", "Baked Products", 272, 0, None, 51.88, 2.2, 2.6, 3.03, 0.64, 10.75,
         602, 80),
    Food("Broccoli, Boiled", _V, 35, 0, 0, 7.18, 3.3, 1.39, 0.41, 0.08, 2.38, 41, 120),
    Food("Spinach, Raw", _V, 23, 0, 0, 3.63, 2.2, 0.42, 0.39, 0.06, 2.86, 79, 50),
    Food("Carrots, Raw", _V, 41, 0, 0, 9.58, 2.8, 4.74, 0.24, 0.04, 0.93, 69, 80),
    Food("Salmon, Atlantic, Cooked", "Finfish and Shellfish Products", 206, 0, 0, 0, 0, 0, 12.35,
         2.5, 22.1, 61, 150),
    Food("Beef, Ground, 85% Lean, Cooked", "Beef Products", 250, 0, 0, 0, 0, 0, 15.0, 5.9, 25.9,
         72, 120),
    Food("Chicken Breast, Roasted", "Poultry Products", 165, 0, 0, 0, 0, 0, 3.57, 1.01, 31.02, 74,
         140),
    Food("Egg, Whole, Cooked", _D, 155, 0, 0, 1.12, 0, 1.12, 10.61, 3.27, 12.58, 124, 100),
    Food("Milk, 2% Fat", _D, 50, 0, 0, 4.8, 0, 5.06, 1.98, 1.26, 3.3, 47, 200, True),
    Food("Cheddar Cheese", _D, 403, 0, 0, 1.28, 0, 0.52, 33.14, 21.09, 24.9, 621, 30),
    Food("Coffee, Brewed", _B, 1, 0, 40, 0, 0, 0, 0.02, 0.002, 0.12, 2, 240, True),
    Food("Tea, Green, Brewed", _B, 1, 0, 12, 0, 0, 0, 0, 0, 0.22, None, 240, True),
    Food("Red Wine", _B, 85, 10.6, 0, 2.61, 0, 0.62, 0, 0, 0.07, None, 150, True),
    Food("Olive Oil", "Fats and Oils", 884, 0, 0, 0, 0, 0, 100, 13.81, 0, 2, 10),
)}
# fmt: on

# Foods whose grams count towards a planted (effect or null) category, with the pipeline's
# standard serving size (pipelines/data/serving_sizes.csv). Every other food is "base diet".
PLANTED_FOODS: dict[str, tuple[str, ...]] = {
    "fermented": (
        "Kefir, Plain, Lowfat",
        "Yogurt, Greek, Plain, Whole Milk",
        "Sauerkraut, Canned",
        "Kimchi",
        "Miso",
    ),
    "ultra_processed": (
        "Cola, Regular",
        "Potato Chips, Salted",
        "Frankfurter, Beef",
        "Instant Noodles, Ramen",
        "Chocolate Chip Cookies",
        "Frozen Pizza, Pepperoni",
        "Frosted Flakes Cereal",
    ),
    "legumes": ("Lentils, Boiled", "Chickpeas, Canned, Drained"),
    "fruit": ("Apple, Raw", "Banana, Raw", "Blueberries, Raw"),
    "nuts_seeds": ("Almonds, Raw", "Walnuts, English"),
}
PLANTED: tuple[str, ...] = tuple(PLANTED_FOODS)
SERVING_GRAMS: dict[str, float] = {
    "fermented": 150.0,
    "ultra_processed": 100.0,
    "legumes": 100.0,
    "fruit": 80.0,
    "nuts_seeds": 30.0,
}
HABIT_LEVELS: dict[str, tuple[float, ...]] = {
    "fermented": (0.0, 0.5, 1.2, 2.0, 3.0),
    "ultra_processed": (0.0, 0.5, 1.5, 2.5, 3.5),
    "legumes": (0.0, 0.3, 0.7, 1.2, 2.0),
    "fruit": (0.5, 1.0, 2.0, 3.0, 4.0),
    "nuts_seeds": (0.0, 0.3, 0.7, 1.0, 1.5),
}
PHASE_DAYS = (21, 63)  # inclusive range of a habit phase's length
NULL_CATEGORIES: tuple[str, ...] = ("legumes", "fruit", "nuts_seeds")
EXTRA_FOODS: tuple[str, ...] = (
    "Chicken Breast, Roasted",
    "Egg, Whole, Cooked",
    "Olive Oil",
    "Pasta, Cooked",
    "White Rice, Cooked",
)
FL_OZ_DRINKS: frozenset[str] = frozenset(
    {
        "Kefir, Plain, Lowfat",
        "Cola, Regular",
        "Milk, 2% Fat",
        "Coffee, Brewed",
        "Tea, Green, Brewed",
    }
)

# Which meals each planted food tends to be eaten at.
_PLANTED_GROUPS: dict[str, tuple[str, ...]] = {
    "Kefir, Plain, Lowfat": ("Breakfast", "Snacks"),
    "Yogurt, Greek, Plain, Whole Milk": ("Breakfast", "Snacks"),
    "Sauerkraut, Canned": ("Lunch", "Dinner"),
    "Kimchi": ("Lunch", "Dinner"),
    "Miso": ("Dinner",),
    "Cola, Regular": ("Lunch", "Snacks"),
    "Potato Chips, Salted": ("Lunch", "Snacks"),
    "Frankfurter, Beef": ("Lunch", "Dinner"),
    "Instant Noodles, Ramen": ("Lunch", "Dinner"),
    "Chocolate Chip Cookies": ("Snacks",),
    "Frozen Pizza, Pepperoni": ("Dinner", "Lunch"),
    "Frosted Flakes Cereal": ("Breakfast",),
    "Lentils, Boiled": ("Lunch", "Dinner"),
    "Chickpeas, Canned, Drained": ("Lunch", "Dinner"),
    "Apple, Raw": ("Snacks", "Breakfast"),
    "Banana, Raw": ("Breakfast", "Snacks"),
    "Blueberries, Raw": ("Breakfast", "Snacks"),
    "Almonds, Raw": ("Snacks",),
    "Walnuts, English": ("Snacks", "Breakfast"),
}

_Meal = tuple[tuple[str, float, float], ...]  # (food, grams low, grams high)
_BREAKFASTS: tuple[_Meal, ...] = (
    (("Oats, Rolled, Dry", 40, 70), ("Milk, 2% Fat", 150, 250)),
    (("Whole Wheat Bread", 60, 90), ("Egg, Whole, Cooked", 50, 100)),
    (("Sourdough Bread", 60, 100), ("Cheddar Cheese", 20, 35)),
    (("White Bread", 50, 80), ("Egg, Whole, Cooked", 50, 100), ("Olive Oil", 4, 8)),
)
_LUNCHES: tuple[_Meal, ...] = (
    (
        ("Sourdough Bread", 70, 110),
        ("Cheddar Cheese", 25, 45),
        ("Spinach, Raw", 20, 50),
        ("Carrots, Raw", 50, 100),
    ),
    (
        ("Brown Rice, Cooked", 150, 250),
        ("Chicken Breast, Roasted", 90, 150),
        ("Broccoli, Boiled", 80, 150),
    ),
    (
        ("Pasta, Cooked", 180, 260),
        ("Beef, Ground, 85% Lean, Cooked", 70, 110),
        ("Spinach, Raw", 30, 60),
        ("Olive Oil", 5, 12),
    ),
    (
        ("Whole Wheat Bread", 70, 100),
        ("Chicken Breast, Roasted", 60, 100),
        ("Carrots, Raw", 40, 80),
    ),
)
_DINNERS: tuple[_Meal, ...] = (
    (
        ("Salmon, Atlantic, Cooked", 120, 180),
        ("Brown Rice, Cooked", 150, 220),
        ("Broccoli, Boiled", 100, 160),
        ("Olive Oil", 8, 15),
    ),
    (
        ("Beef, Ground, 85% Lean, Cooked", 100, 150),
        ("Pasta, Cooked", 180, 250),
        ("Carrots, Raw", 60, 100),
        ("Olive Oil", 5, 10),
    ),
    (
        ("Chicken Breast, Roasted", 120, 180),
        ("White Rice, Cooked", 150, 220),
        ("Spinach, Raw", 40, 80),
        ("Olive Oil", 8, 15),
    ),
    (
        ("Egg, Whole, Cooked", 100, 150),
        ("Whole Wheat Bread", 50, 80),
        ("Spinach, Raw", 40, 80),
        ("Cheddar Cheese", 15, 30),
    ),
)
# Meal time windows in minutes after midnight.
_MEAL_MINUTES: dict[str, tuple[int, int]] = {
    "Breakfast": (6 * 60 + 30, 9 * 60 + 30),
    "Lunch": (11 * 60 + 30, 13 * 60 + 45),
    "Dinner": (17 * 60 + 45, 20 * 60 + 45),
    "Snacks": (10 * 60, 22 * 60),
}


@dataclass(frozen=True)
class Person:
    """A demo person's fixed traits (the random parts of their diet come from the seed)."""

    person_id: str
    baseline_crp_mg_l: float  # geometric-mean CRP with no fermented and no ultra-processed food
    energy_kcal: float  # mean daily energy eaten
    coffee_cups: float  # Poisson mean per day
    tea_cups: float
    wine_prob: float  # chance of a glass of red wine on a given evening
    breakfast_weights: tuple[float, ...]
    lunch_weights: tuple[float, ...]
    dinner_weights: tuple[float, ...]


PEOPLE: dict[str, Person] = {
    "alice": Person("alice", 1.5, 2000, 1.5, 1.0, 0.25, (5, 2, 2, 1), (3, 3, 2, 2), (3, 2, 3, 2)),
    "bob": Person("bob", 3.0, 2400, 2.5, 0.2, 0.35, (2, 3, 1, 4), (2, 2, 4, 2), (2, 4, 3, 1)),
    "carol": Person("carol", 0.9, 1800, 0.8, 2.0, 0.10, (4, 1, 4, 1), (4, 2, 1, 3), (4, 1, 2, 3)),
}


@dataclass
class _Entry:
    group: str
    food: str
    grams: float
    minute: int | None  # None: Time left blank
    fl_oz: float | None = None  # quantity when logged as a volume
    base: bool = False  # scaled to hit the energy target


@dataclass
class _Draw:
    day: int  # index into the period
    minute: int
    kind: str  # chronic | acute | followup
    true_mg_l: float = 0.0
    test: str = HS_CRP_TEST
    result: str = ""
    unit: str = "mg/L"
    reference_range: str = "0.0-3.0"
    flag: str = ""
    window_means: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class _PersonDemo:
    servings_csv: bytes
    labs_csv: bytes
    truth: dict[str, Any]


def generate_demo(project_dir: Path, seed: int = DEFAULT_SEED) -> list[Path]:
    """Write the demo's raw files under project_dir/data/raw/demo/ and return their paths.

    Deterministic: same seed -> byte-identical files. A file whose bytes would not change is left
    untouched, so re-running does not wake a new-file sensor.
    """
    demo = _simulate(seed)
    root = Path(project_dir) / "data" / "raw" / "demo"
    planned: list[tuple[Path, bytes]] = [
        (root / "cronometer" / pid / "servings.csv", demo[pid].servings_csv) for pid in DEMO_PEOPLE
    ]
    planned += [(root / "labs" / f"{pid}_labs.csv", demo[pid].labs_csv) for pid in DEMO_PEOPLE]
    for path, payload in planned:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.is_file() and path.read_bytes() == payload):
            path.write_bytes(payload)
    return [path for path, _ in planned]


def demo_truth(seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """What was planted and generated for `seed` (a fresh copy; see DEMO_TRUTH for seed 42)."""
    demo = _simulate(seed)
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


# --------------------------------------------------------------------------------------------
# Simulation


@functools.lru_cache(maxsize=4)
def _simulate(seed: int) -> dict[str, _PersonDemo]:
    root = np.random.Generator(np.random.PCG64(seed))
    # One child stream per person: a change to one person's model leaves the others' data alone.
    rngs = root.spawn(len(DEMO_PEOPLE))
    return {
        pid: _simulate_person(rng, PEOPLE[pid]) for pid, rng in zip(DEMO_PEOPLE, rngs, strict=True)
    }


def _simulate_person(rng: np.random.Generator, person: Person) -> _PersonDemo:
    draw_days = _regular_draw_days(rng)
    levels, targets = _habits(rng, draw_days)
    status = _logging_status(rng)
    # Mild personal preferences among a category's foods.
    food_cum = {
        c: list(itertools.accumulate(rng.dirichlet(np.full(len(f), 4.0))))
        for c, f in PLANTED_FOODS.items()
    }
    fl_oz_prob = float(rng.uniform(0.01, 0.025))

    days: list[list[_Entry]] = []
    eaten = {c: np.zeros(N_DAYS) for c in PLANTED}
    for d in range(N_DAYS):
        entries = _day_entries(rng, person, {c: float(targets[c][d]) for c in PLANTED}, food_cum)
        for e in entries:
            if e.food in FL_OZ_DRINKS and rng.random() < fl_oz_prob:
                e.fl_oz, e.grams = 8.0, 8.0 * FL_OZ_GRAMS
        for e in entries:
            cat = _CATEGORY_OF.get(e.food)
            if cat is not None:
                eaten[cat][d] += e.grams / SERVING_GRAMS[cat]
        days.append(entries)

    logged = [
        _logged_entries(rng, entries, int(s)) for entries, s in zip(days, status, strict=True)
    ]
    draws = _lab_draws(rng, person, draw_days, eaten)
    truth = _person_truth(person, draws, status, levels, eaten, logged)
    return _PersonDemo(_servings_csv(rng, logged), _labs_csv(person, draws), truth)


_CATEGORY_OF: dict[str, str] = {f: c for c, foods in PLANTED_FOODS.items() for f in foods}


def _regular_draw_days(rng: np.random.Generator) -> list[int]:
    # The first draw waits for a full 28-day window; gaps start at 15 days so that no two routine
    # draws are close enough (<= 14 days) to be merged into one "visit" by the pipeline.
    days = [int(rng.integers(WINDOW_DAYS + 1, WINDOW_DAYS + 15))]
    while True:
        nxt = days[-1] + int(rng.integers(15, 43))
        if nxt >= N_DAYS:
            return days
        days.append(nxt)


def _phase_series(rng: np.random.Generator, levels: Sequence[float]) -> np.ndarray:
    out = np.empty(N_DAYS)
    start = 0
    current = float(rng.choice(levels))
    while start < N_DAYS:
        length = int(rng.integers(PHASE_DAYS[0], PHASE_DAYS[1] + 1))
        out[start : start + length] = current
        start += length
        current = float(rng.choice([lv for lv in levels if lv != current]))
    return out


def _trailing_means(x: np.ndarray, days: Sequence[int]) -> np.ndarray:
    cs = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.asarray(days)
    return (cs[idx] - cs[idx - WINDOW_DAYS]) / WINDOW_DAYS


def _habits(
    rng: np.random.Generator, draw_days: list[int]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Daily habit levels and intake targets (servings) per planted category."""
    for _ in range(2000):
        levels = {c: _phase_series(rng, HABIT_LEVELS[c]) for c in PLANTED}
        targets = {c: levels[c] * np.minimum(rng.gamma(3.0, 1 / 3, N_DAYS), 2.2) for c in PLANTED}
        w = {c: _trailing_means(targets[c], draw_days) for c in PLANTED}
        # Independent phases can still line up by chance over two years; redraw until they do
        # not, so a null food cannot borrow an effect through a coincidental correlation.
        pairs = [("fermented", "ultra_processed")] + [
            (n, e) for n in NULL_CATEGORIES for e in ("fermented", "ultra_processed")
        ]
        ok = all(abs(np.corrcoef(w[a], w[b])[0, 1]) < 0.25 for a, b in pairs)
        ok = ok and all(np.std(w[c]) > 0.5 for c in ("fermented", "ultra_processed"))
        if ok:
            return levels, targets
    raise RuntimeError("could not draw uncorrelated habit phases")  # pragma: no cover


def _logging_status(rng: np.random.Generator) -> np.ndarray:
    """0 = fully logged, 1 = partial (1-2 small entries), 2 = not logged."""
    status = np.zeros(N_DAYS, dtype=np.int8)
    n_unlogged = round(0.08 * N_DAYS)
    # A few trips or busy spells of 3-6 days, then scattered forgotten days.
    for _ in range(int(rng.integers(2, 4))):
        length = int(rng.integers(3, 7))
        start = int(rng.integers(1, N_DAYS - length))
        status[start : start + length] = 2
    missing = n_unlogged - int((status == 2).sum())
    if missing > 0:
        free = np.flatnonzero(status == 0)
        status[rng.choice(free, size=missing, replace=False)] = 2
    free = np.flatnonzero(status == 0)
    status[rng.choice(free, size=round(0.03 * N_DAYS), replace=False)] = 1
    return status


def _pick(rng: np.random.Generator, cumulative: Sequence[float]) -> int:
    """Index drawn with probability proportional to the steps of a cumulative weight list."""
    return bisect.bisect_right(cumulative, rng.random() * cumulative[-1])


def _day_entries(
    rng: np.random.Generator,
    person: Person,
    targets: dict[str, float],
    food_cum: Mapping[str, Sequence[float]],
) -> list[_Entry]:
    meal_minute = {g: int(rng.integers(*_MEAL_MINUTES[g])) for g in GROUPS}

    def minute(group: str) -> int:
        if group == "Snacks":
            return int(rng.integers(*_MEAL_MINUTES["Snacks"]))
        return meal_minute[group] + int(rng.integers(0, 10))

    entries: list[_Entry] = []
    for group, options, weights in (
        ("Breakfast", _BREAKFASTS, person.breakfast_weights),
        ("Lunch", _LUNCHES, person.lunch_weights),
        ("Dinner", _DINNERS, person.dinner_weights),
    ):
        meal = options[_pick(rng, list(itertools.accumulate(weights)))]
        entries.extend(
            _Entry(group, food, lo + (hi - lo) * rng.random(), minute(group), base=True)
            for food, lo, hi in meal
        )
    # The first coffee comes with breakfast, later cups and all tea are snacks.
    for food, cups, first_group in (
        ("Coffee, Brewed", person.coffee_cups, "Breakfast"),
        ("Tea, Green, Brewed", person.tea_cups, "Snacks"),
    ):
        for i in range(int(rng.poisson(cups))):
            group = first_group if i == 0 else "Snacks"
            entries.append(_Entry(group, food, 240.0, minute(group)))
    if rng.random() < person.wine_prob:
        group = "Dinner" if rng.random() < 0.5 else "Snacks"
        entries.append(_Entry(group, "Red Wine", 150.0, minute("Dinner")))

    target = float(np.clip(person.energy_kcal * math.exp(rng.normal(0, 0.08)), 1650, 2750))
    base = sum(_kcal(e) for e in entries if e.base)
    fixed = sum(_kcal(e) for e in entries if not e.base)
    # Planted foods may use what is left once the base diet has shrunk to its floor; past that,
    # the portion goes to the category's lightest food so grams (the exposure) stay as drawn
    # while the day's energy stays believable.
    budget = target - fixed - _MIN_BASE_FACTOR * base
    planted = 0.0
    for cat in PLANTED:
        remaining = targets[cat] * SERVING_GRAMS[cat]
        foods = PLANTED_FOODS[cat]
        # Leftovers under a quarter serving are not eaten: intake comes in real portions.
        while remaining > 0.25 * SERVING_GRAMS[cat]:
            food = foods[_pick(rng, food_cum[cat])]
            grams = min(FOODS[food].portion_g * (0.8 + 0.45 * rng.random()), remaining)
            if planted + FOODS[food].kcal * grams / 100 > budget:
                food = _LIGHTEST[cat]
            groups = _PLANTED_GROUPS[food]
            group = groups[int(rng.integers(len(groups)))]
            entry = _Entry(group, food, grams, minute(group))
            entries.append(entry)
            planted += _kcal(entry)
            remaining -= grams

    factor = float(np.clip((target - fixed - planted) / base, _MIN_BASE_FACTOR, 1.8))
    blank_time = rng.random(len(entries)) < 1 / 3
    for e, blank in zip(entries, blank_time, strict=True):
        if e.base:
            e.grams *= factor
        e.grams = float(round(e.grams))
        if blank:
            e.minute = None
    order = {g: i for i, g in enumerate(GROUPS)}
    entries.sort(key=lambda e: (order[e.group], e.minute if e.minute is not None else -1))
    return entries


_MIN_BASE_FACTOR = 0.25
_LIGHTEST: dict[str, str] = {
    c: min(foods, key=lambda f: FOODS[f].kcal) for c, foods in PLANTED_FOODS.items()
}


def _kcal(e: _Entry) -> float:
    return FOODS[e.food].kcal * e.grams / 100


def _logged_entries(rng: np.random.Generator, entries: list[_Entry], status: int) -> list[_Entry]:
    if status == 0:
        return entries
    if status == 2:
        return []
    small = [i for i, e in enumerate(entries) if _kcal(e) < 350]
    if not small:
        small = [min(range(len(entries)), key=lambda i: _kcal(entries[i]))]
    k = min(len(small), int(rng.integers(1, 3)))
    picked = sorted(int(i) for i in rng.choice(small, size=k, replace=False))
    return [entries[i] for i in picked]


def _lab_draws(
    rng: np.random.Generator, person: Person, draw_days: list[int], eaten: dict[str, np.ndarray]
) -> list[_Draw]:
    means = {c: _trailing_means(eaten[c], draw_days) for c in PLANTED}
    f28, u28 = means["fermented"], means["ultra_processed"]
    ln_mean = (
        math.log(person.baseline_crp_mg_l)
        + math.log(FERMENTED_RATIO) * f28
        + math.log(ULTRA_PROCESSED_RATIO) * u28
    )
    eps = rng.normal(0.0, EPS_SD, len(draw_days))
    draws = [
        _Draw(
            day=day,
            minute=int(rng.integers(7 * 60, 10 * 60 + 45)),
            kind="chronic",
            window_means={c: float(means[c][i]) for c in PLANTED},
        )
        for i, day in enumerate(draw_days)
    ]

    # Infections land where the diet already looks "bad" (low fermented or high ultra-processed)
    # so that a pipeline that forgets to drop them overstates both planted effects.
    zf = (f28 - f28.mean()) / f28.std()
    zu = (u28 - u28.mean()) / u28.std()
    score = zu - zf
    n_infections = int(rng.integers(1, 3))
    chosen: list[int] = []
    for k in range(n_infections):
        needs_followup = k == 0 or bool(rng.random() < 0.5)
        low_f, high_u = f28 < np.median(f28), u28 > np.median(u28)
        free = [
            i
            for i in range(2, len(draw_days) - 1)
            if all(abs(i - j) >= 3 for j in chosen)
            and (not needs_followup or draw_days[i + 1] - draw_days[i] >= 20)
        ]
        # Prefer draws that are both low-fermented and high-ultra-processed, so that keeping the
        # infection would inflate both effects; settle for either when there is none.
        pool = [i for i in free if low_f[i] and high_u[i]] or [
            i for i in free if low_f[i] or high_u[i]
        ]
        pool = sorted(pool, key=lambda i: -score[i])[:3]
        i = int(rng.choice(pool))
        chosen.append(i)
        acute = draws[i]
        acute.kind, acute.test, acute.reference_range = "acute", CRP_TEST, STANDARD_CRP_RANGE
        acute.true_mg_l = float(rng.uniform(15, 80))
        acute.note = (
            "low fermented and high ultra-processed"
            if f28[i] < np.median(f28) and u28[i] > np.median(u28)
            else "low fermented"
            if f28[i] < np.median(f28)
            else "high ultra-processed"
        )
        if needs_followup:
            gap = draw_days[i + 1] - draw_days[i]
            offset = int(rng.integers(5, min(12, gap - 15) + 1))
            draws.append(
                _Draw(
                    day=acute.day + offset,
                    minute=int(rng.integers(7 * 60, 10 * 60 + 45)),
                    kind="followup",
                    true_mg_l=float(rng.uniform(5, 9)),
                    test=CRP_TEST,
                    reference_range=STANDARD_CRP_RANGE,
                    window_means={
                        c: float(_trailing_means(eaten[c], [acute.day + offset])[0])
                        for c in PLANTED
                    },
                    note=f"{offset} days after the infection draw",
                )
            )

    regular = [i for i in range(len(draw_days)) if i not in chosen]
    for i in regular:
        draws[i].true_mg_l = math.exp(ln_mean[i] + eps[i])
    draws.sort(key=lambda d: d.day)

    for d in draws:
        decimals = 1 if d.test == CRP_TEST else 2
        d.result = f"{d.true_mg_l:.{decimals}f}"
        d.flag = "H" if d.true_mg_l > 3.0 else ""

    chronic = [d for d in draws if d.kind == "chronic" and not _after_acute(d, draws)]
    if person.person_id == "carol":
        low = min(chronic, key=lambda d: d.true_mg_l)
        # Kept below the limit by construction so "<0.3" is the truth, not a rounding artefact.
        low.true_mg_l = min(low.true_mg_l, 0.25)
        low.result, low.flag, low.note = f"<{CENSOR_LIMIT_MG_L}", "", "censored"
    if person.person_id == "bob":
        pick = chronic[int(rng.integers(len(chronic) // 3, len(chronic)))]
        pick.test, pick.unit, pick.reference_range = CRP_TEST, "mg/dL", "0.0-0.3"
        pick.result, pick.note = f"{pick.true_mg_l / 10:.2f}", "reported in mg/dL"
    return draws


def _after_acute(d: _Draw, draws: list[_Draw]) -> bool:
    return any(a.kind == "acute" and 0 < d.day - a.day <= WASHOUT_DAYS for a in draws)


def _reported_mg_l(d: _Draw) -> float | None:
    if d.result.startswith("<"):
        return None
    value = float(d.result)
    return value * 10 if d.unit == "mg/dL" else value


def _iso(day: int) -> str:
    return (PERIOD_START + timedelta(days=day)).isoformat()


def _person_truth(
    person: Person,
    draws: list[_Draw],
    status: np.ndarray,
    levels: dict[str, np.ndarray],
    eaten: dict[str, np.ndarray],
    logged: list[list[_Entry]],
) -> dict[str, Any]:
    acute_days = [
        d.day for d in draws if (v := _reported_mg_l(d)) is not None and v > ACUTE_THRESHOLD_MG_L
    ]
    draw_rows = []
    for d in draws:
        reported = _reported_mg_l(d)
        acute = reported is not None and reported > ACUTE_THRESHOLD_MG_L
        washout = not acute and any(0 < d.day - a <= WASHOUT_DAYS for a in acute_days)
        censored = d.result.startswith("<")
        draw_rows.append(
            {
                "date": _iso(d.day),
                "collected": f"{_iso(d.day)} {d.minute // 60:02d}:{d.minute % 60:02d}",
                "kind": d.kind,
                "test": d.test,
                "result": d.result,
                "unit": d.unit,
                "true_crp_mg_l": round(d.true_mg_l, 6),
                "reported_mg_l": reported,
                "acute": acute,
                "washout": washout,
                "censored": censored,
                "mg_dl": d.unit == "mg/dL",
                "chronic_analysable": not (acute or washout or censored),
                **{f"true_{c}_servings_28d": round(v, 6) for c, v in d.window_means.items()},
                "note": d.note,
            }
        )
    phases: dict[str, list[tuple[str, float]]] = {}
    for c in PLANTED:
        starts = [0, *np.flatnonzero(np.diff(levels[c]) != 0) + 1]
        phases[c] = [(_iso(int(s)), float(levels[c][s])) for s in starts]
    energy = [
        sum(_kcal(e) for e in entries) for entries, s in zip(logged, status, strict=True) if s == 0
    ]
    return {
        "baseline_crp_mg_l": person.baseline_crp_mg_l,
        "energy_kcal_target": person.energy_kcal,
        "days_logged": int((status != 2).sum()),
        "unlogged_days": [_iso(int(i)) for i in np.flatnonzero(status == 2)],
        "partial_days": [_iso(int(i)) for i in np.flatnonzero(status == 1)],
        "full_day_energy_kcal_range": (round(min(energy), 1), round(max(energy), 1)),
        "mean_true_servings": {c: round(float(eaten[c].mean()), 4) for c in PLANTED},
        "habit_phases": phases,
        "draws": draw_rows,
    }


# --------------------------------------------------------------------------------------------
# Writing


def _fmt(per_100g: float | None, grams: float) -> str:
    if per_100g is None:
        return ""
    return f"{per_100g * grams / 100:.2f}"


def _clock(minute: int | None) -> str:
    if minute is None:
        return ""
    hour, mins = divmod(minute, 60)
    return f"{(hour - 1) % 12 + 1}:{mins:02d} {'AM' if hour < 12 else 'PM'}"


def _servings_csv(rng: np.random.Generator, logged: list[list[_Entry]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(SERVINGS_HEADER)
    # A sliver of rows lose caffeine or sodium, as entries from other databases do.
    blanks = iter(rng.random((sum(map(len, logged)), 2)) < 0.02)
    for day, entries in enumerate(logged):
        for e in entries:
            f = FOODS[e.food]
            g = e.grams
            no_caffeine, no_sodium = next(blanks)
            caffeine = None if no_caffeine else f.caffeine_mg
            sodium = None if no_sodium else f.sodium_mg
            amount = f"{e.fl_oz:.2f} fl oz" if e.fl_oz is not None else f"{g:.2f} g"
            writer.writerow(
                (
                    _iso(day),
                    _clock(e.minute),
                    e.group,
                    e.food,
                    amount,
                    _fmt(f.kcal, g),
                    _fmt(f.alcohol_g, g),
                    _fmt(caffeine, g),
                    _fmt(f.carbs_g, g),
                    _fmt(f.fiber_g, g),
                    _fmt(f.sugars_g, g),
                    _fmt(f.fat_g, g),
                    _fmt(f.sat_fat_g, g),
                    _fmt(f.protein_g, g),
                    _fmt(sodium, g),
                    f.category_label,
                )
            )
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _labs_csv(person: Person, draws: list[_Draw]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(LABS_HEADER)
    for d in draws:
        collected = f"{_iso(d.day)} {d.minute // 60:02d}:{d.minute % 60:02d}"
        writer.writerow(
            (person.person_id, collected, d.test, d.result, d.unit, d.reference_range, d.flag)
        )
    return buf.getvalue().encode("utf-8")
