"""FHIR R4 Observations (format `fhir`, kind labs): Bundle, single resource, JSON array or NDJSON.

Accepted shapes, detected from the content (not the file name):
- a single resource (`{"resourceType": "Observation", ...}`), as in Apple Health's clinical-records
  export (one resource per file);
- a `Bundle` (`entry[].resource`), as from a patient portal or Synthea's FHIR output;
- a JSON array of resources;
- NDJSON (one resource per line, blank lines ignored), as from FHIR Bulk Data export. A Bundle on
  an NDJSON line is read too.

What a row is (`rows_read`): an Observation resource, or something that should be a resource but
cannot be identified (an NDJSON line that is not valid JSON, a Bundle entry without a resource);
those are rejected, so a damaged Observation is never lost silently. Other resource types (Patient,
Condition, DiagnosticReport, ...) are not data rows of a labs source: they are skipped and not
counted. A file holding only other resource types therefore reads as zero rows.

`line` is the physical line for NDJSON, the 1-based entry number for a Bundle (entry `entry[3]` in
the JSON path is line 4) or array, and 1 for a single resource. A rejected row's `column` is the
JSON path of the offending field, e.g. `entry[3].resource.valueQuantity.value`.

Fields read from an Observation:
- `code.coding[]`: the LOINC coding (system http://loinc.org; a code known to markers.csv is
  preferred when there are several) gives `loinc`; `code.text`, else that coding's `display`, else
  any coding's display, gives `test_name_raw`. The code maps the marker first (every code of
  markers.csv, e.g. leukocytes as 26464-8 in `/nL` from the German MII profiles); the name is only
  the fallback, so an Observation with a LOINC code and no display or text loads.
- `effectiveDateTime`, else `effectivePeriod.start`, else `effectiveInstant`, else `issued` gives
  `collected_at`. A UTC offset is dropped (the wall-clock time the lab printed, as in lab_csv);
  partial dates (`2024-03`) are rejected.
- `valueQuantity`: `value`, `comparator` (`<`, `<=` -> censored "<"; `>`, `>=` -> ">") and the
  unit: UCUM `code` when present (and the quantity's system is UCUM or absent), else `unit`.
  `valueString` ("<0.3", "5.2") is parsed like a lab CSV cell, with the unit of the reference
  range (a string has none of its own); `valueInteger` is a number; any other value (text,
  CodeableConcept, dataAbsentReason) is rejected as "no numeric result".
- `referenceRange[0]`: `low.value` / `high.value`, else its `text` ("0.0-3.0"); unreadable ranges
  stay null (context, not a result).
- `interpretation[0]`: the first coding's code (e.g. "H"), else its text, gives `flag`.
- `status` entered-in-error or cancelled: rejected ("status cancelled").
- person: `person:` in sources.yaml when it is a fixed id or from_folder; otherwise (person:
  {column: subject}) the id in `subject.reference`: "Patient/123" -> "123", "urn:uuid:abc" -> "abc".

Markers and units are then mapped by `pipelines.transforms.labs.normalise_lab_rows`. A rejected
non-marker Observation keeps a short `raw` (code and name), others their compact JSON.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

import polars as pl

from pipelines.adapters.base import AdapterError, ParseResult
from pipelines.config import SourceConfig
from pipelines.lab_vocabulary import CENSORED, LOW_BOUND, reference_range
from pipelines.schema import LAB_RESULT_SCHEMA, REJECT_SCHEMA, conform, empty
from pipelines.text import format_text, number
from pipelines.transforms.labs import LabTableError, lab_tables, normalise_lab_rows

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
WITHDRAWN = ("entered-in-error", "cancelled")
RAW_LIMIT = 2000

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# A FHIR dateTime with at least a day; the time and offset are optional.
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_PARTIAL_DATE = re.compile(r"^\d{4}(?:-\d{2})?$")
_COMPARATORS = {"<": "<", "<=": "<", ">": ">", ">=": ">"}
# Marker names given to normalise_lab_rows for its reject `column`, mapped back to JSON paths.
_CODE, _VALUE, _UNIT = "@code", "@value", "@unit"


class _Reject(Exception):
    """A field that makes this Observation unusable: its JSON path (relative), the reason (a
    stable category) and the offending value as text."""

    def __init__(self, path: str, reason: str, value: str | None = None) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason
        self.value = value


@dataclass
class _Item:
    """One counted item: an Observation, or something that cannot be identified."""

    line: int
    prefix: str  # JSON path of the resource, with a trailing "." (or "" for the whole file/line)
    resource: Any = None
    error: tuple[str | None, str] | None = None  # (column, reason) when it cannot be read at all
    raw: str | None = None
    error_value: str | None = None  # what the error is about, when not the whole item


@dataclass
class _Rows:
    """Columns of the frame handed to normalise_lab_rows, one entry per counted item."""

    values: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, **cells: Any) -> None:
        for key, value in cells.items():
            self.values.setdefault(key, []).append(value)


def parse(path: Path, source: SourceConfig) -> ParseResult:
    """Read one FHIR JSON or NDJSON file; see the module docstring."""
    if source.columns:
        raise AdapterError(
            f"{path}: source {source.name!r} sets 'columns', but format fhir reads the FHIR "
            "fields themselves; remove 'columns' from the source in sources.yaml."
        )
    text = _read_text(path, source)
    if not text.strip():
        raise AdapterError(
            f"{path}: the file is empty. Export it again, or remove it from data/raw/ if it is "
            "not meant to be loaded."
        )
    items = list(_items(path, text))
    fixed_person = source.person.for_file(path)
    try:
        # LOINC codes of markers.csv, to pick the right coding when a code lists several.
        known_loincs = set(lab_tables().by_loinc.to_series(0).drop_nulls().to_list())
    except LabTableError as exc:
        raise AdapterError(f"{path}: cannot map lab results: {exc}") from exc

    early = _Rows()  # rejected before marker mapping
    candidates = _Rows()  # handed to normalise_lab_rows
    for index, item in enumerate(items):
        if item.error is not None:
            early.add(
                line=item.line,
                column=item.error[0],
                reason=item.error[1],
                value=item.error_value,
                raw=_raw(item),
            )
            continue
        try:
            fields = _observation(item.resource, fixed_person, known_loincs)
        except _Reject as rej:
            early.add(
                line=item.line,
                column=item.prefix + rej.path,
                reason=rej.reason,
                value=rej.value,
                raw=_raw(item),
            )
            continue
        except (
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            IndexError,
            ArithmeticError,
            RecursionError,
        ) as exc:
            # A safety net: a shape no rule above foresaw still becomes a reject, not a crash.
            early.add(
                line=item.line,
                column=item.prefix.rstrip(".") or None,
                reason=f"Observation could not be read ({type(exc).__name__})",
                value=str(exc),
                raw=_raw(item),
            )
            continue
        candidates.add(line=item.line, prefix=item.prefix, item=index, **fields)

    rows, rejects = _normalise(path, candidates, source, items)
    early_rejects = (
        conform(pl.DataFrame(early.values), REJECT_SCHEMA) if early.values else empty(REJECT_SCHEMA)
    )
    all_rejects = pl.concat([early_rejects, rejects], how="vertical").sort(
        "line", maintain_order=True
    )
    return ParseResult(rows=rows, rejects=all_rejects, rows_read=len(items))


# ---- reading the file --------------------------------------------------------------------------


def _read_text(path: Path, source: SourceConfig) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AdapterError(f"{path}: cannot be opened ({exc.strerror or exc}).") from exc
    try:
        codec = codecs.lookup(source.encoding).name
    except LookupError as exc:
        raise AdapterError(
            f"{path}: unknown encoding {source.encoding!r} (key 'encoding' of source "
            f"{source.name!r}); FHIR JSON is utf-8."
        ) from exc
    if data.startswith(_UTF8_BOM):
        codec = "utf-8-sig"
    elif data.startswith(_UTF16_BOMS):
        codec = "utf-16"
    try:
        return data.decode(codec).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AdapterError(
            f"{path}: is not {source.encoding} text (invalid byte at line {line}), so it is not "
            "a FHIR JSON or NDJSON export. Check that the source's path matches only FHIR files."
        ) from exc


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


def _items(path: Path, text: str) -> Iterator[_Item]:
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
            yield _Item(
                number_, "", error=(None, "line is not valid JSON"), raw=line, error_value=why
            )
        else:
            yield from _resource_items(number_, "", value)


def _document_items(path: Path, doc: Any) -> Iterator[_Item]:
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


def _entry_items(line: int, prefix: str, entry: Any) -> Iterator[_Item]:
    if not isinstance(entry, dict):
        yield _Item(line, prefix, entry, error=(prefix.rstrip("."), "entry is not an object"))
        return
    if "resource" not in entry:
        yield _Item(line, prefix, entry, error=(prefix.rstrip("."), "entry has no resource"))
        return
    yield from _resource_items(line, f"{prefix}resource.", entry["resource"])


def _resource_items(line: int, prefix: str, value: Any) -> Iterator[_Item]:
    """The counted items in one resource: itself if an Observation, a nested Bundle's entries."""
    where = prefix.rstrip(".") or None
    if not isinstance(value, dict):
        yield _Item(line, prefix, value, error=(where, "not a FHIR resource (not an object)"))
        return
    kind = value.get("resourceType")
    if not isinstance(kind, str):
        yield _Item(
            line, prefix, value, error=(f"{prefix}resourceType", "resource has no resourceType")
        )
        return
    if kind == "Observation":
        yield _Item(line, prefix, value)
    elif kind == "Bundle":
        entries = value.get("entry", [])
        if not isinstance(entries, list):
            yield _Item(line, prefix, value, error=(f"{prefix}entry", "Bundle entry is not a list"))
            return
        for i, entry in enumerate(entries):
            yield from _entry_items(line, f"{prefix}entry[{i}].", entry)


def _raw(item: _Item) -> str:
    return item.raw if item.raw is not None else _compact(item.resource)


def _compact(value: Any) -> str:
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


# ---- one Observation ---------------------------------------------------------------------------


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: int | float) -> float | None:
    """`value` as a float, or None when it is NaN, infinite or an integer too large for a float
    (JSON allows 1e999 and 400-digit integers; no measurement is either)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _observation(res: dict[str, Any], fixed_person: str | None, known: set[str]) -> dict[str, Any]:
    """The lab-row fields of one Observation, or _Reject naming the field that rules it out."""
    status = res.get("status")
    if isinstance(status, str) and status.strip().lower() in WITHDRAWN:
        raise _Reject("status", f"status {status.strip().lower()}", status.strip())

    person = fixed_person if fixed_person is not None else _subject(res.get("subject"))
    collected, date_path = _collected_at(res)
    loinc, test_name = _code(res.get("code"), known)
    value, value_text, comparator, value_raw, value_path = _value(res)
    unit, unit_path = _unit(res)
    ref_low, ref_high, ref_text = _reference(res.get("referenceRange"))
    return {
        "person_id": person,
        "collected_at": collected,
        "date_path": date_path,
        "loinc": loinc,
        "test_name_raw": test_name,
        "number": value,
        "value_text": value_text,
        "comparator": comparator,
        "value_raw": value_raw,
        "value_path": value_path,
        "unit_raw": unit,
        "unit_path": unit_path,
        "ref_low": ref_low,
        "ref_high": ref_high,
        "ref_text": ref_text,
        "flag": _flag(res.get("interpretation")),
    }


def _subject(subject: Any) -> str:
    hint = (
        "; or set a fixed person (person: <id>) or {from_folder: true} for this source in "
        "sources.yaml"
    )
    if subject is None:
        raise _Reject("subject", f"no subject: cannot tell whose result this is{hint}")
    if not isinstance(subject, dict):
        raise _Reject("subject", "subject is not an object")
    ref = _text(subject.get("reference"))
    if ref is None:
        ident = _text(_obj(subject.get("identifier")).get("value"))
        if ident is not None:
            return ident
        raise _Reject("subject.reference", f"subject has no reference{hint}")
    for scheme in ("urn:uuid:", "urn:oid:"):
        if ref.lower().startswith(scheme):
            return ref[len(scheme) :]
    parts = [p for p in ref.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    if len(parts) >= 2:
        raise _Reject("subject.reference", "subject is not a Patient", ref)
    if ref.startswith("#"):
        raise _Reject("subject.reference", "subject is a contained resource", ref)
    return ref


def _collected_at(res: dict[str, Any]) -> tuple[datetime, str]:
    period = res.get("effectivePeriod")
    candidates = [
        ("effectiveDateTime", res.get("effectiveDateTime")),
        ("effectivePeriod.start", _obj(period).get("start")),
        ("effectiveInstant", res.get("effectiveInstant")),
        ("issued", res.get("issued")),
    ]
    for where, value in candidates:
        if value is None:
            continue
        if not isinstance(value, str):
            raise _Reject(where, f"{where} is not a date-time string", _compact(value))
        text = value.strip()
        if _PARTIAL_DATE.match(text):
            raise _Reject(where, f"{where} has no day; a result needs at least the date", text)
        if not _DATETIME.match(text):
            raise _Reject(where, f"{where} is not an ISO 8601 date-time", text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise _Reject(where, f"{where} is not a valid date", text) from None
        # The offset is dropped: the wall-clock time as printed, like lab_csv.
        return parsed.replace(tzinfo=None), where
    raise _Reject(
        "effectiveDateTime",
        "no collection date (effectiveDateTime, effectivePeriod.start, effectiveInstant or issued)",
    )


def _code(code: Any, known: set[str]) -> tuple[str | None, str | None]:
    """(LOINC code, test name) from a CodeableConcept; None where it does not say."""
    if code is None:
        return None, None
    if not isinstance(code, dict):
        raise _Reject("code", "code is not an object")
    codings = code.get("coding") or []
    if not isinstance(codings, list):
        codings = [codings]
    codings = [c for c in codings if isinstance(c, dict)]
    loincs = [
        c
        for c in codings
        if isinstance(c.get("system"), str)
        and c["system"].strip().rstrip("/") == LOINC_SYSTEM
        and _code_text(c.get("code")) is not None
    ]
    chosen = next((c for c in loincs if _code_text(c.get("code")) in known), None)
    if chosen is None and loincs:
        chosen = loincs[0]
    loinc = _code_text(chosen.get("code")) if chosen is not None else None
    name = _text(code.get("text"))
    if name is None and chosen is not None:
        name = _text(chosen.get("display"))
    if name is None:
        name = next((_text(c.get("display")) for c in codings if _text(c.get("display"))), None)
    return loinc, name


def _code_text(value: Any) -> str | None:
    if _is_number(value):
        return str(value)
    return _text(value)


def _value(
    res: dict[str, Any],
) -> tuple[float | None, str | None, str | None, str, str]:
    """(number, text to parse as a lab cell, comparator, value_raw, JSON path of the value)."""
    if "valueQuantity" in res:
        qty = res["valueQuantity"]
        if not isinstance(qty, dict):
            raise _Reject("valueQuantity", "valueQuantity is not an object")
        comparator = qty.get("comparator")
        if comparator is not None and (
            not isinstance(comparator, str) or comparator not in _COMPARATORS
        ):
            raise _Reject(
                "valueQuantity.comparator",
                "comparator is not one of <, <=, >, >=",
                _compact(comparator),
            )
        value = qty.get("value")
        prefix = comparator or ""
        if _is_number(value):
            number = _finite(value)
            if number is None:
                raise _Reject(
                    "valueQuantity.value", "value is not a finite number", _compact(value)
                )
            return number, None, comparator, f"{prefix}{value}", "valueQuantity.value"
        if isinstance(value, str):
            # A number sent as a string: read it like a lab CSV cell (comparator included).
            text = f"{prefix}{value.strip()}"
            return None, text, None, text, "valueQuantity.value"
        if value is None:
            return None, None, None, _absent(res), "valueQuantity.value"
        raise _Reject("valueQuantity.value", "value is not a number", _compact(value))
    if "valueString" in res:
        string = res["valueString"]
        if not isinstance(string, str):
            raise _Reject("valueString", "valueString is not a string", _compact(string))
        return None, string.strip(), None, string.strip(), "valueString"
    if "valueInteger" in res:
        value = res["valueInteger"]
        number = _finite(value) if _is_number(value) else None
        if number is None:
            raise _Reject("valueInteger", "valueInteger is not a finite number", _compact(value))
        return number, None, None, str(value), "valueInteger"
    if "valueCodeableConcept" in res:
        concept = _obj(res["valueCodeableConcept"])
        codings = concept.get("coding")
        first = _obj(codings[0]) if isinstance(codings, list) and codings else {}
        shown = _text(concept.get("text")) or _text(first.get("display")) or "coded value"
        return None, None, None, shown, "valueCodeableConcept"
    for key in ("valueBoolean", "valueRange", "valueRatio", "valueSampledData", "valueTime"):
        if key in res:
            return None, None, None, f"{key} {_compact(res[key])}", key
    return None, None, None, _absent(res), "value[x]"


def _absent(res: dict[str, Any]) -> str:
    reason = _obj(res.get("dataAbsentReason"))
    codings = reason.get("coding")
    first = _obj(codings[0]) if isinstance(codings, list) and codings else {}
    why = _text(reason.get("text")) or _text(first.get("display")) or _text(first.get("code"))
    return f"no value ({why})" if why else "no value"


def _unit(res: dict[str, Any]) -> tuple[str | None, str]:
    """(unit, its JSON path): the quantity's UCUM code, else its unit text.

    A value without a quantity (valueString "<0.3") has no unit of its own; the reference range's
    unit is then used, since a lab prints the range in the result's unit.
    """
    if "valueQuantity" in res:
        return _quantity_unit(res["valueQuantity"], "valueQuantity")
    ranges = res.get("referenceRange")
    if isinstance(ranges, list) and ranges and isinstance(ranges[0], dict):
        for key in ("high", "low"):
            unit, where = _quantity_unit(ranges[0].get(key), f"referenceRange[0].{key}")
            if unit is not None:
                return unit, where
    return None, "valueQuantity.unit"


def _quantity_unit(qty: Any, where: str) -> tuple[str | None, str]:
    if not isinstance(qty, dict):
        return None, f"{where}.unit"
    code = _text(qty.get("code"))
    system = _text(qty.get("system"))
    if code is not None and (system is None or system.rstrip("/") == UCUM_SYSTEM):
        return code, f"{where}.code"
    return _text(qty.get("unit")), f"{where}.unit"


def _reference(ranges: Any) -> tuple[float | None, float | None, str | None]:
    """(low, high, text) of the first reference range; unreadable parts are None, never a reject."""
    if not isinstance(ranges, list) or not ranges or not isinstance(ranges[0], dict):
        return None, None, None
    first = ranges[0]

    def limit(key: str) -> float | None:
        value = _obj(first.get(key)).get("value")
        return _finite(value) if _is_number(value) else None

    return limit("low"), limit("high"), _text(first.get("text"))


def _flag(interpretation: Any) -> str | None:
    if not isinstance(interpretation, list) or not interpretation:
        return None
    concept = _obj(interpretation[0])
    codings = concept.get("coding")
    first = _obj(codings[0]) if isinstance(codings, list) and codings else {}
    return _code_text(first.get("code")) or _text(concept.get("text"))


# ---- marker mapping ----------------------------------------------------------------------------

_CANDIDATE_SCHEMA: dict[str, pl.DataType | type[pl.DataType]] = {
    "line": pl.Int64,
    "prefix": pl.String,
    "item": pl.Int64,
    "person_id": pl.String,
    "collected_at": pl.Datetime("us"),
    "date_path": pl.String,
    "loinc": pl.String,
    "test_name_raw": pl.String,
    "number": pl.Float64,
    "value_text": pl.String,
    "comparator": pl.String,
    "value_raw": pl.String,
    "value_path": pl.String,
    "unit_raw": pl.String,
    "unit_path": pl.String,
    "ref_low": pl.Float64,
    "ref_high": pl.Float64,
    "ref_text": pl.String,
    "flag": pl.String,
}


def _normalise(
    path: Path, rows: _Rows, source: SourceConfig, items: list[_Item]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse text values, then map markers and units; rejects get JSON paths as their column."""
    if not rows.values:
        return empty(LAB_RESULT_SCHEMA), empty(REJECT_SCHEMA)
    frame = pl.DataFrame(rows.values, schema=_CANDIDATE_SCHEMA).with_row_index("__key")

    # Text values ("<0.3", "5.2") are read exactly like a lab CSV cell.
    parts = pl.col("value_text").str.extract_groups(CENSORED)
    text_comparator = parts.struct.field("1")
    parsed, _ = number(pl.coalesce(parts.struct.field("2"), pl.col("value_text")), source.decimal)
    comparator = pl.coalesce(pl.col("comparator"), text_comparator)
    text_low, text_high = reference_range(pl.col("ref_text"), source.decimal)
    work = frame.with_columns(
        pl.coalesce(pl.col("number"), parsed).alias("value"),
        pl.when(comparator.is_in(list(LOW_BOUND)))
        .then(pl.lit(">"))
        .when(comparator.is_not_null())
        .then(pl.lit("<"))
        .alias("censored"),
        pl.when(pl.col("ref_low").is_null() & pl.col("ref_high").is_null())
        .then(text_low)
        .otherwise(pl.col("ref_low"))
        .alias("ref_low"),
        pl.when(pl.col("ref_low").is_null() & pl.col("ref_high").is_null())
        .then(text_high)
        .otherwise(pl.col("ref_high"))
        .alias("ref_high"),
        # normalise_lab_rows sees the row key as `line`, so its rejects can be traced back.
        pl.col("__key").cast(pl.Int64).alias("line"),
    )
    try:
        loaded, unmapped = normalise_lab_rows(
            work,
            {"test_name_raw": _CODE, "value": _VALUE, "unit_raw": _UNIT},
            crp_method=source.crp_method,
        )
    except LabTableError as exc:
        raise AdapterError(f"{path}: cannot map lab results: {exc}") from exc

    meta = frame.select(
        pl.col("__key").cast(pl.Int64),
        pl.col("line").alias("__line"),
        "prefix",
        "value_path",
        "unit_path",
        "item",
        format_text("{} {}", pl.col("loinc").fill_null("-"), pl.col("test_name_raw").fill_null(""))
        .str.strip_chars()
        .alias("__short"),
    )
    loaded = (
        loaded.join(meta, left_on="line", right_on="__key", how="left")
        .with_columns(pl.col("__line").alias("line"))
        .sort("line", maintain_order=True)
    )
    column = pl.col("column")
    rejects = unmapped.join(meta, left_on="line", right_on="__key", how="left").select(
        pl.col("__line").alias("line"),
        pl.when(column == _CODE)
        .then(pl.col("prefix") + "code")
        .when(column == _VALUE)
        .then(pl.col("prefix") + pl.col("value_path"))
        .when(column == _UNIT)
        .then(pl.col("prefix") + pl.col("unit_path"))
        .otherwise(column)
        .alias("column"),
        "reason",
        "value",
        (column == _CODE).alias("__is_code"),
        "__short",
        "item",
    )
    # Not-a-marker rejects (most of a Synthea or Apple Health file) keep only "LOINC name"; the
    # few others get the resource's JSON, built only for them.
    raw = [
        short if is_code else _raw(items[item])
        for is_code, short, item in rejects.select("__is_code", "__short", "item").iter_rows()
    ]
    rejects = rejects.with_columns(pl.Series("raw", raw, dtype=pl.String))
    return conform(loaded, LAB_RESULT_SCHEMA), conform(rejects, REJECT_SCHEMA)
