"""Exposure windows: what a person ate in the days before each chronic draw.

For every chronic draw (`excluded_reason` null in `marker_draws`) on day D and every window length w
in `settings.windows`, the exposure is the mean of a feature over the *logged* days in
[D - w, D - 1]. The draw day itself is excluded because blood is usually drawn in the morning,
before that day's food (shared/reference/science.md section 5.1).

- `days_logged` counts the logged days in the window on which the feature was reported (non-null).
  For category servings that is every logged day; a nutrient a source does not report counts
  nothing.
- `complete` requires `days_logged >= settings.min_logged_fraction * w` (80% by default, so 3 of 3,
  6 of 7, 12 of 14, 23 of 28 and 45 of 56 days). Incomplete windows are kept, with their value, so a
  report can say why a draw was not analysed; the association step uses complete windows only.
- Days that were not logged (absent from `diet_daily` or `logged = False`) never count, even when
  they carry partial nutrient values: a half-logged day would bias intakes down.

Vectorised with cumulative sums: for each person, running totals of each feature (and of the number
of days reporting it) over their logged days; a window total is the running total at D - 1 minus the
running total at D - w - 1, both found with one as-of join. The work grows with persons x days +
draws x windows, never with a Python loop over draws.

"""

from __future__ import annotations

import math
from collections.abc import Collection

import polars as pl

from pipelines.config import Settings
from pipelines.schema import CATEGORIES, EXPOSURE_WINDOWS_SCHEMA, NUTRIENTS
from pipelines.transforms.dii import NUTRIENT_TO_DII, add_dii


def feature_columns(diet_daily: pl.DataFrame) -> list[str]:
    """Default features: `dii` and nutrients with values, all category servings, UPF energy %."""
    with_values = {c for c in diet_daily.columns if diet_daily[c].null_count() < diet_daily.height}
    return features_from(diet_daily.columns, with_values)


def features_from(columns: Collection[str], with_values: Collection[str]) -> list[str]:
    """`feature_columns` from the diet_daily column names and those holding any value, so a
    caller can work them out in SQL without loading the table."""
    features = ["dii"] if "dii" in with_values else []
    features += [n for n in NUTRIENTS if n in with_values]
    features += [f"{c}_servings" for c in CATEGORIES if f"{c}_servings" in columns]
    if "ultra_processed_energy_pct" in columns:
        features.append("ultra_processed_energy_pct")
    return features


def min_days_logged(window_days: int, min_logged_fraction: float) -> int:
    """Logged days a window needs to count as complete."""
    # The epsilon keeps 0.8 * 5 = 4.000000000000001 from demanding 5 days.
    return math.ceil(min_logged_fraction * window_days - 1e-9)


def build_exposure_windows(
    diet_daily: pl.DataFrame,
    draws: pl.DataFrame,
    settings: Settings,
    features: list[str] | None = None,
    window_dii: bool = False,
) -> pl.DataFrame:
    """Long table: one row per chronic draw x window x feature (EXPOSURE_WINDOWS_SCHEMA). With
    `window_dii`, each draw's windows also have a row of feature "dii_window" (`dii_of_windows`),
    after all the others."""
    feats = feature_columns(diet_daily) if features is None else list(features)
    missing = [f for f in feats if f not in diet_daily.columns]
    if missing:
        raise ValueError(f"diet_daily has no column(s) {missing} to build exposure windows from")
    chronic = draws.filter(
        pl.col("excluded_reason").is_null() & pl.col("day").is_not_null()
    ).select("person_id", "marker", "collected_at", "day")
    if chronic.height == 0 or not feats or not settings.windows:
        return pl.DataFrame(schema=EXPOSURE_WINDOWS_SCHEMA)

    logged = pl.col("logged").fill_null(False) if "logged" in diet_daily.columns else pl.lit(True)
    daily = diet_daily.filter(logged).select(
        pl.col("person_id").cast(pl.String),
        pl.col("day").cast(pl.Date).cast(pl.Int32).alias("d"),
        *[pl.col(f).cast(pl.Float64).fill_nan(None).alias(f"v{i}") for i, f in enumerate(feats)],
    )
    if daily.select(pl.struct("person_id", "d").is_duplicated().any()).item():
        # The contract is one row per person-day; tolerate duplicates by averaging them.
        daily = daily.group_by("person_id", "d").agg(pl.all().mean())
    running = daily.sort("person_id", "d").select(
        "person_id",
        "d",
        *[
            pl.col(f"v{i}").fill_null(0.0).cum_sum().over("person_id").alias(f"s{i}")
            for i in range(len(feats))
        ],
        *[
            pl.col(f"v{i}").is_not_null().cast(pl.Int64).cum_sum().over("person_id").alias(f"n{i}")
            for i in range(len(feats))
        ],
    )
    totals = [f"s{i}" for i in range(len(feats))] + [f"n{i}" for i in range(len(feats))]

    windows = pl.DataFrame(
        {"window_days": list(settings.windows)}, schema={"window_days": pl.Int64}
    )
    draw_days = (
        chronic.select("person_id", pl.col("day").cast(pl.Int32).alias("d"))
        .unique()
        .join(windows, how="cross")
        .with_columns(
            (pl.col("d") - 1).alias("t_end"),
            (pl.col("d") - 1 - pl.col("window_days")).cast(pl.Int32).alias("t_start"),
        )
    )
    # Running totals at every boundary day: the last logged day at or before it (none -> zero).
    points = (
        pl.concat(
            [
                draw_days.select("person_id", pl.col("t_end").alias("t")),
                draw_days.select("person_id", pl.col("t_start").alias("t")),
            ]
        )
        .unique()
        .sort("person_id", "t")
    )
    at_points = (
        points.join_asof(
            running,
            left_on="t",
            right_on="d",
            by="person_id",
            strategy="backward",
            check_sortedness=False,
        )
        .drop("d")
        .with_columns(pl.col(totals).fill_null(0))
    )
    sums = draw_days.join(
        at_points.rename({c: f"{c}_end" for c in totals}),
        left_on=["person_id", "t_end"],
        right_on=["person_id", "t"],
        how="left",
    ).join(
        at_points.rename({c: f"{c}_start" for c in totals}),
        left_on=["person_id", "t_start"],
        right_on=["person_id", "t"],
        how="left",
    )
    need = pl.col("window_days").replace_strict(
        {w: min_days_logged(w, settings.min_logged_fraction) for w in settings.windows},
        return_dtype=pl.Int64,
    )
    # Sorting the wide draws x windows frame instead of the long result (features times larger)
    # gives a deterministic order at a fraction of the cost.
    wide = (
        chronic.with_columns(pl.col("day").cast(pl.Int32).alias("d"))
        .join(sums, on=["person_id", "d"], how="inner")
        .sort("person_id", "marker", "collected_at", "window_days")
    )
    sum_of = {f: pl.col(f"s{i}_end") - pl.col(f"s{i}_start") for i, f in enumerate(feats)}
    days_of = {f: pl.col(f"n{i}_end") - pl.col(f"n{i}_start") for i, f in enumerate(feats)}
    keys = ["person_id", "marker", "collected_at", "window_days"]
    long = pl.concat(
        [
            wide.select(
                *keys,
                pl.lit(f).alias("feature"),
                sum_of[f].alias("_sum"),
                days_of[f].alias("days_logged"),
            )
            for f in feats
        ]
    )
    out = long.with_columns(
        pl.when(pl.col("days_logged") > 0)
        .then(pl.col("_sum") / pl.col("days_logged"))
        .alias("value"),
        pl.col("window_days").alias("days_in_window"),
        (pl.col("days_logged") >= need).alias("complete"),
    )
    parts = [out, dii_of_windows(wide, keys, sum_of, days_of, need)] if window_dii else [out]
    return pl.concat(
        [
            part.select([pl.col(c).cast(t) for c, t in EXPOSURE_WINDOWS_SCHEMA.items()])
            for part in parts
        ]
    )


def dii_of_windows(
    wide: pl.DataFrame,
    keys: list[str],
    sum_of: dict[str, pl.Expr],
    days_of: dict[str, pl.Expr],
    need: pl.Expr,
) -> pl.DataFrame:
    """The DII of each window's mean intake (rows of feature "dii_window"), from `wide` (one row
    per draw and window, the features' sums `sum_of` over their logged days `days_of`).

    Shivappa's DII is defined on an intake, so the DII of a window is computed on the window's
    mean nutrient intakes (not as the mean of daily DIIs, which differ because the percentile
    transform is not linear). `days_logged` is the fewest days any DII nutrient among the
    features had, and the window is complete only when every such nutrient's window was. None
    of the features a DII nutrient: no rows. Computed on the draws' wide frame, not by pivoting
    the long rows back (which cost more than the windows themselves)."""
    nutrients = [n for n in NUTRIENT_TO_DII if n in sum_of]
    if not nutrients:
        return pl.DataFrame(schema=EXPOSURE_WINDOWS_SCHEMA)
    means = wide.select(
        *keys,
        *[
            pl.when(days_of[n] > 0).then(sum_of[n] / days_of[n]).cast(pl.Float64).alias(n)
            for n in nutrients
        ],
        pl.min_horizontal(days_of[n] for n in nutrients).alias("days_logged"),
        pl.all_horizontal(days_of[n] >= need for n in nutrients).alias("complete"),
    )
    return add_dii(means).select(
        *keys,
        pl.lit("dii_window").alias("feature"),
        pl.col("dii").alias("value"),
        "days_logged",
        pl.col("window_days").alias("days_in_window"),
        "complete",
    )
