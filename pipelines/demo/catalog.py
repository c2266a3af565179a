"""The demo's fixed world: the study period, the planted effects, foods, meals and people.

Everything here is a constant; diary.py and labs.py draw from it and simulate.py ties the draws
together. Values per food are rounded USDA entries so that the diary reads like a real export.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

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
PLANTED_GROUPS: dict[str, tuple[str, ...]] = {
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
BREAKFASTS: tuple[_Meal, ...] = (
    (("Oats, Rolled, Dry", 40, 70), ("Milk, 2% Fat", 150, 250)),
    (("Whole Wheat Bread", 60, 90), ("Egg, Whole, Cooked", 50, 100)),
    (("Sourdough Bread", 60, 100), ("Cheddar Cheese", 20, 35)),
    (("White Bread", 50, 80), ("Egg, Whole, Cooked", 50, 100), ("Olive Oil", 4, 8)),
)
LUNCHES: tuple[_Meal, ...] = (
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
DINNERS: tuple[_Meal, ...] = (
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
MEAL_MINUTES: dict[str, tuple[int, int]] = {
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


def iso(day: int) -> str:
    return (PERIOD_START + timedelta(days=day)).isoformat()


# ---- Daily outcomes: a Bearable symptom log and an Oura trends export (outcomes.py) ----------

# Demo foods the pipeline's taxonomy counts as high-FODMAP (Monash: wheat fructans, lactose,
# excess fructose, pulse GOS); Sourdough Bread, Greek yoghurt and Cheddar are low-FODMAP serves.
# A serving is 100 g (serving_sizes.csv), so the exposure is grams / 100.
HIGH_FODMAP_FOODS: frozenset[str] = frozenset(
    {
        "Apple, Raw",
        "Chickpeas, Canned, Drained",
        "Chocolate Chip Cookies",
        "Frozen Pizza, Pepperoni",
        "Instant Noodles, Ramen",
        "Kefir, Plain, Lowfat",
        "Lentils, Boiled",
        "Milk, 2% Fat",
        "Pasta, Cooked",
        "White Bread",
        "Whole Wheat Bread",
    }
)
HIGH_FODMAP_SERVING_G = 100.0
ALCOHOL_DRINK_G = 14.0  # one standard drink of ethanol (serving_sizes.csv)
# Bloating (0-4) points per extra daily high-FODMAP serving, by lag in days: the same evening and,
# more, the next day (colonic fermentation takes hours to a day). The sum is what the daily
# model's one test per food estimates.
BLOATING_PER_FODMAP_SERVING: dict[int, float] = {0: 0.15, 1: 0.25}
# Resting heart rate (bpm) per standard drink, in the night after it: Oura dates a night by the
# morning it ends, so the evening's wine shows on the next day's row (lag 1).
RESTING_HR_PER_DRINK: dict[int, float] = {1: 3.0}


@dataclass(frozen=True)
class OutcomeTraits:
    """A demo person's fixed daily-outcome levels (the day-to-day noise comes from the seed)."""

    bloating: float  # mean latent bloating (0-4) at the person's mean high-FODMAP intake
    abdominal_pain: float  # mean latent stomach pain (0-4)
    mood: float  # mean mood (1-10)
    bristol: float  # mean Bristol type of a bowel movement
    movements: float  # bowel movements per day (Poisson mean)
    resting_hr: float  # bpm, Oura's average over the night, on a night without alcohol
    hrv: float  # ms, RMSSD
    sleep_h: float  # hours asleep


OUTCOME_TRAITS: dict[str, OutcomeTraits] = {
    "alice": OutcomeTraits(1.6, 0.8, 6.5, 4.2, 1.4, 57.0, 46.0, 7.3),
    "bob": OutcomeTraits(1.4, 0.6, 6.0, 4.8, 1.6, 62.0, 33.0, 6.8),
    "carol": OutcomeTraits(1.8, 1.0, 7.0, 3.4, 1.1, 54.0, 58.0, 7.6),
}
BEARABLE_HEADER: tuple[str, ...] = (
    "date",
    "date formatted",
    "weekday",
    "time of day",
    "category",
    "rating/amount",
    "detail",
    "notes",
)
OURA_HEADER: tuple[str, ...] = (
    "date",
    "Sleep Score",
    "Total Sleep Score",
    "Total Bedtime",
    "Total Sleep Time",
    "Awake Time",
    "Sleep Efficiency",
    "Average Resting Heart Rate",
    "Lowest Resting Heart Rate",
    "Average HRV",
    "Temperature Deviation (°C)",
    "Respiratory Rate",
    "Activity Score",
    "Steps",
    "Readiness Score",
)
