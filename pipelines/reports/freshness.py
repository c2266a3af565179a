"""When is a source stale? One rule for the dashboards and for Dagster's freshness checks.

A source is stale when its newest file, or its latest day of data, is more than STALE_AFTER_DAYS
older than the run: the nightly run then keeps showing an old picture without saying so. A demo
source (`demo: true` in sources.yaml) ends on a fixed day by design and is never stale.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

STALE_AFTER_DAYS = 30


def naive(x: object) -> datetime | None:
    """A datetime as naive UTC; None for anything else."""
    if not isinstance(x, datetime):
        return None
    return x.astimezone(UTC).replace(tzinfo=None) if x.tzinfo else x


def source_freshness_status(
    newest_file_at: object, latest_day: object, now: datetime, source: str, demo: bool = False
) -> dict[str, Any]:
    """Ages and reasons for staleness of one source at `now` (naive UTC)."""
    newest = naive(newest_file_at)
    day = latest_day.date() if isinstance(latest_day, datetime) else latest_day
    day = day if isinstance(day, date) else None
    reasons = []
    # The run's time is cut to the minute, so a file written during the run is "-1 days" old.
    file_age = max((now - newest).days, 0) if newest is not None else None
    data_age = (now.date() - day).days if day is not None else None
    # A demo source's data ends on a fixed day by design: no stale reasons, ever.
    if not demo and file_age is not None and file_age > STALE_AFTER_DAYS:
        reasons.append(f"its newest file is {file_age} days old ({newest:%Y-%m-%d})")
    if not demo and data_age is not None and data_age > STALE_AFTER_DAYS:
        reasons.append(f"its latest data is from {day} ({data_age} days before this run)")
    return {
        "source": source,
        "newest_file_at": newest,
        "latest_day": day,
        "file_age": file_age,
        "data_age": data_age,
        "stale": bool(reasons),
        "reasons": reasons,
        "demo": demo,
    }
