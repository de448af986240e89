"""Ctrl+C / SIGTERM to the supervisor in the middle of a trading day, with the real children.

The day starts at 11:00 ET (100x); once the simulator, exit manager and day trader are
RUNNING and the market is open, the supervisor gets SIGTERM. It must stop the day trader
first, then the exit manager, then the simulator, each by its own clean exit within its
deadline, exit 0, and leave no process behind.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from system_harness import CHILDREN, SystemDay

from shared_state import ProcessState


@pytest.fixture
def day(tmp_path: Path) -> Iterator[SystemDay]:
    run = SystemDay(tmp_path, speed="100")
    try:
        yield run
    finally:
        run.cleanup()


def _stops(day: SystemDay) -> list[tuple[str, str]]:
    """Return the (process, state) of every STOPPING/STOPPED transition, in order."""
    return [
        (e.process, e.detail["to"])
        for e in day.store.events(kind="process_state", limit=10_000)
        if e.detail["to"] in ("STOPPING", "STOPPED") and e.process in CHILDREN
    ]


def test_sigterm_stops_day_trader_then_exit_manager_then_simulator_and_exits_0(
    day: SystemDay,
) -> None:
    day.start("--start-at", "11:00", "--warm-up", "2")
    day.wait_for(lambda: all(day.running_pid(n) for n in CHILDREN), 90, "all children RUNNING")
    pids = {name: day.running_pid(name) for name in CHILDREN}
    day.watch()

    day.proc.send_signal(signal.SIGTERM)

    assert day.wait_exit(90) == 0, day.tail()
    assert _stops(day) == [
        ("day_trader", "STOPPING"), ("day_trader", "STOPPED"),
        ("exit_manager", "STOPPING"), ("exit_manager", "STOPPED"),
        ("simulator", "STOPPING"), ("simulator", "STOPPED"),
    ]  # fmt: skip
    for name in CHILDREN:
        row = day.row(name)
        assert row.state is ProcessState.STOPPED and row.last_error is None, row
        assert row.pid == pids[name] and row.restarts == 0, row
    assert day.row("supervisor").state is ProcessState.STOPPED
    out = day.output()
    assert "Stopping (SIGTERM received)" in out and "did not stop within its deadline" not in out
    logs = (day.tmp / "logs" / f"exit_manager-{day.day}.console.log").read_text()
    assert "stop requested: SIGTERM" in logs  # the exit manager stopped itself, cleanly
    assert day.alive() == []
