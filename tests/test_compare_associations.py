"""bench.compare_associations: the check that a faster fit leaves every association row as it
was (floats within a relative tolerance, everything else exactly)."""

import polars as pl

from bench.compare_associations import differences


def _rows() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "scope": ["person", "person", "cohort"],
            "method": ["ols_adjusted_hac", "ols_adjusted_hac", "fe_within_robust"],
            "marker": ["hscrp"] * 3,
            "feature": ["fiber_g", "fiber_g", "fiber_g"],
            "window_days": [28, 28, 28],
            "person_id": ["a", "b", None],
            "family": ["hscrp|person:a", "hscrp|person:b", "hscrp|cohort"],
            "beta": [0.1, None, -0.02],
            "status": ["not_significant", "insufficient_data", "significant"],
        }
    )


def test_the_same_rows_in_another_order_agree() -> None:
    rows = _rows()
    assert differences(rows, rows.reverse(), 1e-9) == []


def test_floats_agree_within_the_tolerance_only() -> None:
    rows = _rows()
    nudged = rows.with_columns(pl.col("beta") * (1 + 1e-12))
    moved = rows.with_columns(pl.col("beta") * (1 + 1e-6))
    assert differences(rows, nudged, 1e-9) == []
    assert [d.split(":")[0] for d in differences(rows, moved, 1e-9)] == ["beta"]


def test_a_null_a_flag_or_a_missing_row_differs() -> None:
    rows = _rows()
    filled = rows.with_columns(pl.col("beta").fill_null(0.0))
    flagged = rows.with_columns(pl.lit("significant").alias("status"))
    assert [d.split(":")[0] for d in differences(rows, filled, 1e-9)] == ["beta"]
    assert [d.split(":")[0] for d in differences(rows, flagged, 1e-9)] == ["status"]
    assert differences(rows, rows.head(2), 1e-9)
