"""Dagster's SQLite event log with its connections kept open, named in `dagster.yaml`.

Dagster's `SqliteEventLogStorage` keeps a SQLite file per run and an index file, and for every
event it stores or query it answers makes a new SQLAlchemy engine and SQLite connection and
throws both away: opening the file, reading its schema and compiling the statement again each
time. A run stores about 180 events on a night with nothing new at 200 people (a start, an
output, a materialization per partition and a success per step, the checks), and that cost
was a third of the run. Here each file's engine keeps its one connection open (SQLAlchemy's
`StaticPool`), for the few files used last; the rest is Dagster's class unchanged: the same
files and tables, so the run history written before is read as it was.

Safe as Dagster's is: every use of a connection is inside the class's own lock and one
transaction, an open connection holds no lock on the file between them, and the files are in
WAL mode (set by Dagster), where a writer waits for another process's writer as before.

It replaces one private method of Dagster's class (`_connect`), so it is tied to the Dagster
version in uv.lock (Dagster's packages are pinned exactly); tests/test_event_log.py checks it
stores and reads a run as Dagster's class does, and fails if the connections are not kept.
"""

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._serdes import ConfigurableClassData
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.pool import NullPool, StaticPool

# Files whose connection stays open: a run writes two (its own and the index); the UI and the
# daemon read many runs' in turn, and the oldest is closed past this. Each open connection keeps
# SQLite's page cache of its file (at most 2 MB).
OPEN_FILES = 8


class KeptOpenSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` in `<dagster_home>/history/runs/`, Dagster's own place for it,
    with a connection kept open per file (the module's docstring)."""

    def __init__(self, dagster_home: str, inst_data: ConfigurableClassData | None = None):
        self._dagster_home = dagster_home
        # Before Dagster's __init__, which may already connect (a new index file is indexed).
        self._engines: OrderedDict[str, Engine] = OrderedDict()
        super().__init__(os.path.join(dagster_home, "history", "runs", ""), inst_data=inst_data)

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"dagster_home": dg.StringSource}

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "KeptOpenSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance: dg.DagsterInstance) -> None:
        super().register_instance(instance)
        # `dagster_home` comes from the DAGSTER_HOME variable: an instance opened from another
        # folder's dagster.yaml (`DagsterInstance.from_config`) would read another run history.
        if os.path.realpath(instance.root_directory) != os.path.realpath(self._dagster_home):
            raise dg.DagsterInvariantViolationError(
                f"The Dagster instance in {instance.root_directory} has its event log in "
                f"{self._dagster_home} (dagster.yaml: event_log_storage.config.dagster_home, "
                "from DAGSTER_HOME): set DAGSTER_HOME to the instance's folder to open it."
            )

    @contextmanager
    def _connect(self, shard: str) -> Iterator[Connection]:
        # Dagster's `_connect`, the only place its SQLite class opens a file for events, with
        # the engine kept instead of made and disposed each time.
        with self._db_lock:
            with self._engine(shard).connect() as conn, conn.begin():
                yield conn

    def _engine(self, shard: str) -> Engine:
        engine = self._engines.pop(shard, None)
        if engine is None:
            if shard not in self._initialized_dbs:
                # Made the way Dagster makes it: its set-up opens connections of its own.
                fresh = self._new_engine(shard, NullPool)
                self._initdb(fresh)
                fresh.dispose()
                self._initialized_dbs.add(shard)
            engine = self._new_engine(shard, StaticPool)
        self._engines[shard] = engine  # the most recently used last
        while len(self._engines) > OPEN_FILES:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    def _new_engine(self, shard: str, pool: type[NullPool] | type[StaticPool]) -> Engine:
        return create_engine(
            self.conn_string_for_shard(shard),
            poolclass=pool,
            # One connection, used by whichever thread holds the lock (the UI's, the daemon's).
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )

    def _close_all(self) -> None:
        while self._engines:
            self._engines.popitem()[1].dispose()

    def wipe(self) -> None:
        # The run files are deleted: no connection may stay open on one.
        with self._db_lock:
            self._close_all()
        super().wipe()

    def dispose(self) -> None:
        with self._db_lock:
            self._close_all()
        super().dispose()
