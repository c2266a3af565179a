"""Daily outcomes in words, for the person page's symptom and wearable section: the names of the
measures and their scales, each significant food as a sentence with its estimate, 95% CI in the
outcome's own units and its lag shape (`effect_sentence`), honest text when nothing is significant
or the data are too few, and the question the data can answer next (`next_question`, from
`outcome_power`). Reads `daily_effects` rows as dicts (pipelines/analysis/daily_outcomes.py);
plain text, escaped by the templates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pipelines.reports.findings import _stat
from pipelines.reports.html import feature_noun, feature_order, fmt_int, fmt_value, is_num
from pipelines.reports.outcome_power import (
    MAX_WEEKS,
    SCALE_BRISTOL,
    SCALE_UNIT,
    SCALE_YES_NO,
    detectable_change,
    more_weeks,
    typical_se,
)

MEASURE_LABELS = {
    "bloating": "Bloating",
    "abdominal_pain": "Abdominal pain",
    "bristol_stool": "Stool form",
    "urgency": "Urgency",
    "resting_hr": "Resting heart rate",
    "resting_hr_lowest": "Lowest resting heart rate",
    "hrv_rmssd": "Heart-rate variability (RMSSD)",
    "skin_temp_dev": "Skin temperature deviation",
    "sleep_duration": "Sleep duration",
    "respiratory_rate": "Respiratory rate",
    "steps": "Steps",
    "mood": "Mood",
    "energy": "Energy",
    "sleep_quality": "Sleep quality",
}
# Days back as words, for the lag shape.
_DAYS_AFTER = {0: "on the same day", 1: "the day after", 2: "two days after", 3: "three days after"}


def measure_label(measure: object) -> str:
    m = "" if measure is None else str(measure)
    text = MEASURE_LABELS.get(m, m.replace("_", " "))
    return f"{text[:1].upper()}{text[1:]}" if text else "Outcome"


def measure_in_sentence(measure: object) -> str:
    """The label inside a sentence: "bloating", "heart-rate variability (RMSSD)"; names not in
    MEASURE_LABELS (a brand's score, a user's own measure) keep their capital."""
    label = measure_label(measure)
    return f"{label[:1].lower()}{label[1:]}" if measure in MEASURE_LABELS else label


def scale_text(scale: object, unit: object) -> str:
    """How a series is measured, for its title: "0-10", "Bristol 1-7", "yes/no", "bpm"."""
    if scale == SCALE_UNIT:
        return str(unit) if unit else "units"
    if scale == SCALE_BRISTOL:
        return "Bristol 1-7"
    if scale == SCALE_YES_NO:
        return "yes/no"
    return str(scale)


def series_title(measure: object, scale: object, unit: object) -> str:
    """'Bloating (0-10)', 'Stool form (Bristol 1-7)', 'Resting heart rate (bpm)'."""
    return f"{measure_label(measure)} ({scale_text(scale, unit)})"


def _amount(value: float, scale: object, unit: object) -> str:
    """A difference in the outcome's own units, without its sign: "0.8 points", "2.1 bpm"."""
    v = abs(value)
    if scale == SCALE_YES_NO:
        return f"{fmt_value(100 * v)} percentage points"
    if scale == SCALE_BRISTOL:
        return f"{fmt_value(v)} Bristol types"
    if scale == SCALE_UNIT:
        return f"{fmt_value(v)} {unit or 'units'}"
    return f"{fmt_value(v)} points"


def _bound(value: object, scale: object) -> str:
    if not is_num(value):
        return "n/a"
    return fmt_value(100 * float(value) if scale == SCALE_YES_NO else value)


def _direction(estimate: float, scale: object) -> str:
    if scale == SCALE_YES_NO:
        return "on more days" if estimate > 0 else "on fewer days"
    word = "higher" if estimate > 0 else "lower"
    if scale == SCALE_BRISTOL:
        return f"{word} (looser stools)" if estimate > 0 else f"{word} (harder stools)"
    return word


def _over(row: dict[str, Any]) -> str:
    """The days the food's test sums over: 'that day and each of the 3 days before'."""
    last = row.get("lag_to")
    if not is_num(last) or int(last) == 0:
        return "that day"
    return f"that day and each of the {int(last)} days before"


def _lag_shape(primary: dict[str, Any], shape: list[dict[str, Any]]) -> str:
    """Where the association is largest among the single days, in the direction of the food's
    test (descriptive: the lags are not tested against each other); and the trailing window when
    it is significant on its own."""
    sign = 1.0 if float(primary["estimate"]) > 0 else -1.0
    singles = [
        r
        for r in shape
        if r.get("lag_from") == r.get("lag_to")
        and is_num(r.get("estimate"))
        and is_num(r.get("lag_from"))
    ]
    parts = []
    if singles:
        top = max(singles, key=lambda r: sign * float(r["estimate"]))
        lag = int(top["lag_from"])
        when = _DAYS_AFTER.get(lag, f"{lag} days after")
        parts.append(f"largest {when} (lag {lag})")
    for r in shape:
        if r.get("lag_from") != r.get("lag_to") and r.get("status") == "significant":
            scale, unit, est = primary.get("scale"), primary.get("unit"), float(r["estimate"])
            parts.append(
                f"intake {r.get('lag_from')} to {r.get('lag_to')} days before counts too "
                f"({_amount(est, scale, unit)} {_direction(est, scale)}, "
                f"95% CI {_bound(r.get('ci_low'), scale)} to {_bound(r.get('ci_high'), scale)})"
            )
    return "; ".join(parts)


def effect_sentence(primary: dict[str, Any], shape: list[dict[str, Any]]) -> str:
    """One food's test of one outcome in words, e.g. "Bloating 0.80 points higher (95% CI 0.30
    to 1.3) with one extra serving a day of high-FODMAP food on that day and each of the 3 days
    before; largest the day after (lag 1). q = 0.01, 84 days." `shape` are the food's lag-shape
    rows of the same measure."""
    scale, unit = primary.get("scale"), primary.get("unit")
    est = float(primary["estimate"])
    text = (
        f"{measure_label(primary.get('measure'))} {_amount(est, scale, unit)} "
        f"{_direction(est, scale)} (95% CI {_bound(primary.get('ci_low'), scale)} to "
        f"{_bound(primary.get('ci_high'), scale)}) with one extra serving a day of "
        f"{feature_noun(primary.get('feature'))} on {_over(primary)}"
    )
    shape_text = _lag_shape(primary, shape)
    if shape_text:
        text += f"; {shape_text}"
    return f"{text}. {_stat('q', primary.get('q'))}, {fmt_int(primary.get('n_days'))} days."


def next_question(measure: str, scale: str, primary: list[dict[str, Any]]) -> str:
    """The question the data can answer next (`outcome_power`), or why there is no estimate."""
    change = detectable_change(measure, scale)
    label = measure_in_sentence(measure)
    if change is None:
        return (
            f"No standard size of change is set for {label}, so no estimate of the logging needed."
        )
    delta, change_text = change
    se = typical_se([r.get("se") for r in primary])
    n_days = max((int(r["n_days"]) for r in primary if is_num(r.get("n_days"))), default=0)
    if se is None or n_days <= 0:
        return (
            f"Keep logging: {n_days} complete days so far, too few to test any food against "
            f"{label} (see above), so the weeks still needed cannot be estimated yet."
        )
    weeks = more_weeks(n_days, se, delta)
    per = "per extra daily serving of a food"
    if weeks == 0:
        return (
            f"Already enough: {n_days} complete days detect a change of {change_text} in {label} "
            f"{per} in 80% of cases."
        )
    if weeks is None:
        return (
            f"Out of reach: more than {MAX_WEEKS // 52} years of daily logging to detect a "
            f"change of {change_text} in {label} {per}; only a larger effect can be found."
        )
    return (
        f"About {weeks} more week{'s' if weeks != 1 else ''} of complete daily logging to "
        f"detect a change of {change_text} in {label} {per} (80% power, now {n_days} days)."
    )


@dataclass(frozen=True)
class OutcomeSection:
    """What the page shows of one measure on one scale (templates/person.html)."""

    title: str
    findings: list[str]  # one sentence per significant food
    summary: str  # what was tested, and what was not found or not testable
    next_question: str


def outcome_sections(effects: list[dict[str, Any]]) -> list[OutcomeSection]:
    """Per measure and scale (in name order): the significant foods in words, a summary of the
    rest and the question the data can answer next. Empty without rows."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in effects:
        if r.get("measure") is None:
            continue
        groups.setdefault((str(r["measure"]), str(r.get("scale"))), []).append(r)
    out = []
    for (measure, scale), rows in sorted(groups.items()):
        primary = [r for r in rows if r.get("window_role") == "primary"]
        shape: dict[str, list[dict[str, Any]]] = {}
        for r in rows:
            if r.get("window_role") != "primary":
                shape.setdefault(str(r.get("feature")), []).append(r)
        significant = sorted(
            (r for r in primary if r.get("status") == "significant" and is_num(r.get("estimate"))),
            key=lambda r: (
                float(r["q"]) if is_num(r.get("q")) else math.inf,
                feature_order(str(r["feature"])),
            ),
        )
        first = primary[0] if primary else rows[0]
        out.append(
            OutcomeSection(
                title=series_title(measure, scale, first.get("unit")),
                findings=[
                    effect_sentence(r, shape.get(str(r["feature"]), [])) for r in significant
                ],
                summary=_summary(measure, primary, len(significant)),
                next_question=next_question(measure, scale, primary),
            )
        )
    return out


def _summary(measure: str, primary: list[dict[str, Any]], n_significant: int) -> str:
    label = measure_in_sentence(measure)
    tested = [r for r in primary if is_num(r.get("estimate"))]
    untested = [r for r in primary if not is_num(r.get("estimate"))]
    if not tested:
        note = next((str(r["note"]) for r in primary if r.get("note")), "no usable days yet")
        return f"Not enough data to test any food against {label} yet: {note}."
    n_days = max((int(r["n_days"]) for r in tested if is_num(r.get("n_days"))), default=0)
    text = (
        f"{len(tested)} food{'s' if len(tested) != 1 else ''} tested, each once (one extra serving "
        f"a day over the day and the days before), over {n_days} complete days; "
    )
    if n_significant:
        text += f"{n_significant} significant after the correction for testing several foods."
    else:
        text += (
            f"none is significantly associated with {label} after the correction for testing "
            "several foods. That is not proof of no effect: a small one may need more data."
        )
    if untested:
        reasons: dict[str, list[str]] = {}
        for r in untested:
            reasons.setdefault(str(r.get("note") or "not estimable"), []).append(
                feature_noun(r.get("feature"))
            )
        text += (
            " Not tested: "
            + "; ".join(f"{', '.join(foods)} ({reason})" for reason, foods in reasons.items())
            + "."
        )
    return text
