"""The daily-outcome step without Dagster: `daily_effects` from the daily outcomes in `biometrics`
and diet_daily, as the asset in `pipelines/defs/analysis/assets.py` runs it (and the benchmark
measures it). The method is `pipelines.analysis.daily_outcomes`.

Which readings are daily outcomes: the `biometrics` rows with a `scale`. Every adapter of a source
of kind `outcomes` (the generic CSV, Bearable, Oura) gives each reading its scale, while
Cronometer's biometrics (weight, blood pressure, body fat) leave it null: those are body
measurements, weight a covariate of the marker models, not a daily outcome of the day's food.

Per person: a person's rows, their BH families (one per measure and scale) included, depend on
their own readings and diary only, so `plan_people` refits only the people whose outcome
readings, or whose diet_daily rows the model can read, changed; the settings of the
`daily_outcomes` block (and the foods modelled) are the salt. Runs inside the caller's
transaction (`Warehouse.write()`).
"""

import json
from collections.abc import Collection
from dataclasses import asdict

import duckdb
import polars as pl

from pipelines.analysis.daily_outcomes import DEFAULT_FOODS, DailySettings, daily_outcome_effects
from pipelines.config import Settings
from pipelines.incremental import (
    WHOLE,
    PersonPlan,
    in_scope,
    only_people,
    plan_people,
    record,
    register_people,
)
from pipelines.steps.features import (
    full_build_shards,
    replace_by_person_chunks,
    shard_scope,
)
from pipelines.store import replace_people
from pipelines.warehouse import ident

# The columns the analysis reads of a reading: a re-ingest that only renumbers lines or renames
# a source refits nobody.
OUTCOMES_SQL = (
    "SELECT person_id, day, metric, value, unit, scale FROM biometrics WHERE scale IS NOT NULL"
)
# A full build runs over groups of people with about this many input rows (outcome readings and
# diary days) each, as exposure_windows does: the design arrays are a group's, not the cohort's.
DAILY_BUILD_ROWS = 200_000


def daily_settings(settings: Settings) -> DailySettings:
    """The analysis' settings from sources.yaml's `settings.daily_outcomes` (same fields)."""
    return DailySettings(**asdict(settings.daily_outcomes))


def daily_foods(conn: duckdb.DuckDBPyConnection, daily: DailySettings) -> list[str]:
    """The foods modelled: the configured ones, or the default gut foods diet_daily has."""
    columns = [d[0] for d in conn.execute("SELECT * FROM diet_daily LIMIT 0").description]
    if daily.foods is None:
        return [f for f in DEFAULT_FOODS if f in columns]
    missing = [f for f in daily.foods if f not in columns]
    if missing:
        features = [c for c in columns if c.endswith("_servings") or c.endswith("_g")]
        raise ValueError(
            f"sources.yaml, key 'settings.daily_outcomes.foods': {missing} are not diet_daily "
            f"columns; choose among {features}"
        )
    return list(daily.foods)


def diet_days_sql(foods: list[str], daily: DailySettings) -> str:
    """The diet_daily rows some outcome day can read: a person's days from the longest lag and
    trailing window before their first reading to their last reading (other people and days
    change no fit, so a diary day after the last reading refits nobody). The full and the
    incremental path read the same rows."""
    reach = daily.lags[-1] + daily.window_days
    columns = ", ".join(f"d.{ident(c)}" for c in ["person_id", "day", "logged", *foods])
    return f"""
        SELECT {columns} FROM diet_daily d
        JOIN (SELECT person_id, min(day) AS first, max(day) AS last
              FROM ({OUTCOMES_SQL}) GROUP BY person_id) o ON d.person_id = o.person_id
        WHERE d.day >= o.first - {int(reach)} AND d.day <= o.last"""


def update_daily_effects(
    conn: duckdb.DuckDBPyConnection, settings: Settings, shards: Collection[int] | None = None
) -> PersonPlan:
    """daily_effects from the daily outcomes and diet_daily: everyone in groups of about
    DAILY_BUILD_ROWS input rows, or only the people whose inputs changed.

    `shards` (of the store; None: all) limits the step to their people: it plans, rewrites and
    records only them (a run of some person-shard partitions). With every shard it is the step
    over everyone, unchanged."""
    scope = shard_scope(conn, shards)
    daily = daily_settings(settings)
    foods = daily_foods(conn, daily)
    outcomes_sql, diet_sql = OUTCOMES_SQL, diet_days_sql(foods, daily)
    plan = plan_people(
        conn,
        "daily_effects",
        # The constant row keeps a recorded plan when nobody has readings (a project without
        # an outcomes source): without it, every run would look like a first and refit.
        inputs=[outcomes_sql, diet_sql, f"SELECT '{WHOLE}' AS person_id"],
        outputs=["daily_effects"],
        salt=json.dumps(asdict(daily), sort_keys=True, default=list) + ",".join(foods),
        scope=scope,
    )

    def fit(queries: list[str]) -> pl.DataFrame:
        # In row order (ORDER BY ALL) on both paths: a day's readings are averaged in that order.
        outcomes, diet = (conn.execute(f"{sql} ORDER BY ALL").pl() for sql in queries)
        return daily_outcome_effects(outcomes, diet, daily)

    if plan.everyone:
        replace_by_person_chunks(
            conn,
            "daily_effects",
            [in_scope(outcomes_sql, scope), in_scope(diet_sql, scope)],
            DAILY_BUILD_ROWS,
            fit,
            shards=full_build_shards(conn, ["daily_effects"], shards, scope),
        )
    elif plan.touched:
        register_people(conn, plan.touched)
        replace_people(
            conn, "daily_effects", fit([only_people(outcomes_sql), only_people(diet_sql)])
        )
    record(conn, plan, scope)
    return plan
