"""One seed to every person's files and truth: the order in which the demo's random draws happen.

The order of the calls below fixes the random stream, so it is what keeps the demo files
byte-identical from one release to the next; generate_demo and demo_truth (__init__.py) read the
cached result.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.demo.catalog import (
    ACUTE_THRESHOLD_MG_L,
    DEMO_PEOPLE,
    FL_OZ_DRINKS,
    FL_OZ_GRAMS,
    N_DAYS,
    OUTCOME_TRAITS,
    PEOPLE,
    PLANTED,
    PLANTED_FOODS,
    SERVING_GRAMS,
    WASHOUT_DAYS,
    Person,
    iso,
)
from pipelines.demo.diary import (
    Entry,
    day_entries,
    habits,
    kcal,
    logged_entries,
    logging_status,
    servings_csv,
)
from pipelines.demo.labs import Draw, lab_draws, labs_csv, regular_draw_days, reported_mg_l
from pipelines.demo.outcomes import daily_exposures, daily_outcomes


@dataclass
class PersonDemo:
    servings_csv: bytes
    labs_csv: bytes
    bearable_csv: bytes
    oura_csv: bytes
    truth: dict[str, Any]


@functools.lru_cache(maxsize=4)
def simulate(seed: int) -> dict[str, PersonDemo]:
    root = np.random.Generator(np.random.PCG64(seed))
    # One child stream per person: a change to one person's model leaves the others' data alone.
    rngs = root.spawn(len(DEMO_PEOPLE))
    return {
        pid: simulate_person(rng, PEOPLE[pid]) for pid, rng in zip(DEMO_PEOPLE, rngs, strict=True)
    }


def simulate_person(rng: np.random.Generator, person: Person) -> PersonDemo:
    draw_days = regular_draw_days(rng)
    levels, targets = habits(rng, draw_days)
    status = logging_status(rng)
    # Mild personal preferences among a category's foods.
    food_cum = {
        c: list(itertools.accumulate(rng.dirichlet(np.full(len(f), 4.0))))
        for c, f in PLANTED_FOODS.items()
    }
    fl_oz_prob = float(rng.uniform(0.01, 0.025))

    days: list[list[Entry]] = []
    eaten = {c: np.zeros(N_DAYS) for c in PLANTED}
    for d in range(N_DAYS):
        entries = day_entries(rng, person, {c: float(targets[c][d]) for c in PLANTED}, food_cum)
        for e in entries:
            if e.food in FL_OZ_DRINKS and rng.random() < fl_oz_prob:
                e.fl_oz, e.grams = 8.0, 8.0 * FL_OZ_GRAMS
        for e in entries:
            cat = CATEGORY_OF.get(e.food)
            if cat is not None:
                eaten[cat][d] += e.grams / SERVING_GRAMS[cat]
        days.append(entries)

    logged = [logged_entries(rng, entries, int(s)) for entries, s in zip(days, status, strict=True)]
    draws = lab_draws(rng, person, draw_days, eaten)
    truth = person_truth(person, draws, status, levels, eaten, logged)
    servings = servings_csv(rng, logged)
    # Last, so the diary and the labs above draw exactly what they drew before outcomes existed.
    fodmap, alcohol = daily_exposures(days)
    bearable, oura, truth["outcomes"] = daily_outcomes(
        rng, OUTCOME_TRAITS[person.person_id], fodmap, alcohol
    )
    truth["outcomes"]["true_servings"] = {
        "high_fodmap": [round(float(v), 4) for v in fodmap],
        "alcohol": [round(float(v), 4) for v in alcohol],
    }
    return PersonDemo(servings, labs_csv(person, draws), bearable, oura, truth)


CATEGORY_OF: dict[str, str] = {f: c for c, foods in PLANTED_FOODS.items() for f in foods}


def person_truth(
    person: Person,
    draws: list[Draw],
    status: np.ndarray,
    levels: dict[str, np.ndarray],
    eaten: dict[str, np.ndarray],
    logged: list[list[Entry]],
) -> dict[str, Any]:
    acute_days = [
        d.day for d in draws if (v := reported_mg_l(d)) is not None and v > ACUTE_THRESHOLD_MG_L
    ]
    draw_rows = []
    for d in draws:
        reported = reported_mg_l(d)
        acute = reported is not None and reported > ACUTE_THRESHOLD_MG_L
        washout = not acute and any(0 < d.day - a <= WASHOUT_DAYS for a in acute_days)
        censored = d.result.startswith("<")
        draw_rows.append(
            {
                "date": iso(d.day),
                "collected": f"{iso(d.day)} {d.minute // 60:02d}:{d.minute % 60:02d}",
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
        phases[c] = [(iso(int(s)), float(levels[c][s])) for s in starts]
    energy = [
        sum(kcal(e) for e in entries) for entries, s in zip(logged, status, strict=True) if s == 0
    ]
    return {
        "baseline_crp_mg_l": person.baseline_crp_mg_l,
        "energy_kcal_target": person.energy_kcal,
        "days_logged": int((status != 2).sum()),
        "unlogged_days": [iso(int(i)) for i in np.flatnonzero(status == 2)],
        "partial_days": [iso(int(i)) for i in np.flatnonzero(status == 1)],
        "full_day_energy_kcal_range": (round(min(energy), 1), round(max(energy), 1)),
        "mean_true_servings": {c: round(float(eaten[c].mean()), 4) for c in PLANTED},
        "habit_phases": phases,
        "draws": draw_rows,
    }
