"""The typed settings of a project: the `settings:` block of sources.yaml as frozen dataclasses
(`Settings`, with its nested `executor` and `daily_outcomes` blocks), every value checked against
its type and bounds when built.

`pipelines.config` builds them from YAML and turns a failed check into a `ConfigError` naming the
key; `result_settings` is what of them salts the steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import AfterValidator, ConfigDict, Field

MULTIPLE_TESTING = ("holm", "bh")
# The divisors of the store's 16 person shards (pipelines.store.SHARDS; a test checks): how many
# Dagster partitions the shards can be grouped into.
PERSON_PARTITIONS = (1, 2, 4, 8, 16)


# The checks behind some settings' types. Each raises ValueError with what is expected; the value
# itself is put in front of it by `pipelines.config`.
def _iana_timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("is not an IANA time zone such as UTC or Europe/Berlin") from None
    return name


_Choice = TypeVar("_Choice")


def _one_of(choices: tuple[_Choice, ...], meanings: str) -> Callable[[_Choice], _Choice]:
    """A validator accepting only `choices`; its error lists them with what they mean."""

    def check(value: _Choice) -> _Choice:
        if value not in choices:
            raise ValueError(f"is not one of {', '.join(map(str, choices))} ({meanings})")
        return value

    return check


_multiple_testing = _one_of(
    MULTIPLE_TESTING, "holm: family-wise error rate, bh: false discovery rate"
)


_person_partitions = _one_of(PERSON_PARTITIONS, "the divisors of the store's 16 shards")


def _csv_path(path: str) -> str:
    if not path.strip():
        raise ValueError(
            "is blank: expected the path of a CSV file relative to the project folder, "
            "e.g. food_overrides: my_foods.csv"
        )
    return path


def _not_empty(windows: tuple[int, ...]) -> tuple[int, ...]:
    if not windows:
        raise ValueError("is empty: list at least one window, e.g. [7, 28]")
    return windows


EXECUTOR_KINDS = ("in_process", "multiprocess", "dask")


_executor_kind = _one_of(
    EXECUTOR_KINDS,
    "in_process: every step in one process; multiprocess: a process per step on this machine; "
    "dask: on a Dask cluster",
)


def _scheduler_address(address: str) -> str:
    if "://" not in address or not address.split("://", 1)[1]:
        raise ValueError('is not a Dask scheduler address such as "tcp://dask-scheduler:8786"')
    return address


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(strict=True, extra="forbid"))
class ExecutorSettings:
    """Where a run's steps execute (`settings: {executor: {kind: ..., scheduler: ...}}`).

    Only where, never what: the warehouse tables are the same whichever kind runs them, so this
    block is left out of the settings that salt the steps (`result_settings`)."""

    kind: Annotated[str, AfterValidator(_executor_kind)] = "in_process"
    # The address of a running Dask scheduler; required by, and only allowed with, kind: dask.
    scheduler: Annotated[str, AfterValidator(_scheduler_address)] | None = None

    def __post_init__(self) -> None:
        if self.kind == "dask" and self.scheduler is None:
            raise ValueError("kind: dask needs the scheduler's address")
        if self.kind != "dask" and self.scheduler is not None:
            raise ValueError(f"scheduler is only read with kind: dask, not kind: {self.kind}")


Days = Annotated[int, Field(strict=True, gt=0)]
# Not strict about the container, only about its items: YAML gives a list, Settings holds a tuple.
Windows = Annotated[tuple[Days, ...], Field(strict=False), AfterValidator(_not_empty)]


def _increasing(lags: tuple[int, ...]) -> tuple[int, ...]:
    if not lags:
        raise ValueError("is empty: list the lags in days, e.g. [0, 1, 2, 3]")
    if list(lags) != sorted(set(lags)):
        raise ValueError("is not increasing: list each lag once, smallest first, e.g. [0, 1, 2, 3]")
    return lags


def _foods(foods: tuple[str, ...]) -> tuple[str, ...]:
    if not foods or not all(f.strip() for f in foods):
        raise ValueError(
            "names no food: list diet_daily columns such as [dairy_servings, alcohol_servings], "
            "or leave the key out for the default gut foods"
        )
    return foods


HAC_LAG_RULES = ("sqrt", "newey_west")
_hac_lag_rule = _one_of(
    HAC_LAG_RULES, "sqrt: floor(sqrt(days)) lags, newey_west: floor(4 (days/100)^(2/9))"
)


@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(strict=True, extra="forbid"))
class DailyOutcomeSettings:
    """The daily-outcome analysis (`settings: {daily_outcomes: {...}}`): the fields and defaults
    of `pipelines.analysis.daily_outcomes.DailySettings`, checked here like every setting. They
    shape only the `daily_effects` table, whose step salts with them alone."""

    # None: the default gut foods (DEFAULT_FOODS) that diet_daily has.
    foods: Annotated[tuple[str, ...], Field(strict=False), AfterValidator(_foods)] | None = None
    lags: Annotated[
        tuple[Annotated[int, Field(strict=True, ge=0)], ...],
        Field(strict=False),
        AfterValidator(_increasing),
    ] = (0, 1, 2, 3)
    # The trailing window: this many days before the longest lag.
    window_days: Days = 7
    min_logged_fraction: Annotated[float, Field(ge=0, le=1)] = 0.8
    min_days: Days = 56
    min_df: Days = 20
    multiple_testing: Annotated[str, AfterValidator(_multiple_testing)] = "bh"
    fdr: Annotated[float, Field(gt=0, lt=1)] = 0.05
    hac_lag_rule: Annotated[str, AfterValidator(_hac_lag_rule)] = "sqrt"


# A pydantic dataclass: still a frozen dataclass for the rest of the code (`Settings()`,
# `dataclasses.asdict`, `dataclasses.replace`), but every value is checked against its type and
# bounds when it is built. Strict, because YAML makes mistakes easy to miss: lax pydantic would
# truncate `min_n_person: 2.7` to 2 or read `fdr: "0.05"` as a number. An int for a float field
# is still accepted (`logged_min_kcal: 800`).
@pydantic.dataclasses.dataclass(frozen=True, config=ConfigDict(strict=True, extra="forbid"))
class Settings:
    """Project-wide settings (the `settings:` block of sources.yaml), all with safe defaults."""

    timezone: Annotated[str, AfterValidator(_iana_timezone)] = "UTC"
    acute_crp_mg_l: Annotated[float, Field(gt=0)] = 10.0
    # Draws at most this many days after an acute draw are left out too (analysis/draws.py).
    acute_washout_days: Annotated[int, Field(ge=0)] = 14
    # Draws fewer days apart than this are one visit; 0 never merges draws.
    visit_merge_days: Annotated[int, Field(ge=0)] = 14
    windows: Windows = (3, 7, 14, 28, 56)
    # The one window a food is tested at (the others describe the lag shape): 28 days, where
    # trials see diet move CRP (science.md 5.1). The closest tested window stands in when absent.
    primary_window_days: Days = 28
    min_logged_fraction: Annotated[float, Field(ge=0, le=1)] = 0.8
    logged_min_kcal: Annotated[float, Field(ge=0)] = 800.0
    logged_min_entries: Annotated[int, Field(ge=1)] = 3
    # The error rate findings are held to, per family (a marker in one person, or the cohort),
    # and the procedure: "holm" bounds the chance of even one false finding (family-wise), "bh"
    # (Benjamini-Hochberg) only the expected share of false findings, with more power.
    fdr: Annotated[float, Field(gt=0, lt=1)] = 0.05
    multiple_testing: Annotated[str, AfterValidator(_multiple_testing)] = "holm"
    min_n_person: Annotated[int, Field(ge=1)] = 8
    min_n_cohort: Annotated[int, Field(ge=1)] = 20
    # Cross-sectional (between-person) models only: people younger than this, or of unknown age,
    # are left out when it is set, e.g. 20 for NHANES adults.
    cohort_min_age: Annotated[float, Field(ge=0)] | None = None
    # Warehouse copies kept in data/processed/backups/, one taken before each nightly run; 0 keeps
    # every copy (pipelines/backups.py).
    backups_keep: Annotated[int, Field(ge=0)] = 7
    # Replace person ids by "Person 01", ... on the cohort page, e.g. before sharing it.
    pseudonymise_cohort: bool = False
    # Your own food categories, which win over the shipped ones and survive upgrades: a CSV
    # (food,match,categories) relative to the project folder; see docs/food-categories.md.
    food_overrides: Annotated[str, AfterValidator(_csv_path)] | None = None
    # Dagster partitions the store's person shards are grouped into (pipelines/defs/partitions.py):
    # fewer partitions write fewer events a night; more let a run pick fewer people.
    person_partitions: Annotated[int, AfterValidator(_person_partitions)] = 4
    executor: ExecutorSettings = ExecutorSettings()
    daily_outcomes: DailyOutcomeSettings = DailyOutcomeSettings()


# Settings that salt no step through `result_settings`: how the steps are executed and how the
# person shards are grouped into partitions (no table depends on either), and the daily-outcome
# analysis (only `daily_effects` does, and its step salts with that block itself: changing a lag
# refits no marker model).
_NOT_SHARED = ("executor", "person_partitions", "daily_outcomes")


def result_settings(settings: Settings) -> dict[str, Any]:
    """The settings that shape the warehouse tables, as plain data: what a step's salt and the
    `parameters` recorded beside the results are made of. A project that only changes where its
    steps run recomputes nothing, and its tables equal a single-process run's."""
    return {k: v for k, v in asdict(settings).items() if k not in _NOT_SHARED}
