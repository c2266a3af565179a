"""The lab side of the demo: blood-draw days, CRP from the 28-day diet, infections and quirks.

CRP at a draw follows the planted effects of the fermented and ultra-processed servings the
person actually ate (diary.py); infections, a censored result and a mg/dL result are then placed
so that a pipeline that skips a cleaning step gets the wrong answer.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field

import numpy as np

from pipelines.demo.catalog import (
    CENSOR_LIMIT_MG_L,
    CRP_TEST,
    EPS_SD,
    FERMENTED_RATIO,
    HS_CRP_TEST,
    LABS_HEADER,
    N_DAYS,
    PLANTED,
    STANDARD_CRP_RANGE,
    ULTRA_PROCESSED_RATIO,
    WASHOUT_DAYS,
    WINDOW_DAYS,
    Person,
    iso,
)
from pipelines.demo.diary import trailing_means


@dataclass
class Draw:
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


def regular_draw_days(rng: np.random.Generator) -> list[int]:
    # The first draw waits for a full 28-day window; gaps start at 15 days so that no two routine
    # draws are close enough (<= 14 days) to be merged into one "visit" by the pipeline.
    days = [int(rng.integers(WINDOW_DAYS + 1, WINDOW_DAYS + 15))]
    while True:
        nxt = days[-1] + int(rng.integers(15, 43))
        if nxt >= N_DAYS:
            return days
        days.append(nxt)


def lab_draws(
    rng: np.random.Generator, person: Person, draw_days: list[int], eaten: dict[str, np.ndarray]
) -> list[Draw]:
    means = {c: trailing_means(eaten[c], draw_days) for c in PLANTED}
    f28, u28 = means["fermented"], means["ultra_processed"]
    ln_mean = (
        math.log(person.baseline_crp_mg_l)
        + math.log(FERMENTED_RATIO) * f28
        + math.log(ULTRA_PROCESSED_RATIO) * u28
    )
    eps = rng.normal(0.0, EPS_SD, len(draw_days))
    draws = [
        Draw(
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
                Draw(
                    day=acute.day + offset,
                    minute=int(rng.integers(7 * 60, 10 * 60 + 45)),
                    kind="followup",
                    true_mg_l=float(rng.uniform(5, 9)),
                    test=CRP_TEST,
                    reference_range=STANDARD_CRP_RANGE,
                    window_means={
                        c: float(trailing_means(eaten[c], [acute.day + offset])[0]) for c in PLANTED
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


def _after_acute(d: Draw, draws: list[Draw]) -> bool:
    return any(a.kind == "acute" and 0 < d.day - a.day <= WASHOUT_DAYS for a in draws)


def reported_mg_l(d: Draw) -> float | None:
    if d.result.startswith("<"):
        return None
    value = float(d.result)
    return value * 10 if d.unit == "mg/dL" else value


def labs_csv(person: Person, draws: list[Draw]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
    writer.writerow(LABS_HEADER)
    for d in draws:
        collected = f"{iso(d.day)} {d.minute // 60:02d}:{d.minute % 60:02d}"
        writer.writerow(
            (person.person_id, collected, d.test, d.result, d.unit, d.reference_range, d.flag)
        )
    return buf.getvalue().encode("utf-8")
