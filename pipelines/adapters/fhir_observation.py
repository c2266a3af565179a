"""One FHIR Observation to the fields of a lab row, or a Reject naming the field at fault.

The middle step of the `fhir` adapter (fhir.py): fhir_items.py has found the Observation; what
comes out here still has text values and raw units, which fhir.py hands to marker mapping.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, TypeGuard

from pipelines.adapters.fhir_items import compact

LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
WITHDRAWN = ("entered-in-error", "cancelled")

# A FHIR dateTime with at least a day; the time and offset are optional.
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$"
)
_PARTIAL_DATE = re.compile(r"^\d{4}(?:-\d{2})?$")
_COMPARATORS = {"<": "<", "<=": "<", ">": ">", ">=": ">"}


class Reject(Exception):
    """A field that makes this Observation unusable: its JSON path (relative), the reason (a
    stable category) and the offending value as text."""

    def __init__(self, path: str, reason: str, value: str | None = None) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason
        self.value = value


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


def observation(res: dict[str, Any], fixed_person: str | None, known: set[str]) -> dict[str, Any]:
    """The lab-row fields of one Observation, or Reject naming the field that rules it out."""
    status = res.get("status")
    if isinstance(status, str) and status.strip().lower() in WITHDRAWN:
        raise Reject("status", f"status {status.strip().lower()}", status.strip())

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
        raise Reject("subject", f"no subject: cannot tell whose result this is{hint}")
    if not isinstance(subject, dict):
        raise Reject("subject", "subject is not an object")
    ref = _text(subject.get("reference"))
    if ref is None:
        ident = _text(_obj(subject.get("identifier")).get("value"))
        if ident is not None:
            return ident
        raise Reject("subject.reference", f"subject has no reference{hint}")
    for scheme in ("urn:uuid:", "urn:oid:"):
        if ref.lower().startswith(scheme):
            return ref[len(scheme) :]
    parts = [p for p in ref.split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == "Patient":
        return parts[-1]
    if len(parts) >= 2:
        raise Reject("subject.reference", "subject is not a Patient", ref)
    if ref.startswith("#"):
        raise Reject("subject.reference", "subject is a contained resource", ref)
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
            raise Reject(where, f"{where} is not a date-time string", compact(value))
        text = value.strip()
        if _PARTIAL_DATE.match(text):
            raise Reject(where, f"{where} has no day; a result needs at least the date", text)
        if not _DATETIME.match(text):
            raise Reject(where, f"{where} is not an ISO 8601 date-time", text)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise Reject(where, f"{where} is not a valid date", text) from None
        # The offset is dropped: the wall-clock time as printed, like lab_csv.
        return parsed.replace(tzinfo=None), where
    raise Reject(
        "effectiveDateTime",
        "no collection date (effectiveDateTime, effectivePeriod.start, effectiveInstant or issued)",
    )


def _code(code: Any, known: set[str]) -> tuple[str | None, str | None]:
    """(LOINC code, test name) from a CodeableConcept; None where it does not say."""
    if code is None:
        return None, None
    if not isinstance(code, dict):
        raise Reject("code", "code is not an object")
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
            raise Reject("valueQuantity", "valueQuantity is not an object")
        comparator = qty.get("comparator")
        if comparator is not None and (
            not isinstance(comparator, str) or comparator not in _COMPARATORS
        ):
            raise Reject(
                "valueQuantity.comparator",
                "comparator is not one of <, <=, >, >=",
                compact(comparator),
            )
        value = qty.get("value")
        prefix = comparator or ""
        if _is_number(value):
            number = _finite(value)
            if number is None:
                raise Reject("valueQuantity.value", "value is not a finite number", compact(value))
            return number, None, comparator, f"{prefix}{value}", "valueQuantity.value"
        if isinstance(value, str):
            # A number sent as a string: read it like a lab CSV cell (comparator included).
            text = f"{prefix}{value.strip()}"
            return None, text, None, text, "valueQuantity.value"
        if value is None:
            return None, None, None, _absent(res), "valueQuantity.value"
        raise Reject("valueQuantity.value", "value is not a number", compact(value))
    if "valueString" in res:
        string = res["valueString"]
        if not isinstance(string, str):
            raise Reject("valueString", "valueString is not a string", compact(string))
        return None, string.strip(), None, string.strip(), "valueString"
    if "valueInteger" in res:
        value = res["valueInteger"]
        number = _finite(value) if _is_number(value) else None
        if number is None:
            raise Reject("valueInteger", "valueInteger is not a finite number", compact(value))
        return number, None, None, str(value), "valueInteger"
    if "valueCodeableConcept" in res:
        concept = _obj(res["valueCodeableConcept"])
        codings = concept.get("coding")
        first = _obj(codings[0]) if isinstance(codings, list) and codings else {}
        shown = _text(concept.get("text")) or _text(first.get("display")) or "coded value"
        return None, None, None, shown, "valueCodeableConcept"
    for key in ("valueBoolean", "valueRange", "valueRatio", "valueSampledData", "valueTime"):
        if key in res:
            return None, None, None, f"{key} {compact(res[key])}", key
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
