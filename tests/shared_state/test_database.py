"""The database file: pragmas, schema version, busy handling, fork safety."""

from __future__ import annotations

import multiprocessing
import sqlite3
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from state_fixtures import DAY, T0, worker_env

from shared_state import (
    SCHEMA_VERSION,
    TABLE_NAMES,
    SchemaVersionError,
    Store,
    StoreBusyError,
    StoreError,
)

CONTRACT_TABLES = {
    "active_positions",
    "closed_positions",
    "orders",
    "fills",
    "daily_state",
    "watchlist",
    "phase_runs",
    "processes",
    "commands",
    "events",
}


def test_every_new_connection_has_wal_busy_timeout_foreign_keys_and_full_sync(
    db_path: Path,
) -> None:
    Store(db_path).close()

    pragmas = Store(db_path, busy_timeout_ms=1234).connection_pragmas()

    assert pragmas == {
        "journal_mode": "wal",
        "busy_timeout": 1234,
        "foreign_keys": 1,
        "synchronous": 2,
    }


def test_the_store_creates_the_parent_directory_and_every_contract_table(db_path: Path) -> None:
    store = Store(db_path)

    assert db_path.exists() and store.schema_version() == SCHEMA_VERSION
    assert set(TABLE_NAMES) == CONTRACT_TABLES
    with sqlite3.connect(db_path) as raw:
        names = {row[0] for row in raw.execute("select name from sqlite_master where type='table'")}
    assert CONTRACT_TABLES <= names


def test_a_file_of_another_schema_version_is_refused_with_what_to_do(db_path: Path) -> None:
    Store(db_path).close()
    with sqlite3.connect(db_path) as raw:
        raw.execute(f"pragma user_version = {SCHEMA_VERSION + 1}")

    with pytest.raises(SchemaVersionError) as caught:
        Store(db_path)

    message = str(caught.value)
    assert str(db_path) in message
    assert (
        f"version {SCHEMA_VERSION + 1} found" in message and f"expects {SCHEMA_VERSION}" in message
    )
    assert "move the file aside" in message


def test_a_foreign_sqlite_file_is_refused(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as raw:
        raw.execute("create table notes (x)")

    with pytest.raises(SchemaVersionError, match="notes"):
        Store(db_path)


def test_open_without_create_needs_an_existing_store(db_path: Path) -> None:
    with pytest.raises(StoreError, match="no such database"):
        Store(db_path, create=False)
    db_path.parent.mkdir(parents=True)
    sqlite3.connect(db_path).close()
    with pytest.raises(SchemaVersionError, match="create=True"):
        Store(db_path, create=False)

    Store(db_path).close()
    assert Store(db_path, create=False).schema_version() == SCHEMA_VERSION


def test_a_lock_held_too_long_becomes_store_busy_error_after_bounded_retries(db_path: Path) -> None:
    store = Store(db_path, busy_timeout_ms=50)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("begin immediate")
    try:
        with pytest.raises(StoreBusyError, match="still locked after 3 attempts"):
            store.record_event("test", "blocked", now=T0)
        assert store.active_positions() == []  # WAL readers are not blocked
    finally:
        holder.execute("rollback")
        holder.close()

    stats = store.busy_stats()
    assert (stats.retries, stats.busy_errors) == (3, 1)
    store.record_event("test", "after", now=T0)
    assert [e.kind for e in store.events()] == ["after"]


def _child_writes(path: str) -> None:
    inherited = _INHERITED[path]
    inherited.record_event("child", "from_fork", now=T0)
    inherited.close()


_INHERITED: dict[str, Store] = {}


def test_a_forked_child_builds_its_own_engine_and_both_keep_working(db_path: Path) -> None:
    store = Store(db_path)
    store.record_event("parent", "before_fork", now=T0)
    _INHERITED[str(db_path)] = store
    try:
        child = multiprocessing.get_context("fork").Process(
            target=_child_writes, args=(str(db_path),)
        )
        child.start()
        child.join(30)
    finally:
        _INHERITED.clear()

    store.record_event("parent", "after_fork", now=T0)
    assert child.exitcode == 0
    assert [e.kind for e in store.events()] == ["before_fork", "from_fork", "after_fork"]
    assert store.integrity_check() == ["ok"]


def test_bad_constructor_arguments_are_value_errors(db_path: Path) -> None:
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        Store(db_path, busy_timeout_ms=-1)
    with pytest.raises(ValueError, match="process"):
        Store(db_path, process="")


def test_a_naive_datetime_is_refused_everywhere_a_time_is_taken(store: Store) -> None:
    naive = T0.replace(tzinfo=None)

    with pytest.raises(ValueError, match="now"):
        store.set_halted(DAY, True, "x", now=naive)
    with pytest.raises(ValueError, match="now"):
        store.heartbeat("x", naive)
    with pytest.raises(ValueError, match="time"):
        store.record_fill(
            "e",
            order_ref=None,
            symbol="A",
            side="BUY",
            quantity=1,
            price=1.0,
            commission=None,
            time=naive,
        )
    assert store.events() == [] and store.processes() == []


def test_times_come_back_aware_in_utc_whatever_zone_went_in(store: Store) -> None:
    eastern = T0.astimezone(ZoneInfo("America/New_York"))
    store.record_event("x", "y", now=eastern)

    (event,) = store.events()
    assert event.time == T0 and event.time.utcoffset() is not None


def test_threads_of_one_process_write_concurrently_without_errors(store: Store) -> None:
    def trade(symbol: str) -> int:
        closes = 0
        for n in range(15):
            result = store.claim_for_entry(
                symbol,
                DAY,
                now=T0,
                order_ref=f"{symbol}-{n}",
                quantity=1,
                limit_price=1.0,
                max_recovery_entries=0,
                max_trades_per_day=1000,
                max_positions=10,
                owner="t",
            )
            assert result.ok, result
            store.mark_filled(
                symbol, now=T0, entry_price=1.0, quantity=1, target_price=1.1, stop_price=0.9
            )
            closed = store.close_position(
                symbol,
                trading_date=DAY,
                now=T0,
                exit_price=1.0,
                reason="reconciled",
                pnl=0.5,
                commissions=0.0,
            )
            closes += closed is not None
        return closes

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(trade, ["T1", "T2", "T3", "T4"]))

    assert counts == [15] * 4
    daily = store.daily_state(DAY)
    assert daily is not None and (daily.trades_count, daily.realized_pnl) == (60, 30.0)
    assert store.busy_stats().busy_errors == 0


OPEN_AND_WRITE = """
import sys, time
from datetime import UTC, datetime
from shared_state import Store
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
store = Store(sys.argv[1], process=sys.argv[3])
store.record_event(sys.argv[3], "opened", now=datetime(2025, 3, 3, tzinfo=UTC))
"""


def test_processes_opening_a_new_file_at_once_create_the_schema_once(db_path: Path) -> None:
    start_at = str(time.time() + 1.5)  # all of them past their imports, then at once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_AND_WRITE, str(db_path), start_at, f"p{n}"],
            env=worker_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]

    assert [proc.returncode for proc in procs] == [0] * 4, errors
    store = Store(db_path)
    assert store.schema_version() == SCHEMA_VERSION
    assert sorted(e.process for e in store.events()) == ["p0", "p1", "p2", "p3"]
