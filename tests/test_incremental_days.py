"""diet_daily recomputes only the (person, day) keys whose inputs changed, rebuilds the changed
people's gap days, and ends with the table a full rebuild gives; food_taxonomy counts in DuckDB and
gives the same tables as from every entry."""

from __future__ import annotations

import os
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import pipelines.incremental as incremental
import pipelines.transforms.food_categories as food_categories
from pipelines.config import Settings
from pipelines.defs.features.assets import diet_daily_asset, food_taxonomy
from pipelines.defs.partitions import partition_keys
from pipelines.defs.resources import ProjectResource
from pipelines.project import Project
from pipelines.schema import DIET_ENTRY_SCHEMA, DIET_REPORTED_SCHEMA, conform
from pipelines.steps.diet_days import build_diet_daily
from pipelines.transforms.food_categories import (
    categorise_foods,
    unmapped_foods,
    unmapped_foods_from_counts,
)
from pipelines.warehouse import replace_table

D0 = date(2025, 3, 1)
SOURCES = "sources: []\n"


def day(n: int) -> date:
    return D0 + timedelta(days=n)


def entry(person: str, n: int, food: str = "Apple, Raw", grams: float = 150.0, **kw) -> dict:
    return {
        "person_id": person,
        "day": day(n),
        "food": food,
        "category_raw": kw.pop("category_raw", None),
        "grams": grams,
        "energy_kcal": kw.pop("energy_kcal", 300.0),
        "fiber_g": kw.pop("fiber_g", 3.0),
        "alcohol_g": kw.pop("alcohol_g", None),
        "time": "08:00",
        **kw,
    }


def reported_day(person: str, n: int, kcal: float = 1900.0, completed: bool | None = None) -> dict:
    return {
        "person_id": person,
        "day": day(n),
        "period": "day",
        "completed": completed,
        "energy_kcal": kcal,
        "fiber_g": 21.0,
    }


class Cohort:
    """A warehouse with diet_entries and diet_daily_reported tables we edit between runs."""

    def __init__(self, root: Path, entries: list[dict], reported: list[dict]) -> None:
        self.project = Project(root)
        self.project.ensure_dirs()
        self.project.sources_yaml.write_text(SOURCES, encoding="utf-8")
        self.entries = entries
        self.reported = reported

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        entries = conform(
            pl.DataFrame(self.entries, schema_overrides={"day": pl.Date}, infer_schema_length=None)
            if self.entries
            else pl.DataFrame(schema=DIET_ENTRY_SCHEMA),
            DIET_ENTRY_SCHEMA,
        )
        reported = conform(
            pl.DataFrame(self.reported, infer_schema_length=None)
            if self.reported
            else pl.DataFrame(schema=DIET_REPORTED_SCHEMA),
            DIET_REPORTED_SCHEMA,
        )
        return entries, reported

    def write_inputs(self) -> None:
        entries, reported = self.frames()
        with self.project.warehouse().write() as conn:
            replace_table(conn, "diet_entries", entries)
            replace_table(conn, "diet_daily_reported", reported)

    def run(self) -> dict[str, object]:
        """Materialize food_taxonomy and diet_daily; return diet_daily's recompute counts."""
        self.write_inputs()
        resource = ProjectResource(project_dir=str(self.project.root))
        # One partition of every shard: one materialization, the step over everyone.
        (everyone,) = partition_keys(1)
        diet_daily = diet_daily_asset(dg.StaticPartitionsDefinition([everyone]))
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                [food_taxonomy, diet_daily],
                resources={"project": resource},
                instance=instance,
                partition_key=everyone,
            )
        assert result.success
        (event,) = result.asset_materializations_for_node("diet_daily")
        return {k: event.metadata[k].value for k in ("people_recomputed", "days_recomputed")}

    def table(self, name: str = "diet_daily") -> pl.DataFrame:
        df = self.project.warehouse().table(name)
        return df.sort(df.columns, nulls_last=True)


def full_rebuild(cohort: Cohort, settings: Settings) -> pl.DataFrame:
    """The table a first run (everyone) builds from the cohort's inputs under `settings`:
    build_diet_daily over them all. A first run through the asset gives exactly this
    (`test_a_full_build_in_groups_of_people_equals_one_build`), so the pure function stands in
    for a second Dagster run from scratch after each night, which doubled this file's time."""
    entries, reported = cohort.frames()
    entries = entries.filter(pl.col("day").is_not_null())
    categories = categorise_foods(entries.select("food", "category_raw"))
    daily = build_diet_daily(entries, categories, settings, reported)
    return daily.sort(daily.columns, nulls_last=True)


def assert_same_as_full_rebuild(cohort: Cohort, settings: Settings | None = None) -> pl.DataFrame:
    """The incrementally kept diet_daily is the table a first run on the same inputs writes."""
    got = cohort.table()
    want = full_rebuild(cohort, settings or Settings())
    assert_frame_equal(
        got, want.select(got.columns), check_exact=False, rel_tol=1e-9, abs_tol=1e-12
    )
    return got


def gap_days(table: pl.DataFrame, person: str) -> list[date]:
    gaps = table.filter(
        (pl.col("person_id") == person) & (pl.col("entries") == 0) & pl.col("diet_source").is_null()
    )
    return sorted(gaps["day"].to_list())


def history(people: list[str], days: int) -> list[dict]:
    """Three entries a day (a logged day) for each person over `days` days."""
    foods = ["Apple, Raw", "Kefir, Plain, Lowfat", "Zorblax Crunch"]
    return [
        entry(p, n, food, grams=100.0 + 10 * i, energy_kcal=400.0 + i)
        for p in people
        for n in range(days)
        for i, food in enumerate(foods)
    ]


def test_diet_daily_recomputes_only_changed_person_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    people = ["ann", "bob", "cat"]
    cohort = Cohort(tmp_path / "nightly", history(people, 10), [])
    assert cohort.run() == {"people_recomputed": "all", "days_recomputed": "all"}
    assert cohort.run() == {"people_recomputed": 0, "days_recomputed": 0}

    # Every person adds one day: three person-days recomputed, not 3 x 11.
    cohort.entries += [entry(p, 10, energy_kcal=900.0) for p in people]
    assert cohort.run() == {"people_recomputed": 3, "days_recomputed": 3}
    assert_same_as_full_rebuild(cohort)

    # A new day after a gap: the days between appear as unlogged gap rows.
    cohort.entries += [entry("ann", 14, energy_kcal=900.0)]
    assert cohort.run() == {"people_recomputed": 1, "days_recomputed": 1}
    table = assert_same_as_full_rebuild(cohort)
    assert gap_days(table, "ann") == [day(11), day(12), day(13)]
    assert not table.filter(pl.col("day").is_in([day(11), day(12), day(13)]))["logged"].any()

    # A changed past day.
    cohort.entries = [
        {**e, "grams": 999.0} if e["person_id"] == "bob" and e["day"] == day(2) else e
        for e in cohort.entries
    ]
    assert cohort.run() == {"people_recomputed": 1, "days_recomputed": 1}
    assert_same_as_full_rebuild(cohort)

    # The last day removed: the range ends earlier and its gap rows go.
    cohort.entries = [
        e for e in cohort.entries if not (e["person_id"] == "ann" and e["day"] == day(14))
    ]
    assert cohort.run() == {"people_recomputed": 1, "days_recomputed": 1}
    table = assert_same_as_full_rebuild(cohort)
    assert gap_days(table, "ann") == []

    # A day removed in the middle becomes a gap row.
    cohort.entries = [
        e for e in cohort.entries if not (e["person_id"] == "cat" and e["day"] == day(4))
    ]
    assert cohort.run() == {"people_recomputed": 1, "days_recomputed": 1}
    table = assert_same_as_full_rebuild(cohort)
    assert gap_days(table, "cat") == [day(4)]

    # Reported totals: on cat's gap day, after bob's range, and for a person without entries.
    cohort.reported += [
        reported_day("cat", 4, completed=True),
        reported_day("bob", 20),
        reported_day("dan", 3, kcal=500.0),
        reported_day("dan", 6),
        # Cronometer's Completed false (on every day of real exports): judged by energy.
        reported_day("dan", 7, completed=False),
    ]
    assert cohort.run() == {"people_recomputed": 3, "days_recomputed": 5}
    table = assert_same_as_full_rebuild(cohort)
    assert gap_days(table, "cat") == []  # the reported day fills it
    assert gap_days(table, "dan") == []  # reported days make no range of gaps
    assert table.filter(pl.col("diet_source") == "reported").height == 5
    dan = table.filter(pl.col("person_id") == "dan").sort("day")
    energy = "daily total (energy at least 800 kcal)"
    assert dan.select("logged", "logged_rule").rows() == [
        (False, energy),
        (True, energy),
        (True, energy),
    ]
    cat4 = table.filter((pl.col("person_id") == "cat") & (pl.col("day") == day(4)))
    assert cat4.select("logged", "logged_rule").row(0) == (True, "marked complete")

    # A reported day removed again: the gap row comes back.
    cohort.reported = [r for r in cohort.reported if r["person_id"] != "cat"]
    assert cohort.run() == {"people_recomputed": 1, "days_recomputed": 1}
    table = assert_same_as_full_rebuild(cohort)
    assert gap_days(table, "cat") == [day(4)]
    # The gap row written by the incremental path says why it is not logged.
    cat4 = table.filter((pl.col("person_id") == "cat") & (pl.col("day") == day(4)))
    assert cat4.select("logged", "logged_rule").row(0) == (False, "nothing logged")

    # A new food that a taxonomy rule matches: only the day that eats it.
    cohort.entries += [entry("bob", 5, "Sauerkraut, Canned", grams=200.0)]
    assert cohort.run() == {"people_recomputed": 1, "days_recomputed": 1}
    table = assert_same_as_full_rebuild(cohort)
    assert (
        table.filter((pl.col("person_id") == "bob") & (pl.col("day") == day(5)))[
            "fermented_servings"
        ].item()
        > 0
    )

    # A new taxonomy rule: only the days eating the food it matches, although no entry changed.
    cohort.entries += [entry("ann", 3, "Quux Crisp", grams=60.0)]
    cohort.run()
    rules = food_categories.load_taxonomy()
    rule = {**rules.row(0, named=True), "rule_id": "test_quux", "groups": ""}
    rule.update(category="fermented", pattern="quux", exclude="")
    monkeypatch.setattr(
        food_categories, "load_taxonomy", lambda: pl.concat([rules, pl.DataFrame([rule])])
    )
    # As an edited taxonomy.csv would: the code fingerprint changes for every step that does not
    # exclude the file (food_taxonomy does not, diet_daily does).
    fingerprint = incremental.code_fingerprint
    monkeypatch.setattr(
        incremental,
        "code_fingerprint",
        lambda exclude=(): fingerprint(exclude) + ("" if "taxonomy.csv" in exclude else "+rule"),
    )
    assert cohort.run() == {"people_recomputed": 1, "days_recomputed": 1}
    assert_same_as_full_rebuild(cohort)

    # A changed setting recomputes everyone.
    cohort.project.sources_yaml.write_text(
        SOURCES + "settings:\n  logged_min_kcal: 1000\n", encoding="utf-8"
    )
    assert cohort.run() == {"people_recomputed": "all", "days_recomputed": "all"}
    assert_same_as_full_rebuild(cohort, Settings(logged_min_kcal=1000))


def test_an_entry_without_a_day_recomputes_everyone(tmp_path: Path) -> None:
    cohort = Cohort(tmp_path / "nullday", history(["ann", "bob"], 4), [])
    cohort.run()
    cohort.entries += [{**entry("bob", 0), "day": None}]
    assert cohort.run() == {"people_recomputed": "all", "days_recomputed": "all"}
    assert_same_as_full_rebuild(cohort)


def test_random_edit_sequences_equal_a_full_build(tmp_path: Path) -> None:
    """Random nights of added, changed and removed entries and reported days; after each, the
    table equals build_diet_daily over all inputs and the recomputed days are the edited ones."""
    rng = random.Random(7)
    people = ["p1", "p2", "p3", "p4"]
    foods = ["Apple, Raw", "Kefir, Plain, Lowfat", "Zorblax Crunch", "Red Wine", "White Bread"]
    cohort = Cohort(tmp_path / "random", [], [])
    cohort.entries = [
        entry(p, n, rng.choice(foods), grams=rng.choice([50.0, 200.0]), energy_kcal=300.0)
        for p in people
        for n in rng.sample(range(12), 6)
        for _ in range(rng.randint(1, 4))
    ]
    cohort.run()
    for _ in range(6):
        edited: set[tuple[str, date]] = set()
        for _edit in range(rng.randint(1, 4)):
            p, n = rng.choice(people), rng.randrange(16)
            edited.add((p, day(n)))
            action = rng.choice(["add", "remove", "report", "unreport"])
            if action == "add":
                food = rng.choice(foods)
                cohort.entries.append(entry(p, n, food, energy_kcal=rng.choice([200.0, 900.0])))
            elif action == "remove":
                cohort.entries = [
                    e for e in cohort.entries if (e["person_id"], e["day"]) != (p, day(n))
                ]
            elif action == "report":
                cohort.reported.append(reported_day(p, n, rng.choice([600.0, 2000.0])))
            else:
                cohort.reported = [
                    r for r in cohort.reported if (r["person_id"], r["day"]) != (p, day(n))
                ]
        before = cohort.table()
        counts = cohort.run()
        # Only keys whose inputs really changed count (a removal of nothing changes nothing).
        assert isinstance(counts["days_recomputed"], int)
        assert counts["days_recomputed"] <= len(edited)
        entries, reported = cohort.frames()
        want = build_diet_daily(entries, categorise_foods(entries), Settings(), reported)
        got = cohort.table()
        assert_frame_equal(
            got,
            want.select(got.columns).sort(got.columns, nulls_last=True),
            check_exact=False,
            check_dtypes=False,
            rel_tol=1e-9,
            abs_tol=1e-12,
        )
        # Rows outside the edited people are untouched.
        others = pl.col("person_id").is_in(sorted({p for p, _ in edited})).not_()
        assert_frame_equal(before.filter(others), got.filter(others))


def test_food_taxonomy_counts_in_duckdb_give_the_same_tables(tmp_path: Path) -> None:
    rows = [
        entry("ann", 0, "Mystery Bites", category_raw="Snacks"),  # mapped by its source label
        entry("ann", 0, "Mystery Bites"),
        entry("bob", 1, "Mystery Bites", category_raw="Odd"),
        entry("bob", 1, "Mystery Bites", energy_kcal=None),
        entry("cat", 2, "Zorblax Crunch", category_raw="Odd"),
        entry("cat", 2, "Zorblax Crunch"),
        entry("ann", 2, "Zorblax Crunch"),
        entry("dan", 2, "Kefir, Plain, Lowfat"),
        {**entry("dan", 3, "Quux"), "person_id": None},
        {**entry("dan", 3), "food": None},
    ]
    cohort = Cohort(tmp_path / "taxonomy", rows, [])
    cohort.run()
    entries, _ = cohort.frames()
    categories = categorise_foods(entries)
    want = unmapped_foods(entries, categories)
    got = cohort.project.warehouse().table("unmapped_foods")
    # A food's people are counted across its unmapped category_raw values, not per value.
    assert dict(zip(got["food"], got["people"], strict=True)) == {
        "Mystery Bites": 2,
        "Zorblax Crunch": 2,
        "Quux": 1,
    }
    assert_frame_equal(got.sort("food"), want.sort("food"), check_exact=False, rel_tol=1e-12)
    stored = cohort.table("food_categories")
    assert_frame_equal(stored, categories.sort(stored.columns, nulls_last=True))

    counts = entries.group_by("person_id", "food", "category_raw").agg(
        pl.len().alias("entries"), pl.col("energy_kcal").sum()
    )
    total = entries["energy_kcal"].sum()
    assert_frame_equal(
        unmapped_foods_from_counts(counts, categories, total).sort("food"),
        want.sort("food"),
        check_exact=False,
        rel_tol=1e-12,
    )


def taxonomy_changes(cohort: Cohort) -> dict[str, object]:
    """Materialize food_taxonomy alone; return what it says changed, per table."""
    cohort.write_inputs()
    resource = ProjectResource(project_dir=str(cohort.project.root))
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([food_taxonomy], resources={"project": resource}, instance=instance)
    assert result.success
    return {
        event.asset_key.path[-1]: event.metadata["changed"].value
        for event in result.asset_materializations_for_node("food_taxonomy")
    }


def test_a_night_of_known_foods_keeps_the_food_categories(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New entries of foods already seen move unmapped_foods (counts, energy shares), not
    food_categories: it is kept, without categorising again. A new food categorises again, and
    the tables are always those of a first run on the same entries."""
    import pipelines.steps.taxonomy as taxonomy

    runs: list[int] = []

    def counted(*args: object, **kwargs: object) -> pl.DataFrame:
        runs.append(1)
        return categorise_foods(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(taxonomy, "categorise_foods", counted)
    cohort = Cohort(tmp_path / "nights", [entry("ann", 0, "Mystery Bites"), entry("bob", 0)], [])

    def assert_first_run_tables() -> None:
        entries, _ = cohort.frames()
        categories = categorise_foods(entries)
        stored = cohort.table("food_categories")
        assert_frame_equal(stored, categories.sort(stored.columns, nulls_last=True))
        assert_frame_equal(
            cohort.table("unmapped_foods").sort("food"),
            unmapped_foods(entries, categories).sort("food"),
            check_exact=False,
            rel_tol=1e-12,
        )

    assert taxonomy_changes(cohort) == {"food_categories": True, "unmapped_foods": True}
    assert len(runs) == 1
    cohort.entries.append(entry("ann", 1, "Mystery Bites", energy_kcal=500.0))
    assert taxonomy_changes(cohort) == {"food_categories": False, "unmapped_foods": True}
    assert len(runs) == 1
    assert_first_run_tables()
    cohort.entries.append(entry("bob", 1, "Zorblax Crunch"))
    assert taxonomy_changes(cohort) == {"food_categories": True, "unmapped_foods": True}
    assert len(runs) == 2
    assert_first_run_tables()
    assert taxonomy_changes(cohort) == {"food_categories": False, "unmapped_foods": False}
    # Without the step's own record (as after a first run's state is forgotten), all is redone.
    with cohort.project.warehouse().write() as conn:
        conn.execute(f"DELETE FROM {incremental.STATE_TABLE} WHERE step = 'food_taxonomy'")
    assert taxonomy_changes(cohort) == {"food_categories": True, "unmapped_foods": True}
    assert len(runs) == 3


def test_a_full_build_in_groups_of_people_equals_one_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first run builds diet_daily a group of people at a time (bounded memory); groups of
    any size give the same table as building everyone in one frame."""
    import pipelines.steps.features as features

    people = ["ann", "bob", "cy", "dee", "eve"]
    entries = [*history(people, 6), {**entry("zed", 2), "person_id": None}]
    reported = [reported_day("bob", 9), reported_day("fay", 1)]  # fay: reported days only
    cohort = Cohort(tmp_path / "groups", entries, reported)
    entries_df, reported_df = cohort.frames()
    categories = categorise_foods(entries_df.select("food", "category_raw"))
    settings = Settings()
    whole = build_diet_daily(
        entries_df.filter(pl.col("day").is_not_null()), categories, settings, reported_df
    )
    whole = whole.sort(whole.columns, nulls_last=True)
    register = features.register_person_chunks
    groups: list[int] = []

    def counted(*args: object, **kwargs: object) -> int:
        groups.append(register(*args, **kwargs))  # type: ignore[arg-type]
        return groups[-1]

    monkeypatch.setattr(features, "register_person_chunks", counted)
    # Which connections summed the groups: several groups run at once, each on a cursor.
    import pipelines.steps.diet_days as diet_days_module

    summed_on: list[int] = []
    sum_days = diet_days_module.diet_days

    def spied(conn: duckdb.DuckDBPyConnection, *args: Any, **kwargs: Any) -> pl.DataFrame:
        summed_on.append(id(conn))
        return sum_days(conn, *args, **kwargs)

    monkeypatch.setattr(diet_days_module, "diet_days", spied)
    # 7 people with rows (the entry without a person id counts as one), ann to eve 18 each: a
    # group starts a person whose rows before it fill the previous group.
    for rows, expected in ((1, 7), (20, 5), (40, 3), (10_000, 1)):
        monkeypatch.setattr(features, "FULL_BUILD_ROWS", rows)
        cohort = Cohort(tmp_path / f"groups-{rows}", entries, reported)
        assert cohort.run() == {"people_recomputed": "all", "days_recomputed": "all"}
        assert groups[-1] == expected, rows
        if expected > 1 and (os.cpu_count() or 1) > 1:
            assert len(set(summed_on)) > 1, "the groups ran one by one"
        summed_on.clear()
        got = cohort.table()
        assert_frame_equal(got, whole.select(got.columns), check_exact=False, rel_tol=1e-12)


def test_a_night_everyone_synced_works_out_gap_days_one_shard_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a night when every person adds a day, the gap days are worked out and written a store
    shard at a time: each call of the gap rule sees the people of one shard, never the cohort's
    days at once (issue 19: at 10,000 people that held every day in memory), and the table is
    still the full rebuild's, gaps included."""
    import pipelines.steps.features as features
    from pipelines.store import SHARDS, shard_of

    people = [f"person-{i:02d}" for i in range(24)]
    cohort = Cohort(tmp_path / "night", history(people, 5), [])
    cohort.run()
    # Every person syncs a day; every third one after a gap of two days.
    cohort.entries += [entry(p, 7 if i % 3 == 0 else 5) for i, p in enumerate(people)]
    seen: list[set[str]] = []
    gap_changes = features.diet_gap_changes

    def recorded(days: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        seen.append(set(days["person_id"]))
        return gap_changes(days)

    monkeypatch.setattr(features, "diet_gap_changes", recorded)
    counts = cohort.run()

    assert counts["people_recomputed"] == len(people)
    shards = {shard_of(p, SHARDS) for p in people}
    assert len(seen) == len(shards) > 1
    assert all(len({shard_of(p, SHARDS) for p in group}) == 1 for group in seen)
    assert set().union(*seen) == set(people)
    got = assert_same_as_full_rebuild(cohort)
    assert gap_days(got, "person-00") == [day(5), day(6)]
