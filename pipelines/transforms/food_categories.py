"""Where a diary food gets its gut-food categories: overrides, the reference vocabulary, rules.

A food's categories (docs/food-categories.md) come from, in this order of strength: the user's
overrides file (`settings: food_overrides`), the USDA SR28 reference vocabulary
(`pipelines.transforms.food_reference`: a diary name matched to a reference item takes its
categories), and the taxonomy rules (`pipelines/data/taxonomy.csv`), which are data, not code:
each rule assigns one category to names that match a case-insensitive regular expression, within
the source's food groups it names, unless its exclusion pattern matches too. A food can get
several categories (kefir is fermented and dairy). Every assignment keeps what made it (the rule,
the reference item and its score, or the override line), so a surprising category can be traced
to one line and fixed there.

The first half of the diet features: `pipelines.transforms.diet` turns the categorised entries
into servings and `diet_daily`.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path

import polars as pl

from pipelines.fingerprint import fingerprint
from pipelines.schema import CATEGORIES
from pipelines.transforms.food_reference import REFERENCE_FILE, load_reference, reference_matches


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
        .explode("category", empty_as_null=True)  # as in Polars 1 (its default changes in 2)
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
