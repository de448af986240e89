"""Stopping: reverse start order, each within its deadline, nothing left running."""

from __future__ import annotations

import signal
import time

from standin_table import STOP_DEADLINE_S
from supervision_harness import Harness

from shared_state import ProcessState


def _stop_times(h: Harness) -> dict[str, float]:
    return {name: at for name, event, _pid, at, _ in h.journal() if event == "stop"}


def test_ctrl_c_stops_day_trader_then_exit_manager_then_simulator_and_exits_0(
    harness: Harness,
) -> None:
    proc = harness.start()
    harness.wait_running("simulator", "exit_manager", "day_trader")

    proc.send_signal(signal.SIGINT)  # what Ctrl+C delivers
    assert harness.wait_exit(proc, 20) == 0

    stops = _stop_times(harness)
    assert stops["day_trader"] < stops["exit_manager"] < stops["simulator"]
    for name in ("simulator", "exit_manager", "day_trader", "supervisor"):
        assert harness.state(name) is ProcessState.STOPPED, name
    assert harness.alive_pids() == []
    assert "Stopping (SIGINT received)" in harness.output()


def test_child_ignoring_sigterm_is_killed_at_its_deadline_before_exit_manager_stops(
    harness: Harness,
) -> None:
    harness.behave("day_trader", ignore_sigterm=True)
    proc = harness.start()
    harness.wait_running("simulator", "exit_manager", "day_trader")
    trader_pid = harness.row("day_trader").pid

    asked = time.time()
    proc.send_signal(signal.SIGTERM)
    assert harness.wait_exit(proc, 20) == 0

    stops = _stop_times(harness)
    assert "day_trader" not in stops  # it never stopped by itself: it was killed
    # The exit manager kept protecting positions until the day trader was gone.
    assert stops["exit_manager"] - asked >= STOP_DEADLINE_S - 0.1
    assert stops["exit_manager"] < stops["simulator"]
    assert "did not stop within its deadline" in harness.output()
    assert harness.state("day_trader") is ProcessState.STOPPED
    assert trader_pid not in harness.alive_pids()
    assert harness.alive_pids() == []
