"""Daily outcomes (source kind `outcomes`): stable measure names, their units and their scales.

A symptom tracker calls it "Bloated", a wearable "Average Resting Heart Rate", a user's own sheet
"RHR"; the warehouse calls them `bloating` and `resting_hr`, so that a person's readings from two
apps meet in one series. Every reading carries its scale in `biometrics.scale`:

- a rating scale "<low>-<high>" as the tracker uses it ("0-10", "0-4", "1-5"): two trackers'
  bloating on 0-4 and on 0-10 stay two distinguishable series, never one mixed series;
- `bristol_1-7` for stool form (Bristol stool scale), the only scale a measure implies by itself;
- `yes_no` for present/absent (1/0);
- `unit` for a physical quantity, whose unit is in `unit` (bpm, ms, °C, h).

A value outside its scale is rejected by the plausibility rules (`pipelines.transforms.
plausibility`), which also bound the physical measures.
"""

from __future__ import annotations

import re

SCALE_UNIT = "unit"
SCALE_YES_NO = "yes_no"
SCALE_BRISTOL = "bristol_1-7"

# Snake-case names as exports and users write them -> the stable measure name.
ALIASES: dict[str, str] = {
    "bloated": "bloating",
    "abdominal_bloating": "bloating",
    "stomach_pain": "abdominal_pain",
    "belly_pain": "abdominal_pain",
    "abdominal_cramps": "abdominal_pain",
    "cramps": "abdominal_pain",
    "bristol": "bristol_stool",
    "bristol_scale": "bristol_stool",
    "bristol_stool_scale": "bristol_stool",
    "stool_form": "bristol_stool",
    "stool_consistency": "bristol_stool",
    "bowel_urgency": "urgency",
    "stool_urgency": "urgency",
    "resting_heart_rate": "resting_hr",
    "average_resting_heart_rate": "resting_hr",
    "rhr": "resting_hr",
    "hrv": "hrv_rmssd",
    "average_hrv": "hrv_rmssd",
    "rmssd": "hrv_rmssd",
    "temperature_deviation": "skin_temp_dev",
    "skin_temperature_deviation": "skin_temp_dev",
    "temp_deviation": "skin_temp_dev",
    "total_sleep_time": "sleep_duration",
    "total_sleep_duration": "sleep_duration",
    "sleep_time": "sleep_duration",
    "breathing_rate": "respiratory_rate",
}

# Physical measures: the canonical unit, and each accepted unit (lower-cased) -> factor to it.
# A temperature *deviation* converts from °F without the 32° offset: +1.8 °F is +1 °C.
PHYSICAL: dict[str, tuple[str, dict[str, float]]] = {
    "resting_hr": ("bpm", {"bpm": 1.0, "beats/min": 1.0, "count/min": 1.0, "/min": 1.0}),
    "resting_hr_lowest": ("bpm", {"bpm": 1.0, "beats/min": 1.0, "count/min": 1.0, "/min": 1.0}),
    "hrv_rmssd": ("ms", {"ms": 1.0}),
    "skin_temp_dev": ("°C", {"°c": 1.0, "c": 1.0, "°f": 5.0 / 9.0, "f": 5.0 / 9.0}),
    "sleep_duration": (
        "h",
        {"h": 1.0, "hours": 1.0, "hr": 1.0, "min": 1 / 60, "minutes": 1 / 60, "s": 1 / 3600},
    ),
    "respiratory_rate": ("/min", {"/min": 1.0, "breaths/min": 1.0, "brpm": 1.0}),
    "steps": ("steps", {"steps": 1.0, "count": 1.0}),
}

# Plausibility bounds of the physical measures in their canonical unit, and why.
PHYSICAL_BOUNDS: dict[str, tuple[float, float, str]] = {
    # Trained athletes rest near 30 bpm; above 200 at rest is no resting rate.
    "resting_hr": (20.0, 200.0, "20-200 bpm"),
    "resting_hr_lowest": (20.0, 200.0, "20-200 bpm"),
    # Nightly RMSSD of adults lies within a few ms to ~250 ms; 0 or 500 is a sensor or unit slip.
    "hrv_rmssd": (1.0, 300.0, "1-300 ms"),
    # Wearables report nightly deviations from the personal baseline within a few degrees; a
    # fever gives +1 to +3 °C. 5 °C is an absolute temperature typed into the deviation column.
    "skin_temp_dev": (-5.0, 5.0, "-5 to +5 °C"),
    "sleep_duration": (0.0, 24.0, "0-24 h"),
    "respiratory_rate": (4.0, 60.0, "4-60 breaths/min"),
    "steps": (0.0, 200_000.0, "0-200,000 steps"),
}

_RANGE = re.compile(r"^(\d+)-(\d+)$")


def normalise_scale(raw: str) -> str | None:
    """The scale name for a scale as written ("0 - 10", "0–4", "Bristol", "yes/no"), or None
    when it is none of the known shapes."""
    text = raw.strip().lower().replace("–", "-").replace(" ", "")
    if text in ("bristol", "bristol1-7", SCALE_BRISTOL):
        return SCALE_BRISTOL
    if text in ("yes/no", "yesno", SCALE_YES_NO, "binary"):
        return SCALE_YES_NO
    if text == SCALE_UNIT:
        return SCALE_UNIT
    found = _RANGE.match(text)
    if found and int(found[1]) < int(found[2]):
        return f"{int(found[1])}-{int(found[2])}"
    return None
