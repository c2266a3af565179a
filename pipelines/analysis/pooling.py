"""Partial pooling of person estimates toward the cohort (empirical Bayes, DerSimonian-Laird).
See `pipelines.analysis.associations`."""

from __future__ import annotations

import polars as pl

KEYS = ["marker", "feature", "window_days"]
POOLED = ["pooled_effect_pct", "pooled_ci_low_pct", "pooled_ci_high_pct"]
# `pooled_estimates` pools about this many person rows at a time (whole tests): the pooling's
# window sums over everyone's rows at once grew with the cohort.
POOLING_ROWS = 100_000


# --------------------------------------------------------------------------------------------------
# Partial pooling of person estimates toward the cohort


def partial_pooling(results: pl.DataFrame, keys: list[str] = KEYS) -> pl.DataFrame:
    """`pooled_effect_pct` and its CI on person rows: the person's estimate shrunk toward the
    cohort's (empirical Bayes). With between-person variance tau^2 of the person estimates
    (DerSimonian-Laird, from at least 3 persons) and the person's SE s, the weight on the
    person's own estimate is B = tau^2 / (tau^2 + s^2), the pooled estimate b0 + B (b - b0) and
    its variance B s^2 + (1 - B)^2 s0^2 (normal CI). Few draws or a homogeneous cohort pull a
    person's estimate toward the cohort; a person who clearly differs keeps their own. `keys`:
    the columns that tell one test from another."""
    if results.height == 0 or "beta" not in results.columns:
        return results
    cohort = results.filter(
        (pl.col("scope") == "cohort") & pl.col("beta").is_not_null() & pl.col("se").is_not_null()
    ).select(*keys, pl.col("beta").alias("_b0"), pl.col("se").alias("_s0"))
    person = pl.col("scope") == "person"
    ok = person & pl.col("beta").is_not_null() & (pl.col("se") > 0)
    w = pl.when(ok).then(1.0 / pl.col("se") ** 2)
    bw = (w * pl.col("beta")).sum().over(keys) / w.sum().over(keys)
    q_stat = (w * (pl.col("beta") - bw) ** 2).sum().over(keys)
    m = ok.cast(pl.Int64).sum().over(keys)
    denom = w.sum().over(keys) - (w**2).sum().over(keys) / w.sum().over(keys)
    tau2 = pl.when(m >= 3).then(((q_stat - (m - 1)) / denom).clip(lower_bound=0.0))
    shrink = tau2 / (tau2 + pl.col("se") ** 2)
    est = pl.col("_b0") + shrink * (pl.col("beta") - pl.col("_b0"))
    sd = (shrink * pl.col("se") ** 2 + (1.0 - shrink) ** 2 * pl.col("_s0") ** 2).sqrt()
    z = 1.959963984540054
    out = (
        results.drop("pooled_effect_pct", "pooled_ci_low_pct", "pooled_ci_high_pct", strict=False)
        .join(cohort, on=keys, how="left", nulls_equal=True)
        .with_columns(
            *[
                pl.when(ok).then(100.0 * (e.exp() - 1.0)).alias(name)
                for name, e in (
                    ("pooled_effect_pct", est),
                    ("pooled_ci_low_pct", est - z * sd),
                    ("pooled_ci_high_pct", est + z * sd),
                )
            ]
        )
        .drop("_b0", "_s0")
    )
    return out.select(results.columns + [c for c in out.columns if c not in results.columns])


def pooled_estimates(person: pl.DataFrame, cohort: pl.DataFrame) -> pl.DataFrame:
    """`partial_pooling`'s columns (POOLED) of person rows fitted a group of people at a time,
    row for row. `person` holds `_key`, `beta` and `se` of every person row, group after group;
    `cohort` the cohort rows with their `_key`. `_key` numbers the tests (marker, window,
    feature) in the order one fit of everyone walks them, and groups are people in order, so
    sorted by `_key` (stably) each test's rows are in that fit's order: the sums over persons
    add up in the same order and the estimates agree bit for bit. Numbers instead of the key's
    strings, and the tests pooled about POOLING_ROWS rows at a time: these are every row of the
    table, the one thing held for everyone."""
    every_row = person.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))
    # Only the rows with an estimate are pooled (the others pool to null and add nothing to
    # their test's sums): most person rows have too few draws for one.
    estimated = person.with_row_index("_row").filter(
        pl.col("beta").is_not_null() & (pl.col("se") > 0)
    )
    if estimated.height == 0:
        nulls = (pl.lit(None, dtype=pl.Float64).alias(c) for c in POOLED)
        return every_row.with_columns(nulls).select(POOLED)
    columns = ["_row", "_key", "scope", "beta", "se"]
    ordered = estimated.sort("_key", maintain_order=True)
    batch = (
        ordered.group_by("_key", maintain_order=True)
        .len()
        .select("_key", ((pl.col("len").cum_sum() - pl.col("len")) // POOLING_ROWS).alias("_batch"))
    )
    ordered = ordered.join(batch, on="_key", maintain_order="left")
    cohort = cohort.join(batch, on="_key").with_columns(pl.lit(None, dtype=pl.UInt32).alias("_row"))
    parts = []
    for (number,), tests in ordered.group_by("_batch", maintain_order=True):
        results = pl.concat(
            [
                tests.with_columns(pl.lit("person").alias("scope")).select(columns),
                cohort.filter(pl.col("_batch") == number).select(columns),
            ]
        )
        parts.append(
            partial_pooling(results, keys=["_key"])
            .filter(pl.col("scope") == "person")
            .select("_row", *POOLED)
        )
    return every_row.join(pl.concat(parts), on="_row", how="left", maintain_order="left").select(
        POOLED
    )
