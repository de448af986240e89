"""Six real processes hammer the same 3 symbols for 6 s while a reader samples.

The invariants of design section 3 are checked from what the processes report and from
the final file: never two active rows for a symbol, no entry after a target exit that
day, exactly MAX_RECOVERY recovery entries after stop exits, every close counted once in
daily P&L, and no "database is locked" reaching a caller.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
from collections import defaultdict
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from state_fixtures import worker_command, worker_env

from shared_state import ExitReason, Store

WORKERS = 6
SECONDS = 6.0
SLOT_SECONDS = 0.5  # a new trading date twice a second: many days of rules per run
MAX_RECOVERY = 2


def _spawn(db_path: Path) -> tuple[list[subprocess.Popen[str]], subprocess.Popen[str]]:
    def start(script: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            worker_command(script, str(db_path), *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(),
        )

    hammers = [
        start(
            "worker_hammer.py",
            str(n),
            str(1000 + n),
            str(SECONDS),
            str(SLOT_SECONDS),
            str(MAX_RECOVERY),
        )
        for n in range(WORKERS)
    ]
    return hammers, start("worker_reader.py", str(SECONDS))


def _output(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    text = proc.stdout.read()  # each worker writes its one report line when it is done
    proc.wait(timeout=60)
    return text


def _run(db_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    hammers, reader = _spawn(db_path)
    procs = [*hammers, reader]
    try:
        for proc in procs:  # every process imported and opened the store
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go = f"go {time.time() + 0.2}\n"
        for proc in procs:  # all at once: the run starts at the same instant everywhere
            assert proc.stdin is not None
            proc.stdin.write(go)
            proc.stdin.close()
        outputs = [_output(proc) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert [proc.returncode for proc in procs] == [0] * len(procs), outputs
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    return reports[:-1], reports[-1]


@pytest.fixture(scope="module")
def hammered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    db_path = tmp_path_factory.mktemp("hammer") / "trading_state.db"
    Store(db_path).close()
    started = time.monotonic()
    workers, reader = _run(db_path)
    store = Store(db_path)
    return {
        "workers": workers,
        "reader": reader,
        "store": store,
        "elapsed": time.monotonic() - started,
        "days": sorted({date.fromisoformat(c["day"]) for w in workers for c in w["claims"]}),
    }


def _entries_by_day_symbol(hammered: dict[str, Any]) -> dict[tuple[str, str], list[dict]]:
    """Return every entry per (day, symbol) in commit order: closed rows, then the active one."""
    store: Store = hammered["store"]
    entries: dict[tuple[str, str], list[dict]] = defaultdict(list)
    claims = {c["ref"]: c for w in hammered["workers"] for c in w["claims"]}
    for day in hammered["days"]:
        for row in store.closed_today(day):
            claim = claims[row.entry_order_ref]
            entries[(claim["day"], row.symbol)].append(
                {"ref": row.entry_order_ref, "reason": row.exit_reason, "recovery": row.is_recovery}
            )
    for row in store.active_positions():
        claim = claims[row.entry_order_ref]
        entries[(claim["day"], row.symbol)].append(
            {"ref": row.entry_order_ref, "reason": None, "recovery": row.is_recovery}
        )
    return entries


def test_the_processes_really_hammered_for_the_whole_time(hammered: dict[str, Any]) -> None:
    workers, reader = hammered["workers"], hammered["reader"]

    assert len(workers) == WORKERS and hammered["elapsed"] >= SECONDS
    assert all(w["steps"] > 50 for w in workers)
    assert sum(len(w["closes"]) for w in workers) > 20
    assert reader["samples"] > 100


def test_never_two_active_rows_for_one_symbol(hammered: dict[str, Any]) -> None:
    store: Store = hammered["store"]
    symbols = [row.symbol for row in store.active_positions()]

    assert hammered["reader"]["duplicates"] == 0
    assert len(symbols) == len(set(symbols))
    assert store.integrity_check() == ["ok"]


def test_every_successful_claim_is_exactly_one_row(hammered: dict[str, Any]) -> None:
    store: Store = hammered["store"]
    claimed = [c["ref"] for w in hammered["workers"] for c in w["claims"]]
    rows = [row.entry_order_ref for day in hammered["days"] for row in store.closed_today(day)]
    rows += [row.entry_order_ref for row in store.active_positions()]

    assert len(claimed) == len(set(claimed))
    assert sorted(rows) == sorted(claimed)


def test_no_claim_succeeds_after_a_target_exit_that_day(hammered: dict[str, Any]) -> None:
    entries = _entries_by_day_symbol(hammered)
    target_days = [
        key for key, rows in entries.items() if any(r["reason"] is ExitReason.TARGET for r in rows)
    ]

    for key in target_days:
        reasons = [r["reason"] for r in entries[key]]
        assert reasons.index(ExitReason.TARGET) == len(reasons) - 1, (key, reasons)
    assert target_days  # the scenario happened
    forbidden = [k for w in hammered["workers"] for k in w["refusals"] if "REENTRY_FORBIDDEN" in k]
    assert forbidden  # and later claims were refused


def test_stop_exits_allow_exactly_max_recovery_entries(hammered: dict[str, Any]) -> None:
    entries = _entries_by_day_symbol(hammered)
    limited = {
        tuple(k.split("|")[1::-1])
        for w in hammered["workers"]
        for k in w["refusals"]
        if k.endswith("RECOVERY_LIMIT")
    }  # (day, symbol) where the limit was hit

    for key, rows in entries.items():
        recoveries = [r["recovery"] for r in rows]
        assert recoveries[0] is False and all(recoveries[1:]), (key, rows)
        assert len(rows) <= 1 + MAX_RECOVERY, (key, rows)
    for key in limited:
        assert [r["reason"] for r in entries[key]] == [ExitReason.STOP] * (1 + MAX_RECOVERY)
    completed_aaa = [k for k in limited if k[1] == "AAA"]
    assert len(completed_aaa) >= 2, sorted(limited)


def test_every_close_is_counted_once_in_daily_pnl(hammered: dict[str, Any]) -> None:
    store: Store = hammered["store"]
    reported = {c["id"]: c for w in hammered["workers"] for c in w["closes"]}
    for day in hammered["days"]:
        closed = store.closed_today(day)
        state = store.daily_state(day)
        if not closed:
            assert state is None or state.trades_count == 0
            continue
        assert state is not None
        assert state.trades_count == len(closed)
        assert math.isclose(state.realized_pnl, sum(c.pnl for c in closed), abs_tol=1e-6)
        for row in closed:
            assert math.isclose(row.pnl, reported[row.id]["pnl"], abs_tol=1e-9)
    db_ids = {row.id for day in hammered["days"] for row in store.closed_today(day)}
    assert db_ids == set(reported)


def test_no_database_is_locked_error_reached_a_caller(hammered: dict[str, Any]) -> None:
    everyone = [*hammered["workers"], hammered["reader"]]

    assert sum(r["busy_errors"] for r in everyone) == 0
