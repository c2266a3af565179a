"""Tests for the offline HTML dashboards (pipelines.reports).

Synthetic but realistic frames: two people with a year of daily diet, about twelve CRP draws each
(one acute, one in the post-acute washout, one below the detection limit), person and cohort
associations including significant ones, and some data-quality problems.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest
from markupsafe import Markup
from plotly.offline import get_plotlyjs
from scipy import stats

from pipelines.analysis import (
    add_fdr_and_status,
    analysis_frame,
    build_exposure_windows,
    per_person_ols,
)
from pipelines.analysis.draws import build_marker_draws, marker_trends
from pipelines.analysis.sufficiency import data_sufficiency
from pipelines.config import Settings
from pipelines.reports import (
    DashboardInputs,
    dashboards,
    finding_sentence,
    person_page_name,
    person_section_name,
    write_dashboards,
)
from pipelines.reports import html as rhtml
from pipelines.reports import workers as rworkers
from pipelines.reports.figures import intake_calendar as fintakecalendar
from pipelines.reports.figures import render as frender
from pipelines.schema import CATEGORIES
from pipelines.steps.dashboards import update_dashboards
from pipelines.warehouse import Warehouse
from tests.sections import read_section, shown

XSS = "<script>alert(1)</script>"
XSS_FOOD = "</script><script>alert(1)</script>"
START = date(2025, 1, 6)
PEOPLE = ["alice", "Bob Smith"]
EXPECTED_SENTENCE = (
    "hs-CRP 24% lower per extra daily serving of fermented food over the previous 28 days, "
    "95% CI -38% to -7%, q = 0.03, 14 draws"
)


# Nutrients beyond the default fixture, so a "big" person has ~35 features as a real export does.
EXTRA_NUTRIENTS = (
    "energy_kcal",
    "carbs_g",
    "fat_g",
    "sat_fat_g",
    "sugars_g",
    "sodium_mg",
    "alcohol_g",
    "caffeine_mg",
    "omega3_g",
    "vit_c_mg",
    "magnesium_mg",
    "zinc_mg",
)


def _diet(person: str, seed: int, n: int = 365, extra: bool = False) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    days = [START + timedelta(days=i) for i in range(n)]
    logged = rng.random(n) < 0.85
    cols: dict[str, object] = {
        "person_id": [person] * n,
        "day": days,
        "logged": logged.tolist(),
        "entries": np.where(logged, rng.integers(3, 15, n), 0).tolist(),
        "energy_kcal": np.where(logged, rng.normal(2100, 300, n), np.nan).tolist(),
        "fiber_g": np.where(logged, rng.normal(24, 6, n), np.nan).tolist(),
        "protein_g": np.where(logged, rng.normal(80, 15, n), np.nan).tolist(),
        "ultra_processed_energy_pct": np.where(logged, rng.uniform(10, 60, n), np.nan).tolist(),
        "dii": np.where(logged, rng.normal(0, 1.5, n), np.nan).tolist(),
    }
    for c in CATEGORIES:
        cols[f"{c}_servings"] = np.where(logged, rng.poisson(1.2, n), np.nan).tolist()
    if extra:
        for c in EXTRA_NUTRIENTS:
            if c not in cols:
                cols[c] = np.where(logged, rng.gamma(4.0, 10.0, n), np.nan).tolist()
    df = pl.DataFrame(cols)
    # Unlogged days carry nulls, not NaN, as the warehouse does.
    return df.with_columns(pl.col(pl.Float64).fill_nan(None))


def _draws(person: str, seed: int, n: int = 12, every: int = 30) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        at = datetime(2025, 1, 20, 8, 15) + timedelta(days=every * k)
        value = float(np.exp(rng.normal(0.4, 0.4)))
        row = {
            "person_id": person,
            "marker": "hscrp",
            "collected_at": at,
            "day": at.date(),
            "value": round(value, 2),
            "below_lod": False,
            "censored": None,
            "acute": False,
            "excluded_reason": None,
            "n_results": 1,
        }
        if k == 4:
            row.update(value=24.0, acute=True, excluded_reason="acute")
        if k == 7:
            row.update(value=0.11, below_lod=True, censored="<")
        if k == 9:
            row.update(n_results=2)
        rows.append(row)
    washout_at = datetime(2025, 1, 20, 9, 0) + timedelta(days=every * 4 + 10)
    rows.append(
        {
            "person_id": person,
            "marker": "hscrp",
            "collected_at": washout_at,
            "day": washout_at.date(),
            "value": 4.2,
            "below_lod": False,
            "censored": None,
            "acute": False,
            "excluded_reason": "post_acute_washout",
            "n_results": 1,
        }
    )
    df = pl.DataFrame(rows)
    return df.with_columns(log_value=pl.col("value").log())


def _trend(person: str) -> dict[str, object]:
    return {
        "person_id": person,
        "marker": "hscrp",
        "n_draws": 13,
        "n_chronic": 11,
        "first_at": datetime(2025, 1, 20, 8, 15),
        "latest_at": datetime(2025, 12, 16, 8, 15),
        "latest_value": 1.4,
        "latest_acute": False,
        "baseline": 1.6,
        "slope_pct_per_year": -12.0,
        "slope_ci_low": -30.0,
        "slope_ci_high": 9.0,
        "category": "1-3",
        "rcv_up_pct": 210.0,
        "rcv_down_pct": 68.0,
        "latest_change_pct": 35.0,
        "change_is_real": False,
        "rcv_rule": "lognormal 95%",
    }


def _assoc_row(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "scope": "person",
        "person_id": None,
        "marker": "hscrp",
        "feature": "fiber_g",
        "window_days": 7,
        "method": "ols_within",
        "n": 12,
        "effect_pct": -1.5,
        "ci_low_pct": -4.0,
        "ci_high_pct": 1.1,
        "p": 0.2,
        "q": 0.6,
        "status": "not_significant",
        "note": None,
    }
    row.update(kw)
    return row


def _associations() -> pl.DataFrame:
    rows = []
    for person in PEOPLE:
        for feature in ("fermented_servings", "fiber_g", "ultra_processed_servings", "dii"):
            for w in (3, 7, 14, 28, 56):
                if feature == "fermented_servings" and w == 28:
                    rows.append(
                        _assoc_row(
                            person_id=person,
                            feature=feature,
                            window_days=w,
                            n=14,
                            effect_pct=-24.0,
                            ci_low_pct=-38.0,
                            ci_high_pct=-7.0,
                            p=0.002,
                            q=0.03,
                            status="significant",
                        )
                    )
                elif w == 56:
                    rows.append(
                        _assoc_row(
                            person_id=person,
                            feature=feature,
                            window_days=w,
                            n=4,
                            effect_pct=None,
                            ci_low_pct=None,
                            ci_high_pct=None,
                            p=None,
                            q=None,
                            status="insufficient_data",
                        )
                    )
                else:
                    rows.append(_assoc_row(person_id=person, feature=feature, window_days=w))
    rows.extend(
        _assoc_row(
            scope="cohort",
            feature=feature,
            window_days=w,
            method="mixed_within",
            n=26,
            effect_pct=eff,
            ci_low_pct=eff - 6,
            ci_high_pct=eff + 5,
            q=0.04 if w == 28 else 0.3,
            status="significant" if w == 28 else "not_significant",
        )
        for feature, eff in (("fermented_servings", -9.0), ("fiber_g", -1.2), ("dii", 6.0))
        for w in (7, 28)
    )
    rows.append(
        _assoc_row(
            scope="cohort",
            feature="fiber_g",
            window_days=None,
            method="ols_between",
            n=4200,
            effect_pct=-0.9,
            ci_low_pct=-1.3,
            ci_high_pct=-0.5,
            q=0.001,
            status="significant",
            note="adjusted for age, sex",
        )
    )
    return pl.DataFrame(rows, strict=False)


def make_inputs(people: list[str] = PEOPLE, food: str = "Grandma's kimchi stew") -> DashboardInputs:
    diet = pl.concat([_diet(p, i) for i, p in enumerate(people)])
    draws = pl.concat([_draws(p, 10 + i) for i, p in enumerate(people)])
    assoc = _associations()
    if people != PEOPLE:
        assoc = assoc.with_columns(
            person_id=pl.col("person_id").replace(dict(zip(PEOPLE, people, strict=False)))
        ).filter(pl.col("person_id").is_null() | pl.col("person_id").is_in(people))
    windows = build_exposure_windows(diet, draws, Settings())
    return DashboardInputs(
        persons=pl.DataFrame(
            {
                "person_id": people,
                "sex": ["F", None][: len(people)],
                "age": [41.0, None][: len(people)],
            }
        ),
        diet_daily=diet,
        marker_draws=draws,
        marker_trends=pl.DataFrame([_trend(p) for p in people]),
        associations=assoc,
        ingest_files=pl.DataFrame(
            {
                "file_id": ["f1", "f2", "f3"],
                "source": ["alice_cronometer", "clinic_labs", "clinic_labs"],
                "path": ["cronometer/alice/servings.csv", "labs/2025.csv", "labs/broken.csv"],
                "sha256": ["a" * 64, "b" * 64, "c" * 64],
                "rows_read": [4000, 30, 0],
                "rows_loaded": [3990, 28, 0],
                "rows_rejected": [10, 2, 0],
                "rows_duplicate": [0, 0, 0],
                "status": ["loaded", "loaded", "error"],
                "error": [None, None, "line 1: unknown column 'Result'"],
                "ingested_at": [datetime(2026, 6, 28, 2, 0)] * 3,
                "modified_at": [datetime(2026, 6, 20, 9, 0)] * 3,
            }
        ),
        rejected_summary=pl.DataFrame(
            {
                "source": ["alice_cronometer", "clinic_labs"],
                "reason": ["bad date", "unit <mg/dL?>"],
                "column": ["Day", "Units"],
                "n": [10, 2],
                "examples": [
                    'cronometer/alice.csv line 4: "2026-13-01"; cronometer/alice.csv line 9: "x"',
                    'labs/clinic.csv line 3: "mg/dL?"',
                ],
            }
        ),
        unmapped_foods=pl.DataFrame(
            {
                "person_id": [people[0], people[-1]],
                "food": [food, "Mystery bar"],
                "entries": [12, 3],
                "energy_kcal": [4800.0, 600.0],
                "energy_share": [0.07, 0.01],
            }
        ),
        exposure_windows=windows,
        data_sufficiency=data_sufficiency(draws),
        source_freshness=_freshness(people, diet, draws, datetime(2026, 6, 20, 9, 0)),
        run_info={
            "run_at": "2026-06-28T03:00:00",
            "code_version": "0.1.0+abc1234",
            "data_window": "2025-01-06 to 2026-01-05",
            "upstream": "diet_daily, marker_draws, associations",
        },
    )


def _freshness(
    people: list[str], diet: pl.DataFrame, draws: pl.DataFrame, file_at: datetime
) -> pl.DataFrame:
    """As the loader builds it: per source and person, the newest file and the latest day."""
    diet_days = diet.group_by("person_id").agg(pl.col("day").max().alias("latest_day"))
    lab_days = draws.group_by("person_id").agg(pl.col("day").max().alias("latest_day"))
    return pl.concat(
        [
            diet_days.with_columns(source=pl.lit("alice_cronometer")),
            lab_days.with_columns(source=pl.lit("clinic_labs")),
        ]
    ).select(
        "source",
        "person_id",
        pl.lit(file_at).cast(pl.Datetime("us")).alias("newest_file_at"),
        "latest_day",
    )


def make_big_inputs(
    people: list[str], days: int = 730, draw_every: int = 14, seed: int = 0
) -> DashboardInputs:
    """Two years of daily data per person with ~35 features and real per-person associations."""
    diet = pl.concat(
        [_diet(p, seed + i, n=days, extra=True) for i, p in enumerate(people)], how="diagonal"
    )
    draws = pl.concat(
        [
            _draws(p, seed + 100 + i, n=days // draw_every - 2, every=draw_every)
            for i, p in enumerate(people)
        ]
    )
    settings = Settings()
    windows = build_exposure_windows(diet, draws, settings)
    assoc = add_fdr_and_status(per_person_ols(analysis_frame(draws, windows), settings), settings)
    return DashboardInputs(
        persons=pl.DataFrame({"person_id": people}),
        diet_daily=diet,
        marker_draws=draws,
        associations=assoc,
        exposure_windows=windows,
        data_sufficiency=data_sufficiency(draws),
        source_freshness=_freshness(people, diet, draws, datetime(2026, 12, 30)),
        run_info={"run_at": "2027-01-02T03:00:00", "code_version": "test"},
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("dashboards")
    return out, write_dashboards(out, make_inputs())


def _pages(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in out.glob("*.html")}


def test_files_written(written: tuple[Path, list[Path]]) -> None:
    out, paths = written
    names = {p.name for p in paths}
    expected = {"index.html", "cohort.html", "plotly.min.js"} | {
        name(p) for p in PEOPLE for name in (person_page_name, person_section_name)
    }
    assert names == expected
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    assert {p.name for p in out.iterdir()} == expected


def test_person_page_has_findings_with_ci_and_caveat(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    for person in PEOPLE:
        page = shown(out, person)  # the findings are in the section file beside the page
        assert EXPECTED_SENTENCE in page
        assert "association, not causation" in page
        # The timeline: log axis, acute draws labelled, chronic baseline drawn.
        assert '"type":"log"' in page
        assert "excluded: acute" in page
        assert "chronic baseline 1.6 mg" in page  # plotly JSON writes / as \\u002f
        assert "washout" in page
        assert "below detection limit" in page
        # Insufficient cells say what is missing.
        assert "Not enough data yet for hs-CRP and fermented food over the previous 56 days" in page
        # Footer provenance.
        for text in (
            "0.1.0+abc1234",
            "2026-06-28T03:00:00",
            "diet_daily, marker_draws, associations",
        ):
            assert text in page


def test_index_links_every_person_and_cohort(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    index = (out / "index.html").read_text(encoding="utf-8")
    for person in PEOPLE:
        assert f'href="{person_page_name(person)}"' in index
    assert 'href="cohort.html"' in index
    assert EXPECTED_SENTENCE in index
    assert "1.4 mg/L" in index and "average (1-3 mg/L)" in index
    assert "-12%/year" in index
    assert "failed to load" in index and "rejected" in index
    # Rejects grouped by source, reason and column, with a count and example lines.
    assert '<td>bad date</td><td>Day</td><td class="num">10</td>' in index
    assert "cronometer/alice.csv line 4: &quot;2026-13-01&quot;" in index


def test_index_accounts_for_input_files_and_lists_only_those_needing_attention(
    tmp_path: Path,
) -> None:
    data = make_inputs()
    extra = data.ingest_files.head(1).with_columns(
        file_id=pl.lit("f4"),
        path=pl.lit("cronometer/alice/clean.csv"),
        rows_rejected=pl.lit(0),
        rows_loaded=pl.lit(4000),
        modified_at=pl.lit(datetime(2026, 6, 1)),
    )
    dup = extra.with_columns(
        file_id=pl.lit("f5"),
        path=pl.lit("cronometer/alice/again.csv"),
        rows_loaded=pl.lit(3000),
        rows_duplicate=pl.lit(999),  # one row read but not accounted for
    )
    data.ingest_files = pl.concat([data.ingest_files, extra, dup], how="vertical_relaxed")
    data.run_info["run_at"] = "2026-06-28 03:00 UTC"
    data.source_freshness = pl.DataFrame()  # files a week old: no source is stale
    write_dashboards(tmp_path, data)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    files = index.split("<h3>Input files</h3>", 1)[1].split("<h3>", 1)[0]
    # Per source: files, and rows read = loaded + rejected + duplicate.
    assert (
        '<td>alice_cronometer</td><td class="num">3</td><td class="num">12,000</td>'
        '<td class="num">10,990</td><td class="num">10</td><td class="num">999</td>'
        '<td class="num">0</td>'
    ) in files
    assert "1 rows unaccounted for" in files
    assert '<td class="num">1</td><td>yes</td>' in files  # clinic_labs: one failed file, adds up
    # Every file needing attention with its own counts and why; the clean file is not listed.
    assert "cronometer/alice/clean.csv" not in files
    assert (
        '<td><code>labs/broken.csv</code></td><td class="num">0</td><td class="num">0</td>'
        '<td class="num">0</td><td class="num">0</td><td><span class="badge c-high">error</span>'
        "</td><td>failed: line 1: unknown column &#x27;Result&#x27;</td>"
    ) in files
    assert "<td>10 rows rejected</td>" in files
    assert "999 duplicate rows skipped; 1 rows read but not accounted for" in files
    assert "newest file of a stale source" not in files
    # The full list is one query away.
    assert "All 5 files, each with its own counts" in files
    assert "FROM ingest_files" in files

    # A stale source's newest file is listed (its age is what the freshness table judges).
    data.ingest_files = data.ingest_files.with_columns(modified_at=pl.lit(datetime(2026, 4, 20)))
    data.ingest_files = data.ingest_files.filter(pl.col("source") == "clinic_labs").with_columns(
        rows_rejected=pl.lit(0),
        rows_loaded=pl.col("rows_read"),
        status=pl.lit("loaded"),
        error=pl.lit(None, pl.String),
    )
    write_dashboards(tmp_path / "stale", data)
    files = (tmp_path / "stale" / "index.html").read_text(encoding="utf-8")
    files = files.split("<h3>Input files</h3>", 1)[1].split("<h3>", 1)[0]
    # Both files have the newest time: one is listed (the last by path).
    assert files.count("newest file of a stale source") == 1
    assert "labs/broken.csv</code>" in files and "labs/2025.csv" not in files
    newer = data.ingest_files.with_columns(
        modified_at=pl.when(pl.col("path") == "labs/2025.csv")
        .then(pl.lit(datetime(2026, 4, 21)))
        .otherwise(pl.col("modified_at"))
    )
    data.ingest_files = newer
    write_dashboards(tmp_path / "newer", data)
    files = (tmp_path / "newer" / "index.html").read_text(encoding="utf-8")
    files = files.split("<h3>Input files</h3>", 1)[1].split("<h3>", 1)[0]
    assert "labs/2025.csv</code>" in files and "labs/broken.csv" not in files

    data.ingest_files = data.ingest_files.filter(pl.col("path") == "")
    write_dashboards(tmp_path / "none", data)
    index = (tmp_path / "none" / "index.html").read_text(encoding="utf-8")
    assert "No input files have been read yet." in index


@pytest.mark.parametrize("stale", [False, True])
def test_the_index_reads_files_with_nothing_to_say_as_one_row_per_source(
    tmp_path: Path, stale: bool
) -> None:
    """At scale a source holds tens of thousands of files, and a frame of them all made the
    dashboard steps grow with the history (issue 19): they read the files the index lists
    (something to say, or a source's newest) and one row per source for the rest, and render
    the same "Input files" section and warnings as from every file's row."""
    from pipelines.schema import INGEST_FILES_SCHEMA, conform
    from pipelines.steps.dashboards import load_dashboard_inputs
    from pipelines.warehouse import replace_table

    data = make_inputs()
    first = data.ingest_files.head(1)
    day = datetime(2026, 4, 1) if stale else datetime(2026, 6, 1)
    clean = [
        first.with_columns(
            file_id=pl.lit(f"{source}{i}"),
            source=pl.lit(source),
            path=pl.lit(f"{source}/day{i:02d}.csv"),
            rows_read=pl.lit(100 + i),
            rows_loaded=pl.lit(100 + i),
            rows_rejected=pl.lit(0),
            # Two files share the newest time: the last by path is the newest.
            modified_at=pl.lit(day + timedelta(days=min(i, 18))),
        )
        for source in ("alice_cronometer", "bob_mfp")
        for i in range(20)
    ]
    every = conform(
        pl.concat([data.ingest_files, *clean], how="vertical_relaxed"), INGEST_FILES_SCHEMA
    ).with_columns(modified_at=pl.col("modified_at") - timedelta(days=60 if stale else 0))
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    with wh.write() as conn:
        replace_table(conn, "ingest_files", every)
    listed = load_dashboard_inputs(wh).ingest_files
    # The failed and the rejecting file of clinic_labs, alice's servings (rows rejected, and
    # her newest), bob's newest; then one row for alice's 20 clean files and one for bob's 19.
    assert listed.height == 6 and listed["files"].sum() == every.height
    assert listed.filter(pl.col("path").is_null())["files"].to_list() == [20, 19]

    data.run_info["run_at"] = "2026-06-28 03:00 UTC"
    data.source_freshness = pl.DataFrame()
    sections = []
    for name, files in (("every", every), ("listed", listed)):
        data.ingest_files = files
        write_dashboards(tmp_path / name, data)
        index = (tmp_path / name / "index.html").read_text(encoding="utf-8")
        warnings = index.split("<h2", 2)[1]
        sections.append((index.split("<h3>Input files</h3>", 1)[1].split("<h3>", 1)[0], warnings))
    assert sections[0] == sections[1]
    files = sections[0][0]
    assert "All 43 files, each with its own counts" in files
    assert ("newest file of a stale source" in files) is stale
    assert "bob_mfp/day19.csv" in files if stale else "bob_mfp/" not in files


def test_cohort_page(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    page = (out / "cohort.html").read_text(encoding="utf-8")
    assert "association, not causation" in page
    assert "Between-person (cross-sectional)" in page
    assert (
        "hs-CRP 9% lower per extra daily serving of fermented food over the previous 28 days"
        in page
    )
    assert "4,200 people" in page
    assert 'id="small-multiples"' in page and 'id="forest-0"' in page


def test_plotly_js_written_once_and_referenced_relatively(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    assert list(out.rglob("plotly*.js")) == [out / "plotly.min.js"]
    assert (out / "plotly.min.js").read_text(encoding="utf-8") == get_plotlyjs()
    for name, page in _pages(out).items():
        assert page.count('<script src="plotly.min.js"></script>') == 1, name
        assert "Copyright 2012-" not in page, f"{name} inlines plotly.js"


def test_plotly_js_is_replaced_when_it_differs_and_kept_when_it_is_the_bundled_one(
    tmp_path: Path,
) -> None:
    expected = get_plotlyjs().encode("utf-8")
    path = dashboards.write_plotly_js(tmp_path)
    assert path == tmp_path / "plotly.min.js" and path.read_bytes() == expected
    kept = path.stat().st_ino
    assert (
        dashboards.write_plotly_js(tmp_path).stat().st_ino == kept
    )  # the same file, not written again
    for stale in (expected[:-1] + b"!", b"/* an older plotly.js */"):  # same size; another
        path.write_bytes(stale)
        dashboards.write_plotly_js(tmp_path)
        assert path.read_bytes() == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plotly.min.js"]  # no temp file left


def test_no_remote_urls(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    remote = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
    for name, page in _pages(out).items():
        assert not remote.search(page), name
        assert "http://" not in page and "https://" not in page, name
        assert "@import" not in page and "url(" not in page, name


def test_page_size_small(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    for name, page in _pages(out).items():
        assert len(page.encode("utf-8")) < 1_000_000, name
    assert (out / person_page_name("alice")).stat().st_size < 400_000


def test_rerun_is_deterministic(tmp_path: Path, written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    write_dashboards(tmp_path, make_inputs())
    for name, page in _pages(out).items():
        assert (tmp_path / name).read_text(encoding="utf-8") == page, name


def test_escaped_and_raw_html_are_different_types() -> None:
    """Escaped text is Markup (with html.escape's bytes); the page shell escapes what is not."""
    assert isinstance(rhtml.esc(XSS), Markup)
    assert rhtml.esc('"x"') == "&quot;x&quot;"
    assert rhtml.esc(rhtml.esc("<")) == "&amp;lt;"  # esc escapes its input, always
    shell = rhtml.page(XSS, Markup("<b>h</b>"), XSS, Markup())  # type: ignore[arg-type]
    assert "<b>h</b>" in shell and XSS not in shell
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>" in shell
    cell = rhtml.table(["<th>"], [[Markup("<i>raw</i>"), rhtml.esc("<text>")]])
    assert "<th>&lt;th&gt;</th>" in cell and "<td><i>raw</i></td><td>&lt;text&gt;</td>" in cell


def test_xss_strings_escaped(tmp_path: Path) -> None:
    data = make_inputs(people=[XSS, "carol"], food=XSS_FOOD)
    data.ingest_files = data.ingest_files.with_columns(path=pl.lit(XSS_FOOD), source=pl.lit(XSS))
    data.rejected_summary = data.rejected_summary.with_columns(
        reason=pl.lit(XSS), column=pl.lit(XSS), examples=pl.lit(XSS)
    )
    data.run_info["code_version"] = XSS
    paths = write_dashboards(tmp_path, data)
    name = person_page_name(XSS)
    assert re.fullmatch(r"person_[a-z0-9-]+\.html", name)
    assert tmp_path / name in paths
    for page_name, page in _pages(tmp_path).items():
        assert "<script>alert" not in page, page_name
        assert "</script><script>alert" not in page, page_name
        # Only our own script tags: plotly.min.js, the "missing plotly" check, one per figure.
        assert page.count("<script") == page.count("</script>"), page_name
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in index
    person = (tmp_path / name).read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in person


def test_plotly_json_cannot_close_script_tag() -> None:
    # Even text that reaches Plotly unescaped must not break out of the <script> element.
    as_dict = {
        "data": [{"type": "scatter", "x": [1], "y": [1], "name": XSS_FOOD, "text": [XSS, "<!--"]}],
        "layout": {"title": {"text": XSS_FOOD}},
    }
    as_object = go.Figure(go.Scatter(x=[1, 2], y=[1, 2], name=XSS_FOOD, text=[XSS, "<!--"]))
    for fig in (as_dict, as_object.to_dict()):
        out = frender.figure_html(fig, "t")
        assert "</script><script>alert" not in out
        assert "<script>alert" not in out
        assert out.count("</script>") == 1


def test_figure_html_embeds_the_figure_as_json() -> None:
    # The figure's data and layout reach Plotly.newPlot as JSON that reads back as the figure
    # (NaN as null, numpy arrays as lists, dates as ISO text), and text that could close the
    # <script> element or end a JavaScript line is escaped.
    fig: dict[str, Any] = {
        "data": [
            {
                "type": "scatter",
                "x": np.array([1.5, 2.0]),
                "y": [float("nan"), 1e-9],
                "name": XSS_FOOD,
                "text": ["mg/L", "a\u2028b\u2029c", date(2025, 1, 2)],
            }
        ],
        "layout": {"title": {"text": XSS_FOOD}, "height": 333},
    }
    out = frender.figure_html(fig, "d")
    assert out.startswith('<div style="height:333px; width:100%;"><div id="d"')
    assert out.count("<script>") == out.count("</script>") == 1
    assert "\u2028" not in out and "\u2029" not in out
    call = re.search(r'Plotly\.newPlot\("d", (\[.*\]), (\{.*\}), (\{.*?\})\);</script>', out)
    assert call is not None
    data, layout, config = (json.loads(part) for part in call.groups())
    assert data == [
        {
            "type": "scatter",
            "x": [1.5, 2.0],
            "y": [None, 1e-9],
            "name": XSS_FOOD,
            "text": ["mg/L", "a\u2028b\u2029c", "2025-01-02"],
        }
    ]
    assert layout == fig["layout"]
    assert config == frender.CONFIG
    assert frender.figure_html({"data": [], "layout": {}}, "e").startswith(
        '<div style="height:450px; width:100%;">'
    )


def test_empty_inputs_render(tmp_path: Path) -> None:
    paths = write_dashboards(tmp_path, DashboardInputs())
    assert {p.name for p in paths} == {"index.html", "cohort.html", "plotly.min.js"}
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "No data yet" in index
    cohort = (tmp_path / "cohort.html").read_text(encoding="utf-8")
    assert "No pooled (cohort) estimates yet" in cohort


def test_zero_row_frames_and_missing_optional_columns(tmp_path: Path) -> None:
    full = make_inputs()
    zero = DashboardInputs(
        **{k: v.clear() for k, v in vars(full).items() if isinstance(v, pl.DataFrame)}
    )
    write_dashboards(tmp_path / "zero", zero)
    assert "No data yet" in (tmp_path / "zero" / "index.html").read_text(encoding="utf-8")

    # Minimal frames: only the key columns, odd dtypes, no status/q/note, no trends at all.
    sparse = DashboardInputs(
        diet_daily=full.diet_daily.select("person_id", "day", "fiber_g"),
        marker_draws=full.marker_draws.select("person_id", "marker", "collected_at", "value"),
        associations=full.associations.select(
            "scope", "person_id", "marker", "feature", "effect_pct"
        ),
        ingest_files=pl.DataFrame({"file_id": [1], "path": ["x.csv"]}),
        unmapped_foods=pl.DataFrame({"food": ["tempeh"], "entries": [3]}),
    )
    paths = write_dashboards(tmp_path / "sparse", sparse)
    assert len(paths) == 3 + 2 * len(PEOPLE)  # a page and a section file each
    page = shown(tmp_path / "sparse", "alice")
    assert "hs-CRP (log scale) and weekly intake" in page
    # No exposure windows: the heatmap draws, with no empty scatter under it.
    assert 'id="lag-0"' in page and read_section(tmp_path / "sparse", "alice")["cells"] is None
    assert "no points to plot behind the cells" in page

    # A person known only from the persons table gets a page full of "no data yet".
    only = DashboardInputs(persons=pl.DataFrame({"person_id": ["dave"]}))
    write_dashboards(tmp_path / "only", only)
    page = (tmp_path / "only" / "person_dave.html").read_text(encoding="utf-8")
    assert "No CRP draws or diet log for this person yet." in page


def test_odd_values_do_not_crash(tmp_path: Path) -> None:
    # Nulls, NaN/inf, non-positive values, unknown statuses and markers, string ages, duplicate
    # person rows: the pages still render and say what they can.
    data = DashboardInputs(
        persons=pl.DataFrame({"person_id": ["a", "a", None], "age": ["x", "40", None]}),
        diet_daily=pl.DataFrame(
            {
                "person_id": ["a", "a", "b"],
                "day": [datetime(2025, 1, 1), datetime(2025, 1, 3), None],
                "logged": [None, True, True],
                "fermented_servings": [float("nan"), 2.0, 1.0],
            }
        ),
        marker_draws=pl.DataFrame(
            {
                "person_id": ["a", "a", "a", "b"],
                "marker": ["HSCRP", "hscrp", "esr", "hscrp"],
                "collected_at": [None, datetime(2025, 1, 2), datetime(2025, 1, 2), None],
                "value": [None, -1.0, 5.0, 0.0],
            }
        ),
        marker_trends=pl.DataFrame(
            {
                "person_id": ["a", "a"],
                "marker": ["hscrp", "esr"],
                "latest_value": [float("nan"), 12.0],
                "slope_pct_per_year": [float("inf"), None],
                "category": ["weird", None],
            }
        ),
        associations=pl.DataFrame(
            {
                "scope": ["person", "person", "cohort", "person"],
                "person_id": ["a", "a", None, "zz"],
                "marker": ["hscrp", "esr", "hscrp", None],
                "feature": [None, "mystery_x", "fiber_g", "dii"],
                "window_days": [None, 7, 28, 3],
                "effect_pct": [float("nan"), 5.0, -3.0, 1.0],
                "status": [None, "weird", "significant", "significant"],
                "n": [None, 3, 50, 9],
            }
        ),
        run_info={"run_at": "today", "extra": "3"},
    )
    paths = write_dashboards(tmp_path, data)
    assert {p.name for p in paths} >= {"person_a.html", "person_b.html", "person_zz.html"}
    page = (tmp_path / "person_a.html").read_text(encoding="utf-8")
    assert "No CRP draws yet" in page
    assert "ESR" in page


def test_atomic_writes_leave_no_temp_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dashboards(tmp_path, make_inputs())
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []  # no temp file
    before = (tmp_path / "index.html").read_bytes()

    real_replace = os.replace

    def crash_on_index(src: str, dst: str) -> None:
        if str(dst).endswith("index.html"):
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(rhtml.os, "replace", crash_on_index)
    changed = make_inputs()
    changed.run_info["run_at"] = "2026-06-29T03:00:00"
    with pytest.raises(OSError, match="disk full"):
        write_dashboards(tmp_path, changed)
    assert (tmp_path / "index.html").read_bytes() == before
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []  # no temp file


def test_stale_person_pages_removed(tmp_path: Path) -> None:
    write_dashboards(tmp_path, make_inputs())
    (tmp_path / "notes.html").write_text("mine")
    data = make_inputs(people=["alice"])
    write_dashboards(tmp_path, data)
    assert not (tmp_path / person_page_name("Bob Smith")).exists()
    assert (tmp_path / "person_alice.html").exists()
    assert (tmp_path / "notes.html").read_text() == "mine"


def test_person_page_name_is_safe_and_stable() -> None:
    assert person_page_name("alice") == "person_alice.html"
    assert person_page_name("p-001") == "person_p-001.html"
    assert person_page_name("Alice") != person_page_name("alice")
    assert person_page_name("Bob Smith") == person_page_name("Bob Smith")
    for pid in ("../../etc/passwd", "a/b", XSS, "", "é" * 300, "CON", "x" * 200):
        name = person_page_name(pid)
        assert re.fullmatch(r"person_[a-z0-9_-]+\.html", name), name
        assert len(name) < 80
    assert person_page_name("a/b") != person_page_name("a b")


def test_a_huge_ci_bound_is_printed_not_a_crash() -> None:
    """A CI from a few draws with few degrees of freedom can reach 1e30% and beyond: more digits
    than decimal's default 28, which made every page fail to render (bench, 2,000 people)."""
    assert rhtml.fmt_pct(1e30) == "+1" + "0" * 30 + "%"
    assert rhtml.fmt_pct(-1.7e308).startswith("-17") and rhtml.fmt_pct(-1.7e308).endswith("0%")
    assert (rhtml.fmt_pct(24.4), rhtml.fmt_pct(0.44), rhtml.fmt_pct(9.96)) == (
        "+24%",
        "+0.4%",
        "+10%",
    )
    # Ties round half-up, as people round (banker's rounding would give 12% and +0.2%), and a
    # value that rounds to nothing reads as 0%.
    assert [rhtml.fmt_pct(v) for v in (12.5, -12.5, 0.25, 0.05, 0.04)] == [
        "+13%",
        "-13%",
        "+0.3%",
        "+0.1%",
        "0%",
    ]
    assert (rhtml.fmt_pct(True), rhtml.fmt_pct(7, signed=False)) == ("n/a", "7%")
    sentence = finding_sentence(
        {
            "scope": "person",
            "marker": "hscrp",
            "method": "ols_within",
            "status": "inconclusive",
            "feature": "fiber_g",
            "window_days": 28,
            "n": 5,
            "effect_pct": 3e6,
            "ci_low_pct": -99.0,
            "ci_high_pct": 4.2e45,
            "q": 0.9,
        }
    )
    assert "+42" + "0" * 44 + "%" in sentence


def test_finding_sentence_variants() -> None:
    base = {"scope": "person", "marker": "hscrp", "method": "ols_within", "status": "significant"}
    up = finding_sentence(
        {
            **base,
            "feature": "ultra_processed_energy_pct",
            "window_days": 14,
            "n": 20,
            "effect_pct": 1.3,
            "ci_low_pct": 0.2,
            "ci_high_pct": 2.5,
            "q": 0.0004,
        }
    )
    assert up == (
        "hs-CRP 1.3% higher per extra percentage point of energy from ultra-processed food over "
        "the previous 14 days, 95% CI +0.2% to +2.5%, q < 0.001, 20 draws"
    )
    missing = finding_sentence(
        {
            **base,
            "feature": "fiber_g",
            "window_days": 28,
            "n": 5,
            "status": "insufficient_data",
            "effect_pct": None,
        }
    )
    assert missing.startswith("Not enough data yet for hs-CRP and fibre over the previous 28 days")
    assert "only 5 draws" in missing


# --------------------------------------------------------------------------------------------
# Lag-heatmap cells, calendars, data sufficiency, stale sources, cohort counts


def test_heatmap_cells_carry_their_scatter_and_fit(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    page = (out / person_page_name("alice")).read_text(encoding="utf-8")
    assert 'id="scatter-0"' in shown(out, "alice") and "plotly_click" in page
    m = read_section(out, "alice")["cells"]["maps"]["lag-0"]
    assert m["target"] == "scatter-0"
    # The significant cell is drawn first.
    assert m["initial"] == "fermented_servings|28"
    assert m["rows"][:2] == ["fermented_servings", "fiber_g"]
    assert m["cols"] == ["3", "7", "14", "28", "56"]
    assert len(m["cells"]) == 4 * 5
    assert "24% lower" in m["cells"]["fermented_servings|28"]["title"]

    # The line is the same log-linear OLS as the association step's, on the same points.
    data = make_inputs()
    alice = {
        k: v.filter(pl.col("person_id") == "alice")
        for k, v in (("draws", data.marker_draws), ("windows", data.exposure_windows))
    }
    frame = analysis_frame(alice["draws"], alice["windows"])
    ols = per_person_ols(frame, Settings(min_n_person=3))
    for feature, window in (("fiber_g", 7), ("dii", 28), ("ultra_processed_servings", 56)):
        cell = m["cells"][f"{feature}|{window}"]
        xs = np.array([x for x in cell["x"] if x is not None], dtype=float)
        ys = np.array([y for x, y in zip(cell["x"], m["y"], strict=True) if x is not None])
        a, b, s, mx, sxx, n, t = cell["fit"]
        expected = ols.filter((pl.col("feature") == feature) & (pl.col("window_days") == window))
        assert n == len(xs) == expected["n"][0]
        slope, intercept = np.polyfit(xs, np.log(ys), 1)
        # The blob's points are rounded for size; the fit comes from the exact values.
        assert b == pytest.approx(slope, rel=0.1, abs=1e-3)
        assert a == pytest.approx(intercept, rel=0.1, abs=1e-2)
        assert b == pytest.approx(expected["beta"][0], rel=1e-4)
        assert t == pytest.approx(float(stats.t.ppf(0.975, n - 2)), rel=1e-3)
        assert s > 0 and sxx > 0 and xs.min() <= mx <= xs.max()
    assert len(m["dates"]) == len(m["y"]) and all(
        re.fullmatch(r"\d{4}-\d\d-\d\d", d) for d in m["dates"]
    )


def test_category_calendar_has_a_dropdown(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    page = (out / person_page_name("alice")).read_text(encoding="utf-8")
    assert 'id="category-calendar"' in page and 'id="calendar"' in page
    diet = make_inputs().diet_daily.filter(pl.col("person_id") == "alice")
    fig = fintakecalendar.category_calendar(diet, "Daily intake")
    assert fig is not None
    labels = [b["label"] for b in fig["layout"]["updatemenus"][0]["buttons"]]
    assert labels[:3] == [
        "Fermented food (servings/day)",
        "Ultra-processed food (servings/day)",
        "Fibre (g/day)",
    ]
    assert len(labels) == len(fig["data"]) >= 10
    assert [t["visible"] for t in fig["data"]] == [True] + [False] * (len(labels) - 1)
    # Unlogged days stay blank, not zero.
    first = diet.filter(~pl.col("logged")).sort("day")["day"][0]
    start = diet["day"].min()
    assert isinstance(first, date) and isinstance(start, date)
    off = (first - (start - timedelta(days=start.weekday()))).days
    assert fig["data"][0]["z"][off % 7][off // 7] is None
    button = fig["layout"]["updatemenus"][0]["buttons"][2]
    assert button["args"][0]["visible"][2] is True


def test_data_sufficiency_advice_on_person_page_and_index(
    written: tuple[Path, list[Path]],
) -> None:
    out, _ = written
    advice = data_sufficiency(make_inputs().marker_draws).filter(pl.col("person_id") == "alice")
    page = (out / person_page_name("alice")).read_text(encoding="utf-8")
    assert 'id="sufficiency"' in page
    assert rhtml.esc(advice["advice"][0]) in page
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Enough data?" in index
    # Alice's draws vary too much for the adjusted model to see a 50% change within the table's
    # range, and the index says so instead of a number.
    row = advice.row(0, named=True)
    assert row["more_draws_50pct"] is None
    assert rhtml.esc(dashboards.sufficiency_short(row)) in index
    assert "out of reach" in dashboards.sufficiency_short(row)


def test_stale_sources_flagged_on_index_and_person_pages(tmp_path: Path) -> None:
    data = make_inputs()
    # Newest files a week old (fresh), but the data itself ends months before the run.
    write_dashboards(tmp_path / "old", data)
    index = (tmp_path / "old" / "index.html").read_text(encoding="utf-8")
    assert "Source freshness" in index
    assert "source alice_cronometer looks stale: its latest data is from 2026-01-05" in index
    page = (tmp_path / "old" / person_page_name("alice")).read_text(encoding="utf-8")
    assert "Sources of this person's data" in page
    assert "source clinic_labs looks stale" in page

    # The source is current (Bob's log is up to date) but Alice's part of it is not: only her
    # page and row say so.
    data.source_freshness = data.source_freshness.with_columns(
        latest_day=pl.when(pl.col("person_id") == "Bob Smith")
        .then(pl.lit(date(2026, 6, 25)))
        .otherwise(pl.col("latest_day"))
    )
    write_dashboards(tmp_path / "one", data)
    index = (tmp_path / "one" / "index.html").read_text(encoding="utf-8")
    assert "source alice_cronometer looks stale" not in index
    mine = "source alice_cronometer has no recent data for this person: its latest data is from"
    assert mine in index
    assert mine in (tmp_path / "one" / person_page_name("alice")).read_text(encoding="utf-8")
    assert mine not in (tmp_path / "one" / person_page_name("Bob Smith")).read_text("utf-8")

    # A file not refreshed for two months is stale even without dated rows.
    data.source_freshness = pl.DataFrame()
    data.ingest_files = data.ingest_files.with_columns(modified_at=pl.lit(datetime(2026, 4, 20)))
    write_dashboards(tmp_path / "files", data)
    index = (tmp_path / "files" / "index.html").read_text(encoding="utf-8")
    assert "source clinic_labs looks stale: its newest file is 69 days old (2026-04-20)" in index

    # Fresh data and files: no stale warning anywhere.
    fresh = make_inputs()
    fresh.run_info["run_at"] = "2026-01-10 03:00 UTC"
    fresh.source_freshness = fresh.source_freshness.with_columns(
        newest_file_at=pl.lit(datetime(2026, 1, 6))
    )
    write_dashboards(tmp_path / "fresh", fresh)
    for name, text in _pages(tmp_path / "fresh").items():
        assert "looks stale" not in text, name
    assert "up to date" in (tmp_path / "fresh" / "index.html").read_text(encoding="utf-8")


def test_demo_sources_are_labelled_not_flagged_stale(tmp_path: Path) -> None:
    # The fixture's data ends months before its run: both sources are stale, unless marked demo.
    data = make_inputs()
    data.demo_sources = frozenset({"alice_cronometer"})
    write_dashboards(tmp_path, data)
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "alice_cronometer looks stale" not in index
    assert "alice_cronometer has no recent data" not in index
    assert "demo data (ends 2026-01-05), not checked for freshness" in index
    # A real source beside it is still checked.
    assert "source clinic_labs looks stale" in index
    page = (tmp_path / person_page_name("alice")).read_text(encoding="utf-8")
    assert "alice_cronometer looks stale" not in page
    assert "alice_cronometer has no recent data" not in page
    assert "demo data (ends" in page


def test_cohort_header_counts_cross_sectional_people(tmp_path: Path) -> None:
    write_dashboards(tmp_path / "mixed", make_inputs())
    page = (tmp_path / "mixed" / "cohort.html").read_text(encoding="utf-8")
    assert "2 people followed over time · 4,200 people in the between-person models" in page
    assert "(largest model n)" in page

    # An NHANES-like cohort: nobody followed over time, thousands in the between models.
    between = make_inputs().associations.filter(pl.col("method") == "ols_between")
    rows = [
        {**between.row(0, named=True), "feature": f, "n": n}
        for f, n in (("fiber_g_per_1000kcal", 2769), ("dii_window", 2700), ("dii_no_alcohol", 2650))
    ]
    write_dashboards(
        tmp_path / "xs", DashboardInputs(associations=pl.DataFrame(rows, strict=False))
    )
    page = (tmp_path / "xs" / "cohort.html").read_text(encoding="utf-8")
    assert "0 people followed over time · 2,769 people in the between-person models" in page
    index = (tmp_path / "xs" / "index.html").read_text(encoding="utf-8")
    assert "0 people followed over time · 2,769 in between-person models" in index
    assert "2,769 people of a cross-sectional cohort" in index and "No data yet" not in index
    for label in (
        "Fibre per 1000 kcal",
        "DII of the window&#x27;s mean intake",
        "DII without alcohol",
    ):
        assert label in page or label.replace("&#x27;", "'") in page, label


def test_derived_features_in_plain_words() -> None:
    assert rhtml.feature_label("fiber_g_per_1000kcal") == "Fibre per 1000 kcal"
    assert rhtml.feature_label("dii_window") == "DII of the window's mean intake"
    assert rhtml.feature_label("dii_no_alcohol") == "DII without alcohol"
    assert rhtml.feature_label("eggs_servings") == "Eggs (servings/day)"
    row = {
        "scope": "cohort",
        "marker": "hscrp",
        "feature": "fiber_g_per_1000kcal",
        "method": "ols_between",
        "window_days": None,
        "n": 2769,
        "effect_pct": -3.0,
        "ci_low_pct": -5.0,
        "ci_high_pct": -1.0,
        "q": 0.01,
        "status": "significant",
    }
    assert finding_sentence(row).startswith(
        "hs-CRP 3% lower per extra 1 g of fibre per 1000 kcal between people"
    )
    assert "DII without alcohol" in finding_sentence({**row, "feature": "dii_no_alcohol"})


def test_loader_reads_windows_sufficiency_and_freshness(tmp_path: Path) -> None:
    from pipelines.steps.dashboards import load_dashboard_inputs
    from pipelines.warehouse import Warehouse, replace_table
    from tests.conftest import everyone_in_frames

    data = make_inputs(people=["alice"])
    draws = data.marker_draws
    # One cross-sectional person (undated draw, undated diet) who must stay off person pages.
    nh_draw = draws.head(1).with_columns(
        person_id=pl.lit("nh1"), collected_at=pl.lit(None, pl.Datetime("us")), day=None
    )
    windows = data.exposure_windows
    nh_windows = windows.head(3).with_columns(person_id=pl.lit("nh1"))
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    with wh.write() as conn:
        replace_table(conn, "diet_daily", data.diet_daily)
        replace_table(conn, "marker_draws", pl.concat([draws, nh_draw]))
        replace_table(conn, "exposure_windows", pl.concat([windows, nh_windows]))
        replace_table(conn, "data_sufficiency", data_sufficiency(pl.concat([draws, nh_draw])))
        replace_table(conn, "ingest_files", data.ingest_files)
        replace_table(
            conn,
            "diet_entries",
            pl.DataFrame(
                {
                    "person_id": ["alice", "alice"],
                    "source": ["alice_cronometer"] * 2,
                    "day": [date(2025, 3, 1), date(2026, 1, 5)],
                }
            ),
        )
        replace_table(
            conn,
            "lab_results",
            pl.DataFrame(
                {
                    "person_id": ["alice", "nh1"],
                    "source": ["clinic_labs", "cohort_labs"],
                    "collected_at": [datetime(2025, 12, 16, 8), None],
                },
                schema_overrides={"collected_at": pl.Datetime("us")},
            ),
        )
    loaded = everyone_in_frames(load_dashboard_inputs(wh))
    assert set(loaded.exposure_windows["person_id"]) == {"alice"}
    assert loaded.exposure_windows["complete"].all()
    assert loaded.exposure_windows.height == windows.filter(pl.col("complete")).height
    assert set(loaded.data_sufficiency["person_id"]) == {"alice"}
    fresh = {
        (r["source"], r["person_id"]): r["latest_day"]
        for r in loaded.source_freshness.iter_rows(named=True)
    }
    assert fresh == {
        ("alice_cronometer", "alice"): date(2026, 1, 5),
        ("clinic_labs", "alice"): date(2025, 12, 16),
    }
    assert loaded.source_freshness["newest_file_at"].to_list() == [datetime(2026, 6, 20, 9)] * 2
    assert "exposure_windows" in loaded.run_info["upstream"]
    # The day's nutrients are on no page: left out of the read; what pages show is kept.
    diet_columns = set(loaded.diet_daily.columns)
    assert {"protein_g", "ultra_processed_energy_pct"}.isdisjoint(diet_columns)
    assert {"energy_kcal", "fiber_g", "dii", "logged", "fermented_servings"} <= diet_columns
    full = DashboardInputs(**{**vars(loaded), "diet_daily": data.diet_daily})
    write_dashboards(tmp_path / "loaded", loaded, workers=1)
    write_dashboards(tmp_path / "full", full, workers=1)
    for name in ("index.html", "cohort.html", person_page_name("alice")):
        assert (tmp_path / "loaded" / name).read_bytes() == (tmp_path / "full" / name).read_bytes()


def test_each_step_reads_its_part_and_the_same_data_window(tmp_path: Path) -> None:
    """The person-page step reads nobody's draws but its people's, the index step no person's
    rows; both show the data window of the whole read (the first and last day of a diet log or a
    followed person's dated draw), which the cross-sectional member's undated draw does not
    move."""
    from pipelines.steps.dashboards import load_dashboard_inputs
    from pipelines.warehouse import Warehouse, replace_table

    data = make_inputs(people=["alice", "bob"])
    draws = data.marker_draws
    early = draws.head(1).with_columns(
        collected_at=pl.lit(datetime(2024, 2, 3, 8), pl.Datetime("us")), day=None
    )
    nh_draw = draws.head(1).with_columns(
        person_id=pl.lit("nh1"), collected_at=pl.lit(None, pl.Datetime("us")), day=None
    )
    wh = Warehouse(tmp_path / "warehouse.duckdb")
    with wh.write() as conn:
        replace_table(conn, "diet_daily", data.diet_daily)
        replace_table(conn, "marker_draws", pl.concat([draws, early, nh_draw]))
    last = max(data.diet_daily["day"].max(), draws["collected_at"].max().date())  # type: ignore[union-attr]
    window = f"2024-02-03 to {last}"
    whole = load_dashboard_inputs(wh)
    pages = load_dashboard_inputs(wh, cohort_draws=False)
    index = load_dashboard_inputs(wh, people=False)
    for loaded in (whole, pages, index):
        assert loaded.run_info["data_window"] == window
    assert whole.people is not None and pages.people is not None and index.people is not None
    assert whole.people.ids == pages.people.ids == ["alice", "bob"]
    assert index.people.ids == []
    assert pages.marker_draws.is_empty()
    assert index.marker_draws.equals(whole.marker_draws)
    assert set(whole.marker_draws["person_id"]) == {"alice", "bob"}  # followed people's only

    # Without a diet log nobody is followed: no draws, and no dates to show.
    draws_only = Warehouse(tmp_path / "draws_only.duckdb")
    with draws_only.write() as conn:
        replace_table(conn, "marker_draws", pl.concat([draws, early, nh_draw]))
    alone = load_dashboard_inputs(draws_only, people=False)
    assert alone.run_info["data_window"] == "no dated data (cross-sectional)"
    assert alone.marker_draws.is_empty()


# --------------------------------------------------------------------------------------------
# Budgets: page weight and linear scaling


def test_person_page_under_1mb_for_two_years(tmp_path: Path) -> None:
    data = make_big_inputs(["alice"])
    features = data.associations["feature"].n_unique()
    assert features >= 33 and data.associations["window_days"].n_unique() == 5
    assert data.diet_daily.height == 730
    write_dashboards(tmp_path, data)
    # The page and its section file, which the page loads.
    files = [tmp_path / name("alice") for name in (person_page_name, person_section_name)]
    size = sum(f.stat().st_size for f in files)
    assert size < 1_000_000, f"{size:,} bytes"
    m = read_section(tmp_path, "alice")["cells"]["maps"]["lag-0"]
    assert len(m["cells"]) == features * 5 and len(m["dates"]) >= 40


def test_generation_scales_linearly(tmp_path: Path) -> None:
    n = 3
    small = make_big_inputs([f"p{i:03d}" for i in range(n)], days=240)
    large = make_big_inputs([f"p{i:03d}" for i in range(4 * n)], days=240)
    write_dashboards(tmp_path / "warm", make_big_inputs(["w"], days=240))

    def run(data: DashboardInputs, out: Path) -> tuple[float, float]:
        # Best of two: a busy machine can only make a run slower, never faster.
        took = []
        for _ in range(2):
            start = time.perf_counter()
            write_dashboards(out, data)
            took.append(time.perf_counter() - start)
        sizes = [p.stat().st_size for p in out.glob("person_*.html")]
        return min(took), sum(sizes) / len(sizes)

    t_small, b_small = run(small, tmp_path / "small")
    t_large, b_large = run(large, tmp_path / "large")
    # 4x the people: about 4x the time (a ratio, never an absolute time) and the same page size.
    assert t_large / t_small < 6, (t_small, t_large)
    assert 0.8 < b_large / b_small < 1.25, (b_small, b_large)


def test_cohort_page_can_pseudonymise_person_ids(tmp_path: Path) -> None:
    data = make_inputs()
    data.pseudonymise_cohort = True
    write_dashboards(tmp_path, data)
    cohort = (tmp_path / "cohort.html").read_text(encoding="utf-8")
    assert "Person 01" in cohort and "pseudonymised" in cohort
    for person in PEOPLE:
        assert person not in cohort
        assert person_page_name(person) not in cohort


def person_pages(paths: list[Path]) -> set[str]:
    return {p.name for p in paths if p.name.startswith("person_") and p.suffix == ".html"}


def section_files(paths: list[Path]) -> set[str]:
    return {p.name for p in paths if p.name.endswith(".lag.js")}


def nightly(w: Warehouse, out: Path, data: DashboardInputs) -> set[str]:
    """The dashboards step on `data`: the person pages it rendered."""
    written, _ = update_dashboards(w, out, data, workers=1)
    assert {"index.html", "cohort.html"} <= {p.name for p in written}  # always written
    return person_pages(written)


def with_person(data: DashboardInputs, table: str, person: str, change: pl.Expr) -> None:
    """`data` with `change` (a column expression) applied to `person`'s rows of `table`."""
    df = getattr(data, table)
    name = change.meta.output_name()
    setattr(
        data,
        table,
        df.with_columns(
            pl.when(pl.col("person_id") == person).then(change).otherwise(pl.col(name)).alias(name)
        ),
    )


ALL_PAGES = {person_page_name(p) for p in PEOPLE}


def test_person_pages_are_rendered_only_when_something_on_them_changed(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """Nightly: a later run date alone renders no person page again; a person's new data renders
    that person's page, identical to a full render; a source turning stale renders everyone."""
    out = tmp_path / "out"
    early = make_inputs()
    early.run_info["run_at"] = "2026-01-06T03:00:00"  # every source still up to date
    assert nightly(warehouse, out, early) == ALL_PAGES  # a first run renders everyone
    next_day = make_inputs()
    next_day.run_info["run_at"] = "2026-01-07T03:00:00"
    assert nightly(warehouse, out, next_day) == set()

    changed = make_inputs()
    changed.run_info["run_at"] = "2026-01-08T03:00:00"
    with_person(changed, "diet_daily", PEOPLE[0], pl.col("fiber_g") + 1)
    assert nightly(warehouse, out, changed) == {person_page_name(PEOPLE[0])}
    write_dashboards(tmp_path / "fresh", changed)
    name = person_page_name(PEOPLE[0])  # the other page's footer has the run time it was kept at
    assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()

    months_later = make_inputs()  # the fixture's own run date: its sources are stale by then
    months_later.diet_daily = changed.diet_daily
    assert nightly(warehouse, out, months_later) == ALL_PAGES


def test_a_persons_new_draw_value_renders_their_page_only(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    out = tmp_path / "out"
    assert nightly(warehouse, out, make_inputs()) == ALL_PAGES
    changed = make_inputs()
    with_person(changed, "marker_draws", PEOPLE[1], pl.col("value") * 1.1)
    assert nightly(warehouse, out, changed) == {person_page_name(PEOPLE[1])}
    write_dashboards(tmp_path / "fresh", changed)
    name = person_page_name(PEOPLE[1])
    assert (out / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()


def test_a_source_gone_quiet_for_one_person_renders_their_page_only(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A source that is current for the cohort but has no recent data for one person is a
    warning on that person's page only."""
    out = tmp_path / "out"
    early = make_inputs()
    early.run_info["run_at"] = "2026-01-06T03:00:00"  # every source up to date
    assert nightly(warehouse, out, early) == ALL_PAGES
    quiet = make_inputs()
    quiet.run_info["run_at"] = "2026-01-06T03:00:00"
    with_person(quiet, "source_freshness", PEOPLE[1], pl.col("latest_day") - timedelta(days=100))
    assert nightly(warehouse, out, quiet) == {person_page_name(PEOPLE[1])}
    assert "has no recent data for this person" in (out / person_page_name(PEOPLE[1])).read_text(
        encoding="utf-8"
    )


def test_what_every_page_shows_renders_everyone_and_cohort_rows_no_one(
    tmp_path: Path, warehouse: Warehouse
) -> None:
    """A pipeline-wide warning or the rejected rows are on every person page: a change renders
    everyone. Cohort-scope findings are on the cohort page only (person pages show the person's
    own): a refit that moves them renders no person page, and the cohort page shows the change."""
    out = tmp_path / "out"
    nightly(warehouse, out, make_inputs())

    cohort_moved = make_inputs()
    cohort_moved.associations = cohort_moved.associations.with_columns(
        effect_pct=pl.when(pl.col("scope") == "cohort")
        .then(pl.col("effect_pct") - 40)
        .otherwise(pl.col("effect_pct"))
    )
    before = (out / "cohort.html").read_bytes()
    assert nightly(warehouse, out, cohort_moved) == set()
    assert (out / "cohort.html").read_bytes() != before

    failed_file = make_inputs()
    failed_file.ingest_files = failed_file.ingest_files.with_columns(
        status=pl.lit("error"), error=pl.lit("bad")
    )  # "3 input file(s) failed to load" instead of 1, on every page
    assert nightly(warehouse, out, failed_file) == ALL_PAGES

    rejected = make_inputs()
    rejected.rejected_summary = rejected.rejected_summary.with_columns(n=pl.col("n") + 1)
    assert nightly(warehouse, out, rejected) == ALL_PAGES
    assert nightly(warehouse, out, rejected) == set()


def test_a_missing_page_is_rendered_and_a_failed_run_renders_its_pages_again(
    tmp_path: Path, warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleted page file is rendered again although its inputs did not change. A person-page
    run that fails after some pages were written records nothing: the next run renders them
    again. An index that fails after the person pages were recorded is written by the next run
    from what they kept (`page_summaries`), no page rendered again."""
    out = tmp_path / "out"
    nightly(warehouse, out, make_inputs())
    (out / person_page_name(PEOPLE[0])).unlink()
    assert nightly(warehouse, out, make_inputs()) == {person_page_name(PEOPLE[0])}

    changed = make_inputs()
    with_person(changed, "diet_daily", PEOPLE[1], pl.col("fiber_g") + 1)

    def disk_full(*args: object) -> None:
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(dashboards, "_clean_out_dir", disk_full)  # after the pages, before the record
        with pytest.raises(OSError, match="disk full"):
            nightly(warehouse, out, changed)
    assert nightly(warehouse, out, changed) == {person_page_name(PEOPLE[1])}
    assert nightly(warehouse, out, changed) == set()

    again = make_inputs()
    with_person(again, "diet_daily", PEOPLE[1], pl.col("fiber_g") + 2)
    (out / "index.html").unlink()

    def full_midway(*args: object) -> Iterator[str]:
        yield "<!doctype html>"  # the index is written a part at a time
        raise OSError("disk full")

    with monkeypatch.context() as m:
        m.setattr(dashboards, "index_parts", full_midway)
        with pytest.raises(OSError, match="disk full"):
            nightly(warehouse, out, again)
    assert not (out / "index.html").exists()
    assert not list(out.glob(".index.html.*"))  # nor half of it
    assert nightly(warehouse, out, again) == set()
    assert (out / "index.html").exists()


def test_the_index_is_the_same_written_a_part_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The people's rows go out `ROWS_PER_PART` at a time; the page is the same, byte for byte,
    whatever the part's size, and a part holds no more people than that."""
    import pipelines.reports.pages.index as index_page

    data = make_big_inputs([f"p<{i}>" for i in range(7)], days=60)
    write_dashboards(tmp_path / "whole", data, workers=1)
    seen: list[int] = []
    table_rows = index_page.table_rows

    def counted(rows: Iterable[Sequence[Markup]]) -> Markup:
        html = table_rows(list(rows))
        seen.append(html.count("<tr>"))
        return html

    monkeypatch.setattr(index_page, "ROWS_PER_PART", 3)
    monkeypatch.setattr(index_page, "table_rows", counted)
    write_dashboards(tmp_path / "parts", data, workers=1)
    assert seen == [3, 3, 1]
    whole = (tmp_path / "whole" / "index.html").read_bytes()
    assert (tmp_path / "parts" / "index.html").read_bytes() == whole
    assert whole.count(b'href="person_p-') == 7  # a row per person


def test_write_dashboards_renders_the_people_asked_for(tmp_path: Path) -> None:
    """`render` names the person pages to render; the others are kept unless missing, and the
    index and cohort page are always written."""
    out = tmp_path / "out"
    assert person_pages(write_dashboards(out, make_inputs(), render=[])) == ALL_PAGES
    assert person_pages(write_dashboards(out, make_inputs(), render=[])) == set()
    again = write_dashboards(out, make_inputs(), render=[PEOPLE[1]])
    assert person_pages(again) == {person_page_name(PEOPLE[1])}
    assert {"index.html", "cohort.html"} <= {p.name for p in again}
    assert person_pages(write_dashboards(out, make_inputs())) == ALL_PAGES  # None: everyone


@pytest.mark.parametrize("sync_once", [True, False])
def test_pages_are_synced_once_or_each_where_no_global_sync_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sync_once: bool
) -> None:
    """Person pages skip their own fsync only when one sync follows them, before the index (and
    before the step records what the pages were built from)."""
    events: list[str] = []
    real_write = dashboards.atomic_write

    def recording_write(path: Path, data: str | bytes, durable: bool = True) -> None:
        events.append(f"{path.name}:{'durable' if durable else 'buffered'}")
        real_write(path, data, durable)

    # Person pages are written by the workers module, the rest by dashboards.
    monkeypatch.setattr(rworkers, "SYNC_ONCE", sync_once)
    for module in (dashboards, rworkers):
        monkeypatch.setattr(module, "atomic_write", recording_write)
    monkeypatch.setattr(rworkers.os, "sync", lambda: events.append("sync"))
    write_dashboards(tmp_path, make_inputs(), workers=1)
    pages = [e for e in events if e.startswith("person_")]
    assert len(pages) == 2 * len(PEOPLE)  # a page and its section file each
    assert all(e.endswith(":buffered" if sync_once else ":durable") for e in pages)
    index = events.index("index.html:durable")
    if sync_once:
        assert events.count("sync") == 1
        assert max(events.index(p) for p in pages) < events.index("sync") < index
    else:
        assert "sync" not in events


def test_dii_parameter_total_is_the_reference_tables() -> None:
    from pipelines.transforms.dii import dii_table

    assert rhtml.DII_PARAMETERS == dii_table().height == 45
    assert rhtml.dii_params_text((28, 28)) == "28 of 45 parameters"
    assert rhtml.dii_params_text([24, 27]) == "24-27 of 45 parameters"
    assert rhtml.dii_params_text(None) == ""


# Where a DII is named in a finding, the rest of its sentence (up to the next tag).
_DII_SENTENCE = re.compile(r"Dietary Inflammatory Index \(DII\)[^<]*")


def test_every_dii_shown_carries_its_parameter_count(tmp_path: Path) -> None:
    data = make_inputs()
    # alice's DIIs come from 27 parameters, on the first day of each month from 24 (a day
    # without the B vitamins); Bob Smith's from 28. Unlogged days have no DII (0 parameters).
    day_one = pl.col("day").dt.day() == 1
    data.diet_daily = data.diet_daily.with_columns(
        dii_params=pl.when(pl.col("dii").is_null())
        .then(0)
        .when((pl.col("person_id") == "alice") & day_one)
        .then(24)
        .when(pl.col("person_id") == "alice")
        .then(27)
        .otherwise(28)
    )
    significant = {"p": 0.001, "q": 0.02, "status": "significant"}
    extra = [
        _assoc_row(
            person_id="alice",
            feature="dii",
            window_days=14,
            n=14,
            effect_pct=12.0,
            ci_low_pct=3.0,
            ci_high_pct=22.0,
            **significant,
        ),
        _assoc_row(
            scope="cohort",
            feature="dii",
            window_days=None,
            method="ols_between",
            n=2770,
            effect_pct=7.0,
            ci_low_pct=4.0,
            ci_high_pct=10.0,
            note="adjusted for age, sex",
            **significant,
        ),
    ]
    alice_dii_14 = (
        (pl.col("person_id") == "alice")
        & (pl.col("feature") == "dii")
        & (pl.col("window_days") == 14)
    )
    data.associations = pl.concat(
        [data.associations.filter(~alice_dii_14.fill_null(False)), pl.DataFrame(extra)],
        how="diagonal_relaxed",
    )
    data.between_dii_params = (28, 28)
    out = tmp_path / "dash"
    write_dashboards(out, data)
    # The person pages with their findings and lag scan (their section files) in them.
    pages = _pages(out) | {person_page_name(p): shown(out, p) for p in PEOPLE}

    alice = pages[person_page_name("alice")]
    bob = pages[person_page_name("Bob Smith")]
    index, cohort = pages["index.html"], pages["cohort.html"]
    # The person page: the finding, the weekly DII panel and its hover, the DII calendar.
    assert (
        "CRP 12% higher per 1-point higher Dietary Inflammatory Index (DII) over the previous "
        "14 days" in alice
    )
    assert "14 draws; DII from 24-27 of 45 parameters" in alice
    assert "Weekly mean Dietary Inflammatory Index (DII, 24-27 of 45 parameters)" in alice
    assert "DII, 24-27 of 45 parameters: %{y}" in alice
    assert "DII (score, 24-27 of 45 parameters)" in alice
    assert "Weekly mean Dietary Inflammatory Index (DII, 28 of 45 parameters)" in bob
    assert "DII (score, 28 of 45 parameters)" in bob
    # The index's top findings.
    assert "14 draws; DII from 24-27 of 45 parameters" in index
    # The cohort page: pooled DIIs span everyone's days, the between-person model its cohort's.
    assert "26 n; DII from 24-28 of 45 parameters" not in cohort  # n is "draws" for pooled
    assert "26 draws; DII from 24-28 of 45 parameters" in cohort
    assert "2,770 people; DII from 28 of 45 parameters" in cohort
    assert "DII (score) (28 of 45 parameters)" in cohort  # the forest plot's row
    assert "DII (score) (24-28 of 45 parameters) · 28 d" in cohort
    # Nowhere a DII finding with an estimate but without its count.
    checked = 0
    for name, text in pages.items():
        for sentence in _DII_SENTENCE.findall(text):
            if "95% CI" in sentence:
                assert "of 45 parameters" in sentence, (name, sentence)
                checked += 1
    assert checked >= 10


def test_standard_crp_shows_its_value_without_a_risk_category(tmp_path: Path) -> None:
    # "a" has only a GP's standard CRP (the latest "<5"); "b" has hs-CRP and one standard CRP
    # infection draw. Only b's hs-CRP gets a cardiovascular category, and "<5" is shown as "<5".
    at = [datetime(2025, 1, 1) + timedelta(days=30 * k) for k in range(4)]
    labs = pl.DataFrame(
        {
            "person_id": ["a"] * 4 + ["b"] * 4,
            "marker": ["crp"] * 4 + ["hscrp", "hscrp", "crp", "hscrp"],
            "collected_at": at + at,
            "value": [6.0, 8.0, 7.0, 5.0, 2.0, 2.4, 40.0, 2.2],
            "censored": [None, None, None, "<", None, None, None, None],
        }
    )
    draws = build_marker_draws(labs, Settings())
    data = DashboardInputs(marker_draws=draws, marker_trends=marker_trends(draws))
    write_dashboards(tmp_path, data)
    page_a = (tmp_path / "person_a.html").read_text(encoding="utf-8")
    assert "standard CRP &lt;5.0 mg/L" in page_a
    assert "standard CRP: no cardiovascular risk category" in page_a
    assert "hs-CRP risk category" not in page_a
    assert "standard CRP and diet over time" in page_a
    page_b = (tmp_path / "person_b.html").read_text(encoding="utf-8")
    assert "hs-CRP 2.2 mg/L" in page_b
    assert "average (1-3 mg/L)" in page_b  # b's hs-CRP baseline 2.2
    assert "3 hs-CRP draws (3 chronic, 0 acute)" in page_b
    # b's standard CRP is listed with the other markers, with its value and no category.
    other = page_b.split("<h2>Other markers</h2>", 1)[1]
    assert "standard CRP" in other and "40 mg/L" in other
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert index.count("standard CRP: no cardiovascular risk category") == 1
