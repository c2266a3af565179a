"""Code versions Dagster shows per asset, so the UI can tell which assets were materialised by
older code: hashes of the code and data tables that shape them, the same fingerprints the
incremental steps use to decide what to recompute (ingest assets carry their source's own,
`pipelines.ingest.source_fingerprint`)."""

from pipelines.incremental import code_fingerprint
from pipelines.reports.dashboards import reports_code_fingerprint

# Transforms and analysis code, schema, config and the data tables.
CODE_VERSION = code_fingerprint()[:16]
# The report code and the library versions whose output is in the pages.
REPORTS_VERSION = reports_code_fingerprint()[:16]
