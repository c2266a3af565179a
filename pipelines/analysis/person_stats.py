"""Per-person statistics of the cohort within-person models (issue 19): what each person's draws
contribute to a cohort test. A person's statistics do not depend on anyone else's rows, so they
could be computed a group of people at a time and stacked; docs/partitions.md ("The cohort models
from per-person statistics") says why they are not stored by shard: with a few draws a person
they are larger than the rows.

A cohort test (marker, window, feature) fits, over the draws where the feature's window and the
marker are both present (its complete cases), the within-person regression of log marker on the
feature and some of COVARIATES (`adjustment_candidates`: the core foods, energy, trend, weight).
`robust.fit_within` needs per person only the person-demeaned cross-products of those columns
(`robust.CrossProducts`), so per test and person this module keeps, over the test's complete
cases, the row count, the column means and the centred cross-products of the columns
[feature, *COVARIATES, log marker] (STAT_COLUMNS), and each column's largest |value|. The model
choices come out of them too: a covariate enters when every row has it (its mean is finite in
every person) and it varies within persons (its summed cross-product), the collinearity and
twin checks read the within-person correlation with the feature, `contributors` the slopes of
the covariates on the feature, and `sd_feature` the persons' means and within sums of squares.
The complete cases depend on the feature (its window may be missing where another's is not), so
the statistics are per feature: P (P + 2) numbers per test and person (P = 8), against one row
of the wide table (every feature and covariate) per draw.

Only the panel Newey-West covariance (fewer than MIN_CLUSTERS persons in a test) needs the rows
(its lagged products of residuals depend on the pooled coefficients): `complete_rows`.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from pipelines.analysis.model_frame import CORE_ADJUSTMENT, ENERGY, TREND, WEIGHT
from pipelines.analysis.robust import CrossProducts, cross_products

COVARIATES: tuple[str, ...] = (*CORE_ADJUSTMENT, ENERGY, TREND, WEIGHT)
# The columns of every test's statistics, in this order: the feature, the covariates any
# adjusted model may hold, the response (log marker, last, as `robust.fit_within` reads it).
STAT_COLUMNS: tuple[str, ...] = ("x", *COVARIATES, "y")
P = len(STAT_COLUMNS)


def statistics_of(
    arrays: dict[str, np.ndarray], feature: str
) -> tuple[np.ndarray, CrossProducts] | None:
    """The persons (`_pid`, sorted) with complete cases of `feature`'s test in one (marker,
    window)'s rows (`chunk_arrays`) and their statistics; None when nobody has one."""
    z, pids = complete_rows(arrays, feature)
    if not pids.size:
        return None
    persons, groups = np.unique(pids, return_inverse=True)
    return persons, cross_products(z, groups)


def chunk_arrays(chunk: pl.DataFrame, features: list[str]) -> dict[str, np.ndarray]:
    """One (marker, window)'s wide rows as float arrays (NaN where missing or absent) and
    `_pid`."""
    out = {
        c: (
            chunk[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
            if c in chunk.columns
            else np.full(chunk.height, np.nan)
        )
        for c in {*features, *COVARIATES, "y"}
    }
    return out | {"_pid": chunk["_pid"].to_numpy()}


def complete_rows(arrays: dict[str, np.ndarray], feature: str) -> tuple[np.ndarray, np.ndarray]:
    """The complete cases of `feature`'s test in one (marker, window)'s rows (`chunk_arrays`,
    in the wide table's order: by person, each person's draws in time order): the STAT_COLUMNS
    values (N, P) and the persons' `_pid`."""
    x, y = arrays[feature], arrays["y"]
    mask = np.isfinite(x) & np.isfinite(y)
    z = np.column_stack([x[mask], *(arrays[c][mask] for c in COVARIATES), y[mask]])
    return z, arrays["_pid"][mask]
