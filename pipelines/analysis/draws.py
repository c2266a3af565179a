"""Marker draws: which lab results are analysable as *chronic* inflammation, and per-person trends.

`build_marker_draws` turns `lab_results` into `marker_draws` (one output row per input row, so
nothing disappears) by applying, in this order (see shared/reference/science.md section 3.1):

1. Detection limit: a result reported as "<x" becomes x/sqrt(2) and stays flagged (`below_lod`). A
   result reported as ">x" keeps x (flag `censored` = ">").
2. Unusable: a row without a positive, finite value cannot be log-transformed:
   `excluded_reason = "unusable_value"`. A row without a date (cross-sectional cohorts such as
   NHANES) stays analysable for between-person models; it is simply never in a washout or visit.
3. Acute: hs-CRP or standard CRP above `settings.acute_crp_mg_l` (default 10 mg/L, AHA/CDC,
   Pearson 2003) signals an infection or injury, not chronic inflammation: `acute = True`,
   `excluded_reason = "acute"`.
4. Standard CRP below its detection limit: a standard assay's "<5" says only that CRP is under 5
   mg/L, which is the whole chronic range (hs-CRP categories end at 3), so it carries no
   information about chronic inflammation: `excluded_reason = "below_detection_limit"`. It keeps
   `below_lod` and its LOD/sqrt(2) `draw_value` for the timeline, and never enters a trend, an
   association or a category. hs-CRP below its (much lower) limit stays analysable as in step 1.
5. Washout: CRP takes 12-14 days to fall back to baseline after an acute episode, so a draw of the
   same person at most `settings.acute_washout_days` calendar days after an acute draw is
   `"post_acute_washout"` (a draw 15 days later is kept with the default of 14). For the CRP
   markers an acute draw of either assay starts the washout of both (an infection seen by a
   standard CRP also lifts the next hs-CRP); other markers wash out on their own acute draws.
6. Visits: the remaining draws of a person and marker are grouped into visits. A visit starts at a
   draw and takes every later draw less than `settings.visit_merge_days` calendar days after that
   first draw (anchored at the first draw, so a chain of draws 10 days apart does not grow into one
   long "visit"). The visit's first row carries the geometric mean of its draws (the average on the
   log scale, AHA/CDC's "two measurements averaged") and `n_results`; the other rows are
   `"merged_into_visit"`.

`excluded_reason` null marks an analysable chronic value. `draw_value` always keeps the row's own
value.

`marker_trends` summarises each person and marker: latest value, a baseline (median of the last up
to 5 chronic values), a Theil-Sen trend on the log scale (robust to one odd value; needs 4 chronic
values), the AHA/CDC cardiovascular category of the baseline (hs-CRP only: the categories are
defined for the high-sensitivity assay, and a standard CRP gets none), and whether the latest
change exceeds the reference change value.

Reference change value (RCV): for a log-normal marker with analytical CV_A and within-person CV_I,
sigma = sqrt(ln(1 + CV_A^2 + CV_I^2)) and a change is beyond random variation at 95% when the ratio
of two values falls outside exp(+/-1.96 * sqrt(2) * sigma). For hs-CRP (Macy 1997) that is
+210% / -68%. We compare the latest value against a baseline that may average several values, for
which the true RCV is narrower; using the two-value RCV is the conservative choice and matches
what labs publish.

"""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
from scipy import stats

from pipelines.config import Settings
from pipelines.schema import TRENDS_SCHEMA

SQRT2 = math.sqrt(2.0)

# Analytical (CV_A) and within-person biological (CV_I) coefficients of variation used for the RCV.
# Only markers whose CVs come from a source we have read are listed; others get no RCV verdict.
RCV_CVS: dict[str, tuple[float, float, str]] = {
    # hs-CRP: CV_I 42.2 %, CV_A 5.2 %; Macy EM, Hayes TE, Tracy RP. Clin Chem 1997;43:52-58.
    "hscrp": (0.052, 0.422, "Macy, Hayes & Tracy, Clin Chem 1997;43:52-58"),
}
RCV_Z = 1.959963984540054  # two-sided 95 %
# How `rcv_rule` names a marker whose upper-cased id does not read well.
RCV_NAMES = {"hscrp": "hs-CRP"}

# Markers the acute threshold (mg/L) applies to; they share their washout (module docstring).
CRP_MARKERS = ("hscrp", "crp")
# The marker whose baseline gets the AHA/CDC cardiovascular category.
CATEGORY_MARKER = "hscrp"
# A censored result of this marker says nothing about the chronic range (module docstring).
UNINFORMATIVE_BELOW_LOD = ("crp",)

BASELINE_N = 5  # last up-to-5 chronic values make the baseline
MIN_TREND_N = 4  # Theil-Sen on fewer points says nothing useful
DAYS_PER_YEAR = 365.25

# Passed through when lab_results has them, so a draw can be traced back to its file and line.
_PASSTHROUGH = ("loinc", "unit", "file_id", "source", "line")

MARKER_DRAWS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "person_id": pl.String,
    "marker": pl.String,
    "collected_at": pl.Datetime("us"),
    "day": pl.Date,
    "value": pl.Float64,
    "log_value": pl.Float64,
    "below_lod": pl.Boolean,
    "censored": pl.String,
    "acute": pl.Boolean,
    "excluded_reason": pl.String,
    "visit_id": pl.String,
    "n_results": pl.Int64,
    "draw_value": pl.Float64,
}


def rcv_pct(cv_analytical: float, cv_within: float, z: float = RCV_Z) -> tuple[float, float]:
    """Log-normal reference change value as (% up, % down) for two single measurements."""
    sigma = math.sqrt(math.log(1.0 + cv_analytical**2 + cv_within**2))
    half_width = z * SQRT2 * sigma
    return 100.0 * (math.exp(half_width) - 1.0), 100.0 * (math.exp(-half_width) - 1.0)


def rcv_rule(marker: str) -> str:
    """The one-line statement of the change rule shown to users."""
    if marker not in RCV_CVS:
        return (
            f"No reference change value is stored for {marker}; "
            "changes are shown without a verdict."
        )
    cva, cvi, source = RCV_CVS[marker]
    up, down = rcv_pct(cva, cvi)
    return (
        f"A change in {RCV_NAMES.get(marker, marker.upper())} counts as real only when the "
        "latest value is more than "
        f"{up:.0f}% above or {-down:.0f}% below the earlier baseline (95% reference change value "
        "from "
        f"analytical CV {cva:.1%} and within-person CV {cvi:.1%}, {source}); smaller changes are "
        "ordinary day-to-day variation."
    )


def _visit_numbers(group_start: list[bool], days: list[int], merge_days: int) -> list[int]:
    # A visit is anchored at its first draw; the loop is over draws (not windows): small.
    out: list[int] = []
    visit = -1
    anchor = 0
    for start, d in zip(group_start, days, strict=True):
        if start or d - anchor >= merge_days:
            visit += 1
            anchor = d
        out.append(visit)
    return out


def build_marker_draws(lab_results: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """Flag acute draws, washout and visits; see the module docstring for the rules.

    Returns one row per `lab_results` row with the columns of `MARKER_DRAWS_SCHEMA` (plus `loinc`,
    `unit`, `file_id`, `source`, `line` when present), sorted by person, marker and time.
    """
    passthrough = [c for c in _PASSTHROUGH if c in lab_results.columns]
    if lab_results.height == 0:
        return pl.DataFrame(
            schema={**MARKER_DRAWS_SCHEMA, **{c: lab_results.schema[c] for c in passthrough}}
        )

    keys = ["person_id", "marker"]
    df = (
        lab_results.select(
            pl.col("person_id").cast(pl.String),
            pl.col("marker").cast(pl.String),
            pl.col("collected_at").cast(pl.Datetime("us")),
            pl.col("value").cast(pl.Float64).alias("_reported"),
            pl.col("censored").cast(pl.String),
            *passthrough,
        )
        .with_row_index("_row")
        .with_columns(
            pl.col("collected_at").dt.date().alias("day"),
            (pl.col("censored") == "<").fill_null(False).alias("below_lod"),
        )
        .with_columns(
            pl.when(pl.col("below_lod"))
            .then(pl.col("_reported") / SQRT2)
            .otherwise(pl.col("_reported"))
            .alias("draw_value")
        )
        .with_columns(
            (
                pl.col("draw_value").is_not_null()
                & pl.col("draw_value").is_finite()
                & (pl.col("draw_value") > 0)
            )
            .fill_null(False)
            .alias("_usable")
        )
        .with_columns(
            (
                pl.col("_usable")
                & pl.col("marker").is_in(CRP_MARKERS)
                & (pl.col("_reported") > settings.acute_crp_mg_l)
            )
            .fill_null(False)
            .alias("acute"),
            # hs-CRP and standard CRP share a washout: one infection, whichever assay saw it.
            pl.when(pl.col("marker").is_in(CRP_MARKERS))
            .then(pl.lit(CRP_MARKERS[0]))
            .otherwise(pl.col("marker"))
            .alias("_washout_group"),
        )
    )

    # Last acute day at or before each draw, per person and washout group, in time order.
    washout_keys = ["person_id", "_washout_group"]
    last_acute = df.sort([*washout_keys, "collected_at", "_row"], nulls_last=True).select(
        "_row",
        pl.when(pl.col("acute"))
        .then(pl.col("day"))
        .otherwise(None)
        .forward_fill()
        .over(washout_keys)
        .alias("_last_acute"),
    )
    df = (
        df.join(last_acute, on="_row", how="left")
        .sort([*keys, "collected_at", "_row"], nulls_last=True)
        .with_columns(
            pl.when(~pl.col("_usable"))
            .then(pl.lit("unusable_value"))
            .when(pl.col("acute"))
            .then(pl.lit("acute"))
            .when(pl.col("below_lod") & pl.col("marker").is_in(UNINFORMATIVE_BELOW_LOD))
            .then(pl.lit("below_detection_limit"))
            .when(
                pl.col("_last_acute").is_not_null()
                & (
                    (pl.col("day") - pl.col("_last_acute")).dt.total_days()
                    <= settings.acute_washout_days
                )
            )
            .then(pl.lit("post_acute_washout"))
            .otherwise(None)
            .alias("_pre_reason")
        )
    )

    # Undated results (cross-sectional cohorts such as NHANES) have no neighbours in time: each is
    # its own visit and no washout applies.
    candidates = df.filter(pl.col("_pre_reason").is_null() & pl.col("day").is_not_null()).select(
        "_row",
        *keys,
        "day",
        "draw_value",
        (pl.struct(keys) != pl.struct(keys).shift(1)).fill_null(True).alias("_group_start"),
    )
    visits = _visit_numbers(
        candidates["_group_start"].to_list(),
        candidates["day"].cast(pl.Int32).to_list(),
        settings.visit_merge_days,
    )
    candidates = (
        candidates.with_columns(pl.Series("_visit", visits, dtype=pl.Int64))
        .with_columns(
            (pl.col("_row") == pl.col("_row").first().over("_visit")).alias("_is_visit_row"),
            pl.col("draw_value").log().mean().over("_visit").exp().alias("_geo_mean"),
            pl.len().over("_visit").cast(pl.Int64).alias("n_results"),
        )
        .select("_row", "_visit", "_is_visit_row", "_geo_mean", "n_results")
    )
    n_visits = len(set(visits))

    out = (
        df.join(candidates, on="_row", how="left")
        .sort([*keys, "collected_at", "_row"], nulls_last=True)
        .with_columns(
            # Rows outside the visit logic (acute, washout, unusable) are each their own visit.
            pl.when(pl.col("_visit").is_null())
            .then(n_visits + pl.col("_row").cast(pl.Int64))
            .otherwise(pl.col("_visit"))
            .alias("_visit"),
            pl.col("n_results").fill_null(1),
            pl.when(pl.col("_pre_reason").is_not_null())
            .then(pl.col("_pre_reason"))
            .when(~pl.col("_is_visit_row"))
            .then(pl.lit("merged_into_visit"))
            .otherwise(None)
            .alias("excluded_reason"),
            # exp(log(x)) is not always x, so single-draw visits keep their value exactly.
            pl.when(pl.col("_is_visit_row").fill_null(False) & (pl.col("n_results") > 1))
            .then(pl.col("_geo_mean"))
            .otherwise(pl.col("draw_value"))
            .alias("value"),
        )
        .with_columns(
            pl.concat_str(
                [
                    pl.col("person_id").fill_null("?"),
                    pl.col("marker").fill_null("?"),
                    pl.col("collected_at")
                    .first()
                    .over("_visit")
                    .dt.strftime("%Y-%m-%dT%H:%M:%S")
                    .fill_null("undated"),
                ],
                separator="|",
            ).alias("_visit_base")
        )
        .with_columns(
            # Distinct visits can share a timestamp only when both are excluded; keep ids unique.
            pl.col("_visit").rank("dense").over("_visit_base").alias("_dup")
        )
        .with_columns(
            pl.when(pl.col("_dup") > 1)
            .then(
                pl.concat_str(
                    [pl.col("_visit_base"), pl.col("_dup").cast(pl.String)], separator="#"
                )
            )
            .otherwise(pl.col("_visit_base"))
            .alias("visit_id"),
            pl.when(pl.col("value") > 0).then(pl.col("value").log()).alias("log_value"),
        )
    )
    return out.select(
        [pl.col(c).cast(t) for c, t in MARKER_DRAWS_SCHEMA.items()]
        + [pl.col(c) for c in passthrough]
    )


def _theil_sen_pct(t_years: np.ndarray, logs: np.ndarray) -> tuple[float, float, float] | None:
    if len(logs) < MIN_TREND_N or np.unique(t_years).size < 2:
        return None
    res = stats.theilslopes(logs, t_years, alpha=0.95)

    def pct(b: float) -> float:
        return 100.0 * math.expm1(b)

    return pct(res.slope), pct(res.low_slope), pct(res.high_slope)


def marker_trends(draws: pl.DataFrame) -> pl.DataFrame:
    """One row per person and marker (see the module docstring); columns of `TRENDS_SCHEMA`."""
    if draws.height == 0:
        return pl.DataFrame(schema=TRENDS_SCHEMA)
    own = "draw_value" if "draw_value" in draws.columns else "value"
    if "below_lod" not in draws.columns:
        draws = draws.with_columns(pl.lit(False).alias("below_lod"))
    keys = ["person_id", "marker"]
    ordered = draws.sort([*keys, "collected_at"], nulls_last=True)

    overall = ordered.group_by(keys, maintain_order=True).agg(
        pl.len().cast(pl.Int64).alias("n_draws"),
        pl.col("collected_at").min().alias("first_at"),
        pl.col("collected_at").max().alias("latest_at"),
        pl.col(own).filter(pl.col(own).is_not_null()).last().alias("latest_value"),
        pl.col("acute").filter(pl.col(own).is_not_null()).last().alias("latest_acute"),
        pl.when(pl.col("below_lod").fill_null(False))
        .then(pl.lit("<"))
        .otherwise(None)
        .filter(pl.col(own).is_not_null())
        .last()
        .alias("latest_censored"),
    )

    chronic = ordered.filter(
        pl.col("excluded_reason").is_null() & pl.col("log_value").is_not_null()
    ).select(*keys, "collected_at", "value", "log_value")
    rows: list[dict[str, object]] = []
    if chronic.height:
        starts = (pl.struct(keys) != pl.struct(keys).shift(1)).fill_null(True)
        bounds = np.flatnonzero(chronic.select(starts).to_series().to_numpy())
        bounds = np.append(bounds, chronic.height)
        persons = chronic["person_id"].to_list()
        markers = chronic["marker"].to_list()
        values = chronic["value"].to_numpy()
        logs = chronic["log_value"].to_numpy()
        secs = chronic["collected_at"].dt.epoch("s").to_numpy().astype(float)
        for a, b in itertools.pairwise(bounds):
            vals = values[a:b]
            t_years = (secs[a:b] - secs[a]) / (86400.0 * DAYS_PER_YEAR)
            trend = _theil_sen_pct(t_years, logs[a:b])
            baseline = float(np.median(vals[-BASELINE_N:]))
            prior = vals[:-1][-BASELINE_N:]
            change = 100.0 * (vals[-1] / float(np.median(prior)) - 1.0) if prior.size else None
            rows.append(
                {
                    "person_id": persons[a],
                    "marker": markers[a],
                    "n_chronic": b - a,
                    "baseline": baseline,
                    "slope_pct_per_year": trend[0] if trend else None,
                    "slope_ci_low": trend[1] if trend else None,
                    "slope_ci_high": trend[2] if trend else None,
                    "latest_change_pct": change,
                }
            )
    per_chronic = pl.DataFrame(
        rows,
        schema={
            "person_id": pl.String,
            "marker": pl.String,
            "n_chronic": pl.Int64,
            "baseline": pl.Float64,
            "slope_pct_per_year": pl.Float64,
            "slope_ci_low": pl.Float64,
            "slope_ci_high": pl.Float64,
            "latest_change_pct": pl.Float64,
        },
    )
    rcv = pl.DataFrame(
        [
            {"marker": m, "rcv_up_pct": rcv_pct(a, i)[0], "rcv_down_pct": rcv_pct(a, i)[1]}
            for m, (a, i, _) in RCV_CVS.items()
        ],
        schema={"marker": pl.String, "rcv_up_pct": pl.Float64, "rcv_down_pct": pl.Float64},
    )
    out = (
        overall.join(per_chronic, on=keys, how="left")
        .join(rcv, on="marker", how="left")
        .with_columns(
            pl.col("n_chronic").fill_null(0),
            pl.when(pl.col("marker") == CATEGORY_MARKER)
            .then(
                pl.when(pl.col("baseline") < 1.0)
                .then(pl.lit("<1"))
                .when(pl.col("baseline") <= 3.0)
                .then(pl.lit("1-3"))
                .when(pl.col("baseline") > 3.0)
                .then(pl.lit(">3"))
            )
            .alias("category"),
            pl.when(pl.col("latest_change_pct").is_not_null() & pl.col("rcv_up_pct").is_not_null())
            .then(
                (pl.col("latest_change_pct") >= pl.col("rcv_up_pct"))
                | (pl.col("latest_change_pct") <= pl.col("rcv_down_pct"))
            )
            .alias("change_is_real"),
            pl.col("marker").map_elements(rcv_rule, return_dtype=pl.String).alias("rcv_rule"),
        )
    )
    return out.select([pl.col(c).cast(t) for c, t in TRENDS_SCHEMA.items()])
