"""From canonical rows to analysable features: food categories, `diet_daily`, `marker_draws`.

What each step does (its plan, reads, transforms and writes) is in `pipelines.steps.features`, so
the benchmark runs the same code without Dagster; these assets open one warehouse transaction
each, call the step and report what it did as metadata.
"""

import dagster as dg
import polars as pl

from pipelines.analysis.sufficiency import data_sufficiency as sufficiency_table
from pipelines.defs._metadata import column_schema, md_table
from pipelines.defs._versions import CODE_VERSION
from pipelines.defs.features.checks import DIET_DAILY_CHECKS, MARKER_DRAWS_CHECKS
from pipelines.defs.partitions import all_people, per_person, person_shards, shards_of_run
from pipelines.defs.resources import ProjectResource
from pipelines.identity import remembered
from pipelines.incremental import changed, plan_whole, record
from pipelines.project import Project
from pipelines.steps.features import (
    update_diet_daily,
    update_diet_summary,
    update_marker_models,
)
from pipelines.steps.taxonomy import update_food_taxonomy
from pipelines.warehouse import replace_table


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "food_categories",
            code_version=CODE_VERSION,
            group_name="features",
            kinds={"polars", "duckdb"},
            deps=["diet_entries"],
            description="Each distinct logged food with its gut-food categories and what "
            "assigned each one: the USDA reference item it matched (with the score), the rule "
            "(pipelines/data/taxonomy.csv) or the user's override line.",
        ),
        dg.AssetSpec(
            "unmapped_foods",
            code_version=CODE_VERSION,
            group_name="features",
            kinds={"polars", "duckdb"},
            deps=["diet_entries"],
            description="Foods without a category, with entry counts and share of logged "
            "energy, so the user can see what to add to the overrides file.",
        ),
    ],
    **all_people(),
)
def food_taxonomy(context: dg.AssetExecutionContext, project: ProjectResource):
    """Categorise every distinct (food, source category) pair, with the user's overrides.

    unmapped_foods is counted again whenever a diary entry's person, food, category or energy, the
    overrides file or the taxonomy changed (`plan_whole`); food_categories only when the distinct
    pairs, the overrides file or the taxonomy did, so an edited overrides file changes it at the
    next run and a night of known foods keeps it; diet_daily then rebuilds only the days that eat
    a food whose categories changed (day_inputs_sql).
    """
    config = project.config()
    overrides_path = (
        config.path.parent / config.settings.food_overrides
        if config.settings.food_overrides
        else None
    )
    with project.warehouse().write() as conn:
        taxonomy = update_food_taxonomy(conn, overrides_path)
    categories, unmapped, overrides = taxonomy.categories, taxonomy.unmapped, taxonomy.overrides
    mapped_share = 1.0 - float(unmapped["energy_share"].sum() or 0.0)
    yield dg.MaterializeResult(
        asset_key="food_categories",
        metadata={
            "dagster/row_count": categories.height,
            "foods_mapped": categories["food"].n_unique(),
            "foods_by_reference": categories.filter(
                pl.col("rule_id").str.starts_with("reference:")
            )["food"].n_unique(),
            "override_lines": 0 if overrides is None else overrides.height,
            "changed": taxonomy.categories_changed,
            "energy_share_mapped": round(mapped_share, 4),
            "by_category": md_table(categories.group_by("category").len().sort("category")),
        },
    )
    yield dg.MaterializeResult(
        asset_key="unmapped_foods",
        metadata={
            "dagster/row_count": unmapped.height,
            "energy_share": round(1 - mapped_share, 4),
            "changed": taxonomy.unmapped_changed,
        },
    )


def diet_daily_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`diet_daily`, partitioned by the project's groups of person shards."""

    @dg.asset(
        code_version=CODE_VERSION,
        group_name="features",
        kinds={"polars", "duckdb"},
        deps=["diet_entries", "diet_daily_reported", "food_categories"],
        check_specs=[c.spec for c in DIET_DAILY_CHECKS],
        # Per person: partitioned by groups of person shards (`pipelines.defs.partitions`).
        **per_person(partitions_def),
    )
    def diet_daily(
        context: dg.AssetExecutionContext, project: ProjectResource
    ) -> dg.MaterializeResult:
        """One row per person-day: nutrients, gut-food category servings and whether the day was
        logged.

        Days between a person's first and last entry with nothing (or too little) logged are kept
        with `logged = false`, so exposure windows can require enough logged days instead of
        treating a forgotten day as a day of eating nothing. `logged_rule` says which rule
        decided each day's `logged` (food entries, a reported total's energy, "marked complete",
        or nothing logged).

        Incremental by (person, day) (`plan_days`): only days whose entries, reported totals or
        foods' categories changed are built again; the touched people's gap days are then rebuilt
        from their range, since a new or removed day moves them. A run of some shards plans and
        rewrites only their people's days; the checks look at the whole table.
        """
        settings = project.config().settings
        shards = shards_of_run(context)
        with project.warehouse().write() as conn:
            plan = update_diet_daily(conn, settings, shards)
            # Counted again only when the table's parts changed (`remembered`).
            counts = (
                "SELECT count(*), count(*) FILTER (logged), count(DISTINCT person_id) "
                "FROM diet_daily"
            )
            row = remembered(conn, [counts], lambda: conn.execute(counts).fetchone())
            schema = conn.execute("SELECT * FROM diet_daily LIMIT 0").pl()
            checks = [c.run(conn) for c in DIET_DAILY_CHECKS]
        rows, logged, people = row or (0, 0, 0)
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": rows,
                "dagster/column_schema": column_schema(schema),
                "days_logged": logged,
                "people": people,
                "people_recomputed": "all" if plan.everyone else len(plan.people),
                "days_recomputed": "all" if plan.everyone else plan.days,
            },
            check_results=checks,
        )

    return diet_daily


@dg.asset(
    code_version=CODE_VERSION,
    group_name="features",
    kinds={"polars", "duckdb"},
    **all_people(),
    deps=["diet_daily_reported"],
)
def diet_summary(
    context: dg.AssetExecutionContext, project: ProjectResource
) -> dg.MaterializeResult:
    """Person-level intake for cross-sectional cohorts (reported totals without a date, such as
    NHANES recall means): nutrients, energy-adjusted fibre and the DII with its parameter count."""
    with project.warehouse().write() as conn:
        plan = update_diet_summary(conn)
        row = conn.execute(
            "SELECT count(*), count(DISTINCT person_id) FROM diet_summary"
        ).fetchone()
    rows, people = row or (0, 0)
    return dg.MaterializeResult(
        metadata={"dagster/row_count": rows, "people": people, "changed": changed(plan)}
    )


def marker_models_asset(partitions_def: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """`marker_models`, partitioned by the project's groups of person shards."""

    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                "marker_draws",
                code_version=CODE_VERSION,
                group_name="features",
                kinds={"polars", "duckdb"},
                deps=["lab_results"],
                description="Every lab result as an analysable draw: log scale, below-detection"
                " values at LOD/sqrt(2), acute CRP (> 10 mg/L) and the washout after it excluded"
                " with a reason, draws close together merged into one visit.",
            ),
            dg.AssetSpec(
                "marker_trends",
                code_version=CODE_VERSION,
                group_name="features",
                kinds={"polars", "duckdb"},
                deps=["lab_results"],
                description="Per person and marker: chronic baseline, Theil-Sen trend with CI, "
                "hs-CRP category and whether the latest change exceeds the reference change value.",
            ),
        ],
        check_specs=[c.spec for c in MARKER_DRAWS_CHECKS],
        # Per person: partitioned by groups of person shards (`pipelines.defs.partitions`).
        **per_person(partitions_def),
    )
    def marker_models(context: dg.AssetExecutionContext, project: ProjectResource):
        """Separate acute from chronic inflammation and summarise each person's chronic course.

        A run of some shards recomputes (and records) only their people; the checks look at the
        whole tables, as the steps downstream read them."""
        settings = project.config().settings
        shards = shards_of_run(context)
        with project.warehouse().write() as conn:
            plan = update_marker_models(conn, settings, shards)
            reasons = conn.execute(
                "SELECT excluded_reason, count(*) AS len FROM marker_draws GROUP BY ALL "
                "ORDER BY excluded_reason NULLS FIRST"
            ).pl()
            row = conn.execute(
                "SELECT count(*), count(*) FILTER (excluded_reason IS NULL), "
                "count(*) FILTER (acute), (SELECT count(*) FROM marker_trends) FROM marker_draws"
            ).fetchone()
            checks = [c.run(conn) for c in MARKER_DRAWS_CHECKS]
        draws_n, chronic, acute, trends_n = row or (0, 0, 0, 0)
        recomputed = "all" if plan.everyone else len(plan.touched)
        yield dg.MaterializeResult(
            asset_key="marker_draws",
            metadata={
                "dagster/row_count": draws_n,
                "chronic_draws": chronic,
                "acute_draws": acute,
                "excluded_by_reason": md_table(reasons),
                "people_recomputed": recomputed,
            },
        )
        yield dg.MaterializeResult(
            asset_key="marker_trends",
            metadata={"dagster/row_count": trends_n, "people_recomputed": recomputed},
        )
        yield from checks

    return marker_models


@dg.asset(
    code_version=CODE_VERSION,
    name="data_sufficiency",
    group_name="features",
    kinds={"polars", "duckdb"},
    **all_people(),
    deps=["marker_draws"],
)
def data_sufficiency_asset(
    context: dg.AssetExecutionContext, project: ProjectResource
) -> dg.MaterializeResult:
    """Per person and marker: how many more chronic draws would be needed to detect a 20% and a
    50% change, given the person's own observed variation (or the published one, early on), read
    from the simulated lookup table pipelines/data/sufficiency_draws.csv (see
    pipelines/analysis/sufficiency.py; `gutsignal sufficiency-table` regenerates it)."""
    draws_sql = "SELECT * FROM marker_draws"
    with project.warehouse().write() as conn:
        plan = plan_whole(conn, "data_sufficiency", [draws_sql], ["data_sufficiency"], salt="")
        if changed(plan):
            # In a fixed order: marker_draws is updated in place, person by person.
            table = sufficiency_table(conn.execute(f"{draws_sql} ORDER BY ALL").pl())
            replace_table(conn, "data_sufficiency", table)
            record(conn, plan)
        row = conn.execute("SELECT count(*) FROM data_sufficiency").fetchone()
    return dg.MaterializeResult(
        metadata={"dagster/row_count": row[0] if row else 0, "changed": changed(plan)}
    )


@dg.definitions
def features_assets() -> dg.Definitions:
    # Built at load time: the per-person assets' partitions come from the project's sources.yaml.
    # A module with a @dg.definitions function contributes only what that function returns.
    shards = person_shards(Project.from_env())
    return dg.Definitions(
        assets=[
            food_taxonomy,
            diet_daily_asset(shards),
            diet_summary,
            marker_models_asset(shards),
            data_sufficiency_asset,
        ],
    )
