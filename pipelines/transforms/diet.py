"""Where a diet entry becomes a gut-food exposure: categories, servings and `diet_daily`.

A food's categories (docs/food-categories.md) come from, in this order of strength: the user's
overrides file (`settings: food_overrides`), the USDA SR28 reference vocabulary
(`pipelines.transforms.food_reference`: a diary name matched to a reference item takes its
categories), and the taxonomy rules (`pipelines/data/taxonomy.csv`), which are data, not code:
each rule assigns one category to names that match a case-insensitive regular expression, within
the source's food groups it names, unless its exclusion pattern matches too. A food can get
several categories (kefir is fermented and dairy). Every assignment keeps what made it (the rule,
the reference item and its score, or the override line), so a surprising category can be traced
to one line and fixed there.

Servings use one standard serving size per category (`pipelines/data/serving_sizes.csv`), applied
to the grams logged; alcohol is counted in standard drinks (14 g ethanol) from `alcohol_g` when the
source reports it.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Collection, Mapping
from functools import cache
from importlib import resources
from pathlib import Path

import polars as pl

from pipelines.config import Settings
from pipelines.fingerprint import fingerprint
from pipelines.schema import (
    CATEGORIES,
    NUTRIENTS,
    RULE_COMPLETE,
    RULE_ENERGY,
    RULE_ENTRIES,
    RULE_NOTHING,
)
from pipelines.transforms.dii import add_dii
from pipelines.transforms.food_reference import REFERENCE_FILE, load_reference, reference_matches

ALCOHOL_G_PER_DRINK = 14.0
IMPLAUSIBLE_DAY_KCAL = 10_000.0
# Without a reported alcohol_g we assume a 12% ABV drink (wine), so 1 g of drink ~ 0.095 g ethanol.
ALCOHOL_FRACTION_FALLBACK = 0.095


@cache
def load_taxonomy() -> pl.DataFrame:
    """The shipped food taxonomy rules (rule_id, category, groups, pattern, exclude, note)."""
    text = resources.files("pipelines.data").joinpath("taxonomy.csv").read_text(encoding="utf-8")
    rules = pl.read_csv(text.encode(), infer_schema=False)
    unknown = set(rules["category"]) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"taxonomy.csv: unknown categories {sorted(unknown)}")
    return rules.with_columns(
        pl.col(c).fill_null("") for c in ("groups", "pattern", "exclude", "note")
    )


@cache
def taxonomy_version() -> str:
    """A short content hash of the shipped taxonomy and reference table, recorded with every
    assignment (an override file adds its own hash, see `categorise_foods`)."""
    data = Path(str(resources.files("pipelines.data")))
    return fingerprint([data / "taxonomy.csv", data / REFERENCE_FILE])[:12]


@cache
def load_serving_sizes() -> dict[str, float]:
    """Grams per standard serving, by category."""
    text = resources.files("pipelines.data").joinpath("serving_sizes.csv").read_text("utf-8")
    table = pl.read_csv(text.encode())
    return dict(zip(table["category"], table["grams_per_serving"].cast(pl.Float64), strict=True))


def _rule_hits(rule: Mapping[str, str]) -> pl.Expr:
    """Whether a rule matches a (food, category_raw) row: the name matches `pattern` (whole
    words), the source's food group matches `groups` (a leading ! means "not one of"), and the
    name does not match `exclude`."""
    name = pl.col("food").fill_null("")
    hit = pl.lit(True)
    if rule["pattern"]:
        hit = hit & name.str.contains(rf"(?i)\b(?:{rule['pattern']})\b")
    groups = rule["groups"]
    if groups.startswith("!"):
        hit = hit & ~pl.col("category_raw").fill_null("").str.contains(f"(?i)^(?:{groups[1:]})$")
    elif groups:
        hit = hit & pl.col("category_raw").fill_null("").str.contains(f"(?i)^(?:{groups})$")
    if rule["exclude"]:
        hit = hit & ~name.str.contains(rf"(?i)\b(?:{rule['exclude']})\b")
    return hit


def categorise_by_rules(foods: pl.DataFrame, rules: pl.DataFrame | None = None) -> pl.DataFrame:
    """The taxonomy rules alone: one row per (food, category_raw, category) with the first
    matching rule's id. Used on diary names no reference item matches, and to build the
    reference table itself."""
    rules = load_taxonomy() if rules is None else rules
    distinct = foods.select("food", "category_raw").unique()
    matches = [
        distinct.filter(_rule_hits(rule)).with_columns(
            pl.lit(rule["category"]).alias("category"), pl.lit(rule["rule_id"]).alias("rule_id")
        )
        for rule in rules.iter_rows(named=True)  # ~50 rules; each is vectorised over foods
    ]
    return (
        pl.concat(matches)
        .unique(subset=["food", "category_raw", "category"], keep="first", maintain_order=True)
        .select("food", "category_raw", "category", "rule_id")
        if matches
        else distinct.with_columns(
            pl.lit(None, pl.String).alias("category"), pl.lit(None, pl.String).alias("rule_id")
        ).clear()
    )


def categorise_foods(
    foods: pl.DataFrame, rules: pl.DataFrame | None = None, overrides: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Assign categories to distinct (food, category_raw) pairs; see docs/food-categories.md.

    1. The reference vocabulary (`food_reference`): a diary name that matches a USDA SR28 item
       at or above MATCH_THRESHOLD takes that item's categories, unless the source's own food
       group is a USDA group other than the item's (then the source's group is the better
       evidence, and the rules decide).
    2. The taxonomy rules, on the diary name with the source's food group as evidence.
    3. The user's overrides (`settings: food_overrides`), which win over both.

    One row per (food, category_raw, category) with its provenance: `rule_id` (the taxonomy
    rule, `reference:<ndb_no>` or `override:<line>`), `match_score` (the reference match, null
    for rules and overrides) and `taxonomy_version`.
    """
    distinct = foods.select("food", "category_raw").unique()
    names = distinct["food"].drop_nulls().unique().to_list()
    usda_groups = set(load_reference()["food_group"].unique().to_list())
    matched = distinct.join(reference_matches(names), on="food", how="inner").filter(
        pl.col("category_raw").is_null()
        | ~pl.col("category_raw").is_in(sorted(usda_groups))
        | (pl.col("category_raw") == pl.col("food_group"))
    )
    by_reference = (
        matched.with_columns(pl.col("ref_categories").str.split(";").alias("category"))
        .explode("category")
        .filter(pl.col("category").fill_null("") != "")
        .select(
            "food",
            "category_raw",
            "category",
            ("reference:" + pl.col("ndb_no")).alias("rule_id"),
            "match_score",
        )
    )
    rest = distinct.join(
        matched.select("food", "category_raw"),
        on=["food", "category_raw"],
        how="anti",
        nulls_equal=True,
    )
    by_rules = categorise_by_rules(rest, rules).with_columns(
        pl.lit(None, pl.Float64).alias("match_score")
    )
    assigned = pl.concat([by_reference, by_rules])
    version = taxonomy_version()
    if overrides is not None and overrides.height:
        assigned = apply_overrides(distinct, assigned, overrides)
        version += "+" + hashlib.sha256(overrides.write_csv().encode()).hexdigest()[:8]
    return assigned.with_columns(pl.lit(version).alias("taxonomy_version")).sort(
        "food", "category_raw", "category", nulls_last=True
    )


OVERRIDE_COLUMNS = ("food", "match", "categories")
OVERRIDES_HOWTO = (
    "To give a food its categories, add its line to your overrides file (settings: "
    "food_overrides in sources.yaml, a CSV with the header food,match,categories) and replace "
    "CATEGORIES with the categories it belongs to, separated by ';' (e.g. dairy;fermented). "
    "See docs/food-categories.md for what each category means."
)


def override_line(food: str) -> str:
    """The overrides-file line that gives exactly this food name its categories (CSV-quoted
    when the name holds a comma or a quote, as Cronometer's names often do)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([food, "exact", "CATEGORIES"])
    return buffer.getvalue()


OVERRIDE_MATCHES = ("exact", "contains", "regex")


def load_overrides(path: Path) -> pl.DataFrame:
    """The user's overrides CSV (`food,match,categories`), checked line by line.

    `match` is exact (the whole name, case-insensitive), contains (a part of the name) or regex;
    `categories` is `;`-separated: a name adds that category, `-name` removes it, `-*` removes
    every category the classifier gave. Errors name the file, the line and what to change.
    """
    from pipelines.config import ConfigError  # the same error type as sources.yaml problems

    where = f"settings.food_overrides ({path})"
    if not path.is_file():
        raise ConfigError(
            f"{where}: file not found; create it with the header food,match,categories"
        )
    table = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    missing = [c for c in OVERRIDE_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(
            f"{where}: missing column(s) {missing}; the header is food,match,categories"
        )
    table = table.select(
        pl.int_range(2, pl.len() + 2).alias("line"),
        pl.col("food").str.strip_chars(),
        pl.col("match").fill_null("exact").str.strip_chars().str.to_lowercase(),
        pl.col("categories").fill_null("").str.replace_all(" ", ""),
    )
    for row in table.iter_rows(named=True):
        at = f"{where}, line {row['line']}"
        if not row["food"]:
            raise ConfigError(f"{at}: the food column is empty")
        if row["match"] not in OVERRIDE_MATCHES:
            raise ConfigError(f"{at}: match {row['match']!r} is not one of {OVERRIDE_MATCHES}")
        if row["match"] == "regex":
            try:
                pl.select(pl.lit("").str.contains(row["food"]))
            except pl.exceptions.ComputeError as exc:
                raise ConfigError(f"{at}: not a valid regular expression: {exc}") from exc
        for item in filter(None, row["categories"].split(";")):
            name = item.removeprefix("-")
            if name != "*" and name not in CATEGORIES:
                raise ConfigError(
                    f"{at}: unknown category {name!r}; known: {', '.join(CATEGORIES)}"
                )
    return table


def apply_overrides(
    distinct: pl.DataFrame, assigned: pl.DataFrame, overrides: pl.DataFrame
) -> pl.DataFrame:
    """`assigned` with the overrides applied in file order (a later line wins)."""
    out = assigned
    for row in overrides.iter_rows(named=True):
        name = pl.col("food").fill_null("")
        if row["match"] == "exact":
            hit = name.str.to_lowercase() == row["food"].lower()
        elif row["match"] == "contains":
            hit = name.str.to_lowercase().str.contains(row["food"].lower(), literal=True)
        else:
            hit = name.str.contains(f"(?i){row['food']}")
        targets = distinct.filter(hit)
        if targets.is_empty():
            continue
        keys = ["food", "category_raw"]
        for item in filter(None, row["categories"].split(";")):
            if item == "-*":
                out = out.join(targets, on=keys, how="anti", nulls_equal=True)
            elif item.startswith("-"):
                drop = targets.with_columns(pl.lit(item[1:]).alias("category"))
                out = out.join(drop, on=[*keys, "category"], how="anti", nulls_equal=True)
            else:
                add = targets.with_columns(
                    pl.lit(item).alias("category"),
                    pl.lit(f"override:{row['line']}").alias("rule_id"),
                    pl.lit(None, pl.Float64).alias("match_score"),
                )
                out = pl.concat(
                    [
                        out.join(
                            add.select(*keys, "category"),
                            on=[*keys, "category"],
                            how="anti",
                            nulls_equal=True,
                        ),
                        add.select(out.columns),
                    ]
                )
    return out


def unmapped_foods(entries: pl.DataFrame, categories: pl.DataFrame) -> pl.DataFrame:
    """Foods no rule matched, with their entry count and share of all logged energy."""
    counts = entries.select(
        "person_id", "food", "category_raw", "energy_kcal", pl.lit(1, pl.UInt32).alias("entries")
    )
    return unmapped_foods_from_counts(
        counts, categories, float(entries["energy_kcal"].sum() or 0.0)
    )


def unmapped_pairs(foods: pl.DataFrame, categories: pl.DataFrame) -> pl.DataFrame:
    """The distinct (food, category_raw) of `foods` no rule matched (a null food is no food)."""
    mapped = categories.select("food", "category_raw").unique()
    return (
        foods.filter(pl.col("food").is_not_null())
        .select("food", "category_raw")
        .unique()
        .join(mapped, on=["food", "category_raw"], how="anti", nulls_equal=True)
    )


def unmapped_foods_from_counts(
    counts: pl.DataFrame, categories: pl.DataFrame, total_kcal: float
) -> pl.DataFrame:
    """`unmapped_foods` from entries already counted per (person_id, food, category_raw) or finer:
    `entries` and `energy_kcal` (their sum) per row, and the energy of all entries, `total_kcal`.

    The diet taxonomy step counts in DuckDB, and only for the pairs `unmapped_pairs` found, instead
    of loading every entry: a food's people are counted across all its unmapped category_raw
    values, which per-pair counts of people could not give.
    """
    mapped = categories.select("food", "category_raw").unique()
    return (
        counts.filter(pl.col("food").is_not_null())
        .join(mapped, on=["food", "category_raw"], how="anti", nulls_equal=True)
        .group_by("food")
        .agg(
            pl.col("entries").sum().cast(pl.UInt32),
            pl.col("energy_kcal").sum(),
            pl.col("person_id").n_unique().alias("people"),
        )
        .with_columns(
            (pl.col("energy_kcal") / total_kcal if total_kcal else pl.lit(0.0)).alias(
                "energy_share"
            )
        )
        .sort("energy_kcal", descending=True)
    )


def entry_servings(entries: pl.DataFrame, categories: pl.DataFrame) -> pl.DataFrame:
    """One row per (entry, category) with the servings that entry contributes.

    Entries keep their row identity through `entry_id`, which the caller adds.
    """
    sizes = load_serving_sizes()
    size_expr = pl.col("category").replace_strict(sizes, default=None, return_dtype=pl.Float64)
    alcohol_drinks = (
        pl.coalesce(pl.col("alcohol_g"), pl.col("grams") * ALCOHOL_FRACTION_FALLBACK)
        / ALCOHOL_G_PER_DRINK
    )
    return (
        entries.select("entry_id", "food", "category_raw", "grams", "alcohol_g", "energy_kcal")
        .join(
            categories.select("food", "category_raw", "category"),
            on=["food", "category_raw"],
            nulls_equal=True,
        )
        .with_columns(
            pl.when(pl.col("category") == "alcohol")
            .then(alcohol_drinks)
            .otherwise(pl.col("grams") / size_expr)
            .alias("servings")
        )
    )


def build_diet_daily(
    entries: pl.DataFrame,
    categories: pl.DataFrame,
    settings: Settings,
    reported: pl.DataFrame | None = None,
    unreported_nutrients: Collection[str] = (),
    fill_gaps: bool = True,
) -> pl.DataFrame:
    """Aggregate diet entries to one row per person-day, over each person's whole logged range.

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

    `unreported_nutrients` names nutrient columns left out of `entries` because no entry reports
    them: they come out as null daily columns, exactly as if `entries` had carried them all null,
    so a caller need not load millions of nulls (the diet_daily asset does this). `energy_kcal`
    and `alcohol_g` are read row by row and must stay in `entries` even when all null.

    `fill_gaps=False` leaves out the unlogged days inside each range (see `diet_gap_keys`): a
    caller that builds only some of a person's days adds them itself with `diet_gap_days`.
    """
    daily = _daily_from_entries(entries, categories, settings, unreported_nutrients)
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
        .explode("day")
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


def _daily_from_entries(
    entries: pl.DataFrame,
    categories: pl.DataFrame,
    settings: Settings,
    unreported_nutrients: Collection[str] = (),
) -> pl.DataFrame:
    """Person-days from food-level entries (only the days that have some)."""
    # An entry without a day belongs to no person-day (a full build never had a row for it).
    entries = entries.filter(pl.col("day").is_not_null()).with_row_index("entry_id")
    nutrient_cols = [n for n in NUTRIENTS if n in entries.columns or n in unreported_nutrients]
    per_entry = entry_servings(entries, categories)

    servings = per_entry.group_by("entry_id").agg(
        *[
            pl.col("servings").filter(pl.col("category") == c).sum().alias(f"{c}_servings")
            for c in CATEGORIES
        ],
        (pl.col("category") == "ultra_processed").any().alias("is_upf"),
    )
    enriched = entries.join(servings, on="entry_id", how="left").with_columns(
        *[pl.col(f"{c}_servings").fill_null(0.0) for c in CATEGORIES],
        pl.col("is_upf").fill_null(False),
    )
    daily = enriched.group_by("person_id", "day").agg(
        pl.len().alias("entries"),
        *[
            (
                pl.when(pl.col(n).is_not_null().any()).then(pl.col(n).sum())
                if n in entries.columns
                # what the branch above gives for a column no entry reports
                else pl.lit(None, pl.Float64)
            ).alias(n)
            for n in nutrient_cols
        ],
        *[pl.col(f"{c}_servings").sum() for c in CATEGORIES],
        pl.col("energy_kcal").filter(pl.col("is_upf")).sum().alias("_upf_kcal"),
    )
    daily = daily.with_columns(
        pl.when(pl.col("energy_kcal") > 0)
        .then(100.0 * pl.col("_upf_kcal") / pl.col("energy_kcal"))
        .alias("ultra_processed_energy_pct"),
        pl.when(pl.col("energy_kcal") > 0)
        .then(1000.0 * pl.col("fiber_g") / pl.col("energy_kcal"))
        .alias("fiber_g_per_1000kcal")
        if "fiber_g" in nutrient_cols
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
