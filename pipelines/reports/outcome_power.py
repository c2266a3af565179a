"""How many more weeks of logging would a daily outcome need before a given change could be found?

The question a person asks after two months of symptom logging: "is that enough to tell?". The
answer comes from the daily-outcome tests themselves (`daily_effects`, pipelines/analysis/
daily_outcomes.py): each food's one test (the sum of its lag 0-3 coefficients, `window_role`
"primary") has a standard error from `n_days` usable days. A standard error shrinks as
1/sqrt(n), so the days at which a change of `delta` (outcome units per extra daily serving) is
found with 80% power by a two-sided test at alpha 0.05 are

    n_needed = n_days * (se * (z_0.975 + z_0.80) / delta)^2

and the weeks still to log are (n_needed - n_days) / 7, rounded up (0: already enough).

Choices, per measure and scale:
- The SE is the median over the person's foods with an estimate: every food of one measure has
  the same usable days (one model holds them all), so "the food with most data" does not pick
  one; the median is the typical food, neither the commonest (smallest SE) nor the rarest.
- A new day counts only when it is usable (the outcome and the diet of that day and the days
  before logged), so the weeks are weeks of complete logging.
- Alpha is the single test's; the correction for testing several foods asks for somewhat more.
  Like the markers' "N more draws" (pipelines/analysis/sufficiency.py) this is a planning figure,
  not a promise. It assumes the person's diet varies as much as it has so far.
- The change to detect: 1 point on a rating scale and 1 type on the Bristol scale; 10 percentage
  points of days for a yes/no measure; for physical measures a change a wearable resolves and a
  person would notice (`DETECTABLE`: 2 bpm of resting heart rate, 5 ms of RMSSD, 0.1 °C of skin
  temperature, 15 minutes of sleep, ...). A measure with none listed gets no estimate.

Plain Python (statistics.NormalDist, not scipy): the page workers import no statistics stack.
"""

from __future__ import annotations

import math
from statistics import NormalDist, median

ALPHA = 0.05
POWER = 0.80
Z = NormalDist().inv_cdf(1 - ALPHA / 2) + NormalDist().inv_cdf(POWER)
# Beyond this the answer is "out of reach": ten years of daily logging.
MAX_WEEKS = 520

SCALE_UNIT = "unit"
SCALE_YES_NO = "yes_no"
SCALE_BRISTOL = "bristol_1-7"

# Physical measures: (change to detect in the canonical unit, how it reads).
DETECTABLE: dict[str, tuple[float, str]] = {
    "resting_hr": (2.0, "2 bpm"),
    "resting_hr_lowest": (2.0, "2 bpm"),
    "hrv_rmssd": (5.0, "5 ms"),
    "skin_temp_dev": (0.1, "0.1 °C"),
    "sleep_duration": (0.25, "15 minutes"),
    "respiratory_rate": (0.5, "0.5 breaths/min"),
    "steps": (1000.0, "1,000 steps"),
}


def detectable_change(measure: str, scale: str) -> tuple[float, str] | None:
    """The change worth detecting in `measure` on `scale`, and how it reads; None if none."""
    if scale == SCALE_UNIT:
        return DETECTABLE.get(measure)
    if scale == SCALE_BRISTOL:
        return 1.0, "1 type"
    if scale == SCALE_YES_NO:
        return 0.1, "10 percentage points of days"
    return 1.0, "1 point"


def days_needed(n_days: int, se: float, delta: float) -> float:
    """Usable days at which the test detects `delta` with POWER at ALPHA (module docstring)."""
    return n_days * (se * Z / delta) ** 2


def more_weeks(n_days: int, se: float, delta: float) -> int | None:
    """Weeks of complete logging still needed to detect `delta`: 0 when the data already
    suffice, None beyond MAX_WEEKS (out of reach at this rate)."""
    more = days_needed(n_days, se, delta) - n_days
    if more <= 0:
        return 0
    weeks = math.ceil(more / 7)
    return weeks if weeks <= MAX_WEEKS else None


def typical_se(ses: list[float | None]) -> float | None:
    """The median of the foods' standard errors (module docstring); None without one."""
    usable = [float(s) for s in ses if s is not None and math.isfinite(s) and s > 0]
    return median(usable) if usable else None
