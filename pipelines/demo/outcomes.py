"""The daily-outcome side of the demo: a Bearable symptom log and an Oura trends export.

Both follow what the person actually ate (diary.py), through two planted effects (catalog.py):

- bloating (Bearable symptom, 0-4) rises by BLOATING_PER_FODMAP_SERVING points per extra
  high-FODMAP serving (100 g of HIGH_FODMAP_FOODS) eaten that day (lag 0) and the day before
  (lag 1);
- the night's average resting heart rate (Oura) rises by RESTING_HR_PER_DRINK bpm per standard
  drink (14 g ethanol) drunk the evening before (lag 1).

Nothing else depends on food. The noise is what real logs have: each latent series carries over
from day to day (AR(1)) and has a weekly rhythm; a symptom is reported as a whole number and
clipped to 0-4; days go unlogged and nights unmeasured. simulate.py calls `daily_outcomes` with
the person's own random stream after the diary and the labs are written, so adding or changing
outcomes never moves a diary or a CRP value.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np

from pipelines.demo.catalog import (
    ALCOHOL_DRINK_G,
    BEARABLE_HEADER,
    BLOATING_PER_FODMAP_SERVING,
    FOODS,
    HIGH_FODMAP_FOODS,
    HIGH_FODMAP_SERVING_G,
    N_DAYS,
    OURA_HEADER,
    PERIOD_START,
    RESTING_HR_PER_DRINK,
    OutcomeTraits,
    iso,
)
from pipelines.demo.diary import Entry

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SEVERITY = ("None", "Mild", "Moderate", "Severe", "Unbearable")
# Weekly rhythm by weekday (Monday first): weekend bloating and a better weekend mood; the
# Saturday and Sunday rows of Oura are the nights after late Friday and Saturday evenings.
BLOATING_WEEKLY = (0.0, 0.0, 0.0, 0.0, 0.1, 0.3, 0.3)
MOOD_WEEKLY = (-0.4, 0.0, 0.0, 0.0, 0.2, 0.6, 0.4)
RESTING_HR_WEEKLY = (0.0, 0.0, 0.0, 0.0, 0.0, 0.8, 0.8)


def daily_exposures(days: Sequence[Sequence[Entry]]) -> tuple[np.ndarray, np.ndarray]:
    """Servings actually eaten per day: (high-FODMAP servings, standard drinks)."""
    fodmap = np.array([sum(e.grams for e in day if e.food in HIGH_FODMAP_FOODS) for day in days])
    alcohol = np.array([sum(FOODS[e.food].alcohol_g * e.grams / 100 for e in day) for day in days])
    return fodmap / HIGH_FODMAP_SERVING_G, alcohol / ALCOHOL_DRINK_G


def _ar1(rng: np.random.Generator, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) series over the period: today keeps phi of yesterday's deviation."""
    eps = rng.normal(0.0, sd, N_DAYS)
    out = np.empty(N_DAYS)
    out[0] = eps[0] / math.sqrt(1 - phi * phi)
    for t in range(1, N_DAYS):
        out[t] = phi * out[t - 1] + eps[t]
    return out


def _lagged(x: np.ndarray, per_lag: Mapping[int, float]) -> np.ndarray:
    """Sum over lags of effect * intake `lag` days before (no intake before the period)."""
    out = np.zeros(N_DAYS)
    for lag, beta in per_lag.items():
        out[lag:] += beta * x[: N_DAYS - lag]
    return out


def _weekly(pattern: Sequence[float]) -> np.ndarray:
    first = PERIOD_START.weekday()
    return np.array([pattern[(first + d) % 7] for d in range(N_DAYS)])


def _whole(x: np.ndarray, low: int, high: int) -> np.ndarray:
    """Round half up and clip to the scale, as a person tapping a 0-4 rating does."""
    return np.clip(np.floor(x + 0.5), low, high).astype(int)


def _missing_days(rng: np.random.Generator, share: float, gap: tuple[int, int]) -> np.ndarray:
    """True on days without a record: one longer gap plus scattered single days."""
    missing = np.zeros(N_DAYS, dtype=bool)
    length = int(rng.integers(gap[0], gap[1] + 1))
    start = int(rng.integers(30, N_DAYS - length))
    missing[start : start + length] = True
    free = np.flatnonzero(~missing)
    missing[rng.choice(free, size=round(share * N_DAYS), replace=False)] = True
    return missing


def daily_outcomes(
    rng: np.random.Generator,
    traits: OutcomeTraits,
    fodmap: np.ndarray,
    alcohol: np.ndarray,
) -> tuple[bytes, bytes, dict[str, Any]]:
    """(Bearable export, Oura trends export, truth) for one person."""
    bearable, bearable_truth = _bearable(rng, traits, fodmap)
    oura, oura_truth = _oura(rng, traits, alcohol)
    return bearable, oura, {**bearable_truth, **oura_truth}


def _bearable(
    rng: np.random.Generator, traits: OutcomeTraits, fodmap: np.ndarray
) -> tuple[bytes, dict[str, Any]]:
    bloating_noise = _ar1(rng, 0.5, 0.55)
    bloating = _whole(
        traits.bloating
        + _weekly(BLOATING_WEEKLY)
        # Centred, so the trait is the person's bloating at their usual intake.
        + _lagged(fodmap - fodmap.mean(), BLOATING_PER_FODMAP_SERVING)
        + bloating_noise,
        0,
        4,
    )
    # Pain follows bloating's unexplained part, never the food.
    pain = _whole(traits.abdominal_pain + 0.4 * bloating_noise + _ar1(rng, 0.4, 0.45), 0, 4)
    mood = _whole(traits.mood + _weekly(MOOD_WEEKLY) + _ar1(rng, 0.6, 0.7), 1, 10)
    movements = rng.poisson(traits.movements, N_DAYS)
    missing = _missing_days(rng, 0.10, (7, 14))

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(BEARABLE_HEADER)
    for d in range(N_DAYS):
        # Bowel movements are drawn every day so a forgotten day does not shift the stream.
        minutes = np.sort(rng.integers(6 * 60 + 30, 22 * 60, movements[d]))
        types = _whole(rng.normal(traits.bristol, 1.0, movements[d]), 1, 7)
        if missing[d]:
            continue
        day = iso(d)
        weekday = WEEKDAYS[(PERIOD_START + timedelta(days=d)).weekday()]
        entries = [
            (f"{m // 60:02d}:{m % 60:02d}", "Bowel Movements", int(kind), "")
            for m, kind in zip(minutes, types, strict=True)
        ]
        entries += [
            ("pm", "Mood", int(mood[d]), ""),
            ("pm", "Symptom", int(bloating[d]), f"Bloating ({SEVERITY[bloating[d]]})"),
            ("pm", "Symptom", int(pain[d]), f"Stomach pain ({SEVERITY[pain[d]]})"),
        ]
        # In time order, as the app lists a day.
        for stamp, when, category, amount, detail in sorted(
            (("20:00" if e[0] == "pm" else e[0], *e) for e in entries), key=lambda e: e[0]
        ):
            writer.writerow(
                (f"{day}T{stamp}:00.000Z", day, weekday, when, category, amount, detail, "")
            )
    truth = {
        "bearable_days": int((~missing).sum()),
        "bearable_missing_days": [iso(int(i)) for i in np.flatnonzero(missing)],
        "bloating_share_clipped": round(float(np.mean((bloating == 0) | (bloating == 4))), 4),
    }
    return buf.getvalue().encode("utf-8"), truth


def _oura(
    rng: np.random.Generator, traits: OutcomeTraits, alcohol: np.ndarray
) -> tuple[bytes, dict[str, Any]]:
    resting_hr = (
        traits.resting_hr
        + _weekly(RESTING_HR_WEEKLY)
        + _lagged(alcohol, RESTING_HR_PER_DRINK)
        + _ar1(rng, 0.6, 1.1)
    )
    lowest = resting_hr - 4.5 + rng.normal(0.0, 0.8, N_DAYS)
    hrv = traits.hrv * np.exp(_ar1(rng, 0.5, 0.12))
    temperature = _ar1(rng, 0.7, 0.08)
    respiratory = 14.6 + _ar1(rng, 0.5, 0.25)
    asleep_h = np.clip(traits.sleep_h + _ar1(rng, 0.3, 0.55), 3.5, 10.0)
    awake_h = rng.gamma(4.0, 0.75 / 4.0, N_DAYS)
    readiness_noise = rng.normal(0.0, 4.0, N_DAYS)
    steps = np.maximum(500, rng.normal(8000, 2500, N_DAYS))
    # A night without the ring (charging, or a week at the repair shop) has no sleep data; the
    # phone still counts steps. Oura needs about two weeks before it reports a temperature.
    no_ring = _missing_days(rng, 0.04, (5, 10))

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(OURA_HEADER)
    for d in range(N_DAYS):
        asleep_s = round(asleep_h[d] * 3600 / 30) * 30
        awake_s = round(awake_h[d] * 3600 / 30) * 30
        efficiency = round(100 * asleep_s / (asleep_s + awake_s))
        sleep_score = int(
            np.clip(round(70 + 7 * (asleep_h[d] - 7) + 0.5 * (efficiency - 88)), 30, 99)
        )
        readiness = np.clip(
            round(80 - 1.5 * (resting_hr[d] - traits.resting_hr) + readiness_noise[d]), 30, 99
        )
        activity = int(np.clip(round(60 + steps[d] / 400), 30, 99))
        ring = (
            ("",) * 11
            if no_ring[d]
            else (
                sleep_score,
                min(99, sleep_score + 2),
                asleep_s + awake_s,
                asleep_s,
                awake_s,
                efficiency,
                f"{resting_hr[d]:.1f}",
                round(lowest[d]),
                round(hrv[d]),
                f"{temperature[d]:.2f}" if d >= 14 else "",
                f"{respiratory[d]:.1f}",
            )
        )
        writer.writerow(
            (iso(d), *ring, activity, round(steps[d]), "" if no_ring[d] else int(readiness))
        )
    truth = {
        "oura_nights": int((~no_ring).sum()),
        "oura_nights_without_ring": [iso(int(i)) for i in np.flatnonzero(no_ring)],
    }
    return buf.getvalue().encode("utf-8"), truth
