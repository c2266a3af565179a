"""One test per food and its multiple-testing family: Holm (default) or Benjamini-Hochberg over
the primary rows of a family, serial gatekeeping for the lag-shape windows, and each row's
`status` (significant, explained, inconclusive, not significant, insufficient data). See
`pipelines.analysis.associations`."""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.analysis.model_frame import (
    EXPLAINED_REMAINS,
    INCONCLUSIVE_HIGH_PCT,
    INCONCLUSIVE_LOW_PCT,
)
from pipelines.config import Settings

# --------------------------------------------------------------------------------------------------
# Multiple testing and status


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q); NaN entries stay NaN and are not counted."""
    p = np.asarray(p, dtype=float)
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    order = np.argsort(p[ok], kind="stable")
    ranked = p[ok][order] * m / np.arange(1, m + 1)
    adj = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    out = np.empty(m)
    out[order] = adj
    q[ok] = out
    return q


def _bh(p: str, over: list[str]) -> pl.Expr:
    """BH q-values of column `p` within groups `over` (rows sorted by p within the group)."""
    return (
        (pl.col(p) * pl.len().over(over) / pl.int_range(1, pl.len() + 1).over(over))
        .cum_min(reverse=True)
        .over(over)
        .clip(upper_bound=1.0)
    )


def _holm(p: str, over: list[str]) -> pl.Expr:
    """Holm adjusted p-values of column `p` within groups `over` (rows sorted by p within the
    group): (m - rank + 1) p, made monotone."""
    return (
        (pl.col(p) * (pl.len() - pl.int_range(pl.len())).over(over))
        .cum_max()
        .over(over)
        .clip(upper_bound=1.0)
    )


ADJUSTMENTS = {"holm": _holm, "bh": _bh}


def _gated_q(base: pl.DataFrame, method: str) -> pl.DataFrame:
    """q of every row with a p (columns `_i`, `q`) from `_i`, `family`, `feature`, `p` and
    `_primary`: `method` over the primary rows of each family, serial gatekeeping for the rest."""
    adjust = ADJUSTMENTS[method]
    has_p = pl.col("p").is_not_null() & pl.col("p").is_not_nan()
    primary_q = (
        base.filter(pl.col("_primary") & has_p)
        .sort("family", "p", "_i")
        .select("_i", "family", "feature", adjust("p", ["family"]).alias("q"))
    )
    lag_q = (
        base.filter(~pl.col("_primary") & has_p)
        .sort("family", "feature", "p", "_i")
        .with_columns(_holm("p", ["family", "feature"]).alias("_holm"))
        .join(
            primary_q.select("family", "feature", pl.col("q").alias("_gate")),
            on=["family", "feature"],
            how="left",
        )
        .select("_i", pl.max_horizontal("_holm", pl.col("_gate").fill_null(1.0)).alias("q"))
    )
    return pl.concat([primary_q.select("_i", "q"), lag_q])


def family_qvalues(results: pl.DataFrame, method: str) -> pl.Series:
    """The q column `add_fdr_and_status` gives, without its status: `method` ("holm" or "bh")
    over the primary rows of each `family` (one test per `feature`), serial gatekeeping for the
    rows whose `window_role` is not "primary". Rows without a p get null. For results that are
    not % changes of a marker (daily outcomes), whose status rules differ."""
    indexed = results.with_row_index("_i")
    base = indexed.select(
        "_i", "family", "feature", "p", (pl.col("window_role") == "primary").alias("_primary")
    )
    q = indexed.select("_i").join(_gated_q(base, method), on="_i", how="left").sort("_i")
    return q["q"]


def add_fdr_and_status(results: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """(Re)compute `q` within each `family` and `status` (see the module docstring).

    A food is one test: `settings.multiple_testing` (Holm or Benjamini-Hochberg) runs over the
    primary-window rows of a family. Its
    other windows (`window_role` "lag_shape") describe the lag shape; their q is the larger of
    the food's primary q and a Holm adjustment over the food's other windows (serial
    gatekeeping), so a window is significant only when its food is. A primary row whose crude
    estimate passes the same procedure (over the family's crude p-values) but whose adjusted
    estimate does not is `explained`. Rows without `window_role` count as primary, rows without
    `crude_p` are never explained. Call it again after concatenating results that share families.
    """
    if results.height == 0:
        return results
    adjust = ADJUSTMENTS[settings.multiple_testing]
    indexed = results.drop("q", strict=False).with_row_index("_i")
    role = (
        pl.col("window_role").fill_null("primary")
        if "window_role" in results.columns
        else pl.lit("primary")
    )
    base = indexed.select(
        "_i",
        "family",
        "feature",
        "p",
        (role == "primary").alias("_primary"),
        *([pl.col("crude_p")] if "crude_p" in results.columns else []),
    )
    q = _gated_q(base, settings.multiple_testing)
    if "crude_p" in results.columns:
        crude = (
            base.filter(
                pl.col("_primary")
                & pl.col("crude_p").is_not_null()
                & pl.col("crude_p").is_not_nan()
            )
            .sort("family", "crude_p", "_i")
            .select("_i", adjust("crude_p", ["family"]).alias("_crude_q"))
        )
    else:
        crude = pl.DataFrame(schema={"_i": pl.UInt32, "_crude_q": pl.Float64})
    sd = pl.when(pl.col("sd_feature") > 0).then(pl.col("sd_feature")).otherwise(1.0)

    def per_sd(col: str) -> pl.Expr:
        return 100.0 * ((1.0 + pl.col(col) / 100.0).pow(sd) - 1.0)

    inconclusive = (per_sd("ci_low_pct") <= INCONCLUSIVE_LOW_PCT) & (
        per_sd("ci_high_pct") >= INCONCLUSIVE_HIGH_PCT
    )
    # "Disappears": the adjusted log effect is under EXPLAINED_REMAINS of the crude one.
    remains = (pl.col("effect_pct") / 100.0).log1p() / (pl.col("crude_effect_pct") / 100.0).log1p()
    explained = (
        (
            (pl.col("_crude_q") <= settings.fdr)
            & role.eq("primary")
            & (remains < EXPLAINED_REMAINS)
        ).fill_null(False)
        if "crude_effect_pct" in results.columns
        else pl.lit(False)
    )
    out = (
        indexed.join(q, on="_i", how="left")
        .join(crude, on="_i", how="left")
        .sort("_i")
        .with_columns(
            pl.when(pl.col("q").is_null())
            .then(pl.lit("insufficient_data"))
            .when(pl.col("q") <= settings.fdr)
            .then(pl.lit("significant"))
            .when(explained)
            .then(pl.lit("explained"))
            .when(inconclusive.fill_null(False))
            .then(pl.lit("inconclusive"))
            .otherwise(pl.lit("not_significant"))
            .alias("status")
        )
    )
    if "explained_by" in results.columns:
        text = pl.format(
            "explained by what it co-occurs with: {} (crude {}%, q {}; adjusted {}%)",
            pl.col("explained_by").fill_null("the adjustment set"),
            pl.col("crude_effect_pct").round(1),
            pl.col("_crude_q").round(3),
            pl.col("effect_pct").round(1),
        )
        note = pl.col("note").fill_null("")
        out = out.with_columns(
            pl.when((pl.col("status") == "explained") & ~note.str.contains("explained by"))
            .then(pl.concat_str([text, note], separator="; ").str.strip_chars("; "))
            .otherwise(pl.col("note"))
            .alias("note")
        )
    out = out.drop("_i", "_crude_q")
    return out.select(results.columns + [c for c in ("q", "status") if c not in results.columns])
