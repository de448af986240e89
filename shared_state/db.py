"""The engine, the per-connection pragmas, and the two kinds of transaction.

Recipe: SQLAlchemy's documented pysqlite one ("Serializable isolation / Savepoints /
Transactional DDL"): the driver is put in autocommit (``isolation_level = None``) so it
never emits BEGIN itself, and a "begin" event emits ours: ``BEGIN IMMEDIATE`` for a unit
of work that writes (it takes the write lock up front, so a read-then-write can never fail
half-way with SQLITE_BUSY when it upgrades), plain ``BEGIN`` for a consistent read.

Engines are per process: a forked child that inherited a ``Database`` builds its own
engine on first use instead of sharing the parent's connections. Writers queue at a
``WriteGate`` (see ``gate.py``) before BEGIN IMMEDIATE, so lock waits stay short.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError

from shared_state.errors import StoreBusyError, StoreError
from shared_state.gate import WriteGate
from shared_state.models import BusyStats

_BEGIN_OPTION = "shared_state_begin"
_BEGIN_SQL = {"IMMEDIATE": "BEGIN IMMEDIATE", "DEFERRED": "BEGIN"}
_BUSY_MESSAGES = ("database is locked", "database table is locked", "database is busy")

#: Attempts of one unit of work that meets "database is locked" (each attempt already
#: waited up to busy_timeout inside SQLite), and the pause before the second attempt.
ATTEMPTS = 3
FIRST_BACKOFF_S = 0.05


class Rollback(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raise inside a unit of work to roll it back and return ``value`` to the caller."""

    def __init__(self, value: Any = None) -> None:
        super().__init__("rollback")
        self.value = value


def _set_pragmas(dbapi_connection: sqlite3.Connection, busy_timeout_ms: int) -> None:
    # Driver-level autocommit: the "begin" event below owns BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: switching a new file to WAL needs a lock other openers hold.
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = cursor.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreError(f"journal_mode=WAL refused (got {mode!r}); is the file on NFS?")
        cursor.execute("PRAGMA foreign_keys = ON")
        # FULL: a committed position or order intent must survive a power cut (design 3).
        cursor.execute("PRAGMA synchronous = FULL")
    finally:
        cursor.close()


def make_engine(path: Path, busy_timeout_ms: int) -> Engine:
    """Create this process's engine for ``path`` with the pragmas and BEGIN handling."""
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": busy_timeout_ms / 1000.0},
        # Each thread keeps its own two connections checked out (see Database); no cap,
        # so a process with many threads never waits for the pool.
        pool_size=2,
        max_overflow=-1,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        _set_pragmas(dbapi_connection, busy_timeout_ms)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        # Straight to the driver (the recipe's exec_driver_sql, without the per-statement
        # machinery): BEGIN returns no rows and needs no parameters.
        conn.connection.driver_connection.execute(_BEGIN_SQL[mode])

    return engine


def is_busy(exc: BaseException) -> bool:
    """Return whether ``exc`` is SQLite's "database is locked" (SQLITE_BUSY/LOCKED)."""
    if isinstance(exc, OperationalError):
        exc = exc.orig
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    message = str(exc).lower()
    return any(text in message for text in _BUSY_MESSAGES)


class Database:
    """One SQLite file seen from this process: run units of work in transactions.

    Each thread keeps one writer and one reader connection checked out for as long as it
    uses the store (no pool round trip per unit of work); no transaction stays open
    between units, so WAL checkpoints are never starved.
    """

    def __init__(self, path: Path, *, busy_timeout_ms: int, write_gate: bool = True) -> None:
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._gate = WriteGate(path, timeout_s=busy_timeout_ms / 1000.0, enabled=write_gate)
        self._pid: int | None = None
        self._engine: Engine | None = None
        self._local = threading.local()
        self._inherited: list[object] = []
        self._retries = 0
        self._busy_errors = 0

    def _connection(self, write: bool) -> Connection:
        if self._pid != os.getpid() or self._engine is None:
            self._start_engine()
        slot = "writer" if write else "reader"
        conn: Connection | None = getattr(self._local, slot, None)
        if conn is None or conn.closed or conn.invalidated:
            assert self._engine is not None
            conn = self._engine.connect()
            conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE" if write else "DEFERRED"})
            setattr(self._local, slot, conn)
        return conn

    def _start_engine(self) -> None:
        if self._engine is not None:
            # Inherited across fork: keep the parent's engine and connections referenced
            # (so garbage collection never rolls back or closes them from this process)
            # and never use them.
            self._engine.dispose(close=False)
            self._inherited.append((self._engine, self._local))
        self._engine = make_engine(self.path, self.busy_timeout_ms)
        self._local = threading.local()
        self._pid = os.getpid()

    def write[T](self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one ``BEGIN IMMEDIATE`` transaction and commit it."""
        return self._run(work, write=True)

    def read[T](self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one deferred (read) transaction."""
        return self._run(work, write=False)

    def _run[T](self, work: Callable[[Connection], T], *, write: bool) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return self._once(work, write)
            except Rollback as rollback:
                return rollback.value
            except (OperationalError, sqlite3.OperationalError) as exc:
                if not is_busy(exc):
                    raise
                self._retries += 1
                if attempt == ATTEMPTS:
                    self._busy_errors += 1
                    raise StoreBusyError(self._busy_message(attempt)) from exc
                time.sleep(FIRST_BACKOFF_S * 2 ** (attempt - 1) * (1 + random.random()))
        raise AssertionError("unreachable")

    def _once[T](self, work: Callable[[Connection], T], write: bool) -> T:
        conn = self._connection(write)
        gated = write and self._gate.acquire()
        try:
            try:
                transaction = conn.begin()
            except BaseException:
                # A BEGIN that failed (e.g. still locked) leaves the Connection half-begun:
                # drop it, the next attempt gets a clean one.
                self._discard(write)
                raise
            with transaction:
                return work(conn)
        finally:
            if gated:
                self._gate.release()

    def _discard(self, write: bool) -> None:
        slot = "writer" if write else "reader"
        conn: Connection | None = getattr(self._local, slot, None)
        setattr(self._local, slot, None)
        if conn is not None:
            conn.invalidate()  # the driver connection is closed, never reused

    def _busy_message(self, attempts: int) -> str:
        return (
            f"{self.path}: database still locked after {attempts} attempts with "
            f"busy_timeout={self.busy_timeout_ms} ms; another process holds a write "
            "transaction open. Retry later; if it persists, look for a hung process."
        )

    def busy_stats(self) -> BusyStats:
        """Return how many locked errors this process met (retried, and given up)."""
        return BusyStats(retries=self._retries, busy_errors=self._busy_errors)

    def fresh_connection_pragmas(self) -> dict[str, Any]:
        """Return the pragmas as a brand-new connection of this process sees them."""
        engine = make_engine(self.path, self.busy_timeout_ms)
        try:
            with engine.connect() as conn:
                return {
                    name: conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()
                    for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
                }
        finally:
            engine.dispose()

    def integrity_check(self) -> list[str]:
        """Return SQLite's ``PRAGMA integrity_check`` lines (``['ok']`` when sound)."""
        return self.read(
            lambda conn: [str(x) for x in conn.exec_driver_sql("PRAGMA integrity_check").scalars()]
        )

    def dispose(self) -> None:
        """Close this thread's connections and this process's pool and gate."""
        if self._engine is not None and self._pid == os.getpid():
            for slot in ("writer", "reader"):
                conn = getattr(self._local, slot, None)
                if conn is not None:
                    conn.close()
            self._engine.dispose()
            self._gate.close()
        self._engine = None
        self._local = threading.local()
        self._pid = None
