"""Tests for the offline HTML dashboards (pipelines.reports).

Synthetic but realistic frames: two people with a year of daily diet, about twelve CRP draws each
(one acute, one in the post-acute washout, one below the detection limit), person and cohort
associations including significant ones, and some data-quality problems.
"""

from __future__ import annotations

import os
import re
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from pipelines.reports import (
    DashboardInputs,
    charts,
    finding_sentence,
    person_page_name,
    write_dashboards,
)
from pipelines.reports import html as rhtml
from pipelines.schema import CATEGORIES

XSS = "<script>alert(1)</script>"
XSS_FOOD = "</script><script>alert(1)</script>"
START = date(2025, 1, 6)
PEOPLE = ["alice", "Bob Smith"]
EXPECTED_SENTENCE = (
    "CRP 24% lower per extra daily serving of fermented food over the previous 28 days, "
    "95% CI -38% to -7%, q = 0.03, 14 draws"
)


def _diet(person: str, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = 365
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
    df = pl.DataFrame(cols)
    # Unlogged days carry nulls, not NaN, as the warehouse does.
    return df.with_columns(pl.col(pl.Float64).fill_nan(None))


def _draws(person: str, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(12):
        at = datetime(2025, 1, 20, 8, 15) + timedelta(days=30 * k)
        value = float(np.exp(rng.normal(0.4, 0.4)))
        row = {
            "person_id": person,
            "marker": "crp",
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
    washout_at = datetime(2025, 1, 20, 9, 0) + timedelta(days=30 * 4 + 10)
    rows.append(
        {
            "person_id": person,
            "marker": "crp",
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
        "marker": "crp",
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
        "marker": "crp",
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
            }
        ),
        rejected_summary=pl.DataFrame(
            {
                "source": ["alice_cronometer", "clinic_labs"],
                "reason": ["bad date", "unit <mg/dL?>"],
                "n": [10, 2],
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
        run_info={
            "run_at": "2026-06-28T03:00:00",
            "code_version": "0.1.0+abc1234",
            "data_window": "2025-01-06 to 2026-01-05",
            "upstream": "diet_daily, marker_draws, associations",
        },
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
        person_page_name(p) for p in PEOPLE
    }
    assert names == expected
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    assert {p.name for p in out.iterdir()} == expected


def test_person_page_has_findings_with_ci_and_caveat(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    for person in PEOPLE:
        page = (out / person_page_name(person)).read_text(encoding="utf-8")
        assert EXPECTED_SENTENCE in page
        assert "association, not causation" in page
        # The timeline: log axis, acute draws labelled, chronic baseline drawn.
        assert '"type":"log"' in page
        assert "excluded: acute" in page
        assert "chronic baseline 1.6 mg" in page  # plotly JSON writes / as \\u002f
        assert "washout" in page
        assert "below detection limit" in page
        # Insufficient cells say what is missing.
        assert "Not enough data yet for CRP and fermented food over the previous 56 days" in page
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


def test_cohort_page(written: tuple[Path, list[Path]]) -> None:
    out, _ = written
    page = (out / "cohort.html").read_text(encoding="utf-8")
    assert "association, not causation" in page
    assert "Between-person (cross-sectional)" in page
    assert (
        "CRP 9% lower per extra daily serving of fermented food over the previous 28 days" in page
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


def test_xss_strings_escaped(tmp_path: Path) -> None:
    data = make_inputs(people=[XSS, "carol"], food=XSS_FOOD)
    data.ingest_files = data.ingest_files.with_columns(path=pl.lit(XSS_FOOD), source=pl.lit(XSS))
    data.rejected_summary = data.rejected_summary.with_columns(reason=pl.lit(XSS))
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
        out = charts.figure_html(fig, "t")
        assert "</script><script>alert" not in out
        assert "<script>alert" not in out
        assert out.count("</script>") == 1


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
    assert len(paths) == 3 + len(PEOPLE)
    page = (tmp_path / "sparse" / person_page_name("alice")).read_text(encoding="utf-8")
    assert "CRP (log scale) and weekly intake" in page

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
                "marker": ["CRP", "crp", "esr", "crp"],
                "collected_at": [None, datetime(2025, 1, 2), datetime(2025, 1, 2), None],
                "value": [None, -1.0, 5.0, 0.0],
            }
        ),
        marker_trends=pl.DataFrame(
            {
                "person_id": ["a", "a"],
                "marker": ["crp", "esr"],
                "latest_value": [float("nan"), 12.0],
                "slope_pct_per_year": [float("inf"), None],
                "category": ["weird", None],
            }
        ),
        associations=pl.DataFrame(
            {
                "scope": ["person", "person", "cohort", "person"],
                "person_id": ["a", "a", None, "zz"],
                "marker": ["crp", "esr", "crp", None],
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
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
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
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


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


def test_finding_sentence_variants() -> None:
    base = {"scope": "person", "marker": "crp", "method": "ols_within", "status": "significant"}
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
        "CRP 1.3% higher per extra percentage point of energy from ultra-processed food over the "
        "previous 14 days, 95% CI +0.2% to +2.5%, q < 0.001, 20 draws"
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
    assert missing.startswith("Not enough data yet for CRP and fibre over the previous 28 days")
    assert "only 5 draws" in missing
