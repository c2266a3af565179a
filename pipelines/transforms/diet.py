"""Where categorised diet entries become servings and days: `diet_daily` and `diet_summary`.

Servings use one standard serving size per category (`pipelines/data/serving_sizes.csv`), applied
to the grams logged; alcohol is counted in standard drinks (14 g ethanol) from `alcohol_g` when the
source reports it. A day counts as logged when it looks complete (the settings' rules); daily
totals from sources without food rows fill the days without entries; undated totals (NHANES
recalls) become the per-person `diet_summary`.

The second half of the diet features: the categories come from
`pipelines.transforms.food_categories`.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from importlib import resources

import polars as pl

from pipelines.config import Settings
from pipelines.schema import (
    NUTRIENTS,
    RULE_COMPLETE,
    RULE_ENERGY,
    RULE_ENTRIES,
    RULE_NOTHING,
)
from pipelines.transforms.dii import add_dii

ALCOHOL_G_PER_DRINK = 14.0
IMPLAUSIBLE_DAY_KCAL = 10_000.0
# Without a reported alcohol_g we assume a 12% ABV drink (wine), so 1 g of drink ~ 0.095 g ethanol.
ALCOHOL_FRACTION_FALLBACK = 0.095


@cache
def load_serving_sizes() -> dict[str, float]:
    """Grams per standard serving, by category."""
    text = resources.files("pipelines.data").joinpath("serving_sizes.csv").read_text("utf-8")
    table = pl.read_csv(text.encode())
    return dict(zip(table["category"], table["grams_per_serving"].cast(pl.Float64), strict=True))


def diet_daily_from_sums(
    sums: pl.DataFrame,
    settings: Settings,
    reported: pl.DataFrame | None = None,
    fill_gaps: bool = True,
) -> pl.DataFrame:
    """diet_daily's rows, one per person-day over each person's whole logged range, from the
    entries summed to person-days (`sums`: person_id, day, entries, the nutrients, each
    category's `<category>_servings` and `_upf_kcal`, the energy of ultra-processed entries;
    `pipelines.steps.diet_days` sums them where the entries are).

    Days inside a person's range with no entries are present with `logged = False`, so coverage
    and exposure windows can tell "ate nothing reported" from "did not log". A day counts as
    logged only when it looks complete: at least `logged_min_kcal` and `logged_min_entries`.
    Nutrients are null (not zero) when no entry of the day reported them. The DII (with the count
    of parameters it used) is computed per day from the day's nutrient totals.

    `reported` holds daily totals from sources without food-level rows (Cronometer's daily
    summary, MyFitnessPal): they fill person-days that have no entries, with nutrients but null
    category servings (the foods are unknown), and count as logged when the user marked the day
    complete or when energy reaches `logged_min_kcal`. An unticked "complete" flag (Cronometer's
    `Completed` false) does not make a day unlogged: users rarely tick it, and every real export
    seen has it false on every day. `diet_source` says which kind of row each day came from, and
    `logged_rule` how its `logged` was decided ("marked complete", `energy_rule`, `entries_rule`
    or "nothing logged" for a gap day).

    `fill_gaps=False` leaves out the unlogged days inside each range (see `diet_gap_keys`): a
    caller that builds only some of a person's days adds them itself with `diet_gap_days`.
    """
    daily = _days_from_sums(sums, settings)
    if reported is not None and reported.height:
        daily = _add_reported_days(daily, reported, settings)
    full = add_dii(daily)
    first = ["person_id", "day", "logged", "entries"]
    full = full.select(first + [c for c in full.columns if c not in first])
    if fill_gaps:
        gaps = diet_gap_days(diet_gap_keys(full), settings, full.schema)
        full = pl.concat([full, gaps])
    return full.sort("person_id", "day")


def diet_gap_keys(days: pl.DataFrame) -> pl.DataFrame:
    """The (person_id, day) keys of a person's unlogged days: between their first and last day with
    entries, with neither entries nor a reported total.

    `days` holds at least person_id, day and entries of every diet_daily row of the people
    concerned other than such gap days (it may hold gap days too: they are found again).
    """
    with_entries = days.filter(pl.col("entries") > 0)
    calendar = (
        with_entries.group_by("person_id")
        .agg(pl.date_ranges(pl.col("day").min(), pl.col("day").max()).first().alias("day"))
        .explode("day", empty_as_null=True)  # as in Polars 1 (its default changes in 2)
    )
    present = days.filter(~_is_gap_day()).select("person_id", "day")
    return calendar.join(present, on=["person_id", "day"], how="anti").select("person_id", "day")


def diet_gap_changes(days: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The gap-day keys to remove and to add, given some people's diet_daily rows (person_id,
    day, entries and diet_source of all their rows, gap days included): a gap row that is no
    longer a gap, and a gap that has no row yet. A gap row depends on its key only (and on the
    settings and code, which recompute everyone when they change), so the others stay as they are.
    """
    keys = ["person_id", "day"]
    wanted = diet_gap_keys(days)
    have = days.filter(_is_gap_day()).select(keys)
    return have.join(wanted, on=keys, how="anti"), wanted.join(have, on=keys, how="anti")


def diet_gap_days(
    keys: pl.DataFrame, settings: Settings, schema: Mapping[str, pl.DataType]
) -> pl.DataFrame:
    """The diet_daily rows (columns and types of `schema`) of the gap days `keys`: no entries, no
    nutrients, no servings, `diet_source` null. The flags and the DII come from the same
    expressions as a logged day's, so an incremental run that writes gap rows on its own gives
    exactly the rows a full build does."""
    bare = keys.select(
        pl.col("person_id").cast(pl.String),
        pl.col("day").cast(pl.Date),
        pl.lit(0, pl.Int64).alias("entries"),
        pl.lit(None, pl.Float64).alias("energy_kcal"),
        pl.lit(None, pl.String).alias("diet_source"),
    )
    gaps = add_dii(bare.with_columns(*_day_flags(settings)))
    return gaps.select(
        (pl.col(c) if c in gaps.columns else pl.lit(None)).cast(dtype).alias(c)
        for c, dtype in schema.items()
    )


def _is_gap_day() -> pl.Expr:
    return (pl.col("entries") == 0) & pl.col("diet_source").is_null()


def entries_rule(settings: Settings) -> str:
    """The `logged_rule` of a day with food entries."""
    return (
        f"{RULE_ENTRIES} (at least {settings.logged_min_entries} entries "
        f"and {settings.logged_min_kcal:g} kcal)"
    )


def energy_rule(settings: Settings) -> str:
    """The `logged_rule` of a day from a reported daily total not marked complete."""
    return f"{RULE_ENERGY} (energy at least {settings.logged_min_kcal:g} kcal)"


def _day_flags(settings: Settings) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """`implausible_energy`, `logged` and `logged_rule` of a day from its `entries` and
    `energy_kcal`."""
    # A day above 10,000 kcal is a logging error (a unit slip, a duplicated recipe), not a diet:
    # it is kept and flagged but does not count as logged, so no exposure window averages it.
    implausible = pl.col("energy_kcal").fill_null(0.0) > IMPLAUSIBLE_DAY_KCAL
    logged = (
        (pl.col("entries") >= settings.logged_min_entries)
        & (pl.col("energy_kcal").fill_null(0.0) >= settings.logged_min_kcal)
        & ~implausible
    )
    rule = (
        pl.when(pl.col("entries") > 0)
        .then(pl.lit(entries_rule(settings)))
        .otherwise(pl.lit(RULE_NOTHING))
    )
    return (
        implausible.alias("implausible_energy"),
        logged.alias("logged"),
        rule.alias("logged_rule"),
    )


def _add_reported_days(
    daily: pl.DataFrame, reported: pl.DataFrame, settings: Settings
) -> pl.DataFrame:
    """Fill person-days without entries from reported daily totals (see build_diet_daily)."""
    dated = reported.filter(pl.col("day").is_not_null())
    if "period" in dated.columns:
        dated = dated.filter(pl.col("period").fill_null("day") == "day")
    # `daily` holds only days with entries (gap days are added after, see diet_gap_keys).
    with_entries = daily.select("person_id", "day")
    nutrient_cols = [n for n in NUTRIENTS if n in dated.columns]
    if "completed" not in dated.columns:
        dated = dated.with_columns(pl.lit(None, pl.Boolean).alias("completed"))
    energy_ok = (
        pl.col("energy_kcal").fill_null(0.0) >= settings.logged_min_kcal
        if "energy_kcal" in nutrient_cols
        else pl.lit(False)
    )
    extra = (
        dated.join(with_entries, on=["person_id", "day"], how="anti")
        .group_by("person_id", "day")
        .agg(
            *[
                pl.when(pl.col(n).is_not_null().any()).then(pl.col(n).sum()).alias(n)
                for n in nutrient_cols
            ],
            # any() of an all-null column is False, so test for a flag first
            pl.when(pl.col("completed").is_not_null().any())
            .then(pl.col("completed").any())
            .alias("_completed"),
        )
        .with_columns(
            # Completed false means "not marked", not "incomplete": real exports have it false on
            # every day, so an unmarked day is judged by its energy like a day without the flag.
            (
                (pl.col("_completed").fill_null(False) | energy_ok)
                & ~(pl.col("energy_kcal").fill_null(0.0) > IMPLAUSIBLE_DAY_KCAL)
                if "energy_kcal" in nutrient_cols
                else pl.col("_completed").fill_null(False) | energy_ok
            ).alias("logged"),
            pl.when(pl.col("_completed").fill_null(False))
            .then(pl.lit(RULE_COMPLETE))
            .otherwise(pl.lit(energy_rule(settings)))
            .alias("logged_rule"),
            (
                pl.col("energy_kcal").fill_null(0.0) > IMPLAUSIBLE_DAY_KCAL
                if "energy_kcal" in nutrient_cols
                else pl.lit(False)
            ).alias("implausible_energy"),
            pl.lit(0, pl.Int64).alias("entries"),
            pl.lit("reported").alias("diet_source"),
        )
        .drop("_completed")
    )
    return pl.concat([daily, extra], how="diagonal_relaxed")


def _days_from_sums(sums: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Person-days from the entries' sums (only the days that have some): the energy shares
    and the day's flags."""
    daily = sums.with_columns(
        pl.when(pl.col("energy_kcal") > 0)
        .then(100.0 * pl.col("_upf_kcal") / pl.col("energy_kcal"))
        .alias("ultra_processed_energy_pct"),
        pl.when(pl.col("energy_kcal") > 0)
        .then(1000.0 * pl.col("fiber_g") / pl.col("energy_kcal"))
        .alias("fiber_g_per_1000kcal")
        if "fiber_g" in sums.columns
        else pl.lit(None, pl.Float64).alias("fiber_g_per_1000kcal"),
    ).drop("_upf_kcal")

    return daily.with_columns(
        pl.col("entries").cast(pl.Int64),
        *_day_flags(settings),
        pl.lit("entries").alias("diet_source"),
    )


def build_diet_summary(reported: pl.DataFrame) -> pl.DataFrame:
    """Person-level intake for cross-sectional cohorts: reported rows without a day.

    One row per person and period (e.g. NHANES' two-day recall mean) with the canonical nutrients,
    energy-adjusted fibre and the DII with its parameter count; the input of between-person models.
    """
    undated = reported.filter(pl.col("day").is_null())
    nutrient_cols = [n for n in NUTRIENTS if n in undated.columns]
    summary = undated.group_by("person_id", "period").agg(pl.col(n).mean() for n in nutrient_cols)
    if "fiber_g" in nutrient_cols and "energy_kcal" in nutrient_cols:
        summary = summary.with_columns(
            pl.when(pl.col("energy_kcal") > 0)
            .then(1000.0 * pl.col("fiber_g") / pl.col("energy_kcal"))
            .alias("fiber_g_per_1000kcal")
        )
    return add_dii(summary).sort("person_id", "period")
