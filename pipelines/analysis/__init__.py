"""Pure analysis functions (Polars in, Polars out): marker draws, exposure windows, associations.

No Dagster and no DuckDB here, so every rule can be tested on small hand-built frames.
"""

from pipelines.analysis.associations import (
    RESULT_SCHEMA,
    TAUTOLOGICAL,
    add_fdr_and_status,
    analysis_frame,
    bh_qvalues,
    cohort_models,
    compute_associations,
    cross_sectional,
    partial_pooling,
    per_person_ols,
)
from pipelines.analysis.draws import (
    MARKER_DRAWS_SCHEMA,
    TRENDS_SCHEMA,
    build_marker_draws,
    marker_trends,
    rcv_pct,
    rcv_rule,
)
from pipelines.analysis.windows import (
    EXPOSURE_WINDOWS_SCHEMA,
    build_exposure_windows,
    feature_columns,
)

__all__ = [
    "EXPOSURE_WINDOWS_SCHEMA",
    "MARKER_DRAWS_SCHEMA",
    "RESULT_SCHEMA",
    "TAUTOLOGICAL",
    "TRENDS_SCHEMA",
    "add_fdr_and_status",
    "analysis_frame",
    "bh_qvalues",
    "build_exposure_windows",
    "build_marker_draws",
    "cohort_models",
    "compute_associations",
    "cross_sectional",
    "feature_columns",
    "marker_trends",
    "partial_pooling",
    "per_person_ols",
    "rcv_pct",
    "rcv_rule",
]
