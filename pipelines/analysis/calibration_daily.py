"""Calibration of the daily-outcome analysis by simulation (`gutsignal check-methods`).

The daily counterpart of `calibration.py`: synthetic people with a food diary and daily gut
symptoms and a wearable signal, effects planted on purpose, run through the pipeline's own
`daily_outcome_effects` (pipelines/analysis/daily_outcomes.py), so the figures measure whatever
that method is today. Its Monte Carlo machinery (`Estimate`, `ratio_estimate`, the binomial
bounds) is calibration.py's.

The cohort (`simulate_cohort`): `Size.persons` people, `Size.days` days of outcomes each, the
diary starting two weeks earlier (the lags and the trailing window need the days before).
- Foods (FOODS). The culprit (high-FODMAP food) and a bystander (dairy) share meals: each is a
  Poisson count of shared meals plus one of its own, so they correlate at about 0.5. Fermented
  food and alcohol are eaten on their own. Every food has a weekly rhythm (more on Friday to
  Sunday, alcohol most of all) and drifts slowly (an Ornstein-Uhlenbeck log-rate, time constant
  DIET_TAU_DAYS) around the person's own mean.
- Missing days. About UNLOGGED of the diary days are not logged (at random) plus one trip of 3-7
  days; the food is still eaten (it still acts) but the pipeline sees no intake. Symptoms are
  missing on OUTCOME_MISSING of days, the wearable on a third as many.
- Outcomes (MEASURES), each a latent daily value = person baseline + weekly rhythm (weekend
  bloating, a higher resting heart rate after weekend nights) + planted effect + residual; the
  residual is an AR(1) (phi AR_PHI, day-to-day carry-over) plus a slow OU drift (time constant
  DRIFT_TAU_DAYS), the bloating and stool-form residuals correlated (a bad gut day shows in
  both). Bloating is recorded on 0-10 and stool form on the Bristol 1-7 scale: the latent value
  rounded and clipped to the scale. Resting heart rate (bpm) is recorded to 0.1 bpm.
- Planted (scenarios with `planted`): the culprit acts one day later (lag 1) on every measure,
  `Measure.effect` per serving (bloating +1 point, stool form +0.5 Bristol type, resting heart
  rate +2 bpm), each person's effect drawn around it (SD EFFECT_CV of it). Every other food has no
  effect, the bystander that shares its meals included.
- Feedback (scenarios with `feedback`): on the day after a bad bloating day (recorded bloating at
  least BAD_DAY_POINTS above the person's baseline) the person eats FEEDBACK_FACTOR as many of
  the culprit's meals, so the bystander drops too. This breaks the no-feedback assumption the
  quasi-differencing of daily_outcomes.py makes (its docstring): the figures say what it costs.
- Floor (`daily_floor`): bloating's baseline at 0, so about 30% of days are recorded as 0.

The truth of a food's test. The test is the cumulative lag 0-3 effect (the sum of the lag
coefficients): for the culprit the person's planted effect, for every other food zero. On a
bounded scale the recorded value cannot follow the latent one past the floor or the ceiling, so
the effect on the recorded scale is the latent effect times the share of the person's days whose
latent value rounds inside the scale (the attenuation of a censored outcome, exact for OLS with
normal regressors: Greene 1981); with rare clipping the two are the same.

What is measured (`score`), per scenario and measure; a family is one person's measure (the
analysis' own family), the tests the foods' primary rows (`window_role` "primary").
- False positives: share of the null foods' tests with p <= 0.05 (the test's own size, before any
  correction). Target <= 5%, judged per null food too: the worst one is shown, and the target is
  missed when any null food is credibly above it.
- FDR: mean over families of (null foods called significant) / (foods called significant), 0
  when none, after the analysis' Benjamini-Hochberg step (status `significant`). Target <= 5%.
- Power: share of families in which the culprit is significant.
- Coverage: share of 95% CIs containing the truth above, for the culprit and, apart, for the null
  foods (zero). Target 93-97%.
Each figure comes with its Monte Carlo SE with replicates (cohorts) as clusters. Random numbers:
numpy's Generator seeded from (seed, scenario, replicate), as in calibration.py.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl

from pipelines.analysis.calibration import (
    BOUND_TEST_LEVEL,
    COVERAGE_RANGE,
    FWER_MAX,
    Estimate,
    below,
    exceeds,
    pooled_counts,
    ratio_estimate,
)
from pipelines.analysis.daily_outcomes import DailySettings, daily_outcome_effects

CULPRIT, BYSTANDER = "high_fodmap_servings", "dairy_servings"
FOODS = (CULPRIT, BYSTANDER, "fermented_servings", "alcohol_servings")
# Mean daily servings: shared meals (culprit and bystander), then each food's own.
SHARED_MEALS = 0.7
OWN_MEALS = {CULPRIT: 0.7, BYSTANDER: 0.7, "fermented_servings": 0.8, "alcohol_servings": 0.6}
# Intake by weekday (Monday first), relative to the person's mean.
FOOD_WEEK = {
    "meals": (0.9, 0.9, 0.9, 1.0, 1.1, 1.2, 1.0),
    "fermented_servings": (1.0,) * 7,
    "alcohol_servings": (0.5, 0.5, 0.6, 0.8, 1.6, 2.0, 1.0),
}
DIET_TAU_DAYS, DIET_DRIFT_SD = 45.0, 0.3  # OU on the log intake rate
UNLOGGED, OUTCOME_MISSING = 0.08, 0.05
AR_PHI, DRIFT_TAU_DAYS = 0.6, 60.0
SYMPTOM_CORRELATION = 0.4  # of the bloating and stool-form day-to-day residuals
EFFECT_CV = 0.4
BAD_DAY_POINTS, FEEDBACK_FACTOR = 2.0, 0.5
START = date(2026, 1, 5)  # a Monday
LEAD_DAYS = 14
NOMINAL = 0.05


@dataclass(frozen=True)
class Measure:
    """One daily outcome: how it is recorded and how it is generated."""

    metric: str
    scale: str  # as the pipeline records it (README "Daily outcomes")
    unit: str | None
    bounds: tuple[int, int] | None  # recorded as the latent value rounded and clipped
    baseline: float  # population mean of the person baselines
    baseline_sd: float
    week: tuple[float, ...]  # added by weekday, Monday first
    ar_sd: float  # the AR(1) part of the residual (marginal SD)
    drift_sd: float  # the slow OU part
    effect: float  # the culprit's planted lag-1 effect per serving


# Bloating and stool form: a weekend rhythm; resting heart rate: higher after weekend nights.
MEASURES = (
    Measure(
        "bloating", "0-10", None, bounds=(0, 10), baseline=3.0, baseline_sd=1.0,
        week=(0.3, 0, 0, 0, 0, 0.5, 0.6), ar_sd=1.2, drift_sd=0.6, effect=1.0,
    ),
    Measure(
        "bristol_stool", "bristol_1-7", None, bounds=(1, 7), baseline=4.0, baseline_sd=0.4,
        week=(0.2, 0, 0, 0, 0, 0.2, 0.3), ar_sd=0.8, drift_sd=0.3, effect=0.5,
    ),
    Measure(
        "resting_hr", "unit", "bpm", bounds=None, baseline=60.0, baseline_sd=6.0,
        week=(0.5, 0, 0, 0, 0.3, 1.5, 1.8), ar_sd=2.5, drift_sd=1.5, effect=2.0,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    planted: bool = True
    feedback: bool = False
    bloating_baseline: float = 3.0


SCENARIOS = (
    Scenario("daily_null", "null (no food acts)", planted=False),
    Scenario("daily_planted", "culprit acts at lag 1"),
    Scenario(
        "daily_feedback_null",
        "no food acts, culprit eaten less after a bad day",
        planted=False,
        feedback=True,
    ),
    Scenario("daily_feedback", "culprit acts, eaten less after a bad day", feedback=True),
    Scenario("daily_floor", "culprit acts, bloating near the floor (0)", bloating_baseline=0.0),
)
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass(frozen=True)
class Size:
    persons: int = 12
    days: int = 180
    replicates: int = 400


# Sizes of `gutsignal check-methods --scale` (calibration.SCALES' counterparts).
SCALES = {"full": Size(12, 180, 400), "small": Size(8, 180, 30)}


@dataclass
class Cohort:
    diet_daily: pl.DataFrame
    outcomes: pl.DataFrame
    truth: dict[tuple[str, str], float]  # (person_id, metric) -> the culprit's recorded effect


def _rng(seed: int, scenario: str, replicate: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(scenario.encode()), replicate])


def _ar1(rng: np.random.Generator, z: np.ndarray, phi: float) -> np.ndarray:
    """Stationary unit-SD AR(1) paths along the last axis from standard normal innovations."""
    out = np.empty_like(z)
    out[..., 0] = z[..., 0]
    scale = math.sqrt(1.0 - phi**2)
    for t in range(1, z.shape[-1]):
        out[..., t] = phi * out[..., t - 1] + scale * z[..., t]
    return out


def _week(values: Sequence[float], weekday: np.ndarray) -> np.ndarray:
    return np.asarray(values, float)[weekday]


def simulate_cohort(scenario: Scenario, size: Size, rng: np.random.Generator) -> Cohort:
    """One cohort in the pipeline's frame shapes (`diet_daily`, daily `outcomes`), with truth."""
    n_p, n_t = size.persons, size.days + LEAD_DAYS
    weekday = (np.arange(n_t) + START.weekday()) % 7
    ids = [f"d{p:03d}" for p in range(n_p)]
    rates = {"meals": SHARED_MEALS, **OWN_MEALS}
    person_mean = {k: v * rng.lognormal(0.0, 0.3, n_p) for k, v in rates.items()}
    drift = {
        k: DIET_DRIFT_SD * _ar1(rng, rng.standard_normal((n_p, n_t)), math.exp(-1 / DIET_TAU_DAYS))
        for k in rates
    }
    week = {k: _week(FOOD_WEEK.get(k, FOOD_WEEK["meals"]), weekday) for k in rates}

    # Residuals: AR(1) + slow drift; bloating and stool form share part of the AR innovations.
    z = rng.standard_normal((len(MEASURES), n_p, n_t))
    r = SYMPTOM_CORRELATION
    z[1] = r * z[0] + math.sqrt(1 - r**2) * z[1]
    resid = np.stack(
        [
            m.ar_sd * _ar1(rng, z[i], AR_PHI)
            + m.drift_sd * _ar1(rng, rng.standard_normal((n_p, n_t)), math.exp(-1 / DRIFT_TAU_DAYS))
            for i, m in enumerate(MEASURES)
        ]
    )
    baseline = np.stack(
        [
            (scenario.bloating_baseline if m.metric == "bloating" else m.baseline)
            + m.baseline_sd * rng.standard_normal(n_p)
            for m in MEASURES
        ]
    )
    effect = np.stack(
        [
            m.effect * (1.0 + EFFECT_CV * rng.standard_normal(n_p))
            if scenario.planted
            else np.zeros(n_p)
            for m in MEASURES
        ]
    )
    week_out = np.stack([_week(m.week, weekday) for m in MEASURES])

    # Day by day: the intake of a day may depend on the day before's bloating (feedback).
    intake = {f: np.zeros((n_p, n_t)) for f in FOODS}
    latent = np.zeros((len(MEASURES), n_p, n_t))
    recorded = np.zeros_like(latent)
    for t in range(n_t):
        factor = np.ones(n_p)
        if scenario.feedback and t > 0:
            bad = recorded[0, :, t - 1] - baseline[0] >= BAD_DAY_POINTS
            factor = np.where(bad, FEEDBACK_FACTOR, 1.0)
        lam = {k: person_mean[k] * week[k][t] * np.exp(drift[k][:, t]) for k in rates}
        meals = rng.poisson(lam["meals"] * factor)
        for f in FOODS:
            own = rng.poisson(lam[f] * (factor if f in (CULPRIT, BYSTANDER) else 1.0))
            intake[f][:, t] = own + (meals if f in (CULPRIT, BYSTANDER) else 0)
        yesterday = intake[CULPRIT][:, t - 1] if t > 0 else np.full(n_p, OWN_MEALS[CULPRIT])
        latent[:, :, t] = baseline + week_out[:, t, None] + effect * yesterday + resid[:, :, t]
        for i, m in enumerate(MEASURES):
            v = latent[i, :, t]
            recorded[i, :, t] = np.clip(np.round(v), *m.bounds) if m.bounds else np.round(v, 1)

    # What the pipeline sees: unlogged diary days (at random, plus one trip), missing readings.
    logged = rng.random((n_p, n_t)) >= UNLOGGED
    trip = rng.integers(0, n_t - 7, n_p)
    for p in range(n_p):
        logged[p, trip[p] : trip[p] + rng.integers(3, 8)] = False
    days = [START + timedelta(days=i) for i in range(n_t)]
    diet_daily = pl.DataFrame(
        {
            "person_id": np.repeat(ids, n_t),
            "day": days * n_p,
            "logged": logged.ravel(),
            **{f: np.where(logged, intake[f], np.nan).ravel() for f in FOODS},
        }
    ).with_columns(pl.col(FOODS).fill_nan(None))
    frames, truth = [], {}
    out_days = np.arange(LEAD_DAYS, n_t)
    for i, m in enumerate(MEASURES):
        missing = OUTCOME_MISSING if m.bounds else OUTCOME_MISSING / 3
        seen = rng.random((n_p, out_days.size)) >= missing
        values = recorded[i][:, out_days]
        p_idx, t_idx = np.nonzero(seen)
        frames.append(
            pl.DataFrame(
                {
                    "person_id": [ids[p] for p in p_idx],
                    "day": [days[LEAD_DAYS + t] for t in t_idx],
                    "metric": m.metric,
                    "value": values[p_idx, t_idx],
                    "unit": m.unit,
                    "scale": m.scale,
                },
                schema_overrides={"unit": pl.String, "scale": pl.String},
            )
        )
        inside = np.ones((n_p, out_days.size), bool)
        if m.bounds:
            lat = latent[i][:, out_days]
            inside = (lat > m.bounds[0] - 0.5) & (lat < m.bounds[1] + 0.5)
        for p, pid in enumerate(ids):
            truth[(pid, m.metric)] = float(effect[i, p] * inside[p].mean())
    return Cohort(diet_daily, pl.concat(frames), truth)


def analyse(cohort: Cohort) -> pl.DataFrame:
    """The rows the pipeline would write for this cohort: the analysis' own call."""
    return daily_outcome_effects(cohort.outcomes, cohort.diet_daily, DailySettings(foods=FOODS))


# --------------------------------------------------------------------------------------------------
# Scoring


def _keys() -> list[str]:
    base = ["families", "fdp", "power", "power_n", "ci", "covered", "ci_null", "covered_null"]
    return base + ["null_tests", "null_pos"] + [f"{k}:{f}" for f in FOODS for k in ("tests", "pos")]


def score(results: pl.DataFrame, cohort: Cohort) -> dict[str, dict[str, list[float]]]:
    """Per measure, this replicate's counts (module docstring)."""
    primary = results.filter((pl.col("window_role") == "primary") & pl.col("p").is_not_null())
    out: dict[str, dict[str, list[float]]] = {}
    for m in MEASURES:
        c = dict.fromkeys(_keys(), 0.0)
        rows = primary.filter(pl.col("measure") == m.metric)
        for (pid,), fam in rows.group_by(["person_id"], maintain_order=True):
            true = cohort.truth[(str(pid), m.metric)]
            planted = true != 0.0
            found = set(fam.filter(pl.col("status") == "significant")["feature"].to_list())
            false = {f for f in found if f != CULPRIT or not planted}
            c["families"] += 1
            c["fdp"] += len(false) / len(found) if found else 0.0
            for f, p, low, high in fam.select("feature", "p", "ci_low", "ci_high").iter_rows():
                if f == CULPRIT and planted:
                    c["power_n"] += 1
                    c["power"] += f in found
                    c["ci"] += 1
                    c["covered"] += low <= true <= high
                    continue
                c["ci_null"] += 1
                c["covered_null"] += low <= 0.0 <= high
                c["null_tests"] += 1
                c["null_pos"] += p <= NOMINAL
                c[f"tests:{f}"] += 1
                c[f"pos:{f}"] += p <= NOMINAL
        out[m.metric] = {k: [v] for k, v in c.items()}
    return out


def run_replicate(args: tuple[str, Size, int, int]) -> dict[str, dict[str, list[float]]]:
    """Simulate, analyse and score one replicate (picklable for workers)."""
    name, size, seed, replicate = args
    cohort = simulate_cohort(BY_NAME[name], size, _rng(seed, name, replicate))
    return score(analyse(cohort), cohort)


# --------------------------------------------------------------------------------------------------
# Summaries


@dataclass(frozen=True)
class Summary:
    scenario: str
    measure: str
    replicates: int
    false_positive: Estimate  # over every null food's test
    per_food: dict[str, Estimate]  # the same per null food (the culprit when not planted)
    fdr: Estimate
    power: Estimate
    coverage: Estimate
    coverage_null: Estimate

    def worst(self) -> tuple[str, Estimate]:
        food = max(self.per_food, key=lambda f: self.per_food[f].value)
        return food, self.per_food[food]


def summarise(name: str, counts: dict[str, dict[str, list[float]]]) -> list[Summary]:
    out = []
    for measure, c in counts.items():
        per_food = {
            f: ratio_estimate(c[f"pos:{f}"], c[f"tests:{f}"])
            for f in FOODS
            if sum(c[f"tests:{f}"]) > 0
        }
        out.append(
            Summary(
                scenario=name,
                measure=measure,
                replicates=len(c["families"]),
                false_positive=ratio_estimate(c["null_pos"], c["null_tests"]),
                per_food=per_food,
                fdr=ratio_estimate(c["fdp"], c["families"]),
                power=ratio_estimate(c["power"], c["power_n"]),
                coverage=ratio_estimate(c["covered"], c["ci"]),
                coverage_null=ratio_estimate(c["covered_null"], c["ci_null"]),
            )
        )
    return out


def run_scenario(name: str, size: Size, seed: int = 16, workers: int = 1) -> list[Summary]:
    """All replicates of one scenario, summarised per measure."""
    jobs = [(name, size, seed, r) for r in range(size.replicates)]
    return summarise(name, pooled_counts(run_replicate, jobs, workers))


def verdicts(row: Summary) -> dict[str, bool]:
    """Which targets the row meets (True) or credibly misses (False)."""
    low, high = COVERAGE_RANGE
    return {
        "false_positive": not any(exceeds(e, FWER_MAX) for e in row.per_food.values())
        and not exceeds(row.false_positive, FWER_MAX),
        "fdr": not exceeds(row.fdr, FWER_MAX),
        "coverage": not (below(row.coverage, low) or exceeds(row.coverage, high)),
        "coverage_null": not (below(row.coverage_null, low) or exceeds(row.coverage_null, high)),
    }


def _food(f: str) -> str:
    return f.removesuffix("_servings").replace("_", "-")


def table_markdown(rows: Sequence[Summary]) -> str:
    head = (
        "| scenario | measure | false positives, null foods (target <= 5%) | worst null food "
        "| FDR (target <= 5%) | power, culprit | coverage, culprit | coverage, null foods "
        "| verdict |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    names = {
        "false_positive": "false positives",
        "fdr": "FDR",
        "coverage": "culprit coverage",
        "coverage_null": "null coverage",
    }
    lines = []
    for r in rows:
        missed = [names[k] for k, ok in verdicts(r).items() if not ok]
        verdict = "meets the targets" if not missed else "misses " + ", ".join(missed)
        food, worst = r.worst()
        lines.append(
            f"| {BY_NAME[r.scenario].label} | {r.measure} | {r.false_positive.text()} "
            f"| {_food(food)} {worst.text()} | {r.fdr.text()} | {r.power.text()} "
            f"| {r.coverage.text()} | {r.coverage_null.text()} | {verdict} |"
        )
    return head + "\n".join(lines) + "\n"


README_START = "<!-- calibration-daily:start -->"
README_END = "<!-- calibration-daily:end -->"
MARKERS = (README_START, README_END)


def report_block(rows: Sequence[Summary], size: Size, seed: int, commit: str, day: str) -> str:
    """What goes between the README's daily-calibration markers."""
    effects = ", ".join(f"{m.metric} {m.effect:+g}" for m in MEASURES)
    return (
        f"Measured {day} on commit {commit}: {size.replicates} replicates per scenario, each a "
        f"cohort of {size.persons} people with {size.days} days of bloating (0-10), stool form "
        f"(Bristol 1-7) and resting heart rate (seed {seed}; `gutsignal check-methods` to measure "
        f"again). Foods tested: {', '.join(_food(f) for f in FOODS)}; the culprit "
        f"({_food(CULPRIT)}) shares meals with {_food(BYSTANDER)} (r about 0.5) and, where "
        f"planted, acts one day later ({effects} per serving, person SD {EFFECT_CV:.0%} of it); "
        "residuals AR(1) (phi 0.6) plus a slow drift, a weekly rhythm in food and outcomes, "
        "unlogged days. One test per food and family (the sum of lags 0-3); false positives "
        "are the share of null foods' tests at p <= 0.05, FDR and power after "
        "Benjamini-Hochberg. Rates are +/- their Monte Carlo standard error; a target counts as "
        f"missed only when a one-sided binomial test at {BOUND_TEST_LEVEL:.0%} says so (for "
        "false positives: any null food).\n\n" + table_markdown(rows)
    )
