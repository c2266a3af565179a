"""Source freshness for a run: each source's newest file and latest day of data, judged against the
run's time (`run_time`) with the staleness rule of `freshness`, for the whole cohort
(`source_status`, shown on the index) and per person (their page). Demo sources are labelled,
not judged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from pipelines.reports.freshness import source_freshness_status
from pipelines.reports.inputs import DashboardInputs


def run_time(run_info: dict[str, str]) -> datetime:
    """The run's time as naive UTC (from run_info["run_at"]; now when missing or unreadable)."""
    text = (run_info.get("run_at") or "").strip()
    for fmt in ("%Y-%m-%d %H:%M UTC", "%Y-%m-%d %H:%M:%S UTC"):
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            pass
    try:
        at = datetime.fromisoformat(text.removesuffix(" UTC").replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC).replace(tzinfo=None)
    return at.astimezone(UTC).replace(tzinfo=None) if at.tzinfo else at


def _freshness_frame(d: DashboardInputs) -> pl.DataFrame:
    """source_freshness, with the newest file per source filled in from ingest_files."""
    files = (
        d.ingest_files.filter(pl.col("source").is_not_null())
        .group_by("source")
        .agg(pl.col("modified_at").max().alias("_file_at"))
    )
    fresh = d.source_freshness.filter(pl.col("source").is_not_null())
    # Sources known only from their files (no dated rows) are still checked by file age.
    files_only = files.join(fresh.select("source").unique(), on="source", how="anti").select(
        "source",
        pl.lit(None, pl.String).alias("person_id"),
        pl.col("_file_at").alias("newest_file_at"),
        pl.lit(None, pl.Date).alias("latest_day"),
    )
    dated = (
        fresh.join(files, on="source", how="left")
        .with_columns(newest_file_at=pl.coalesce(pl.col("newest_file_at"), pl.col("_file_at")))
        .select(files_only.columns)
    )
    return pl.concat([dated, files_only])


def source_status(d: DashboardInputs, now: datetime) -> list[dict[str, Any]]:
    """Freshness of every source (newest file, latest data day), stale ones first."""
    fresh = _freshness_frame(d)
    if fresh.is_empty():
        return []
    per_source = (
        fresh.group_by("source")
        .agg(pl.col("newest_file_at").max(), pl.col("latest_day").max())
        .sort("source")
    )
    out = [
        source_freshness_status(
            r["newest_file_at"],
            r["latest_day"],
            now,
            str(r["source"]),
            str(r["source"]) in d.demo_sources,
        )
        for r in per_source.to_dicts()
    ]
    return sorted(out, key=lambda r: (not r["stale"], r["source"]))


def person_sources(d: DashboardInputs, now: datetime) -> dict[str, list[dict[str, Any]]]:
    """Per person, the freshness of each source that holds their data."""
    fresh = _freshness_frame(d).filter(pl.col("person_id").is_not_null())
    out: dict[str, list[dict[str, Any]]] = {}
    if fresh.is_empty():
        return out
    per = fresh.group_by("person_id", "source").agg(
        pl.col("newest_file_at").max(), pl.col("latest_day").max()
    )
    for r in per.sort("person_id", "source").to_dicts():
        source = str(r["source"])
        out.setdefault(str(r["person_id"]), []).append(
            source_freshness_status(
                r["newest_file_at"], r["latest_day"], now, source, source in d.demo_sources
            )
        )
    return out


def _stale_sources(d: DashboardInputs, now: datetime) -> frozenset[str]:
    return frozenset(r["source"] for r in source_status(d, now) if r["stale"])
