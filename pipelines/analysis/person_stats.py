"""Per-person statistics of the cohort within-person models (issue 19): what each person's draws
contribute to every cohort test, computed a person (or a group of people) at a time, so the cohort
fit never needs everyone's rows at once.

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
the statistics are per feature: about (P + 2) * P numbers per test and person (P = 8), against
P per draw for the rows.

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
TEST_KEYS = ("marker", "window_days", "feature")


STATS_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "marker": pl.String,
    "window_days": pl.Int64,
    "feature": pl.String,
    "_pid": pl.Int64,
    "n": pl.Int64,
    "mean": pl.Array(pl.Float64, P),
    "cross": pl.Array(pl.Float64, P * P),
    "absmax": pl.Array(pl.Float64, P),
}


def person_statistics(wide: pl.DataFrame, features: list[str]) -> pl.DataFrame:
    """The statistics of every test as a table (a store table's shape): one row per test
    (marker, window_days, feature of `features`) and person (`_pid`) with at least one complete
    row in `wide` (a `model_frame` wide table, or some people's rows of it): `n`, `mean` (P),
    `cross` (P * P, row-major) and `absmax` (P) over STAT_COLUMNS (`statistics_of`). The
    statistics of a person do not depend on who else is in `wide`; `split_tests` reads them back."""
    keys: list[tuple[str, int, str, int]] = []
    parts: list[tuple[np.ndarray, CrossProducts]] = []
    for (marker, window), chunk in wide.group_by("marker", "window_days", maintain_order=True):
        arrays = chunk_arrays(chunk, features)
        for feature in features:
            test = statistics_of(arrays, feature)
            if test is not None:
                keys.append((str(marker), int(window), feature, int(test[0].size)))  # type: ignore[call-overload]
                parts.append(test)
    if not parts:
        return pl.DataFrame(schema=STATS_SCHEMA)
    repeat = np.array([k[3] for k in keys])
    stats = [p for _, p in parts]
    return pl.DataFrame(
        {
            "marker": np.repeat([k[0] for k in keys], repeat),
            "window_days": np.repeat([k[1] for k in keys], repeat),
            "feature": np.repeat([k[2] for k in keys], repeat),
            "_pid": np.concatenate([persons for persons, _ in parts]),
            "n": np.concatenate([s.n for s in stats]),
            "mean": np.concatenate([s.mean for s in stats]),
            "cross": np.concatenate([s.cross.reshape(-1, P * P) for s in stats]),
            "absmax": np.concatenate([s.absmax for s in stats]),
        },
        schema=STATS_SCHEMA,
    )


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


def split_tests(
    stats: pl.DataFrame,
) -> dict[tuple[str, int, str], tuple[np.ndarray, CrossProducts]]:
    """`person_statistics` rows (of everyone, stacked from groups of people in any order) by test:
    the persons' `_pid` in order and their `CrossProducts`."""
    stats = stats.sort(*TEST_KEYS, "_pid")
    n = stats["n"].to_numpy()
    mean = stats["mean"].to_numpy()
    cross = stats["cross"].to_numpy().reshape(-1, P, P)
    absmax = stats["absmax"].to_numpy()
    pid = stats["_pid"].to_numpy()
    out: dict[tuple[str, int, str], tuple[np.ndarray, CrossProducts]] = {}
    start = 0
    for row in stats.group_by(TEST_KEYS, maintain_order=True).len().iter_rows():
        end = start + int(row[3])
        out[(row[0], int(row[1]), row[2])] = (
            pid[start:end],
            CrossProducts(n[start:end], mean[start:end], cross[start:end], absmax[start:end]),
        )
        start = end
    return out
