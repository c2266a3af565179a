"""Values written into SQL text (`sql_text`), where a statement cannot take a parameter: a file's
path in `COPY ... TO` or `read_parquet`, a key's bounds in a row-group filter, a constant in a
query handed on as text (`store.rewrite`'s source).

Core: imports nothing from the pipeline. Not in `pipelines.text`, which the parser fingerprint
covers: a change here must not re-read every file.
"""

from __future__ import annotations

from pathlib import Path


def sql_text(value: str | Path) -> str:
    """`value` (a text or a file's path) as a SQL string literal: quoted, its quotes doubled."""
    return "'" + str(value).replace("'", "''") + "'"
