"""The page templates (pipelines/reports/templates/, rendered by pages/render.py): user text is
escaped on every page without an esc() call, HTML from trusted code passes as Markup, a missing
value fails the render, and a template's lines join the way the pages need.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2 import UndefinedError
from markupsafe import Markup

from pipelines.reports import page_inputs, write_dashboards
from pipelines.reports.inputs import person_page_name
from pipelines.reports.pages import render
from tests.test_reports import make_inputs

# Closes a tag, opens a script, and breaks out of a quoted attribute.
HOSTILE = '<script>alert(1)</script>" onmouseover="alert(2)'
HOSTILE_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&quot; onmouseover=&quot;alert(2)"


def test_hostile_text_is_escaped_on_every_page(tmp_path: Path) -> None:
    """A person id and a food name with markup and a quote show as text on the index, the cohort
    page and the person page (escaped with html.escape's bytes, as the pages always were)."""
    data = make_inputs(people=[HOSTILE, "carol"], food=HOSTILE)
    write_dashboards(tmp_path, data)
    pages = {
        name: (tmp_path / name).read_text(encoding="utf-8")
        for name in ("index.html", "cohort.html", person_page_name(HOSTILE))
    }
    for name, page in pages.items():
        assert HOSTILE not in page, name
        assert "<script>alert" not in page, name
        assert '" onmouseover="' not in page, name
        assert HOSTILE_ESCAPED in page, name


def test_values_are_escaped_unless_markup() -> None:
    """Text is escaped as `html.esc` escapes it (&quot;, &#x27;), Markup passes unchanged."""
    template = render.ENV.from_string("<p>{{ text }}|{{ html }}|{{ number }}</p>")
    out = template.render(text="\"'<&>", html=Markup("<b>raw</b>"), number=3)
    assert out == "<p>&quot;&#x27;&lt;&amp;&gt;|<b>raw</b>|3</p>"


def test_a_missing_value_fails_the_render() -> None:
    """StrictUndefined: a value the template names but the page did not pass is an error, not an
    empty string on the page."""
    with pytest.raises(UndefinedError):
        render.ENV.from_string("<p>{{ missing }}</p>").render()
    with pytest.raises(UndefinedError):
        render.render("index.html", caveat_text="x")  # the other values are missing


def test_lines_join_without_whitespace_between_markup() -> None:
    """One element per line in a template, none of that whitespace on the page; a line of block
    tags leaves nothing; prose wrapped over lines keeps one space, as does text beside an
    expression."""
    source = """
        <div class="notice">
          Some prose wrapped
          over two lines, <b>bold</b>
        </div>
        {% if x %}
        {{ x }} is x
        {% else %}
        no x
        {% endif %}
        {{ y }}
        after y
    """
    assert render.join_lines(source) == (
        '<div class="notice"> Some prose wrapped over two lines, <b>bold</b></div>'
        "{% if x %}{{ x }} is x{% else %}no x{% endif %}{{ y }} after y"
    )


def test_a_changed_template_renders_every_page_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reports code fingerprint, part of the dashboards plan's salt, reads the templates."""
    seen: list[Path] = []

    def spy(paths: list[Path], *versions: str) -> str:
        seen.extend(paths)
        return "x"

    monkeypatch.setattr(page_inputs, "fingerprint", spy)
    page_inputs.reports_code_fingerprint.__wrapped__()  # not the value cached for this process
    assert {p.name for p in render.TEMPLATES.glob("*.html")} <= {p.name for p in seen}
