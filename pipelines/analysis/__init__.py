"""Pure analysis functions (Polars in, Polars out): marker draws, exposure windows, associations.

No Dagster and no DuckDB here, so every rule can be tested on small hand-built frames.
"""

from pipelines.analysis.associations import compute_associations
from pipelines.analysis.between import cross_sectional
from pipelines.analysis.cohort_models import cohort_models
from pipelines.analysis.draws import (
    MARKER_DRAWS_SCHEMA,
    TRENDS_SCHEMA,
    build_marker_draws,
    marker_trends,
    rcv_pct,
    rcv_rule,
)
from pipelines.analysis.model_frame import TAUTOLOGICAL, analysis_frame
from pipelines.analysis.multiple_testing import add_fdr_and_status, bh_qvalues
from pipelines.analysis.person_models import per_person_ols
from pipelines.analysis.pooling import partial_pooling
from pipelines.analysis.windows import (
    EXPOSURE_WINDOWS_SCHEMA,
    build_exposure_windows,
    feature_columns,
)
from pipelines.schema import RESULT_SCHEMA

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
