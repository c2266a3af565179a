"""How many more draws would a person need before a change of 20% or 50% could be detected?

The question a user asks after three CRP draws: "is that enough to tell?". We answer it for a
before/after comparison (e.g. months without ultra-processed food, then months with it) analysed
the way the pipeline analyses it: the person's draws go through the same association code as
their real data (exposure windows, the per-person model, the false-discovery correction over every
food and window in the person's family), so "enough" means "enough for the dashboard to call the
change significant", not "enough for a lone t test".

The numbers come from a lookup table, `pipelines/data/sufficiency_draws.csv`, made by simulation
(`simulate_table`, run by `gutsignal sufficiency-table` or `make sufficiency-table`; regenerate it
whenever the association methods change, as `gutsignal check-methods` is run again). Per number of
foods tested (`n_foods`: 1, 4, 8 or 16) and per effect size in residual SDs (`effect_sd` = ln(1 +
change) / SD of ln(marker)), it stores the smallest total number of draws (half before, half after
the change, about 30 days apart) at which the change was found significant in at least 80% of the
simulated people. It is monotone by construction (more draws, or a larger effect, never needs
more), and the search stops at MAX_DRAWS: a change needing more is reported as out of reach.
Reading the table takes no time, so the nightly run stays fast.

Inputs per person and marker:
- `s`, the SD of the person's chronic log values once there are at least 4 of them; before that the
  published within-person variation of CRP (CV_I 42%, Macy 1997, so s = sqrt(ln(1 + 0.42^2)) =
  0.40), because an SD from two or three draws is too unstable to plan with. It includes whatever
  the diet moved, so it is on the safe side.
- A decrease of d is ln(1 - d) (-20% is ln 0.8), a larger step on the log scale than +20%; we report
  the harder of the two, the increase.
- The effect size is rounded down to the table's grid (never promising too few draws).
- Draws already taken were all taken before any change: they count towards the "before" half and
  no further. The "after" half is always still to come.

`draws_per_period` keeps the textbook closed form (normal approximation of the two-sample t test,
Lenth 2001) for comparison: the simulated numbers are larger, because the pipeline corrects for
testing many foods and windows.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
from scipy.stats import norm

from pipelines.schema import (
    CATEGORIES,
    LAB_RESULT_SCHEMA,
    PERSON_SCHEMA,
    SUFFICIENCY_SCHEMA,
    conform,
)

ALPHA = 0.05
POWER = 0.80
MIN_DRAWS_FOR_OWN_SD = 4
# Within-person biological variation, used until a person has enough draws of their own.
# hs-CRP: Macy 1997, measured with a high-sensitivity assay.
PRIOR_CV_I = {"hscrp": 0.42}
DEFAULT_CV_I = 0.30
CHANGES = (0.20, 0.50)

TABLE_PATH = Path(__file__).resolve().parents[1] / "data" / "sufficiency_draws.csv"
# Grids of the lookup table.
FOODS_GRID = (1, 4, 8, 16)
EFFECT_GRID = (0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
DRAWS_GRID = (8, 10, 12, 14, 16, 20, 24, 30, 40, 50, 60, 80, 100, 130, 160, 200, 250, 300)
MAX_DRAWS = DRAWS_GRID[-1]
# Foods a person's family is assumed to test when the caller does not say: the table's largest.
# A full Cronometer diary gives more features than that (categories and nutrients, each at five
# windows today), so for such a diary the advice errs on the optimistic side until the grid is
# extended; regenerate the table once foods are tested as one test each (issue 16 item 2).
DEFAULT_FOODS = FOODS_GRID[-1]
DRAW_SPACING_DAYS = 30
SIM_SD = 0.1


# Two-sided test at ALPHA with POWER: worked out once (scipy's ppf cost 0.6 s a night for 2,000
# people when called per person).
_Z = float(norm.ppf(1 - ALPHA / 2) + norm.ppf(POWER))


def draws_per_period(sd_log: float, change: float) -> int:
    """Textbook draws per period for a lone two-sample test (no multiple-testing correction)."""
    delta = math.log1p(change)
    return max(2, math.ceil(2 * _Z**2 * sd_log**2 / delta**2))


# --------------------------------------------------------------------------------------------------
# The simulation behind the lookup table


def _simulated_people(
    effects: list[float], n_draws: int, n_foods: int, rng: np.random.Generator
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """diet_daily, lab_results and persons for one simulated person per entry of `effects`
    (step of ln marker per +1 daily serving of the first food, in residual SDs). The first food
    goes up by one daily serving halfway through; the other foods drift as diets do and have no
    effect."""
    from pipelines.analysis.calibration import DIET_TAU_DAYS, _ou

    n_p = len(effects)
    lead = 63
    half = n_draws // 2
    draw_day = lead + DRAW_SPACING_DAYS * np.arange(n_draws)
    change_day = int(draw_day[half - 1] + DRAW_SPACING_DAYS // 2)
    n_days = int(draw_day[-1]) + 1
    foods = [f"{c}_servings" for c in CATEGORIES[:n_foods]]
    means = rng.lognormal(0.0, 0.5, size=(n_p, n_foods))
    drift = _ou(rng, (n_p, n_foods, n_days), np.ones(n_days), DIET_TAU_DAYS)
    noise = rng.standard_normal((n_p, n_foods, n_days))
    servings = np.clip(means[..., None] * (1.0 + 0.3 * drift + 0.3 * noise), 0.0, None)
    servings[:, 0, change_day:] += 1.0
    running = np.concatenate([np.zeros((n_p, 1)), np.cumsum(servings[:, 0], axis=1)], axis=1)
    exposure = (running[:, draw_day] - running[:, draw_day - 28]) / 28
    # On a small residual SD: the model is scale-free, and a large one would make acute draws
    # (> 10 mg/L) that the pipeline rightly leaves out.
    log_value = SIM_SD * (
        np.asarray(effects)[:, None] * exposure + rng.standard_normal((n_p, n_draws))
    )
    ids = [f"p{i:05d}" for i in range(n_p)]
    start = np.datetime64("2025-01-01")
    daily = pl.DataFrame(
        {
            "person_id": np.repeat(ids, n_days),
            "day": np.tile(start + np.arange(n_days), n_p),
            "logged": True,
            **{f: servings[:, i].ravel() for i, f in enumerate(foods)},
        }
    )
    at = (start + draw_day).astype("datetime64[us]") + np.timedelta64(8, "h")
    labs = conform(
        pl.DataFrame(
            {
                "person_id": np.repeat(ids, n_draws),
                "collected_at": np.tile(at, n_p),
                "marker": "hscrp",
                "value": np.exp(log_value.ravel()),
                "unit": "mg/L",
            }
        ),
        LAB_RESULT_SCHEMA,
    )
    persons = conform(pl.DataFrame({"person_id": ids}), PERSON_SCHEMA)
    return daily, labs, persons


def simulated_power(
    effects: list[float], n_draws: int, n_foods: int, per_effect: int, rng: np.random.Generator
) -> dict[float, float]:
    """Share of simulated people in whom the changed food is significant, per effect size."""
    from pipelines.analysis.calibration import Cohort, analyse
    from pipelines.config import Settings

    each = [e for e in effects for _ in range(per_effect)]
    daily, labs, persons = _simulated_people(each, n_draws, n_foods, rng)
    results = analyse(Cohort(daily, labs, persons, {}), Settings())
    found = set(
        results.filter(
            (pl.col("scope") == "person")
            & (pl.col("feature") == f"{CATEGORIES[0]}_servings")
            & (pl.col("status") == "significant")
        )["person_id"].to_list()
    )
    ids = [f"p{i:05d}" for i in range(len(each))]
    out: dict[float, float] = {}
    for k, e in enumerate(effects):
        block = ids[k * per_effect : (k + 1) * per_effect]
        out[e] = sum(p in found for p in block) / per_effect
    return out


def simulate_table(replicates: int = 400, seed: int = 5) -> pl.DataFrame:
    """The lookup table: draws needed per (n_foods, effect_sd), by simulation (module docstring).

    For each number of foods, walks up DRAWS_GRID simulating only the effect sizes that have not
    yet reached POWER (a larger effect never needs more draws), with `replicates` people each."""
    rows = []
    for n_foods in FOODS_GRID:
        rng = np.random.default_rng([seed, n_foods])
        needed: dict[float, tuple[int, float]] = {}
        for n_draws in DRAWS_GRID:
            todo = [e for e in EFFECT_GRID if e not in needed]
            if not todo:
                break
            power = simulated_power(todo, n_draws, n_foods, replicates, rng)
            for e in sorted(todo, reverse=True):
                # Monotone in the effect: a smaller effect cannot need fewer draws.
                if power[e] >= POWER and all(f in needed for f in EFFECT_GRID if f > e):
                    needed[e] = (n_draws, power[e])
        for e in EFFECT_GRID:
            n, p = needed.get(e, (None, None))
            rows.append({"n_foods": n_foods, "effect_sd": e, "draws_needed": n, "power": p})
    return pl.DataFrame(
        rows,
        schema={
            "n_foods": pl.Int64,
            "effect_sd": pl.Float64,
            "draws_needed": pl.Int64,
            "power": pl.Float64,
        },
    )


@cache
def lookup_table() -> pl.DataFrame:
    return pl.read_csv(TABLE_PATH)


@cache
def _lookup() -> dict[tuple[int, float], int | None]:
    # A dict, read once: filtering the frame per person cost about a second a night at 2,000
    # people, against a nightly budget of 15 s.
    return {
        (int(f), float(e)): (None if n is None else int(n))
        for f, e, n in lookup_table().select("n_foods", "effect_sd", "draws_needed").iter_rows()
    }


def draws_needed(sd_log: float, change: float, n_foods: int = DEFAULT_FOODS) -> int | None:
    """Total draws (half before, half after the change) to detect `change` with POWER, or None
    when it takes more than MAX_DRAWS. Rounds towards more draws: the next larger family in the
    table and the next smaller effect."""
    effect = math.log1p(change) / sd_log if sd_log > 0 else math.inf
    foods = min((f for f in FOODS_GRID if f >= n_foods), default=FOODS_GRID[-1])
    grid = [e for e in EFFECT_GRID if e <= effect]
    if not grid:
        return None
    return _lookup().get((foods, max(grid)))


def data_sufficiency(draws: pl.DataFrame, n_foods: int = DEFAULT_FOODS) -> pl.DataFrame:
    """One row per person and marker with the draws needed to see a 20% and a 50% change."""
    chronic = draws.filter(pl.col("excluded_reason").is_null() & pl.col("log_value").is_not_null())
    stats = chronic.group_by("person_id", "marker").agg(
        pl.len().alias("n_chronic"), pl.col("log_value").std().alias("sd_log_observed")
    )
    rows = []
    for r in stats.sort("person_id", "marker").iter_rows(named=True):
        own = r["n_chronic"] >= MIN_DRAWS_FOR_OWN_SD and r["sd_log_observed"] is not None
        cv = PRIOR_CV_I.get(r["marker"], DEFAULT_CV_I)
        sd = float(r["sd_log_observed"]) if own else math.sqrt(math.log1p(cv**2))
        row = {
            "person_id": r["person_id"],
            "marker": r["marker"],
            "n_chronic": r["n_chronic"],
            "sd_log": sd,
            "sd_source": "observed" if own else f"published CV_I {cv:.0%}",
        }
        advice = []
        for change in CHANGES:
            total = draws_needed(sd, change, n_foods)
            pct = round(change * 100)
            row[f"draws_needed_{pct}pct"] = total
            if total is None:
                row[f"more_draws_{pct}pct"] = None
                advice.append(
                    f"a {pct}% change: out of reach (more than {MAX_DRAWS} draws with this much "
                    "variation)"
                )
                continue
            # Existing draws predate the change: they fill the "before" half at most.
            more = total - min(r["n_chronic"], total // 2)
            row[f"more_draws_{pct}pct"] = more
            advice.append(
                f"a {pct}% change: about {more} more draws ({total} in total, half before and "
                "half after the change)"
            )
        row["advice"] = "To detect " + "; ".join(advice) + "."
        rows.append(row)
    return pl.DataFrame(rows, schema=SUFFICIENCY_SCHEMA)
