"""Calibration of the association methods by simulation: does "significant" mean what it says?

A simulation study through the real analysis code. Each scenario writes synthetic cohorts in the
pipeline's own frame shapes (`diet_daily` person-days with category servings and nutrients,
`lab_results` hs-CRP draws, `persons`) with effects planted on purpose, then runs them through the
same functions the Dagster assets call (`build_marker_draws`, `build_exposure_windows` with
the window DII, and `run_all_models`, which calls `compute_associations`), so the figures
measure whatever those methods are today.

The cohort (`simulate_cohort`)
- People eat items (yogurt, tempeh, sauerkraut, kombucha, beans, greens, coffee, a packaged
  snack, ...). Each person's daily servings of an item drift slowly (an Ornstein-Uhlenbeck process,
  time constant DIET_TAU_DAYS) around their own mean, plus day-to-day noise, so the mean of the 28
  days before a draw varies within a person as real diets do. Every day is logged.
- Items make the features the pipeline tests: category servings and nutrients. In the
  `shared_items` scenario items count where a real taxonomy counts them: tempeh is fermented and a
  legume (and protein), sauerkraut and kimchi are fermented and vegetables, kombucha is fermented
  and adds caffeine and sugar, the packaged snack is ultra-processed and adds sugar and energy. In
  the other scenarios every item feeds one category (and its one nutrient).
- ln hs-CRP at a draw = person intercept + sum over planted foods of beta * (the food's mean
  servings over the PRIMARY_WINDOW days before the draw) + residual. Planted: fermented food
  -20% per daily serving, ultra-processed food +50% (none in the null cohort). Residuals are
  independent (SD RESIDUAL_SD = 0.385 on the log scale), or an OU process (SD 0.30, time constant
  30 or 60 days) plus independent noise with the same total SD; with `slope_sd` each person's
  effect is the population effect plus N(0, slope_sd).
- Draws come about every DRAW_INTERVAL_DAYS (jittered, never closer than the visit merge), after
  enough diary for the longest window.

What is measured (`evaluate`), per scope (cohort: one family per replicate; person: one family per
person) over every food that got a result. A food is a *discovery* in a family when any of its
rows is `significant` (so a food counts once, however many windows it was tested at); it is a
false discovery when its planted effect is zero (foods that merely share items with a planted
food are null: their true effect is zero).
- FWER: share of families with at least one false discovery. Target <= 5%.
- FDR: mean over families of false discoveries / discoveries (0 when none).
- Coverage: share of the 95% CIs at the primary window (or without a window) that contain the
  true effect of the food: for the planted foods the planted population effect in cohort scope
  and the person's own effect in person scope; for the null foods, zero (reported apart, so a
  failure of one is not diluted by the many CIs of the other). Target 93-97% for both.
- Power 20% / 50%: share of families in which the food planted at -20% / +50% is discovered.
Each figure comes with its Monte Carlo standard error, computed with replicates as clusters (the
families or CIs of one replicate are not independent of each other).

Random numbers: numpy's Generator seeded from (seed, scenario, replicate), so every replicate is
reproducible on its own and the study gives the same table however it is split across processes.
"""

from __future__ import annotations

import math
import multiprocessing
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from pipelines.analysis.draws import build_marker_draws
from pipelines.analysis.models import run_all_models
from pipelines.analysis.windows import build_exposure_windows
from pipelines.config import Settings
from pipelines.schema import LAB_RESULT_SCHEMA, PERSON_SCHEMA, conform

PRIMARY_WINDOW = 28
RESIDUAL_SD = 0.385  # total SD of ln CRP around the diet effects (issue 16's measured figure)
OU_SD = 0.30  # of which the slowly drifting part
DIET_TAU_DAYS = 45.0
DRAW_INTERVAL_DAYS = 30
START = date(2025, 1, 1)
MARKER = "hscrp"

# Planted population effects, % change in hs-CRP per extra daily serving over PRIMARY_WINDOW days.
PLANTED = {"fermented_servings": -20.0, "ultra_processed_servings": 50.0}

# Items: mean daily servings in the population, and what one serving adds to each feature. The
# first block is always true; SHARED adds what the same item also counts as in a real taxonomy.
ITEM_MEANS = {
    "yogurt": 0.6,
    "tempeh": 0.5,
    "sauerkraut": 0.4,
    "kimchi": 0.3,
    "kombucha": 0.4,
    "beans": 0.6,
    "greens": 1.2,
    "fruit": 1.5,
    "coffee": 1.2,
    "sweets": 0.6,
    "snack": 1.0,
    "beer": 0.4,
}
ITEM_FEATURES: dict[str, dict[str, float]] = {
    "yogurt": {"fermented_servings": 1, "protein_g": 10},
    "tempeh": {"fermented_servings": 1},
    "sauerkraut": {"fermented_servings": 1},
    "kimchi": {"fermented_servings": 1},
    "kombucha": {"fermented_servings": 1},
    "beans": {"legumes_servings": 1, "protein_g": 15},
    "greens": {"vegetables_servings": 1},
    "fruit": {"fruit_servings": 1, "sugars_g": 12},
    "coffee": {"caffeine_mg": 95},
    "sweets": {"added_sugar_servings": 1, "sugars_g": 20},
    "snack": {"ultra_processed_servings": 1},
    "beer": {"alcohol_servings": 1, "alcohol_g": 14, "energy_kcal": 150},
}
SHARED: dict[str, dict[str, float]] = {
    "tempeh": {"legumes_servings": 1, "protein_g": 18},
    "sauerkraut": {"vegetables_servings": 1},
    "kimchi": {"vegetables_servings": 1},
    "kombucha": {"caffeine_mg": 15, "sugars_g": 6},
    "snack": {"sugars_g": 10, "energy_kcal": 250},
}
FEATURES = (
    "energy_kcal",
    "protein_g",
    "sugars_g",
    "alcohol_g",
    "caffeine_mg",
    "fermented_servings",
    "legumes_servings",
    "vegetables_servings",
    "fruit_servings",
    "added_sugar_servings",
    "alcohol_servings",
    "ultra_processed_servings",
)
# Energy and protein the items above do not account for, per person-day.
BASE_KCAL, BASE_KCAL_SD, DAY_KCAL_SD = 2000.0, 300.0, 250.0
BASE_PROTEIN, DAY_PROTEIN_SD = 60.0, 12.0


@dataclass(frozen=True)
class Scenario:
    """One data-generating process of the study (module docstring)."""

    name: str
    label: str
    ou_tau_days: float | None = None
    slope_sd: float = 0.0
    shared_items: bool = False
    planted: dict[str, float] = field(default_factory=lambda: dict(PLANTED))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("independent", "independent residuals"),
    Scenario("ou30", "OU residuals, time constant 30 days", ou_tau_days=30.0),
    Scenario("ou60", "OU residuals, time constant 60 days", ou_tau_days=60.0),
    Scenario("slopes", "person slopes vary (SD 0.15)", slope_sd=0.15),
    Scenario("shared", "foods share items", shared_items=True),
    Scenario("null", "null cohort (no effect)", planted={}),
)
BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass(frozen=True)
class Size:
    """How big each simulated cohort is and how many replicates a scenario gets."""

    persons: int = 40
    draws: int = 12
    replicates: int = 200


@dataclass
class Cohort:
    """A simulated cohort in the pipeline's frame shapes, with the truth behind it."""

    diet_daily: pl.DataFrame
    lab_results: pl.DataFrame
    persons: pl.DataFrame
    # True log-scale effect per (person_id, feature); the population effect under person None.
    truth: dict[tuple[str | None, str], float]


def _rng(seed: int, scenario: str, replicate: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(scenario.encode()), replicate])


def _ou(
    rng: np.random.Generator, shape: tuple[int, ...], steps: np.ndarray, tau: float
) -> np.ndarray:
    """Stationary OU paths with unit SD along the last axis, sampled after gaps `steps` (days;
    the first entry is ignored): exact transitions, so irregular draw dates are handled."""
    out = np.empty(shape)
    z = rng.standard_normal(shape)
    out[..., 0] = z[..., 0]
    for k in range(1, shape[-1]):
        phi = np.exp(-steps[..., k] / tau)
        out[..., k] = phi * out[..., k - 1] + np.sqrt(1.0 - phi**2) * z[..., k]
    return out


def simulate_cohort(
    scenario: Scenario, size: Size, rng: np.random.Generator, settings: Settings
) -> Cohort:
    """One cohort of `size.persons` people with `size.draws` hs-CRP draws each."""
    n_p, n_d = size.persons, size.draws
    lead = max(settings.windows, default=PRIMARY_WINDOW) + 7
    gap_low = max(settings.visit_merge_days + 2, DRAW_INTERVAL_DAYS - 7)
    gaps = rng.integers(gap_low, DRAW_INTERVAL_DAYS + 8, size=(n_p, n_d))
    gaps[:, 0] = lead + rng.integers(0, 14, size=n_p)
    draw_day = np.cumsum(gaps, axis=1)  # days since START
    n_days = int(draw_day.max()) + 1

    # Daily servings per person, item and day.
    items = list(ITEM_MEANS)
    means = np.array([ITEM_MEANS[i] for i in items])[None, :] * rng.lognormal(
        0.0, 0.5, size=(n_p, len(items))
    )
    drift = _ou(rng, (n_p, len(items), n_days), np.ones(n_days), DIET_TAU_DAYS)
    noise = rng.standard_normal((n_p, len(items), n_days))
    servings = np.clip(means[..., None] * (1.0 + 0.6 * drift + 0.6 * noise), 0.0, None)

    weights = {f: np.zeros(len(items)) for f in FEATURES}
    for j, item in enumerate(items):
        for f, w in ITEM_FEATURES[item].items():
            weights[f][j] += w
        for f, w in (SHARED.get(item, {}) if scenario.shared_items else {}).items():
            weights[f][j] += w
    feats = {f: np.einsum("pid,i->pd", servings, w) for f, w in weights.items()}
    feats["energy_kcal"] += (
        BASE_KCAL
        + BASE_KCAL_SD * rng.standard_normal((n_p, 1))
        + DAY_KCAL_SD * rng.standard_normal((n_p, n_days))
    )
    feats["protein_g"] += BASE_PROTEIN + DAY_PROTEIN_SD * rng.standard_normal((n_p, n_days))

    # ln CRP at each draw: intercept + planted effects on the primary-window means + residual.
    ids = [f"sim{p:03d}" for p in range(n_p)]
    log_crp = rng.normal(math.log(1.2), 0.5, size=(n_p, 1)) * np.ones((n_p, n_d))
    truth: dict[tuple[str | None, str], float] = {}
    rows = np.arange(n_p)[:, None]
    for f in FEATURES:
        beta = math.log1p(scenario.planted.get(f, 0.0) / 100.0)
        truth[(None, f)] = beta
        slopes = np.full(n_p, beta)
        if f in scenario.planted and scenario.slope_sd:
            slopes = beta + scenario.slope_sd * rng.standard_normal(n_p)
        for p, pid in enumerate(ids):
            truth[(pid, f)] = float(slopes[p])
        if f in scenario.planted:
            running = np.concatenate([np.zeros((n_p, 1)), np.cumsum(feats[f], axis=1)], axis=1)
            window_mean = (
                running[rows, draw_day] - running[rows, draw_day - PRIMARY_WINDOW]
            ) / PRIMARY_WINDOW
            log_crp += slopes[:, None] * window_mean
    if scenario.ou_tau_days is None:
        log_crp += RESIDUAL_SD * rng.standard_normal((n_p, n_d))
    else:
        steps = np.diff(draw_day, axis=1, prepend=0).astype(float)
        log_crp += OU_SD * _ou(rng, (n_p, n_d), steps, scenario.ou_tau_days)
        log_crp += math.sqrt(RESIDUAL_SD**2 - OU_SD**2) * rng.standard_normal((n_p, n_d))

    days = [START + timedelta(days=d) for d in range(n_days)]
    diet_daily = pl.DataFrame(
        {
            "person_id": np.repeat(ids, n_days),
            "day": days * n_p,
            "logged": np.ones(n_p * n_days, dtype=bool),
            "entries": np.full(n_p * n_days, 12, dtype=np.int64),
            **{f: feats[f].ravel() for f in FEATURES},
        }
    )
    at_eight = [
        datetime.combine(START + timedelta(days=int(d)), datetime.min.time()) + timedelta(hours=8)
        for d in draw_day.ravel()
    ]
    labs = conform(
        pl.DataFrame(
            {
                "person_id": np.repeat(ids, n_d),
                "collected_at": at_eight,
                "marker": MARKER,
                "loinc": "30522-7",
                "value": np.round(np.exp(log_crp.ravel()), 2),
                "unit": "mg/L",
                "crp_method_basis": "loinc",
                "line": np.arange(1, n_p * n_d + 1),
            }
        ),
        LAB_RESULT_SCHEMA,
    )
    ages = rng.uniform(30, 70, n_p).round()
    persons = conform(
        pl.DataFrame(
            {
                "person_id": ids,
                "sex": rng.choice(["female", "male"], n_p),
                "age": ages,
                "birth_year": (2025 - ages).astype(np.int64),
                "line": np.arange(1, n_p + 1),
            }
        ),
        PERSON_SCHEMA,
    )
    return Cohort(diet_daily, labs, persons, truth)


def analyse(cohort: Cohort, settings: Settings) -> pl.DataFrame:
    """The associations table the pipeline would write for this cohort: the assets' own calls."""
    draws = build_marker_draws(cohort.lab_results, settings)
    windows = build_exposure_windows(cohort.diet_daily, draws, settings, window_dii=True)
    return run_all_models(draws, windows, cohort.persons, pl.DataFrame(), settings)


# --------------------------------------------------------------------------------------------------
# Scoring one replicate


def score(results: pl.DataFrame, cohort: Cohort) -> dict[str, dict[str, list[float]]]:
    """Per scope, the replicate's counts: families, families with a false discovery, sum of false
    discovery proportions, CIs scored and covered, families where each planted food was found."""
    out: dict[str, dict[str, list[float]]] = {}
    tested = results.filter(pl.col("p").is_not_null() & pl.col("p").is_not_nan())
    for scope in ("cohort", "person"):
        rows = tested.filter(pl.col("scope") == scope)
        counts = {
            k: 0.0 for k in ("families", "fwer", "fdp", "ci", "covered", "ci_null", "covered_null")
        }
        for effect in (20, 50):
            counts[f"power{effect}_n"] = counts[f"power{effect}"] = 0.0
        for _, fam in rows.group_by(["family"], maintain_order=True):
            person = fam["person_id"][0] if scope == "person" else None
            found = set(fam.filter(pl.col("status") == "significant")["feature"].to_list())
            false = {f for f in found if cohort.truth.get((None, f), 0.0) == 0.0}
            counts["families"] += 1
            counts["fwer"] += bool(false)
            counts["fdp"] += len(false) / len(found) if found else 0.0
            for f in fam["feature"].unique().to_list():
                pct = PLANTED.get(f)
                if cohort.truth.get((None, f), 0.0) != 0.0 and pct is not None:
                    key = f"power{abs(round(pct))}"
                    counts[f"{key}_n"] += 1
                    counts[key] += f in found
            primary = fam.filter(
                pl.col("window_days").is_null() | (pl.col("window_days") == PRIMARY_WINDOW)
            ).filter(pl.col("ci_low_pct").is_not_null() & pl.col("ci_high_pct").is_not_null())
            for f, low, high in primary.select("feature", "ci_low_pct", "ci_high_pct").iter_rows():
                true = cohort.truth.get((person, f), cohort.truth.get((None, f), 0.0))
                true_pct = 100.0 * math.expm1(true)
                suffix = "_null" if cohort.truth.get((None, f), 0.0) == 0.0 else ""
                counts[f"ci{suffix}"] += 1
                counts[f"covered{suffix}"] += low <= true_pct <= high
        out[scope] = {k: [v] for k, v in counts.items()}
    return out


def run_replicate(args: tuple[str, Size, int, int]) -> dict[str, dict[str, list[float]]]:
    """Simulate, analyse and score replicate `replicate` of a scenario (picklable for workers)."""
    name, size, seed, replicate = args
    settings = Settings()
    cohort = simulate_cohort(BY_NAME[name], size, _rng(seed, name, replicate), settings)
    return score(analyse(cohort, settings), cohort)


# --------------------------------------------------------------------------------------------------
# Summaries


@dataclass(frozen=True)
class Estimate:
    """A proportion over replicates with its Monte Carlo SE and its effective sample size."""

    value: float
    mcse: float
    n: int  # units behind the proportion (families or CIs)
    n_eff: float  # n divided by the design effect of clustering within replicates

    def text(self) -> str:
        if self.n == 0:
            return "n/a"
        return f"{100 * self.value:.1f}% ± {100 * self.mcse:.1f}"


def ratio_estimate(hits: Sequence[float], units: Sequence[float]) -> Estimate:
    """Sum(hits) / sum(units) over replicates, with the replicate-clustered (linearised) SE."""
    k, n = np.asarray(hits, float), np.asarray(units, float)
    total = float(n.sum())
    if total == 0:
        return Estimate(math.nan, math.nan, 0, 0.0)
    p = float(k.sum()) / total
    r = k.size
    var = float(((k - p * n) ** 2).sum()) / total**2 * (r / max(r - 1, 1))
    binom = p * (1 - p) / total
    deff = max(var / binom, 1.0) if binom > 0 else 1.0
    return Estimate(p, math.sqrt(var), int(total), total / deff)


@dataclass(frozen=True)
class ScopeSummary:
    scenario: str
    scope: str
    replicates: int
    fwer: Estimate
    fdr: Estimate
    coverage: Estimate  # of the planted foods' effects
    coverage_null: Estimate  # of zero, for the foods without an effect
    power20: Estimate
    power50: Estimate


def summarise(name: str, counts: dict[str, dict[str, list[float]]]) -> list[ScopeSummary]:
    out = []
    for scope, c in counts.items():
        out.append(
            ScopeSummary(
                scenario=name,
                scope=scope,
                replicates=len(c["families"]),
                fwer=ratio_estimate(c["fwer"], c["families"]),
                fdr=ratio_estimate(c["fdp"], c["families"]),
                coverage=ratio_estimate(c["covered"], c["ci"]),
                coverage_null=ratio_estimate(c["covered_null"], c["ci_null"]),
                power20=ratio_estimate(c["power20"], c["power20_n"]),
                power50=ratio_estimate(c["power50"], c["power50_n"]),
            )
        )
    return out


Counts = dict[str, dict[str, list[float]]]


def pooled_counts(replicate: Callable[[Any], Counts], jobs: Sequence[Any], workers: int) -> Counts:
    """Run every replicate (in `workers` processes when more than one) and pool their counts,
    key by key (a scope here, a measure in the daily study)."""
    if workers > 1:
        # Spawned, not forked: Polars and BLAS thread pools in the parent leave locks held in a
        # forked child, which then hangs (seen in the test suite).
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            parts = list(pool.map(replicate, jobs, chunksize=4))
    else:
        parts = [replicate(j) for j in jobs]
    merged: Counts = {}
    for part in parts:
        for key, c in part.items():
            for k, v in c.items():
                merged.setdefault(key, {}).setdefault(k, []).extend(v)
    return merged


def run_scenario(name: str, size: Size, seed: int = 16, workers: int = 1) -> list[ScopeSummary]:
    """All replicates of one scenario, summarised per scope."""
    jobs = [(name, size, seed, r) for r in range(size.replicates)]
    return summarise(name, pooled_counts(run_replicate, jobs, workers))


def run_study(
    size: Size, seed: int = 16, workers: int = 1, scenarios: Sequence[str] | None = None
) -> list[ScopeSummary]:
    names = list(scenarios) if scenarios else [s.name for s in SCENARIOS]
    return [row for name in names for row in run_scenario(name, size, seed, workers)]


# --------------------------------------------------------------------------------------------------
# Bounds, as the test and the table judge them

FWER_MAX = 0.05
COVERAGE_RANGE = (0.93, 0.97)
# A measured rate fails a bound only when a one-sided binomial test at this level rejects it
# (with the effective sample size), so a small study is not failed by its own Monte Carlo noise.
BOUND_TEST_LEVEL = 0.01


def exceeds(est: Estimate, bound: float) -> bool:
    """True when the rate is credibly above `bound` (one-sided exact binomial, n_eff)."""
    if est.n == 0:
        return False
    n = max(1, round(est.n_eff))
    k = round(est.value * n)
    return bool(stats.binom.sf(k - 1, n, bound) < BOUND_TEST_LEVEL)


def below(est: Estimate, bound: float) -> bool:
    """True when the rate is credibly below `bound` (one-sided exact binomial, n_eff)."""
    if est.n == 0:
        return False
    n = max(1, round(est.n_eff))
    k = round(est.value * n)
    return bool(stats.binom.cdf(k, n, bound) < BOUND_TEST_LEVEL)


def verdicts(row: ScopeSummary) -> dict[str, bool]:
    """Which targets the row meets (True) or credibly misses (False)."""
    low, high = COVERAGE_RANGE
    return {
        "fwer": not exceeds(row.fwer, FWER_MAX),
        "coverage": not (below(row.coverage, low) or exceeds(row.coverage, high)),
        "coverage_null": not (below(row.coverage_null, low) or exceeds(row.coverage_null, high)),
    }


def table_markdown(rows: Sequence[ScopeSummary]) -> str:
    """The calibration table as Markdown (README and docs/calibration.md)."""
    head = (
        "| scenario | scope | FWER (target <= 5%) | FDR | coverage, planted effects | "
        "coverage, null foods | power, -20% | power, +50% | verdict |\n"
        "|---|---|---:|---:|---:|---:|---:|---:|---|\n"
    )
    names = {"fwer": "FWER", "coverage": "planted coverage", "coverage_null": "null coverage"}
    lines = []
    for r in rows:
        missed = [names[k] for k, ok in verdicts(r).items() if not ok]
        verdict = "meets the targets" if not missed else "misses " + ", ".join(missed)
        lines.append(
            f"| {BY_NAME[r.scenario].label} | {r.scope} | {r.fwer.text()} | {r.fdr.text()} "
            f"| {r.coverage.text()} | {r.coverage_null.text()} | {r.power20.text()} "
            f"| {r.power50.text()} | {verdict} |"
        )
    return head + "\n".join(lines) + "\n"


def as_dicts(rows: Sequence[ScopeSummary]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d: dict[str, Any] = {"scenario": r.scenario, "scope": r.scope, "replicates": r.replicates}
        for k in ("fwer", "fdr", "coverage", "coverage_null", "power20", "power50"):
            e: Estimate = getattr(r, k)
            d[k], d[f"{k}_mcse"], d[f"{k}_n"] = e.value, e.mcse, e.n
        out.append(d)
    return out


README_START = "<!-- calibration:start -->"
README_END = "<!-- calibration:end -->"
MARKERS = (README_START, README_END)
# Sizes of `gutsignal check-methods --scale`: "full" for the README table, "small" is what
# tests/test_calibration.py runs in `make test` (the replicates there are its own).
SCALES = {"full": Size(persons=40, draws=12, replicates=200), "small": Size(12, 10, 24)}


def report_block(rows: Sequence[ScopeSummary], size: Size, seed: int, commit: str, day: str) -> str:
    """What goes between the README markers (and into docs/calibration.md)."""
    return (
        f"Measured {day} on commit {commit}: {size.replicates} replicates per scenario, each a "
        f"cohort of {size.persons} people with {size.draws} hs-CRP draws about "
        f"{DRAW_INTERVAL_DAYS} days apart (seed {seed}; `gutsignal check-methods` to measure "
        "again). Planted: fermented food -20% and ultra-processed food +50% per daily serving "
        f"over the {PRIMARY_WINDOW} days before a draw; every other food has no effect. Rates "
        "are +/- their Monte Carlo standard error; a target counts as missed only when a "
        f"one-sided binomial test at {BOUND_TEST_LEVEL:.0%} says so.\n\n" + table_markdown(rows)
    )


def docs_page(block: str) -> str:
    """docs/calibration.md: the table with what the scenarios are and how to read it."""
    scenarios = "\n".join(f"- `{s.name}`: {s.label}" for s in SCENARIOS)
    return (
        "# Calibration of the association methods\n\n"
        "Written by `gutsignal check-methods` (`make check-methods`); do not edit by hand. "
        "The study, its scenarios and every definition are in the docstring of "
        "`pipelines/analysis/calibration.py`; `tests/test_calibration.py` runs a small version "
        "in `make test`.\n\n"
        f"Scenarios:\n\n{scenarios}\n\n"
        "Scopes: `cohort` is one family per replicate (the cohort models); `person` is one "
        "family per person (the per-person models). A food is one discovery in a family however "
        "many windows it was significant at; FWER is the share of families with at least one "
        "null food called significant; FDR the mean share of null foods among the foods called "
        "significant; coverage is over the 95% CIs at the "
        f"{PRIMARY_WINDOW}-day window, of the planted effect for the planted foods and of zero "
        "for the others; power is the share of families in which the planted food was found.\n\n"
        "Reading it: the residual structure names the noise beyond the planted effects. The "
        "table is measured with the default settings, Holm's procedure across the foods of a "
        "family. Benjamini-Hochberg (`settings: {multiple_testing: bh}`) bounds the false "
        "discovery rate, not the chance of one false finding: once the two planted foods are "
        "found, a null food needs only p <= 3 x 5% / m (m foods tested), and the cohort FWER "
        "measured 11-17% in the scenarios with planted effects (seed 16, 100 replicates). "
        "Person-scope power is low by design at 12 "
        "draws: `pipelines/analysis/sufficiency.py` says how many draws a person needs, from the "
        "same simulation engine (`analyse`).\n\n" + block
    )


def replace_between_markers(text: str, block: str, markers: tuple[str, str] = MARKERS) -> str:
    """`text` with the part between the two markers (the README's) replaced by `block`."""
    first, last = markers
    start, end = text.find(first), text.find(last)
    if start < 0 or end < start:
        raise ValueError(f"the README has no {first} ... {last} section to write the table into")
    return text[: start + len(first)] + "\n" + block + text[end:]
