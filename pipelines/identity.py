"""What a step's input tables hold, told without reading their rows (issue 19).

The store's part files are immutable and a name is never used twice, so the list of parts a
table's view reads (`store_parts`) stands for its rows; a view that is no part of the store
stands for its SQL and the tables that reads, and a native table of the warehouse (a few
thousand rows at most: the categories, the unmapped foods) for the fingerprint of its rows.
`inputs_identity` puts that together for a step's queries: `pipelines.incremental` tells a night
with nothing new by it, and `remembered` keeps a table's counts and checks until its parts change.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import TypeVar, cast

import duckdb

T = TypeVar("T")

# An order-independent fingerprint of a group's rows `t`, computed inside DuckDB: a count and two
# sums of row hashes (bit_xor alone would miss a pair of identical rows).
ROWS_FINGERPRINT = (
    "count(*)::VARCHAR || ':' || bit_xor(hash(t))::VARCHAR || ':' || sum(hash(t)::HUGEINT)::VARCHAR"
)


# The statement around a view's query in its `duckdb_views().sql`.
_VIEW_HEAD = re.compile(r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?VIEW\s+.+?\s+AS\s+", re.I | re.S)
# Scalar functions that read something besides a query's tables.
_READS_OUTSIDE = re.compile(r"\b(getvariable|current_setting)\s*\(", re.I)


def tables_read(conn: duckdb.DuckDBPyConnection, sql: str) -> set[str] | None:
    """The names of the tables and views `sql` reads, from DuckDB's parse of it (no binding:
    views are not expanded, a registered frame keeps its name); the names its WITH clauses
    define are not tables. None when it reads through a table function (a file, a Python
    object), names another schema or catalog, or does not parse."""
    if _READS_OUTSIDE.search(sql):
        return None
    row = conn.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    tree = json.loads(row[0]) if row else {"error": True}
    if tree.get("error"):
        return None
    tables: set[str] = set()
    ctes: set[str] = set()
    stack: list[object] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        if kind == "TABLE_FUNCTION":
            return None
        if kind == "BASE_TABLE":
            if node.get("catalog_name") or node.get("schema_name") not in ("", "main"):
                return None
            tables.add(node["table_name"])
        if isinstance(node.get("cte_map"), dict):
            ctes.update(entry["key"] for entry in node["cte_map"].get("map", []))
        stack.extend(node.values())
    return tables - ctes


def inputs_identity(conn: duckdb.DuckDBPyConnection, queries: list[str], salt: str) -> str | None:
    """What the rows of `queries` are, without reading them: `salt` (a step's `full_salt`) and
    each table they read, a view of the store as the part files `store_parts` lists for it
    (immutable, and a name is never used twice), any other view as its SQL and the tables that
    reads, a native table as its definition and the fingerprint of its rows (the warehouse's
    native tables are small: categories, unmapped foods). None when a query reads anything
    else (a registered frame, a temp table, a file): the step then plans the long way."""
    parts: dict[str, list[str]] = {}
    if conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'store_parts' AND NOT temporary"
    ).fetchone() != (0,):
        for table, file in conn.execute(
            "SELECT table_name, file FROM store_parts ORDER BY table_name, shard, part"
        ).fetchall():
            parts.setdefault(table, []).append(file)
    # Anything not in the warehouse's own main schema counts as temporary: it has no identity.
    catalog = {
        (name, bool(temporary)): (kind, sql)
        for name, temporary, kind, sql in conn.execute(
            "SELECT view_name, temporary OR database_name <> current_database(), 'view', sql "
            "FROM duckdb_views() WHERE NOT internal UNION ALL "
            "SELECT table_name, temporary OR database_name <> current_database(), 'table', sql "
            "FROM duckdb_tables()"
        ).fetchall()
    }
    seen: dict[str, str] = {}

    def visit(sql: str) -> bool:
        names = tables_read(conn, sql)
        if names is None:
            return False
        for name in sorted(names - seen.keys()):
            if (name, True) in catalog or (name, False) not in catalog:
                return False  # a temp table or view, a registered frame, or no such table
            kind, definition = catalog[(name, False)]
            if kind == "view" and name in parts:
                seen[name] = "parts:" + ",".join(parts[name])
            elif kind == "view":
                seen[name] = "view:" + definition
                if not visit(_VIEW_HEAD.sub("", definition).rstrip("; \n")):
                    return False
            else:
                quoted = '"' + name.replace('"', '""') + '"'
                row = conn.execute(f"SELECT {ROWS_FINGERPRINT} FROM {quoted} t").fetchone()
                seen[name] = f"table:{definition}:{row[0] if row else ''}"
        return True

    if not all(visit(q) for q in queries):
        return None
    listed = "\0".join(f"{name}={seen[name]}" for name in sorted(seen))
    return hashlib.sha256(f"{salt}\0{listed}".encode()).hexdigest()


MEMO_TABLE = "input_memos"


def remembered(conn: duckdb.DuckDBPyConnection, queries: list[str], compute: Callable[[], T]) -> T:
    """`compute()`, a JSON value worked out from the rows of `queries` alone (a count, a check's
    finding), or what it gave when the same queries last read the same tables
    (`inputs_identity`): a night with nothing new does not scan a table again to say what it
    holds. Kept in `input_memos` by the queries' text, in the caller's transaction."""
    key = hashlib.sha256("\0".join(queries).encode()).hexdigest()
    identity = inputs_identity(conn, queries, duckdb.__version__)
    exists = conn.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND NOT temporary", [MEMO_TABLE]
    ).fetchone() != (0,)
    if identity is not None and exists:
        row = conn.execute(
            f"SELECT value FROM {MEMO_TABLE} WHERE key = ? AND version = ?", [key, identity]
        ).fetchone()
        if row is not None:
            return cast(T, json.loads(row[0]))
    value = compute()
    if identity is not None:
        if not exists:
            conn.execute(f"CREATE TABLE {MEMO_TABLE} (key VARCHAR, version VARCHAR, value VARCHAR)")
        conn.execute(f"DELETE FROM {MEMO_TABLE} WHERE key = ?", [key])
        conn.execute(
            f"INSERT INTO {MEMO_TABLE} VALUES (?, ?, ?)", [key, identity, json.dumps(value)]
        )
    return value
