"""The job the schedule and the sensor start: everything, in one run."""

import dagster as dg

refresh_all = dg.define_asset_job(
    "refresh_all",
    selection=dg.AssetSelection.all(),
    description="Ingest every source, rebuild the warehouse tables, analysis and dashboards.",
)
