"""The Cronometer side of the demo: habit phases, each day's entries, logging gaps, the CSV.

simulate.py calls these once per person, then hands the eaten grams to labs.py, whose CRP
depends on them.
"""

from __future__ import annotations

import bisect
import csv
import io
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.demo.catalog import (
    BREAKFASTS,
    DINNERS,
    FOODS,
    GROUPS,
    HABIT_LEVELS,
    LUNCHES,
    MEAL_MINUTES,
    N_DAYS,
    NULL_CATEGORIES,
    PHASE_DAYS,
    PLANTED,
    PLANTED_FOODS,
    PLANTED_GROUPS,
    SERVING_GRAMS,
    SERVINGS_HEADER,
    WINDOW_DAYS,
    Person,
    iso,
)


@dataclass
class Entry:
    group: str
    food: str
    grams: float
    minute: int | None  # None: Time left blank
    fl_oz: float | None = None  # quantity when logged as a volume
    base: bool = False  # scaled to hit the energy target


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


def trailing_means(x: np.ndarray, days: Sequence[int]) -> np.ndarray:
    cs = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.asarray(days)
    return (cs[idx] - cs[idx - WINDOW_DAYS]) / WINDOW_DAYS


def habits(
    rng: np.random.Generator, draw_days: list[int]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Daily habit levels and intake targets (servings) per planted category."""
    for _ in range(2000):
        levels = {c: _phase_series(rng, HABIT_LEVELS[c]) for c in PLANTED}
        targets = {c: levels[c] * np.minimum(rng.gamma(3.0, 1 / 3, N_DAYS), 2.2) for c in PLANTED}
        w = {c: trailing_means(targets[c], draw_days) for c in PLANTED}
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


def logging_status(rng: np.random.Generator) -> np.ndarray:
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


def day_entries(
    rng: np.random.Generator,
    person: Person,
    targets: dict[str, float],
    food_cum: Mapping[str, Sequence[float]],
) -> list[Entry]:
    meal_minute = {g: int(rng.integers(*MEAL_MINUTES[g])) for g in GROUPS}

    def minute(group: str) -> int:
        if group == "Snacks":
            return int(rng.integers(*MEAL_MINUTES["Snacks"]))
        return meal_minute[group] + int(rng.integers(0, 10))

    entries: list[Entry] = []
    for group, options, weights in (
        ("Breakfast", BREAKFASTS, person.breakfast_weights),
        ("Lunch", LUNCHES, person.lunch_weights),
        ("Dinner", DINNERS, person.dinner_weights),
    ):
        meal = options[_pick(rng, list(itertools.accumulate(weights)))]
        entries.extend(
            Entry(group, food, lo + (hi - lo) * rng.random(), minute(group), base=True)
            for food, lo, hi in meal
        )
    # The first coffee comes with breakfast, later cups and all tea are snacks.
    for food, cups, first_group in (
        ("Coffee, Brewed", person.coffee_cups, "Breakfast"),
        ("Tea, Green, Brewed", person.tea_cups, "Snacks"),
    ):
        for i in range(int(rng.poisson(cups))):
            group = first_group if i == 0 else "Snacks"
            entries.append(Entry(group, food, 240.0, minute(group)))
    if rng.random() < person.wine_prob:
        group = "Dinner" if rng.random() < 0.5 else "Snacks"
        entries.append(Entry(group, "Red Wine", 150.0, minute("Dinner")))

    target = float(np.clip(person.energy_kcal * math.exp(rng.normal(0, 0.08)), 1650, 2750))
    base = sum(kcal(e) for e in entries if e.base)
    fixed = sum(kcal(e) for e in entries if not e.base)
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
            groups = PLANTED_GROUPS[food]
            group = groups[int(rng.integers(len(groups)))]
            entry = Entry(group, food, grams, minute(group))
            entries.append(entry)
            planted += kcal(entry)
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


def kcal(e: Entry) -> float:
    return FOODS[e.food].kcal * e.grams / 100


def logged_entries(rng: np.random.Generator, entries: list[Entry], status: int) -> list[Entry]:
    if status == 0:
        return entries
    if status == 2:
        return []
    small = [i for i, e in enumerate(entries) if kcal(e) < 350]
    if not small:
        small = [min(range(len(entries)), key=lambda i: kcal(entries[i]))]
    k = min(len(small), int(rng.integers(1, 3)))
    picked = sorted(int(i) for i in rng.choice(small, size=k, replace=False))
    return [entries[i] for i in picked]


def _fmt(per_100g: float | None, grams: float) -> str:
    if per_100g is None:
        return ""
    return f"{per_100g * grams / 100:.2f}"


def _clock(minute: int | None) -> str:
    if minute is None:
        return ""
    hour, mins = divmod(minute, 60)
    return f"{(hour - 1) % 12 + 1}:{mins:02d} {'AM' if hour < 12 else 'PM'}"


def servings_csv(rng: np.random.Generator, logged: list[list[Entry]]) -> bytes:
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
                    iso(day),
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
