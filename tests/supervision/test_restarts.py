"""Restart policy against real stand-in processes and a real Store (design 5)."""

from __future__ import annotations

import signal
from datetime import UTC, date, datetime

import psutil
from standin_table import STARTSECS
from supervision_harness import SIM_DATE, Harness

from shared_state import ProcessState
from shared_state.spans import SpanStore


def _time_of(h: Harness, name: str, state: str) -> datetime:
    return next(
        e.time for e in h.events("process_state") if e.process == name and e.detail["to"] == state
    )


def test_child_is_running_only_after_ready_and_startsecs(harness: Harness) -> None:
    harness.behave("exit_manager", ready_after_s=1.0)
    proc = harness.start()
    harness.wait_running("exit_manager")

    ready = next(e.time for e in harness.events("ready") if e.process == "exit_manager")
    starting = _time_of(harness, "exit_manager", "STARTING")
    running = _time_of(harness, "exit_manager", "RUNNING")
    # Speed 1: clock seconds are real seconds.
    assert (running - ready).total_seconds() >= STARTSECS - 0.02
    assert (running - starting).total_seconds() >= 1.0 + STARTSECS
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 15) == 0


def test_crash_before_startsecs_backs_off_with_growing_delays_then_runs(harness: Harness) -> None:
    harness.behave("day_trader", crash_first=2)
    proc = harness.start()
    harness.wait_running("exit_manager", "day_trader", timeout=25)

    assert harness.transitions("day_trader") == [
        "STARTING", "BACKOFF", "STARTING", "BACKOFF", "STARTING", "RUNNING",
    ]  # fmt: skip
    exits = [e.detail for e in harness.events("child_exit") if e.detail["process"] == "day_trader"]
    assert [x["delay_s"] for x in exits] == [0.2, 0.4]
    assert [x["verdict"] for x in exits] == ["restart", "restart"]
    # The waits really happened: BACKOFF -> next STARTING took at least the delay.
    states = [e for e in harness.events("process_state") if e.process == "day_trader"]
    gaps = [
        (b.time - a.time).total_seconds()
        for a, b in zip(states, states[1:], strict=False)
        if a.detail["to"] == "BACKOFF"
    ]
    assert gaps[0] >= 0.2 - 0.02 and gaps[1] >= 0.4 - 0.02
    assert harness.row("day_trader").restarts == 2
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 15) == 0

    # The supervisor's spans (flushed at its exit): each start, and each crash's verdict.
    spans = SpanStore(harness.tmp / "data" / "spans.db")
    try:
        who = {"process": "day_trader"}
        starts = spans.find("child.start", attributes=who, process="supervisor")
        crashes = spans.find("child.exit", attributes=who, process="supervisor")
    finally:
        spans.close()
    assert [s.attributes["restart"] for s in reversed(starts)] == [False, True, True]
    assert all(s.attributes["pid"] > 0 for s in starts)
    assert [(c.attributes["verdict"], c.attributes["delay_s"]) for c in reversed(crashes)] == [
        ("restart", 0.2),
        ("restart", 0.4),
    ]


def test_day_trader_crash_loop_goes_fatal_with_alert_and_exit_manager_untouched(
    harness: Harness,
) -> None:
    harness.behave("day_trader", always_crash=True)
    proc = harness.start()
    harness.wait_running("exit_manager")
    manager_pid = harness.row("exit_manager").pid
    harness.wait_for(
        lambda: harness.state("day_trader") is ProcessState.FATAL, 20, "day_trader FATAL"
    )

    alerts = [e.detail for e in harness.events("alert")]
    assert any(a["process"] == "day_trader" and "FATAL" in a["message"] for a in alerts)
    assert "crash loop" in (harness.row("day_trader").last_error or "")
    manager = harness.row("exit_manager")
    assert (manager.state, manager.pid, manager.restarts) == (ProcessState.RUNNING, manager_pid, 0)
    assert sum(1 for r in harness.journal() if r[:2] == ("exit_manager", "start")) == 1
    assert psutil.pid_exists(manager_pid)
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 15) == 0
    assert harness.state("day_trader") is ProcessState.FATAL  # stays visible after the stop


def _claim(harness: Harness) -> None:
    result = harness.store.claim_for_entry(
        "ACME",
        date.fromisoformat(SIM_DATE),
        now=datetime(2025, 11, 26, 15, 0, tzinfo=UTC),
        order_ref="buy-ACME-1",
        quantity=10,
        limit_price=10.0,
        max_recovery_entries=1,
        max_trades_per_day=20,
        max_positions=8,
        owner="day_trader",
    )
    assert result.ok


def test_exit_manager_is_restarted_for_as_long_as_a_position_exists(harness: Harness) -> None:
    _claim(harness)
    harness.behave("exit_manager", always_crash=True)
    proc = harness.start()

    def starts() -> int:
        return sum(1 for r in harness.journal() if r[0] == "exit_manager" and r[1] == "start")

    # Its flapping threshold is 4 crashes; with a position a 5th start follows the 4th.
    harness.wait_for(lambda: starts() >= 5, 30, "5 starts of the exit manager")
    assert harness.state("exit_manager") is not ProcessState.FATAL
    alerts = [e.detail["message"] for e in harness.events("alert")]
    assert any("positions are open" in m for m in alerts)
    delays = [
        e.detail["delay_s"]
        for e in harness.events("child_exit")
        if e.detail["process"] == "exit_manager"
    ]
    assert delays[:4] == [0.2, 0.4, 0.8, 0.8]  # geometric, capped at 0.8
    assert not any(r[0] == "day_trader" for r in harness.journal())  # no buyer without seller

    # The position goes away: the next crash in the loop is FATAL.
    harness.store.cancel_entry(
        "ACME", "buy-ACME-1", now=datetime(2025, 11, 26, 15, 1, tzinfo=UTC), reason="test"
    )
    harness.wait_for(
        lambda: harness.state("exit_manager") is ProcessState.FATAL, 20, "exit_manager FATAL"
    )
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 15) == 0


def test_running_child_with_a_stale_heartbeat_is_killed_and_restarted(harness: Harness) -> None:
    proc = harness.start()
    harness.wait_running("exit_manager", "day_trader")
    old_pid = harness.row("exit_manager").pid
    (harness.dir / "exit_manager.hang").touch()

    harness.wait_for(
        lambda: (
            harness.state("exit_manager") is ProcessState.RUNNING
            and harness.row("exit_manager").pid != old_pid
        ),
        20,
        "exit_manager RUNNING again with a new pid",
    )
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
    hung = [
        e.detail
        for e in harness.events("process_state")
        if e.process == "exit_manager" and e.detail["to"] == "STOPPING"
    ]
    assert hung and "no heartbeat" in hung[0]["error"]
    assert harness.transitions("exit_manager")[-4:] == ["STOPPING", "EXITED", "STARTING", "RUNNING"]
    assert harness.row("day_trader").restarts == 0
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 15) == 0
