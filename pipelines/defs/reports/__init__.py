"""Reports: the HTML dashboards."""
