"""The Jinja2 environment the page bodies render with (templates in pipelines/reports/templates/).

The templates hold each page's structure and prose; pages/*.py prepare the values. Autoescape is
on: a value is escaped unless it is `Markup` (HTML built by trusted code: tables, cards, figures).
A missing variable fails the render (StrictUndefined) rather than printing nothing.

Two choices keep the pages byte-identical to those built with f-strings before:
- `finalize` escapes with `html.esc` (quotes as &quot; and &#x27;), before Jinja's own escape
  (which would write &#34; and &#39;) sees the value, now Markup, and leaves it.
- Templates are written one element per line, but the pages have no whitespace between tags:
  `_JoinLines` joins a template's lines when it loads it. A line break next to a line of block
  tags only ({% if %}, {% endfor %}), or between markup (a tag or a Jinja delimiter) on both
  sides, is dropped; any other is one space, as in wrapped prose. So text that follows a tag
  starts on the tag's line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from jinja2.ext import Extension
from markupsafe import Markup

from pipelines.reports import html

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"

_MARKUP_END = (">", "}}", "%}", "#}")
_MARKUP_START = ("<", "{{", "{%", "{#")


def _is_block_line(line: str) -> bool:
    """A line of block tags or comments only ({% if %}, {% endfor %}): it leaves no whitespace,
    as trim_blocks and lstrip_blocks would have it."""
    return line.startswith(("{%", "{#")) and line.endswith(("%}", "#}"))


def join_lines(source: str) -> str:
    """A template's lines joined: no whitespace beside a block-tag line or between markup on both
    sides, one space elsewhere, as in wrapped prose (see the module docstring)."""
    out = ""
    after_block = True  # nothing before the first line
    for raw in source.splitlines():
        line = raw.strip()
        if not line:
            continue
        block = _is_block_line(line)
        tight = out.endswith(_MARKUP_END) and line.startswith(_MARKUP_START)
        if not (after_block or block or tight):
            out += " "
        out += line
        after_block = block
    return out


class _JoinLines(Extension):
    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return join_lines(source)


def _escape(value: Any) -> Any:
    """Every `{{ value }}` goes through here first: Markup stays, anything else is escaped with
    the bytes `html.esc` writes. An undefined value raises in `str()` (StrictUndefined)."""
    return value if hasattr(value, "__html__") else html.esc(value)


def _empty(message: str) -> Markup:
    return Markup(html.empty(message))


def _caveat() -> Markup:
    return Markup(html.caveat())


# Built once per process; templates are compiled on first use and cached (no reload checks).
ENV = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_escape,
    extensions=[_JoinLines],
    auto_reload=False,
)
# The page pieces templates may call: their markup lives in html.py, their text in the template.
ENV.globals.update(empty=_empty, caveat=_caveat)


def render(name: str, **values: Any) -> Markup:
    """A template rendered with `values`: HTML, so Markup."""
    return Markup(ENV.get_template(name).render(**values))


@cache
def macro(template: str, name: str) -> Callable[..., Markup]:
    """A macro of a template, to call from Python: its output is escaped like a page's, Markup.

    Looked up once per name: a page calls pieces about a hundred times, and the environment's
    template lookup on each call was a millisecond a page.
    """
    fn: Callable[..., Markup] = getattr(ENV.get_template(template).module, name)
    return fn
