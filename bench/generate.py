"""Deterministic scale generator: N people x D days of Cronometer diaries, CRP labs, sources.yaml.

    python -m bench.generate --people 2000 --days 176 --out /tmp/gs-bench --seed 1

writes, under OUT:

- `data/raw/bench/cronometer/<person>/servings_<YYYY-MM>.csv`: one Cronometer "Servings" export per
  person per calendar month (the demo's header and quirks: UTF-8 BOM, CRLF, quoted food names with
  commas, blank Time / Caffeine / Sodium cells, drinks logged as "8.00 fl oz"), about 30 rows per
  logged day, about 5 % of days not logged and 3 % logged partially;
- `data/raw/bench/labs/<person>.csv`: hs-CRP every 2 to 6 weeks in the demo's lab CSV format, with
  a planted effect (CRP x0.75 per daily serving of fermented food over the previous 28 days, x1.25
  per serving of ultra-processed food) and about 5 % acute results (15-80 mg/L);
- `next_day/bench/cronometer/<person>/servings_<YYYY-MM-DD>.csv`: the day after the history, one
  file per person, kept outside `data/raw/` so the benchmark can drop it in for the nightly
  incremental case; `night_all/...` (the day after that, every person) and `night_tenth/...` (the
  third day, every tenth person) likewise, for the whole nightly job;
- `sources.yaml` (the demo's two source entries, pointed at these paths) and `bench_manifest.json`
  (sizes and counts).

`generate_lab_portal` writes, apart from the project (its own folder, so no stage of the project's
jobs reads it), the many-small-files lab set of the labs-throughput stage: patient-portal downloads,
one CSV per lab report (10 to 100 results: a panel of inflammation markers and the chemistry and
blood-count tests ordered with them), in a folder per person.

Deterministic: each person draws from `numpy.random.Generator(PCG64([seed, person_index]))`, so the
same arguments give byte-identical files whatever `--jobs` is. Vectorised: one NumPy/Polars pass per
person, files written by Polars, people spread over worker processes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from pipelines.demo import (
    FL_OZ_DRINKS,
    FL_OZ_GRAMS,
    FOODS,
    GROUPS,
    HS_CRP_TEST,
    LABS_HEADER,
    PLANTED_FOODS,
    SERVINGS_HEADER,
)

START = date(2025, 1, 1)
DIARY_SOURCE = "bench_cronometer"
LABS_SOURCE = "bench_labs"
DIARY_GLOB = "bench/cronometer/*/servings_*.csv"  # relative to data/raw/
LABS_GLOB = "bench/labs/*.csv"
NEXT_DAY_DIR = "next_day"  # mirrors data/raw/; moved into it by bench.run for the incremental case
# The nights after the history, in order: (folder mirroring data/raw/, every k-th person syncs).
# The first is the ingest stage's incremental case, the other two the whole nightly job's.
NIGHTS: tuple[tuple[str, int], ...] = ((NEXT_DAY_DIR, 1), ("night_all", 1), ("night_tenth", 10))
MANIFEST = "bench_manifest.json"

ROWS_PER_DAY = 31.0  # Poisson mean on a fully logged day (about 28.5 a day over all days)
UNLOGGED_P = 0.05
PARTIAL_P = 0.03
BLANK_TIME_P = 0.03
BLANK_NUTRIENT_P = 0.02
FL_OZ_P = 0.5  # chance a drink is logged as a volume
LAB_GAP_DAYS = (14, 42)  # CRP every 2 to 6 weeks
ACUTE_P = 0.05
FERMENTED_RATIO = 0.75
ULTRA_PROCESSED_RATIO = 1.25
EPS_SD = 0.385
SERVING_G = {"fermented": 150.0, "ultra_processed": 100.0}
PHASE_DAYS = (21, 63)
PHASE_LEVELS = (0.0, 0.5, 1.0, 2.0, 3.0)  # multiplier on the category's foods' weights

# How a source reads the demo's lab CSV format (the demo project's sources.yaml says the same).
LAB_COLUMNS = """\
    columns:
      collected_at: Collected
      marker: Test
      value: Result
      unit: Units
      reference_range: Reference Range
      flag: Flag
    datetime_format: "%Y-%m-%d %H:%M"
"""

SOURCES_YAML = f"""\
# gutsignal scale benchmark (written by bench.generate). Paths are globs relative to data/raw/.
settings:
  timezone: UTC

sources:
  - name: {DIARY_SOURCE}
    kind: diet
    format: cronometer_servings
    path: {DIARY_GLOB}
    person: {{from_folder: true}}

  - name: {LABS_SOURCE}
    kind: labs
    format: csv
    path: {LABS_GLOB}
    person: {{column: Patient}}
{LAB_COLUMNS}"""

# The food table, as arrays indexed by food number.
_FOOD_LIST = list(FOODS.values())
FOOD_NAMES = [f.name for f in _FOOD_LIST]
_KCAL = np.array([f.kcal for f in _FOOD_LIST], dtype=float)
_PORTION = np.array([f.portion_g for f in _FOOD_LIST], dtype=float)
_DRINK_FL_OZ = np.array([f.name in FL_OZ_DRINKS for f in _FOOD_LIST])
# (CSV header, attribute of Food) for the nutrient columns, in SERVINGS_HEADER order.
_NUTRIENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Energy (kcal)", "kcal"),
    ("Alcohol (g)", "alcohol_g"),
    ("Caffeine (mg)", "caffeine_mg"),
    ("Carbs (g)", "carbs_g"),
    ("Fiber (g)", "fiber_g"),
    ("Sugars (g)", "sugars_g"),
    ("Fat (g)", "fat_g"),
    ("Saturated (g)", "sat_fat_g"),
    ("Protein (g)", "protein_g"),
    ("Sodium (mg)", "sodium_mg"),
)
_PER_100G = {
    header: np.array(
        [np.nan if getattr(f, attr) is None else float(getattr(f, attr)) for f in _FOOD_LIST]
    )
    for header, attr in _NUTRIENT_COLUMNS
}
_RANDOM_BLANKS = ("Caffeine (mg)", "Sodium (mg)")
_PLANTED_INDEX = {c: np.array([FOOD_NAMES.index(n) for n in PLANTED_FOODS[c]]) for c in SERVING_G}
_GROUP_WEIGHTS = np.array([0.25, 0.3, 0.3, 0.15])
_GROUP_MINUTES = np.array([(390, 570), (690, 825), (1065, 1245), (600, 1320)])  # [lo, hi)


def person_id(index: int) -> str:
    return f"p{index:05d}"


def _clock(minute: int) -> str:
    hour, mins = divmod(minute, 60)
    return f"{(hour - 1) % 12 + 1}:{mins:02d} {'AM' if hour < 12 else 'PM'}"


_CLOCK = pl.Series([_clock(m) for m in range(24 * 60)], dtype=pl.String)


@dataclass
class Counts:
    """What one person (or the whole project) produced."""

    diary_rows: int = 0
    diary_files: int = 0
    diary_bytes: int = 0
    labs_rows: int = 0
    labs_files: int = 0
    next_day_rows: int = 0
    next_day_files: int = 0
    night_all_rows: int = 0
    night_all_files: int = 0
    night_tenth_rows: int = 0
    night_tenth_files: int = 0

    def add(self, other: Counts) -> None:
        for key, value in asdict(other).items():
            setattr(self, key, getattr(self, key) + value)


def _phase_levels(rng: np.random.Generator, days: int) -> np.ndarray:
    """A piecewise-constant habit multiplier per day (phases of 3 to 9 weeks)."""
    out = np.empty(days)
    start = 0
    while start < days:
        length = int(rng.integers(PHASE_DAYS[0], PHASE_DAYS[1] + 1))
        out[start : start + length] = PHASE_LEVELS[int(rng.integers(len(PHASE_LEVELS)))]
        start += length
    return out


def _fixed2(values: np.ndarray) -> pl.Expr:
    """'%.2f' of non-negative floats, vectorised (Polars has no fixed-decimals cast)."""
    cents = np.rint(values * 100).astype(np.int64)
    return pl.format(
        "{}.{}",
        pl.Series(cents // 100),
        pl.Series(cents % 100).cast(pl.String).str.zfill(2),
    )


def _simulate(seed: int, index: int, days: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Diary rows (days 0..days + len(NIGHTS) - 1, the last ones being the nights after the
    history) and lab rows of one person.

    The diary frame has the export's columns plus `_day` (day index), sorted by day and time.
    """
    rng = np.random.default_rng([seed, index])
    pid = person_id(index)
    total_days = days + len(NIGHTS)
    energy_target = float(np.clip(rng.normal(2100, 300), 1500, 3000))
    baseline_crp = float(np.exp(rng.normal(np.log(1.5), 0.6)))
    base_weights = rng.gamma(2.0, 0.5, len(_FOOD_LIST))

    # Per-day food weights: everyday foods fixed, fermented and ultra-processed foods in phases.
    weights = np.tile(base_weights, (total_days, 1))
    for idx in _PLANTED_INDEX.values():
        weights[:, idx] *= _phase_levels(rng, total_days)[:, None]
    cumulative = np.cumsum(weights, axis=1)

    # Which days are logged, and how many rows each.
    status = rng.random(total_days)
    rows_per_day = rng.poisson(ROWS_PER_DAY, total_days).clip(5, None)
    partial = status < PARTIAL_P + UNLOGGED_P
    rows_per_day[partial] = rng.integers(1, 3, int(partial.sum()))
    rows_per_day[status < UNLOGGED_P] = 0
    # The nights after the history are always logged.
    rows_per_day[days:] = rows_per_day[days:].clip(5, None)
    day = np.repeat(np.arange(total_days), rows_per_day)
    n = day.size

    # Foods by inverse CDF on the day's weights; portions scaled so the day meets its energy.
    u = rng.random(n) * cumulative[day, -1]
    food = (u[:, None] > cumulative[day]).sum(axis=1).clip(0, len(_FOOD_LIST) - 1)
    grams = _PORTION[food] * rng.lognormal(0.0, 0.25, n)
    kcal_day = np.bincount(day, weights=_KCAL[food] * grams / 100, minlength=total_days)
    full_day = np.bincount(day, minlength=total_days) >= 5
    target = energy_target * rng.lognormal(0.0, 0.1, total_days)
    scale = np.where(full_day, target / np.maximum(kcal_day, 1.0), 1.0).clip(0.25, 2.5)
    grams = grams * scale[day]
    fl_oz = _DRINK_FL_OZ[food] & (rng.random(n) < FL_OZ_P)
    fl_oz_amount = np.round(grams / FL_OZ_GRAMS * 4) / 4  # quarter ounces, as apps log them
    fl_oz &= fl_oz_amount > 0
    grams = np.where(fl_oz, fl_oz_amount * FL_OZ_GRAMS, np.round(grams, 2))

    group = rng.choice(len(GROUPS), n, p=_GROUP_WEIGHTS)
    lo, hi = _GROUP_MINUTES[group, 0], _GROUP_MINUTES[group, 1]
    minute = lo + (rng.random(n) * (hi - lo)).astype(np.int64)
    blank_time = rng.random(n) < BLANK_TIME_P
    order = np.lexsort((minute, day))
    day, food, grams, fl_oz, fl_oz_amount = (
        day[order],
        food[order],
        grams[order],
        fl_oz[order],
        fl_oz_amount[order],
    )
    group, minute, blank_time = group[order], minute[order], blank_time[order]

    days_iso = pl.Series([(START + timedelta(days=d)).isoformat() for d in range(total_days)])
    columns: dict[str, Any] = {
        "Day": days_iso.gather(day),
        "Time": pl.when(pl.Series(blank_time)).then(None).otherwise(_CLOCK.gather(minute)),
        "Group": pl.Series(GROUPS).gather(group),
        "Food Name": pl.Series(FOOD_NAMES).gather(food),
        "Amount": pl.concat_str(
            _fixed2(np.where(fl_oz, fl_oz_amount, grams)),
            pl.when(pl.Series(fl_oz)).then(pl.lit(" fl oz")).otherwise(pl.lit(" g")),
        ),
    }
    blanks = rng.random((n, len(_RANDOM_BLANKS))) < BLANK_NUTRIENT_P
    for header, _ in _NUTRIENT_COLUMNS:
        values = _PER_100G[header][food] * grams / 100
        if header in _RANDOM_BLANKS:
            values = np.where(blanks[:, _RANDOM_BLANKS.index(header)], np.nan, values)
        columns[header] = pl.Series(values).fill_nan(None)
    columns["Category"] = pl.Series([f.category_label for f in _FOOD_LIST]).gather(food)
    diary = pl.select(**columns).with_columns(pl.Series("_day", day))
    assert tuple(diary.columns[:-1]) == SERVINGS_HEADER

    # CRP draws every 2-6 weeks over the history, from the servings actually eaten before them.
    draws = []
    d = int(rng.integers(LAB_GAP_DAYS[0], 29))
    while d < days:
        draws.append(d)
        d += int(rng.integers(LAB_GAP_DAYS[0], LAB_GAP_DAYS[1] + 1))
    draw_days = np.array(draws, dtype=np.int64)
    servings = {
        c: np.bincount(
            day,
            weights=np.where(np.isin(food, idx), grams / SERVING_G[c], 0.0),
            minlength=total_days,
        )
        for c, idx in _PLANTED_INDEX.items()
    }

    def trailing28(x: np.ndarray) -> np.ndarray:
        csum = np.concatenate([[0.0], np.cumsum(x)])
        lo = np.maximum(draw_days - 28, 0)
        return (csum[draw_days] - csum[lo]) / np.maximum(draw_days - lo, 1)

    ln_crp = (
        np.log(baseline_crp)
        + np.log(FERMENTED_RATIO) * trailing28(servings["fermented"])
        + np.log(ULTRA_PROCESSED_RATIO) * trailing28(servings["ultra_processed"])
        + rng.normal(0, EPS_SD, draw_days.size)
    )
    crp = np.exp(ln_crp)
    acute = rng.random(draw_days.size) < ACUTE_P
    crp = np.where(acute, rng.uniform(15, 80, draw_days.size), crp)
    draw_minute = rng.integers(7 * 60, 10 * 60 + 45, draw_days.size)
    collected = [
        f"{(START + timedelta(days=int(dd))).isoformat()} {m // 60:02d}:{m % 60:02d}"
        for dd, m in zip(draw_days, draw_minute, strict=True)
    ]
    labs = pl.DataFrame(
        {
            "Patient": [pid] * draw_days.size,
            "Collected": collected,
            "Test": [HS_CRP_TEST] * draw_days.size,
            "Result": _fixed2_list(crp),
            "Units": ["mg/L"] * draw_days.size,
            "Reference Range": ["0.0-3.0"] * draw_days.size,
            "Flag": ["H" if v > 3.0 else None for v in crp],
        },
        schema=dict.fromkeys(LABS_HEADER, pl.String),
    )
    return diary, labs


def _fixed2_list(values: np.ndarray) -> list[str]:
    return [f"{v:.2f}" for v in values]


def _write_servings(frame: pl.DataFrame, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.drop("_day").write_csv(
        path, include_bom=True, line_terminator="\r\n", float_precision=2, null_value=""
    )
    return path.stat().st_size


def month_starts(days: int) -> list[int]:
    """Day indices where a calendar month starts within 0..days-1 (0 always)."""
    return [0, *(d for d in range(1, days) if (START + timedelta(days=d)).day == 1)]


def _write_person(args: tuple[Path, int, int, int]) -> Counts:
    out, seed, index, days = args
    pid = person_id(index)
    diary, labs = _simulate(seed, index, days)
    counts = Counts()
    day = diary["_day"].to_numpy()
    cronometer = out / "data" / "raw" / "bench" / "cronometer" / pid
    starts = [*month_starts(days), days]
    for lo, hi in itertools.pairwise(starts):
        a, b = np.searchsorted(day, [lo, hi])
        if b <= a:
            continue  # a month with nothing logged has no export
        month = (START + timedelta(days=lo)).strftime("%Y-%m")
        counts.diary_bytes += _write_servings(
            diary.slice(int(a), int(b - a)), cronometer / f"servings_{month}.csv"
        )
        counts.diary_rows += int(b - a)
        counts.diary_files += 1
    for offset, (folder, every) in enumerate(NIGHTS):
        if (index - 1) % every:
            continue
        night = days + offset
        a, b = np.searchsorted(day, [night, night + 1])
        name = (START + timedelta(days=night)).isoformat()
        _write_servings(
            diary.slice(int(a), int(b - a)),
            out / folder / "bench" / "cronometer" / pid / f"servings_{name}.csv",
        )
        setattr(counts, f"{folder}_rows", getattr(counts, f"{folder}_rows") + int(b - a))
        setattr(counts, f"{folder}_files", getattr(counts, f"{folder}_files") + 1)
    labs_path = out / "data" / "raw" / "bench" / "labs" / f"{pid}.csv"
    labs_path.parent.mkdir(parents=True, exist_ok=True)
    labs.write_csv(labs_path, line_terminator="\n")
    counts.labs_rows += labs.height
    counts.labs_files += 1
    return counts


def generate(
    out: Path, people: int, days: int, seed: int = 1, jobs: int | None = None
) -> dict[str, Any]:
    """Write the project under `out` (replacing earlier benchmark data); return the manifest."""
    if people < 1 or days < 2:
        raise ValueError("need at least 1 person and 2 days")
    started = time.perf_counter()
    out = Path(out)
    for sub in (out / "data" / "raw" / "bench", *(out / folder for folder, _ in NIGHTS)):
        if sub.exists():
            shutil.rmtree(sub)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sources.yaml").write_text(SOURCES_YAML, encoding="utf-8")
    tasks = [(out, seed, i, days) for i in range(1, people + 1)]
    # Starting a worker costs about a second, worth it only from a few dozen people up.
    if jobs is None:
        jobs = (os.cpu_count() or 1) if people >= 50 else 1
    jobs = max(1, min(jobs, people))
    totals = Counts()
    if jobs == 1:
        for task in tasks:
            totals.add(_write_person(task))
    else:
        # Spawned, not forked: forking a process whose Polars thread pool is running can deadlock.
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for counts in pool.map(_write_person, tasks, chunksize=max(1, people // (jobs * 8))):
                totals.add(counts)
    manifest: dict[str, Any] = {
        "people": people,
        "days": days,
        "seed": seed,
        "first_day": START.isoformat(),
        "last_day": (START + timedelta(days=days - 1)).isoformat(),
        "next_day": (START + timedelta(days=days)).isoformat(),
        "nights": {
            folder: (START + timedelta(days=days + i)).isoformat()
            for i, (folder, _) in enumerate(NIGHTS)
        },
        "diary_source": DIARY_SOURCE,
        "labs_source": LABS_SOURCE,
        "diary_glob": DIARY_GLOB,
        **asdict(totals),
        "seconds": round(time.perf_counter() - started, 2),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


# ---- many small lab files (the labs-throughput stage) -------------------------------------------

LAB_PORTAL_DIR = "lab_portal"  # a project of its own beside the benchmark's project
LAB_PORTAL_SOURCE = "bench_lab_portal"
LAB_PORTAL_GLOB = "portal/*/report_*.csv"  # relative to LAB_PORTAL_DIR/data/raw/
LAB_PORTAL_ROWS = (10, 100)  # results per report, uniform: a panel, up to a full check-up
# (test name as a portal prints it, unit, reference range, median, log-sd). About two thirds are
# markers of markers.csv; the others (chemistry, blood count) are rejected as "not a marker", as
# they are in a real download. 2 % of hs-CRP results are censored ("<0.2").
LAB_PORTAL_TESTS: tuple[tuple[str, str, str, float, float], ...] = (
    (HS_CRP_TEST, "mg/L", "0.0-3.0", 1.5, 0.7),
    # A CRP name without a method would be decided per file from its results (hs or standard) and
    # could then repeat the hs-CRP row of the same draw; LabCorp's name for standard CRP cannot.
    ("C-Reactive Protein, Quant", "mg/L", "0.0-5.0", 3.0, 0.9),
    ("Sed Rate by Westergren", "mm/h", "0-20", 10.0, 0.6),
    ("Ferritin", "ng/mL", "30-400", 120.0, 0.6),
    ("WBC", "x10E3/uL", "3.4-10.8", 6.5, 0.25),
    ("Albumin", "g/dL", "3.5-5.5", 4.4, 0.08),
    ("Fibrinogen", "mg/dL", "200-400", 300.0, 0.2),
    ("Interleukin 6", "pg/mL", "0.0-7.0", 2.5, 0.6),
    ("Sodium", "mmol/L", "134-144", 140.0, 0.02),
    ("Glucose", "mg/dL", "70-99", 92.0, 0.12),
    ("Hemoglobin", "g/dL", "13.0-17.7", 14.5, 0.08),
    ("Platelets", "x10E3/uL", "150-450", 260.0, 0.2),
)
CENSORED_P = 0.02
LAB_PORTAL_YAML = f"""\
# gutsignal scale benchmark, labs throughput (written by bench.generate): portal downloads.
settings:
  timezone: UTC

sources:
  - name: {LAB_PORTAL_SOURCE}
    kind: labs
    format: csv
    path: {LAB_PORTAL_GLOB}
    person: {{from_folder: true}}
{LAB_COLUMNS}"""


def generate_lab_portal(out: Path, files: int, seed: int = 1) -> dict[str, Any]:
    """Write `files` portal downloads under `out` (replacing earlier ones): `files // 10` people
    (at least one), ten reports each, every report a draw of 10 to 100 results. Returns counts.

    Why this shape: a portal download is one small CSV per report, and a nightly sync of many
    people's portals adds thousands of them; the per-file cost of an ingest shows only there."""
    started = time.perf_counter()
    out = Path(out)
    raw = out / "data" / "raw"
    if raw.exists():
        shutil.rmtree(raw)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sources.yaml").write_text(LAB_PORTAL_YAML, encoding="utf-8")
    rng = np.random.default_rng([seed, 0x1AB5])
    sizes = rng.integers(LAB_PORTAL_ROWS[0], LAB_PORTAL_ROWS[1] + 1, files)
    # A download holds draws a few days apart, each the whole panel once: (person, test, time)
    # never repeats, as in a real report, so no row is a duplicate of another.
    position = np.concatenate([np.arange(size) for size in sizes])
    test = position % len(LAB_PORTAL_TESTS)
    draw = position // len(LAB_PORTAL_TESTS)
    median = np.array([t[3] for t in LAB_PORTAL_TESTS])[test]
    log_sd = np.array([t[4] for t in LAB_PORTAL_TESTS])[test]
    value = median * np.exp(rng.normal(0.0, 1.0, test.size) * log_sd)
    censored = (test == 0) & (rng.random(test.size) < CENSORED_P)
    results = np.where(censored, "<0.2", np.char.mod("%.2f", value))
    names = [_csv_cell(t[0]) for t in LAB_PORTAL_TESTS]
    units = [t[1] for t in LAB_PORTAL_TESTS]
    ranges = [t[2] for t in LAB_PORTAL_TESTS]
    lows = np.array([float(r.split("-")[0]) for r in ranges])[test]
    highs = np.array([float(r.split("-")[1]) for r in ranges])[test]
    flags = np.where(value > highs, "H", np.where(value < lows, "L", ""))
    flags[censored] = ""
    people = max(1, files // 10)
    report = np.repeat(np.arange(files), sizes)  # the file each row is in
    # Report k of a person covers month k; its draws are 3 days apart at the report's time.
    day = np.datetime64(START.isoformat()) + (report // people * 30 + 3 * draw).astype(
        "timedelta64[D]"
    )
    minute = rng.integers(7 * 60, 11 * 60, files)[report]
    collected = np.char.add(
        np.datetime_as_string(day, unit="D"),
        np.char.mod(" %02d:", minute // 60).astype(str),
    )
    collected = np.char.add(collected, np.char.mod("%02d", minute % 60))
    pids = np.array([person_id(n % people + 1) for n in range(files)])[report]
    table = np.array(names)[test], np.array(units)[test], np.array(ranges)[test]
    lines = pl.select(
        pl.concat_str(
            [pl.Series(c) for c in (pids, collected, table[0], results, table[1], table[2], flags)],
            separator=",",
        )
    ).to_series()
    header = ",".join(LABS_HEADER)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for n in range(files):
        pid = person_id(n % people + 1)
        path = raw / "portal" / pid / f"report_{n // people + 1:03d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "\n".join(lines.slice(int(offsets[n]), int(sizes[n])).to_list())
        path.write_text(f"{header}\n{body}\n", encoding="utf-8")
    return {
        "lab_portal_files": files,
        "lab_portal_rows": int(sizes.sum()),
        "lab_portal_people": people,
        "lab_portal_bytes": sum(p.stat().st_size for p in raw.rglob("*.csv")),
        "lab_portal_seconds": round(time.perf_counter() - started, 2),
    }


def _csv_cell(text: str) -> str:
    return f'"{text}"' if "," in text else text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__)
    parser.add_argument("--people", type=int, required=True)
    parser.add_argument("--days", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--jobs", type=int, default=None, help="worker processes (default: cores, for 50+ people)"
    )
    args = parser.parse_args(argv)
    try:
        manifest = generate(args.out, args.people, args.days, args.seed, args.jobs)
    except ValueError as exc:
        print(f"bench.generate: {exc}", file=sys.stderr)
        return 2
    print(
        f"{manifest['diary_rows']:,} diary rows in {manifest['diary_files']:,} files "
        f"({int(manifest['diary_bytes']) / 1e6:,.1f} MB), {manifest['labs_rows']:,} lab results, "
        f"{manifest['next_day_rows']:,} next-day rows; {manifest['seconds']} s -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
