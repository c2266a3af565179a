"""Features: food categories, `diet_daily`, `diet_summary`, marker draws and trends, data
sufficiency."""
