"""The dashboards in a real headless Chromium (Debian's /usr/bin/chromium, via Playwright).

Every page of a small synthetic site (two people, one of whom has a script tag for an id and
another for a food name, plus a cross-sectional cohort on the cohort page) is opened from disk:
no console error, no request leaving the machine, every chart drawn with data, the hostile
strings shown as text and never executed, and a click on a lag-heatmap cell redraws its scatter.
Full-page screenshots go to test-artifacts/screenshots/ (git-ignored) for a human to look at.

Playwright never downloads a browser here: `make browser` installs Debian's chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import polars as pl
import pytest

from pipelines.reports import person_page_name, person_section_name, write_dashboards
from tests.test_report_outcomes import _outcomes, _row
from tests.test_reports import make_inputs

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOCAL_SCHEMES = {"file", "data", "blob"}

# Each payload would set window.__xss if the browser ever ran it.
XSS_ID = "<script>window.__xss=1</script>"
XSS_FOOD = '</script><img src=x onerror="window.__xss=2"><script>window.__xss=3</script>'
XSS_NOTE = "<svg onload=window.__xss=4>"

# Plots a page must draw (div ids); the person pages share one layout.
PERSON_PLOTS = {"timeline", "outcomes", "lag-0", "scatter-0", "calendar", "category-calendar"}
COHORT_PLOTS = {"forest-0", "between-0", "small-multiples"}

# One entry per drawn chart: its id, trace count and how many marks (points, lines, heatmap
# images, bars, error bars) it put into its SVG.
CHARTS_JS = """
() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(g => ({
  id: g.id,
  plotted: g.classList.contains('js-plotly-plot'),
  traces: (g._fullData || []).length,
  marks: g.querySelectorAll(
    '.scatterlayer .trace .point, .scatterlayer .trace path.js-line, ' +
    '.scatterlayer .trace path.js-fill, .heatmaplayer .hm image, .errorbar'
  ).length,
}))
"""

ALL_DRAWN_JS = """
() => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return divs.every(g => g.classList.contains('js-plotly-plot') && g._fullData &&
    g._fullData.length > 0 && g.querySelector('.main-svg'));
}
"""


@dataclass
class Opened:
    page: Any
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_inputs(people=[XSS_ID, "alice"], food=XSS_FOOD)
    data.associations = data.associations.with_columns(
        note=pl.when(pl.col("status") == "insufficient_data")
        .then(pl.lit(XSS_NOTE))
        .otherwise(pl.col("note"))
    )
    data.rejected_summary = data.rejected_summary.with_columns(reason=pl.lit(XSS_NOTE))
    # Daily outcomes for both; the hostile person's bloating is named with markup.
    readings = pl.concat(
        [_outcomes(data.diet_daily, p, k) for k, p in enumerate([XSS_ID, "alice"])]
    )
    data.biometrics = readings.with_columns(
        metric=pl.when(pl.col("person_id") == XSS_ID)
        .then(pl.col("metric").replace("bloating", XSS_NOTE))
        .otherwise(pl.col("metric"))
    )
    data.daily_effects = pl.DataFrame(
        [_row(person_id="alice"), _row(person_id=XSS_ID, measure=XSS_NOTE)]
    )
    out = tmp_path_factory.mktemp("site")
    write_dashboards(out, data)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: run `make browser` to install Debian's chromium "
            "(the browser tests never download one)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Any, path: Path) -> Opened:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    opened = Opened(page)

    def on_console(msg: Any) -> None:
        if msg.type == "error":
            opened.errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: opened.errors.append(f"uncaught: {exc}"))
    page.on("request", lambda req: opened.requests.append(req.url))
    page.goto(path.as_uri(), wait_until="load")
    page.wait_for_function(ALL_DRAWN_JS, timeout=15_000)
    return opened


def page_names(site: Path) -> list[str]:
    return sorted(p.name for p in site.glob("*.html"))


def check_page(opened: Opened, name: str, expected_plots: set[str]) -> list[dict[str, Any]]:
    page = opened.page
    charts = page.evaluate(CHARTS_JS)
    assert {c["id"] for c in charts} == expected_plots, name
    for c in charts:
        assert c["plotted"] and c["traces"] > 0 and c["marks"] > 0, (name, c)
    assert not opened.errors, (name, opened.errors)
    leaving = [u for u in opened.requests if urlparse(u).scheme not in LOCAL_SCHEMES]
    assert not leaving, (name, leaving)
    assert page.evaluate("() => window.__xss === undefined"), name
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{Path(name).stem}.png"), full_page=True)
    return charts


def test_every_page_loads_offline_draws_and_keeps_user_text_as_text(
    site: Path, browser: Any
) -> None:
    names = page_names(site)
    xss_page = person_page_name(XSS_ID)
    assert set(names) == {"index.html", "cohort.html", person_page_name("alice"), xss_page}
    for name in names:
        opened = open_page(browser, site / name)
        page = opened.page
        expected = (
            set()
            if name == "index.html"
            else COHORT_PLOTS
            if name == "cohort.html"
            else PERSON_PLOTS
        )
        check_page(opened, name, expected)
        # The script files all come from the folder itself: plotly.js, and a person page's
        # section file (its findings and lag scan), loaded after it.
        scripts = [u for u in opened.requests if u.endswith(".js")]
        person = {person_page_name(p): p for p in (XSS_ID, "alice")}.get(name)
        sections = [] if person is None else [(site / person_section_name(person)).as_uri()]
        assert scripts == [(site / "plotly.min.js").as_uri(), *sections], name
        text = page.inner_text("body")
        if name in ("index.html", "cohort.html", xss_page):
            assert XSS_ID in text, name
        if name in ("index.html", xss_page):
            assert XSS_FOOD in text, name
        if name == xss_page:
            # The measure's name (its underscores read as spaces) shown as text: a panel
            # title Plotly drew, and the finding's sentence.
            shown = XSS_NOTE.replace("_", " ")
            assert shown in page.text_content("#outcomes")
            assert shown in text
            assert f"Person {XSS_ID}" in page.inner_text("h1")
            assert page.title() == f"gutsignal: {XSS_ID}"
            # Text Plotly drew (the scatter title quotes the insufficient cell's note).
            page.evaluate(
                """() => { const gd = document.getElementById('lag-0');
                  gd.emit('plotly_click', {points: [{pointNumber: [0, 4]}]}); }"""
            )
            page.wait_for_function(
                "() => document.getElementById('scatter-0').getAttribute('data-cell')"
                " === 'fermented_servings|56'"
            )
            title = page.evaluate("() => document.getElementById('scatter-0').layout.title.text")
            assert "&lt;svg onload" in title
            drawn = page.text_content("#scatter-0 .gtitle") or ""
            assert XSS_NOTE in drawn
        if name == "cohort.html":
            # The person id drawn by Plotly as a panel title of the small multiples.
            assert XSS_ID in page.text_content("#small-multiples")
            assert "people in the between-person models" in text
        if name == "index.html":
            assert "Source freshness" in text and "looks stale" in text
        assert page.evaluate("() => window.__xss === undefined"), name
        page.context.close()


def test_clicking_a_heatmap_cell_redraws_its_scatter(site: Path, browser: Any) -> None:
    opened = open_page(browser, site / person_page_name("alice"))
    page = opened.page

    def scatter() -> dict[str, Any]:
        result: dict[str, Any] = page.evaluate(
            """() => { const gd = document.getElementById('scatter-0');
              return {cell: gd.getAttribute('data-cell'), title: gd.layout.title.text,
                      x: gd._fullData[0].x, traces: gd._fullData.length,
                      points: gd.querySelectorAll('.scatterlayer .trace .point').length}; }"""
        )
        return result

    first = scatter()
    # The most significant cell is drawn first, with its points, line and CI band.
    assert first["cell"] == "fermented_servings|28"
    assert "24% lower" in first["title"] and first["traces"] == 4 and first["points"] > 3

    # A real mouse click on the cell DII x 7 days (row 3, column 1).
    box = page.evaluate(
        """() => { const gd = document.getElementById('lag-0'); gd.scrollIntoView();
          const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
          const r = gd.getBoundingClientRect();
          return [r.left + xa._offset + xa.l2p(1), r.top + ya._offset + ya.l2p(3)]; }"""
    )
    page.mouse.move(box[0], box[1])
    page.wait_for_timeout(150)  # plotly.js throttles hover, and a click needs hover data
    page.mouse.click(box[0], box[1])
    page.wait_for_function(
        "() => document.getElementById('scatter-0').getAttribute('data-cell') === 'dii|7'",
        timeout=5_000,
    )
    second = scatter()
    assert second["title"] != first["title"] and "DII" in second["title"]
    assert second["x"] != first["x"] and second["points"] > 0

    # Through Plotly's event API too: fibre x 3 days.
    page.evaluate(
        """() => document.getElementById('lag-0').emit('plotly_click',
             {points: [{pointNumber: [1, 0]}]})"""
    )
    page.wait_for_function(
        "() => document.getElementById('scatter-0').getAttribute('data-cell') === 'fiber_g|3'"
    )
    third = scatter()
    assert third["cell"] == "fiber_g|3" and "Fibre" in third["title"]

    # The category calendar's dropdown switches the drawn category.
    page.locator("#category-calendar .updatemenu-header").click()
    page.locator("#category-calendar .updatemenu-dropdown-button", has_text="Fibre (g/day)").click()
    visible = page.evaluate(
        """() => document.getElementById('category-calendar')._fullData
             .filter(t => t.visible === true).map(t => t.name)"""
    )
    assert visible == ["Fibre (g/day)"]
    assert not opened.errors, opened.errors
    page.screenshot(path=str(SHOTS / "person_alice_after_click.png"), full_page=True)
    page.context.close()


def test_the_outcomes_panel_follows_the_timelines_zoom(site: Path, browser: Any) -> None:
    """Two figures, one time axis: the same plot area, and zooming the CRP timeline moves the
    daily outcomes panel to the same dates, and zooming the panel moves the timeline."""
    opened = open_page(browser, site / person_page_name("alice"))
    page = opened.page
    ranges = """() => [document.getElementById('timeline').layout.xaxis2.range,
                       document.getElementById('outcomes').layout.xaxis.range]"""
    start = page.evaluate(ranges)
    assert start[0] == start[1]
    # Same plot area left and right: a date is at the same x in both.
    page.wait_for_function(
        """() => ['l', 'w'].every(k => Math.abs(
             document.getElementById('timeline')._fullLayout._size[k] -
             document.getElementById('outcomes')._fullLayout._size[k]) < 1)"""
    )
    page.evaluate(
        """() => Plotly.relayout('timeline', {'xaxis2.range': ['2025-03-01', '2025-05-01']})"""
    )
    page.wait_for_function(
        "() => String(document.getElementById('outcomes').layout.xaxis.range[0])"
        ".startsWith('2025-03-01')"
    )
    page.evaluate(
        """() => Plotly.relayout('outcomes', {'xaxis.range': ['2025-06-01', '2025-07-01']})"""
    )
    page.wait_for_function(
        "() => String(document.getElementById('timeline').layout.xaxis2.range[0])"
        ".startsWith('2025-06-01')"
    )
    assert not opened.errors, opened.errors
    page.context.close()


def test_a_page_rewritten_on_a_new_diary_day_still_draws_its_kept_section(
    tmp_path: Path, browser: Any
) -> None:
    """A night with a new diary day and no draw rewrites alice's page and keeps her section file
    (findings, lag scan): the new page loads the kept file, draws the heatmap and opens a cell's
    scatter."""
    from pipelines.steps.dashboards import update_dashboards
    from pipelines.warehouse import Warehouse
    from tests.test_pages_sections import new_diary_day

    warehouse = Warehouse(tmp_path / "warehouse.duckdb")
    with warehouse.write():
        pass
    out = tmp_path / "out"
    update_dashboards(warehouse, out, make_inputs(), workers=1)
    section = out / person_section_name("alice")
    kept = (section.stat().st_ino, section.stat().st_mtime_ns, section.read_bytes())
    night = make_inputs()
    new_diary_day(night, "alice")
    written, _ = update_dashboards(warehouse, out, night, workers=1)
    assert person_page_name("alice") in {p.name for p in written}
    assert (section.stat().st_ino, section.stat().st_mtime_ns, section.read_bytes()) == kept

    opened = open_page(browser, out / person_page_name("alice"))
    page = opened.page
    check_page(opened, person_page_name("alice"), PERSON_PLOTS - {"outcomes"})  # no daily outcomes
    assert "24% lower" in page.inner_text("#findings-section")
    assert page.evaluate(
        "() => document.getElementById('scatter-0').getAttribute('data-cell')"
    ) == ("fermented_servings|28")
    page.evaluate(
        """() => document.getElementById('lag-0').emit('plotly_click',
             {points: [{pointNumber: [1, 0]}]})"""
    )
    page.wait_for_function(
        "() => document.getElementById('scatter-0').getAttribute('data-cell') === 'fiber_g|3'"
    )
    assert page.evaluate("() => document.getElementById('scatter-0')._fullData[0].x.length") > 0
    assert not opened.errors, opened.errors
    page.context.close()
