"""A writer SIGKILLed inside its write transactions, again and again, loses nothing.

Each kill lands at a random moment of a writer that does nothing but write transactions
(claim, fill, begin-exit, close, events, commands), then a new writer process takes over
the same file. Afterwards the file passes ``PRAGMA integrity_check`` and everything a
writer reported committed (it reports only after the commit returned) is in it.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import time
from datetime import date
from pathlib import Path

from state_fixtures import worker_command, worker_env

from shared_state import Store

INSIDE_KILLS = 50  # kills that must land inside a write transaction
MAX_KILLS = 200
CRASH_DAY = date(2025, 9, 2)


def _wait_for_first_report(log: Path, deadline_s: float = 20.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if log.exists() and log.stat().st_size > 0:
            return
        time.sleep(0.002)
    raise AssertionError(f"writer never reported a commit in {log}")


def _kill_writers(db_path: Path, report_dir: Path) -> tuple[list[int], int]:
    """SIGKILL writers until ``INSIDE_KILLS`` died inside a write transaction.

    Return every writer's end code and how many kills landed inside a transaction.
    """
    rng = random.Random(20250902)
    launcher = subprocess.Popen(
        worker_command("worker_crash.py", str(db_path), str(report_dir)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    assert launcher.stdin is not None and launcher.stdout is not None
    codes: list[int] = []
    inside = 0
    try:
        while inside < INSIDE_KILLS and len(codes) < MAX_KILLS:
            incarnation = len(codes)
            launcher.stdin.write(f"spawn {incarnation}\n")
            launcher.stdin.flush()
            pid = int(launcher.stdout.readline().split()[1])
            _wait_for_first_report(report_dir / f"{incarnation}.log")
            time.sleep(rng.uniform(0.0, 0.03))
            os.kill(pid, signal.SIGKILL)
            codes.append(int(launcher.stdout.readline().split()[2]))
            inside += (report_dir / f"{incarnation}.state").read_bytes() == b"W"
    finally:
        launcher.stdin.close()
        launcher.wait(timeout=30)
    return codes, inside


def _reported(report_dir: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for log in report_dir.glob("*.log"):
        for line in log.read_text().splitlines(keepends=True):
            if line.endswith("\n"):  # a line cut by the kill was never fully reported
                kind, value = line.split()
                found.setdefault(kind, []).append(value)
    return found


def test_sigkilled_writers_leave_a_sound_file_with_every_reported_commit(tmp_path: Path) -> None:
    db_path = tmp_path / "trading_state.db"
    report_dir = tmp_path / "reports"
    report_dir.mkdir()
    Store(db_path).close()

    codes, inside = _kill_writers(db_path, report_dir)

    assert inside >= INSIDE_KILLS, f"only {inside} of {len(codes)} kills hit a transaction"
    assert codes == [-signal.SIGKILL] * len(codes)  # every writer died by the kill, not a bug
    store = Store(db_path)
    assert store.integrity_check() == ["ok"]
    reported = _reported(report_dir)
    # The writers got real work done (not only killed during start-up).
    assert len(reported.get("claim", [])) >= 10 and len(reported.get("close", [])) >= 10
    for ref in reported["claim"] + reported.get("exit", []):
        assert store.order(ref) is not None, ref
    closed = store.closed_today(CRASH_DAY)
    assert {str(row.id) for row in closed} >= set(reported["close"])
    events = {event.id for event in store.events(limit=1_000_000)}
    assert {int(i) for i in reported["event"]} <= events
    for command_id in reported.get("command", []):
        assert store.command(int(command_id)) is not None
    daily = store.daily_state(CRASH_DAY)
    assert daily is not None and daily.trades_count == len(closed)
    assert math.isclose(daily.realized_pnl, sum(row.pnl for row in closed), abs_tol=1e-6)
    positions = {row.symbol for row in store.active_positions()}
    assert len(positions) == len(store.active_positions())
