"""A SAS transport (XPORT version 5) reader: one `.XPT` file to a Polars frame, no pandas needed.

The first step of the `nhanes_xpt` adapter (nhanes_xpt.py): NHANES publishes every table as
XPORT v5, so the adapter reads the file here, picks its tables in nhanes_tables.py and builds
rows in nhanes_xpt.py. Numbers are IBM System/360 floats, converted with NumPy in bulk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from pipelines.adapters.base import AdapterError

_CARD = 80
_PREFIX = b"HEADER RECORD*******"
_LIBRARY = _PREFIX + b"LIBRARY HEADER RECORD!!!!!!!"
_LIBRARY_V8 = _PREFIX + b"LIBV8   HEADER RECORD!!!!!!!"
_MEMBER = _PREFIX + b"MEMBER  HEADER RECORD!!!!!!!"
_DESCRIPTOR = _PREFIX + b"DSCRPTR HEADER RECORD!!!!!!!"
_NAMESTR = _PREFIX + b"NAMESTR HEADER RECORD!!!!!!!"
_OBS = _PREFIX + b"OBS     HEADER RECORD!!!!!!!"
# SAS missing values: ".", ".A"-".Z" and "._" in the first byte, zeros after it.
_MISSING_FIRST = np.array([0x2E, 0x5F, *range(0x41, 0x5B)], dtype=np.uint8)


@dataclass(frozen=True)
class XportFile:
    """The first (and for NHANES, only) dataset of an XPORT v5 file.

    `frame` has one column per variable (numeric -> Float64, character -> String; SAS missing
    values -> null), in file order; `labels` maps variable names to their SAS labels.
    """

    dataset: str
    frame: pl.DataFrame
    labels: dict[str, str]


def read_xport(path: Path) -> XportFile:
    """Read an XPORT v5 file; AdapterError naming the file when it is not one."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AdapterError(f"{path}: cannot be read: {exc}") from exc
    not_xpt = (
        f"{path}: not a SAS transport (XPORT version 5) file, which is how NHANES publishes its "
        "data (.XPT)"
    )
    if data.startswith(_LIBRARY_V8):
        raise AdapterError(
            f"{path}: SAS transport version 8 files are not supported; nhanes_xpt reads XPORT "
            "version 5, the format NHANES publishes."
        )
    if not data.startswith(_LIBRARY):
        raise AdapterError(f"{not_xpt}: it does not start with a LIBRARY header record.")

    def card(offset: int, prefix: bytes) -> bytes:
        record = data[offset : offset + _CARD]
        if len(record) < _CARD or not record.startswith(prefix):
            name = prefix[len(_PREFIX) : len(_PREFIX) + 7].decode().strip()
            raise AdapterError(
                f"{not_xpt}, or it is truncated: no {name} header record at byte {offset}."
            )
        return record

    member = card(3 * _CARD, _MEMBER)
    card(4 * _CARD, _DESCRIPTOR)
    try:
        namestr_len = int(member[74:78])
        descriptor = data[5 * _CARD : 7 * _CARD]
        dataset = descriptor[8:16].decode("latin-1").strip()
        nvars = int(card(7 * _CARD, _NAMESTR)[54:58])
    except ValueError:
        raise AdapterError(f"{not_xpt}: its member header is malformed.") from None
    if namestr_len not in (136, 140):
        raise AdapterError(f"{not_xpt}: unexpected variable descriptor size {namestr_len}.")

    start = 8 * _CARD
    names: list[str] = []
    labels: dict[str, str] = {}
    layout: list[tuple[str, bool, int, int]] = []  # name, numeric, length, position
    for i in range(nvars):
        ns = data[start + i * namestr_len : start + (i + 1) * namestr_len]
        if len(ns) < namestr_len:
            raise AdapterError(f"{not_xpt}, or it is truncated in its variable descriptors.")
        name = ns[8:16].decode("latin-1").strip()
        names.append(name)
        labels[name] = ns[16:56].decode("latin-1").strip()
        ntype = int.from_bytes(ns[0:2], "big")
        length = int.from_bytes(ns[4:6], "big")
        position = int.from_bytes(ns[84:88], "big")
        numeric = ntype == 1
        if numeric and not 2 <= length <= 8:
            raise AdapterError(f"{not_xpt}: numeric variable {name} has length {length}.")
        layout.append((name, numeric, length, position))
    # Names are matched without regard to case (see parse), so SEQN and seqn are the same name.
    if len({n.upper() for n in names}) != len(names):
        raise AdapterError(f"{not_xpt}: a variable name appears twice.")
    namestr_end = start + -(-nvars * namestr_len // _CARD) * _CARD
    card(namestr_end, _OBS)

    obs_start = namestr_end + _CARD
    obs_end = len(data)
    next_member = _next_member(data, obs_start)
    if next_member is not None:
        raise AdapterError(
            f"{path}: holds more than one dataset; nhanes_xpt reads files with one dataset, as "
            "NHANES publishes them."
        )
    record_len = max((pos + length for _, _, length, pos in layout), default=0)
    body = data[obs_start:obs_end]
    nobs = len(body) // record_len if record_len else 0
    # The last 80-byte card is padded with blanks; short records can leave blank "records" there.
    while (
        nobs > 0
        and len(body) - (nobs - 1) * record_len <= _CARD
        and body[(nobs - 1) * record_len : nobs * record_len].strip(b" ") == b""
    ):
        nobs -= 1
    records = np.frombuffer(body, dtype=np.uint8, count=nobs * record_len).reshape(nobs, record_len)
    columns: list[pl.Series] = []
    for name, numeric, length, position in layout:
        block = records[:, position : position + length]
        if numeric:
            columns.append(pl.Series(name, _ibm_to_ieee(block), nan_to_null=True))
        else:
            text = [bytes(row).decode("latin-1").rstrip(" \x00") or None for row in block]
            columns.append(pl.Series(name, text, dtype=pl.String))
    return XportFile(dataset=dataset, frame=pl.DataFrame(columns), labels=labels)


def _next_member(data: bytes, obs_start: int) -> int | None:
    """The offset of a second MEMBER header (on an 80-byte boundary) after the data, if any."""
    at = data.find(_MEMBER, obs_start)
    while at != -1:
        if (at - obs_start) % _CARD == 0:
            return at
        at = data.find(_MEMBER, at + 1)
    return None


def _ibm_to_ieee(block: np.ndarray) -> np.ndarray:
    """IBM System/360 floats (big-endian, 2-8 bytes, truncated) to float64; SAS missing -> NaN."""
    n, length = block.shape
    full = np.zeros((n, 8), dtype=np.uint8)
    full[:, :length] = block
    word = full.view(">u8")[:, 0].astype(np.uint64)
    fraction = word & np.uint64(0x00FFFFFFFFFFFFFF)
    exponent = ((word >> np.uint64(56)) & np.uint64(0x7F)).astype(np.int64)
    negative = (word >> np.uint64(63)).astype(bool)
    # value = 0.fraction (56 bits) x 16^(exponent - 64)
    value = np.ldexp(fraction.astype(np.float64), (4 * (exponent - 64) - 56).astype(np.int32))
    value = np.where(negative, -value, value)
    missing = (fraction == 0) & np.isin(full[:, 0], _MISSING_FIRST)
    return np.where(missing, np.nan, value)
