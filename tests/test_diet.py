"""Food taxonomy, servings and diet_daily, on hand-built entries with known answers."""

from datetime import date

import polars as pl
import pytest

from pipelines.config import Settings
from pipelines.schema import CATEGORIES, DIET_ENTRY_SCHEMA, conform
from pipelines.steps.diet_days import build_diet_daily
from pipelines.transforms.diet import diet_gap_changes, load_serving_sizes
from pipelines.transforms.food_categories import categorise_foods, load_taxonomy, unmapped_foods


def cats(food: str, category_raw: str | None = None) -> set[str]:
    foods = pl.DataFrame({"food": [food], "category_raw": [category_raw]})
    return set(categorise_foods(foods)["category"].to_list())


@pytest.mark.parametrize(
    ("food", "expected", "absent"),
    [
        ("Kefir, Plain, Lowfat", {"fermented", "dairy"}, {"ultra_processed"}),
        ("Yogurt, Greek, Plain, Whole Milk", {"fermented", "dairy"}, set()),
        ("Frozen Yogurt, Vanilla", {"dairy"}, {"fermented"}),
        ("Sauerkraut, Canned", {"fermented", "vegetables"}, set()),
        ("Diet Cola", {"ultra_processed"}, {"added_sugar"}),
        ("Cola, Regular", {"ultra_processed", "added_sugar"}, set()),
        ("Sourdough Bread", {"gluten_grains"}, {"ultra_processed", "high_fodmap"}),
        ("White Bread", {"gluten_grains", "ultra_processed"}, set()),
        ("Whole Wheat Bread", {"gluten_grains", "whole_grain"}, {"ultra_processed"}),
        ("Oats, Rolled, Dry", {"whole_grain"}, {"gluten_grains"}),
        ("Frankfurter, Beef", {"processed_meat", "ultra_processed"}, {"red_meat"}),
        ("Beef, Ground, 85% Lean, Cooked", {"red_meat"}, {"processed_meat"}),
        ("Green Beans, Boiled", {"vegetables"}, {"legumes"}),
        ("Almond Milk, Unsweetened", set(), {"dairy", "added_sugar", "nuts_seeds"}),
        ("Red Wine", {"alcohol", "polyphenol_rich"}, set()),
        ("Beer, Non-Alcoholic", set(), {"alcohol"}),
        ("Salmon, Atlantic, Cooked", {"oily_fish"}, set()),
    ],
)
def test_taxonomy_rules_with_exclusions_and_multiple_labels(
    food: str, expected: set[str], absent: set[str]
) -> None:
    got = cats(food)
    assert expected <= got, got
    assert not (absent & got), got


def test_source_category_label_is_used() -> None:
    assert "ultra_processed" in cats("Mystery Snack Bites", "Snacks")
    assert "vegetables" in cats("Kohlrabi", "Vegetables and Vegetable Products")


def test_every_assignment_names_its_rule() -> None:
    foods = pl.DataFrame({"food": ["Kimchi", "Apple, Raw"], "category_raw": [None, None]})
    result = categorise_foods(foods)
    rules = set(load_taxonomy()["rule_id"])
    assert result["rule_id"].is_in(rules).all()
    assert result["taxonomy_version"].n_unique() == 1  # which version of the rules, too
    assert len(result["taxonomy_version"][0]) == 12
    assert set(result.filter(pl.col("food") == "Kimchi")["category"]) >= {"fermented"}


def test_taxonomy_categories_and_serving_sizes_cover_the_contract() -> None:
    assert set(load_taxonomy()["category"]) == set(CATEGORIES)
    assert set(load_serving_sizes()) == set(CATEGORIES)


def entries(rows: list[dict]) -> pl.DataFrame:
    return conform(pl.DataFrame(rows), DIET_ENTRY_SCHEMA)


def test_diet_daily_servings_logged_flag_and_gaps() -> None:
    d1, d3 = date(2025, 1, 1), date(2025, 1, 3)
    rows = [
        {
            "person_id": "p",
            "day": d1,
            "food": "Kefir, Plain, Lowfat",
            "grams": 300.0,
            "energy_kcal": 150.0,
            "fiber_g": None,
        },
        {
            "person_id": "p",
            "day": d1,
            "food": "Potato Chips, Salted",
            "grams": 50.0,
            "energy_kcal": 270.0,
            "fiber_g": 2.0,
        },
        {
            "person_id": "p",
            "day": d1,
            "food": "Oats, Rolled, Dry",
            "grams": 80.0,
            "energy_kcal": 600.0,
            "fiber_g": 8.0,
        },
        {
            "person_id": "p",
            "day": d3,
            "food": "Apple, Raw",
            "grams": 160.0,
            "energy_kcal": 80.0,
            "fiber_g": None,
        },
    ]
    df = entries(rows)
    daily = build_diet_daily(df, categorise_foods(df), Settings())
    assert daily.height == 3  # the empty middle day is kept, unlogged
    day1, day2, day3 = daily.iter_rows(named=True)
    assert day1["fermented_servings"] == pytest.approx(2.0)
    assert day1["ultra_processed_servings"] == pytest.approx(0.5)
    assert day1["whole_grain_servings"] == pytest.approx(2.0)
    assert day1["ultra_processed_energy_pct"] == pytest.approx(100 * 270 / 1020)
    assert day1["fiber_g"] == pytest.approx(10.0)
    assert day1["fiber_g_per_1000kcal"] == pytest.approx(10.0 / 1.02)
    assert day1["logged"] is True
    assert day2["entries"] == 0 and day2["logged"] is False
    # One apple is not a complete day, and unreported fibre stays unknown, not zero.
    assert day3["logged"] is False and day3["fiber_g"] is None
    assert day3["fruit_servings"] == pytest.approx(2.0)


def test_alcohol_counts_standard_drinks() -> None:
    df = entries(
        [
            {
                "person_id": "p",
                "day": date(2025, 1, 1),
                "food": "Red Wine",
                "grams": 150.0,
                "alcohol_g": 14.0,
                "energy_kcal": 125.0,
            }
        ]
    )
    daily = build_diet_daily(df, categorise_foods(df), Settings())
    assert daily["alcohol_servings"][0] == pytest.approx(1.0)


def test_servings_are_grams_over_the_serving_size_for_each_category_of_the_pair() -> None:
    """Each entry's servings come from its (food, category_raw) pair: every category the pair
    names, nothing for the others or for a food without a category; a pair that names a
    category twice counts it twice, as summing its rows does."""
    sizes = load_serving_sizes()
    day = date(2025, 1, 1)
    df = entries(
        [
            {"person_id": "p", "day": day, "food": "Kefir", "grams": 32.39, "energy_kcal": 20.0},
            {"person_id": "p", "day": day, "food": "Kefir", "grams": 49.48, "energy_kcal": 30.0},
            {"person_id": "p", "day": day, "food": "Mystery", "grams": 10.0, "energy_kcal": 5.0},
        ]
    )
    categories = pl.DataFrame(
        {
            "food": ["Kefir", "Kefir", "Kefir"],
            "category_raw": pl.Series([None, None, None], dtype=pl.String),
            "category": ["fermented", "dairy", "dairy"],
        }
    )
    row = build_diet_daily(df, categories, Settings()).row(0, named=True)
    # Exactly, not approximately: the sum of each entry's grams / size (divided, not multiplied
    # by the reciprocal, which differs in the last bit for 32.39 / 80).
    fermented = 32.39 / sizes["fermented"] + 49.48 / sizes["fermented"]
    assert row["fermented_servings"] == fermented
    dairy = 2 * (32.39 / sizes["dairy"]) + 2 * (49.48 / sizes["dairy"])
    assert row["dairy_servings"] == pytest.approx(dairy, rel=1e-15)
    assert row["vegetables_servings"] == 0.0
    assert row["entries"] == 3 and row["ultra_processed_energy_pct"] == 0.0


def test_unmapped_foods_report_energy_share() -> None:
    df = entries(
        [
            {
                "person_id": "p",
                "day": date(2025, 1, 1),
                "food": "Zzyzx Paste",
                "energy_kcal": 100.0,
            },
            {"person_id": "p", "day": date(2025, 1, 1), "food": "Kimchi", "energy_kcal": 300.0},
        ]
    )
    unmapped = unmapped_foods(df, categorise_foods(df))
    assert unmapped["food"].to_list() == ["Zzyzx Paste"]
    assert unmapped["energy_share"][0] == pytest.approx(0.25)


def test_taxonomy_maps_90_percent_of_energy_of_common_foods() -> None:
    """A day's worth of common whole and packaged foods, with Cronometer/USDA-style names."""
    from pathlib import Path

    foods = pl.read_csv(Path(__file__).parent / "fixtures" / "taxonomy" / "common_foods.csv")
    mapped = set(categorise_foods(foods.select("food", "category_raw"))["food"])
    share = foods.filter(pl.col("food").is_in(mapped))["kcal"].sum() / foods["kcal"].sum()
    unmapped = foods.filter(~pl.col("food").is_in(mapped))["food"].to_list()
    assert share >= 0.90, unmapped


def test_a_10000_kcal_day_is_flagged_and_not_logged() -> None:
    rows = [
        {
            "person_id": "p",
            "day": date(2025, 1, 1),
            "food": f"Lasagna {i}",
            "grams": 900.0,
            "energy_kcal": 4000.0,
        }
        for i in range(3)
    ]
    df = entries(rows)
    day = build_diet_daily(df, categorise_foods(df), Settings()).row(0, named=True)
    assert day["implausible_energy"] is True and day["logged"] is False
    assert day["energy_kcal"] == pytest.approx(12000.0)  # kept, visible, not averaged


def test_reported_days_not_marked_complete_are_judged_by_energy() -> None:
    """Cronometer's Completed is false on every day of every real export: false means "not
    ticked", so those days count as logged by their energy, and logged_rule says so."""
    entry_rows = [
        {"person_id": "p", "day": date(2025, 1, d), "food": f"Food {i}", "energy_kcal": 700.0}
        for d in (1, 3)
        for i in range(3)
    ]
    df = entries(entry_rows)
    reported = pl.DataFrame(
        {
            "person_id": ["p", "p", "p", "p", "q"],
            "day": [date(2025, 1, d) for d in (5, 6, 7, 8)] + [date(2025, 1, 5)],
            "period": ["day"] * 5,
            "completed": [False, False, True, None, False],
            "energy_kcal": [1900.0, 640.0, 300.0, 2100.0, 12000.0],
        }
    )
    settings = Settings()
    daily = build_diet_daily(df, categorise_foods(df), settings, reported)
    got = {
        (r["person_id"], r["day"].day): (r["logged"], r["logged_rule"])
        for r in daily.iter_rows(named=True)
    }
    energy = "daily total (energy at least 800 kcal)"
    assert got == {
        ("p", 1): (True, "food entries (at least 3 entries and 800 kcal)"),
        ("p", 2): (False, "nothing logged"),  # a gap day between entry days
        ("p", 3): (True, "food entries (at least 3 entries and 800 kcal)"),
        ("p", 5): (True, energy),  # Completed false, 1900 kcal: logged
        ("p", 6): (False, energy),  # Completed false, 640 kcal: too little to be a whole day
        ("p", 7): (True, "marked complete"),  # ticked complete: the user's word
        ("p", 8): (True, energy),  # no Completed column
        ("q", 5): (False, energy),  # 12,000 kcal: implausible, never logged
    }
    # The rule follows the settings in force.
    strict = build_diet_daily(df, categorise_foods(df), Settings(logged_min_kcal=2000), reported)
    day5 = strict.filter((pl.col("person_id") == "p") & (pl.col("day") == date(2025, 1, 5)))
    assert day5.select("logged", "logged_rule").row(0) == (
        False,
        "daily total (energy at least 2000 kcal)",
    )


def _days(rows: list[tuple[str, int, int, str | None]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(p, date(2025, 3, d), n, src) for p, d, n, src in rows],
        schema={
            "person_id": pl.String,
            "day": pl.Date,
            "entries": pl.Int64,
            "diet_source": pl.String,
        },
        orient="row",
    )


def test_gap_changes_write_only_the_gap_days_that_come_or_go() -> None:
    """A nightly day right after the last one changes no gap row; a day after a gap adds the
    days between; a last day gone takes the gap rows before it along; a filled gap is no gap."""
    ann = [("ann", 1, 5, "x"), ("ann", 2, 0, None), ("ann", 3, 0, None), ("ann", 4, 6, "x")]
    keys = ["person_id", "day"]

    def changes(rows: list[tuple[str, int, int, str | None]]) -> tuple[list, list]:
        gone, new = diet_gap_changes(_days(rows))
        return sorted(gone.rows()), sorted(new.rows())

    assert changes(ann) == ([], [])
    assert changes([*ann, ("ann", 5, 4, "x")]) == ([], [])
    assert changes([*ann, ("ann", 8, 4, "x")]) == (
        [],
        [("ann", date(2025, 3, 5)), ("ann", date(2025, 3, 6)), ("ann", date(2025, 3, 7))],
    )
    # The last day with entries removed: the range ends on day 1, days 2 and 3 are no gap.
    assert changes(ann[:3]) == ([("ann", date(2025, 3, 2)), ("ann", date(2025, 3, 3))], [])
    # A reported total on day 3 (its row replaced the gap row): day 2 stays, nothing to write.
    assert changes([ann[0], ann[1], ("ann", 3, 0, "reported"), ann[3]]) == ([], [])
    # A gap row missing (e.g. written by an older version) is added; people stay apart.
    bob = [("bob", 1, 2, "x"), ("bob", 3, 2, "x")]
    gone, new = diet_gap_changes(_days([*ann, *bob]))
    assert gone.is_empty() and new.select(keys).rows() == [("bob", date(2025, 3, 2))]
