"""What the dashboards read, and the file names they write: `DashboardInputs` (one Polars frame per
warehouse table), the columns read from each (`SCHEMAS`), `normalise`, which conforms every frame
to them so no page branches on a missing column, and the page names. The first step of the flow
(see `dashboards`); pipelines/steps/dashboards.py loads the frames and reads only
`diet_columns_shown` of the diet.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple

import polars as pl

from pipelines.schema import (
    DAILY_EFFECTS_SCHEMA,
    EXPOSURE_WINDOWS_SCHEMA,
    INGEST_FILES_SCHEMA,
    RESULT_SCHEMA,
    SUFFICIENCY_SCHEMA,
    TRENDS_SCHEMA,
)

PLOTLY_JS = "plotly.min.js"
INDEX = "index.html"
COHORT = "cohort.html"
PERSON_PREFIX = "person_"
# A person page's findings and lag-window scan are a file of their own beside it (see
# `pages.section`): person_<safe id>.lag.js next to person_<safe id>.html.
SECTION_SUFFIX = ".lag.js"
MAX_SMALL_MULTIPLES = 30

DType = pl.DataType | type[pl.DataType]

# The columns each page reads; missing ones are added as nulls so rendering code never branches
# on the presence of a column. Extra columns pass through untouched.
SCHEMAS: dict[str, dict[str, DType]] = {
    "persons": {"person_id": pl.String, "sex": pl.String, "age": pl.Float64},
    "diet_daily": {
        "person_id": pl.String,
        "day": pl.Date,
        "logged": pl.Boolean,
        "logged_rule": pl.String,
        "entries": pl.Int64,
        "energy_kcal": pl.Float64,
        "fiber_g": pl.Float64,
        "dii": pl.Float64,
        "dii_params": pl.Int64,
    },
    "marker_draws": {
        "person_id": pl.String,
        "marker": pl.String,
        "collected_at": pl.Datetime("us"),
        "day": pl.Date,
        "value": pl.Float64,
        "below_lod": pl.Boolean,
        "censored": pl.String,
        "acute": pl.Boolean,
        "excluded_reason": pl.String,
        "n_results": pl.Int64,
    },
    "marker_trends": TRENDS_SCHEMA,
    # Optional `per_unit`: how the feature unit reads ("extra 5 g/day of fibre") when the
    # analysis scales a feature; without it effects read "per extra 1 g/day".
    "associations": {**RESULT_SCHEMA, "per_unit": pl.String},
    # A row per file, or per source for files with nothing to say (`files`: how many; see
    # pipelines/steps/dashboards.py). Without `files`, a row is one file.
    "ingest_files": {**INGEST_FILES_SCHEMA, "files": pl.Int64},
    # One row per source, reason and column, with the first few rejects as text (see
    # pipelines/steps/dashboards.py).
    "rejected_summary": {
        "source": pl.String,
        "reason": pl.String,
        "column": pl.String,
        "n": pl.Int64,
        "examples": pl.String,
    },
    "unmapped_foods": {
        "person_id": pl.String,
        "food": pl.String,
        "entries": pl.Int64,
        "energy_kcal": pl.Float64,
        "energy_share": pl.Float64,
    },
    "exposure_windows": EXPOSURE_WINDOWS_SCHEMA,
    "data_sufficiency": SUFFICIENCY_SCHEMA,
    # One row per source and person: the newest file of the source (modification time, UTC) and
    # the person's latest day of data from it (null when the source has no dates or no person).
    "source_freshness": {
        "source": pl.String,
        "person_id": pl.String,
        "newest_file_at": pl.Datetime("us"),
        "latest_day": pl.Date,
    },
    # Daily outcomes (symptoms, wearable signals): the person's `biometrics` readings that carry a
    # scale (Cronometer's weight and blood pressure have none and are on no page).
    "biometrics": {
        "person_id": pl.String,
        "day": pl.Date,
        "metric": pl.String,
        "value": pl.Float64,
        "unit": pl.String,
        "scale": pl.String,
    },
    # The daily-outcome tests per person, measure, scale, food and lag term
    # (pipelines/analysis/daily_outcomes.py, `DAILY_EFFECTS_SCHEMA`): the columns pages read.
    "daily_effects": {
        c: DAILY_EFFECTS_SCHEMA[c]
        for c in (
            "person_id",
            "measure",
            "scale",
            "unit",
            "feature",
            "lag",
            "lag_from",
            "lag_to",
            "window_role",
            "n_days",
            "estimate",
            "se",
            "ci_low",
            "ci_high",
            "p",
            "q",
            "status",
            "note",
        )
    },
}


@dataclass(frozen=True)
class PersonGroups:
    """The people with a person page, in the order their rows are best read in (the dashboards
    step: store shard by shard, each in page order; the pages' summaries go out in page order
    whatever it is), and how to read a group of
    them: `read(ids)` gives their rows of the person tables (persons, diet_daily, marker_draws,
    marker_trends, their person-scope associations, unmapped_foods, data_sufficiency,
    biometrics, daily_effects) and nothing else; `windows(ids)` their complete exposure windows,
    which only their section files show: they are read for the section files rendered, after
    the plan. The dashboards step reads a big cohort this way, a group at a time, so its memory
    does not grow with the people. `fingerprints(ids)`, when given, is one fingerprint per person
    (person_id, fingerprint) of all that `read` gives them, taken without reading the rows out
    (the step fingerprints their windows apart): the step leaves the people whose fingerprints
    held out of the groups read."""

    ids: list[str]
    read: Callable[[list[str]], DashboardInputs]
    windows: Callable[[list[str]], pl.DataFrame]
    fingerprints: Callable[[list[str]], pl.DataFrame] | None = None


@dataclass
class DashboardInputs:
    """Everything the dashboards show; see SCHEMAS for the columns read from each frame.

    With `people` set, the person tables hold only what the index and cohort page read across
    everyone (the followed people's draws, the cohort findings and the person findings the cohort
    page pools, the unmapped foods; no diet, windows or outcomes): the person pages read theirs
    from `people`, a group at a time."""

    persons: pl.DataFrame = field(default_factory=pl.DataFrame)
    diet_daily: pl.DataFrame = field(default_factory=pl.DataFrame)
    marker_draws: pl.DataFrame = field(default_factory=pl.DataFrame)
    marker_trends: pl.DataFrame = field(default_factory=pl.DataFrame)
    associations: pl.DataFrame = field(default_factory=pl.DataFrame)
    ingest_files: pl.DataFrame = field(default_factory=pl.DataFrame)
    rejected_summary: pl.DataFrame = field(default_factory=pl.DataFrame)
    unmapped_foods: pl.DataFrame = field(default_factory=pl.DataFrame)
    exposure_windows: pl.DataFrame = field(default_factory=pl.DataFrame)
    data_sufficiency: pl.DataFrame = field(default_factory=pl.DataFrame)
    source_freshness: pl.DataFrame = field(default_factory=pl.DataFrame)
    biometrics: pl.DataFrame = field(default_factory=pl.DataFrame)
    daily_effects: pl.DataFrame = field(default_factory=pl.DataFrame)
    # Fewest and most DII parameters behind the DIIs of the between-person models (diet_summary).
    between_dii_params: tuple[int, int] | None = None
    run_info: dict[str, str] = field(default_factory=dict)
    # Show "Person 01", "Person 02", ... instead of ids on the cohort page (for sharing it).
    pseudonymise_cohort: bool = False
    # Sources marked `demo: true` in sources.yaml: a fixed sample, labelled as demo data and not
    # checked for freshness (it would be flagged stale on every run after its last day).
    demo_sources: frozenset[str] = frozenset()
    # Everyone's diet energy (kcal), when diet_daily does not hold everyone's days (`people`): the
    # denominator of the index's shares of energy from unmapped foods.
    energy_kcal_total: float | None = None
    people: PersonGroups | None = None
    # Set by the dashboards step when `source_freshness` was scanned, not read back as kept: the
    # key the person-page step keeps it under (`pipelines.steps.page_shards.keep_freshness`).
    freshness_key: str | None = None


_SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_HASHED_TAIL = re.compile(r"-[0-9a-f]{10}$")


def person_page_name(person_id: str) -> str:
    """A stable, filesystem-safe page name: person_<id>.html for simple lowercase ids.

    Anything else (upper case, spaces, slashes, markup, very long ids) becomes a readable slug
    plus a hash of the exact id, so "Alice" and "alice" never share a file on a case-insensitive
    disk and no id can escape the folder.
    """
    pid = str(person_id)
    if _SAFE_ID.match(pid) and not _HASHED_TAIL.search(pid):
        return f"{PERSON_PREFIX}{pid}.html"
    slug = re.sub(r"[^a-z0-9]+", "-", pid.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(pid.encode("utf-8")).hexdigest()[:10]
    return f"{PERSON_PREFIX}{slug}-{digest}.html" if slug else f"{PERSON_PREFIX}{digest}.html"


def person_section_name(person_id: str) -> str:
    """The name of the section file beside a person's page (`person_page_name`)."""
    return person_page_name(person_id).removesuffix(".html") + SECTION_SUFFIX


class Renders(NamedTuple):
    """The people of a group whose person pages and whose section files (see `pages.section`)
    to render; None: everyone's."""

    pages: frozenset[str] | None
    sections: frozenset[str] | None


EVERYONE = Renders(None, None)


def _conform(df: pl.DataFrame | None, schema: dict[str, DType]) -> pl.DataFrame:
    """Add missing columns as typed nulls and coerce known ones; never raises on odd input."""
    if df is None or df.width == 0:
        return pl.DataFrame(schema=schema)
    exprs = []
    for name, dtype in schema.items():
        if name not in df.columns:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
            continue
        have = df.schema[name]
        if have.base_type() != dtype.base_type():
            exprs.append(pl.col(name).cast(dtype, strict=False))
    out = df.with_columns(exprs) if exprs else df
    return out


def normalise(data: DashboardInputs) -> DashboardInputs:
    draws = _conform(data.marker_draws, SCHEMAS["marker_draws"]).with_columns(
        day=pl.coalesce(pl.col("day"), pl.col("collected_at").dt.date()),
        marker=pl.col("marker").str.to_lowercase(),
    )
    diet = _conform(data.diet_daily, SCHEMAS["diet_daily"])
    if data.diet_daily is None or "logged" not in data.diet_daily.columns:
        # Without the flag, a day with any entry or energy counts as logged.
        diet = diet.with_columns(
            logged=pl.col("entries").fill_null(0).gt(0) | pl.col("energy_kcal").is_not_null()
        )
    diet = diet.with_columns(pl.col("logged").fill_null(False))
    return DashboardInputs(
        persons=_conform(data.persons, SCHEMAS["persons"]),
        diet_daily=diet,
        marker_draws=draws,
        marker_trends=_conform(data.marker_trends, SCHEMAS["marker_trends"]).with_columns(
            marker=pl.col("marker").str.to_lowercase()
        ),
        associations=_conform(data.associations, SCHEMAS["associations"]).with_columns(
            marker=pl.col("marker").str.to_lowercase()
        ),
        ingest_files=_conform(data.ingest_files, SCHEMAS["ingest_files"]).with_columns(
            pl.col("files").fill_null(1)
        ),
        rejected_summary=_conform(data.rejected_summary, SCHEMAS["rejected_summary"]),
        unmapped_foods=_conform(data.unmapped_foods, SCHEMAS["unmapped_foods"]),
        exposure_windows=_conform(data.exposure_windows, SCHEMAS["exposure_windows"]).with_columns(
            marker=pl.col("marker").str.to_lowercase()
        ),
        data_sufficiency=_conform(data.data_sufficiency, SCHEMAS["data_sufficiency"]).with_columns(
            marker=pl.col("marker").str.to_lowercase()
        ),
        source_freshness=_conform(data.source_freshness, SCHEMAS["source_freshness"]),
        biometrics=_conform(data.biometrics, SCHEMAS["biometrics"]).filter(
            pl.col("scale").is_not_null()
        ),
        daily_effects=_conform(data.daily_effects, SCHEMAS["daily_effects"]),
        between_dii_params=data.between_dii_params,
        run_info={str(k): "" if v is None else str(v) for k, v in (data.run_info or {}).items()},
        pseudonymise_cohort=data.pseudonymise_cohort,
        demo_sources=frozenset(data.demo_sources or ()),
        energy_kcal_total=data.energy_kcal_total,
        people=data.people,
    )


def _data_window(d: DashboardInputs) -> str | None:
    days = [
        x
        for x in (
            d.diet_daily["day"].min(),
            d.diet_daily["day"].max(),
            d.marker_draws["day"].min(),
            d.marker_draws["day"].max(),
        )
        if isinstance(x, date)
    ]
    if not days:
        return None
    return f"{min(days).isoformat()} to {max(days).isoformat()}"


POOLED_COLUMNS = ["pooled_effect_pct", "pooled_ci_low_pct", "pooled_ci_high_pct"]


def person_order(ids: Iterable[str]) -> list[str]:
    """People in page order: by name whatever its case, then exactly."""
    return sorted(ids, key=lambda x: (x.casefold(), x))


def _person_ids(d: DashboardInputs) -> list[str]:
    if d.people is not None:
        return d.people.ids
    ids: set[str] = set()
    for df in (d.persons, d.diet_daily, d.marker_draws, d.marker_trends):
        ids.update(str(x) for x in df["person_id"].drop_nulls().unique().to_list())
    ids.update(
        str(x)
        for x in d.associations.filter(pl.col("scope") == "person")["person_id"]
        .drop_nulls()
        .unique()
        .to_list()
    )
    return person_order(ids)


def _page_diet_columns(columns: list[str]) -> list[str]:
    """The diet columns a person page reads: the day and its logging, the food-group servings,
    fibre and the DII. Nutrients are on no page: left out, a change in them renders nothing and
    each person's share of the table is half the size to hash and to send to a worker."""
    shown = {"person_id", "day", "logged", "logged_rule", "entries", "fiber_g", "dii", "dii_params"}
    return [c for c in columns if c in shown or c.endswith("_servings")]


def diet_columns_shown(columns: list[str]) -> list[str]:
    """The diet_daily columns any page reads: a person page's, and energy (the index's total, and
    `normalise`'s `logged` for a table without one). The loader reads only these."""
    return [c for c in columns if c == "energy_kcal" or _page_diet_columns([c])]
