"""The warehouse side of the analysis steps: which diet features exist and which diet_daily rows
an exposure window can read."""

import duckdb

from pipelines.analysis.windows import features_from
from pipelines.config import Settings
from pipelines.warehouse import ident, table_exists


def daily_features(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """`feature_columns` of the whole diet_daily table, worked out in DuckDB."""
    if not table_exists(conn, "diet_daily"):
        return []
    columns = [d[0] for d in conn.execute("SELECT * FROM diet_daily LIMIT 0").description]
    counts = conn.execute(
        f"SELECT {', '.join(f'count({ident(c)})' for c in columns)} FROM diet_daily"
    ).fetchone() or [0] * len(columns)
    with_values = {c for c, n in zip(columns, counts, strict=True) if n}
    return features_from(columns, with_values)


def window_days_sql(settings: Settings) -> str:
    """The diet_daily rows some exposure window can read: the `max(settings.windows)` days
    before one of the person's chronic draws.

    Windows read nothing else, so a new diary day after a person's last draw changes none of
    their inputs and a nightly run does not recompute them. The full and the incremental path
    read the same rows, so their running totals (and rounding) agree."""
    longest = max(settings.windows, default=0)
    return f"""
        SELECT d.* FROM diet_daily d
        WHERE EXISTS (
            SELECT 1 FROM marker_draws m
            WHERE m.person_id = d.person_id AND m.excluded_reason IS NULL
              AND m.day IS NOT NULL AND d.day < m.day AND d.day >= m.day - {int(longest)}
        )"""
