"""FHIR files to counted items: decoding, JSON or NDJSON, Bundles and arrays unwrapped.

The first step of the `fhir` adapter (fhir.py): every Observation, and everything that should
have been a resource but cannot be read, becomes an Item with its line and JSON path, so that
fhir_observation.py can read its fields and a damaged entry is rejected rather than lost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.adapters.base import AdapterError, read_file_text
from pipelines.config import SourceConfig

RAW_LIMIT = 2000


@dataclass
class Item:
    """One counted item: an Observation, or something that cannot be identified."""

    line: int
    prefix: str  # JSON path of the resource, with a trailing "." (or "" for the whole file/line)
    resource: Any = None
    error: tuple[str | None, str] | None = None  # (column, reason) when it cannot be read at all
    raw: str | None = None
    error_value: str | None = None  # what the error is about, when not the whole item


def read_text(path: Path, source: SourceConfig) -> str:
    return read_file_text(
        path,
        source,
        unknown_hint="FHIR JSON is utf-8.",
        invalid_hint="Either the encoding is wrong or this is not a FHIR JSON or NDJSON export: "
        "check that the source's path "
        "matches only FHIR files.",
    )


def _load(text: str) -> tuple[Any, str | None]:
    """(value, None), or (None, why it is not JSON)."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        where = (
            f"column {exc.colno}" if "\n" not in text else f"line {exc.lineno}, column {exc.colno}"
        )
        return None, f"{where}: {exc.msg}"
    except (ValueError, RecursionError) as exc:
        return None, str(exc) or type(exc).__name__


def _resource_type(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return str(value["resourceType"])
    return None


def file_items(path: Path, text: str) -> Iterator[Item]:
    doc, error = _load(text)
    if error is None:
        yield from _document_items(path, doc)
        return
    # Lines end at LF, CRLF or a bare CR (which JSON cannot hold unescaped). Not str.splitlines:
    # it also splits at U+2028 and other separators that JSON strings may hold as they are.
    lines = re.split(r"\r\n|\r|\n", text)
    parsed = [_load(line) if line.strip() else (None, None) for line in lines]
    if not any(_resource_type(value) is not None for value, _ in parsed):
        raise AdapterError(
            f"{path}: not valid JSON ({error}) and not NDJSON (no line holds a FHIR resource). "
            "If the file was cut short, export it again."
        )
    for number_, (line, (value, why)) in enumerate(zip(lines, parsed, strict=True), start=1):
        if not line.strip():
            continue
        if why is not None:
            yield Item(
                number_, "", error=(None, "line is not valid JSON"), raw=line, error_value=why
            )
        else:
            yield from _resource_items(number_, "", value)


def _document_items(path: Path, doc: Any) -> Iterator[Item]:
    if isinstance(doc, list):
        if doc and not any(_resource_type(v) is not None for v in doc):
            raise AdapterError(
                f"{path}: a JSON array, but not of FHIR resources (no item has a resourceType)."
            )
        for i, value in enumerate(doc):
            yield from _resource_items(i + 1, f"[{i}].", value)
        return
    kind = _resource_type(doc)
    if kind is None:
        raise AdapterError(
            f"{path}: valid JSON but not a FHIR resource (expected an object with "
            "'resourceType', such as an Observation or a Bundle)."
        )
    if kind == "Bundle":
        entries = doc.get("entry", [])
        if not isinstance(entries, list):
            raise AdapterError(f"{path}: the Bundle's 'entry' is not a list.")
        for i, entry in enumerate(entries):
            yield from _entry_items(i + 1, f"entry[{i}].", entry)
        return
    yield from _resource_items(1, "", doc)


def _entry_items(line: int, prefix: str, entry: Any) -> Iterator[Item]:
    if not isinstance(entry, dict):
        yield Item(line, prefix, entry, error=(prefix.rstrip("."), "entry is not an object"))
        return
    if "resource" not in entry:
        yield Item(line, prefix, entry, error=(prefix.rstrip("."), "entry has no resource"))
        return
    yield from _resource_items(line, f"{prefix}resource.", entry["resource"])


def _resource_items(line: int, prefix: str, value: Any) -> Iterator[Item]:
    """The counted items in one resource: itself if an Observation, a nested Bundle's entries."""
    where = prefix.rstrip(".") or None
    if not isinstance(value, dict):
        yield Item(line, prefix, value, error=(where, "not a FHIR resource (not an object)"))
        return
    kind = value.get("resourceType")
    if not isinstance(kind, str):
        yield Item(
            line, prefix, value, error=(f"{prefix}resourceType", "resource has no resourceType")
        )
        return
    if kind == "Observation":
        yield Item(line, prefix, value)
    elif kind == "Bundle":
        entries = value.get("entry", [])
        if not isinstance(entries, list):
            yield Item(line, prefix, value, error=(f"{prefix}entry", "Bundle entry is not a list"))
            return
        for i, entry in enumerate(entries):
            yield from _entry_items(line, f"{prefix}entry[{i}].", entry)


def item_raw(item: Item) -> str:
    return item.raw if item.raw is not None else compact(item.resource)


def compact(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (ValueError, TypeError, RecursionError):
        try:
            text = repr(value)
        except (ValueError, RecursionError):  # nested too deeply even for repr
            text = f"({type(value).__name__} nested too deeply to show)"
    if len(text) > RAW_LIMIT:
        return text[:RAW_LIMIT] + " ... (truncated; see the file)"
    return text
