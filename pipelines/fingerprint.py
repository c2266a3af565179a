"""One fingerprint for "has the code or a data table changed?".

Every incremental decision that depends on code (re-read every file when a parser changes,
recompute a step when its transforms change, re-render the pages when the report code changes)
and the code versions Dagster shows hash a list of files the same way: each file's name and
bytes, in a fixed order, plus the versions of the libraries whose output is stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def fingerprint(paths: Iterable[Path], *versions: str) -> str:
    """sha256 (hex) over `versions` and then each file's name and contents, in the given order.

    Only the name, not the full path, enters: a checkout moved elsewhere hashes the same."""
    digest = hashlib.sha256("\0".join(versions).encode() + b"\0")
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
