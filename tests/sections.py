"""Reading a person page together with its section file (pipelines/reports/pages/section.py), as
the browser shows them: the findings and the lag-window scan are in person_<id>.lag.js beside
the page, which fills the page's slots when it loads."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipelines.reports import person_page_name, person_section_name

_CALL = re.compile(r"\AgutsignalSection\((.*)\);\n\Z", re.S)


def section_payload(text: str) -> dict[str, Any]:
    """The argument of a section file's one call: its HTML, figures and cell data."""
    found = _CALL.match(text)
    assert found, "a section file is one gutsignalSection({...}) call"
    payload: dict[str, Any] = json.loads(found[1])
    return payload


def read_section(out: Path, person_id: str) -> dict[str, Any]:
    return section_payload((out / person_section_name(person_id)).read_text(encoding="utf-8"))


def shown(out: Path, person_id: str) -> str:
    """The person's page with its section file's HTML in the two slots, and the section's
    figures and cell data as JSON after the page (where the page's own figures' JSON is)."""
    page = (out / person_page_name(person_id)).read_text(encoding="utf-8")
    section = read_section(out, person_id)
    for slot, html in (("findings-section", section["findings"]), ("lag-section", section["lag"])):
        start = page.index(f'<div id="{slot}">')
        end = page.index("</div>", start) + len("</div>")
        page = f'{page[:start]}<div id="{slot}">{html}</div>{page[end:]}'
    figures = json.dumps(section["figures"], separators=(",", ":"), ensure_ascii=False)
    cells = json.dumps(section["cells"], separators=(",", ":"), ensure_ascii=False)
    return f"{page}\n{figures}\n{cells}"
