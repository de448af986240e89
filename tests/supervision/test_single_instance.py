"""One supervisor per database: a second start is refused, a stale lock is taken over."""

from __future__ import annotations

import os
import signal
import socket

from supervision_harness import Harness

from shared_state import ProcessState


def test_second_start_is_refused_with_a_message_naming_the_running_pid(harness: Harness) -> None:
    first = harness.start()
    harness.wait_running("exit_manager")

    second = harness.start()
    assert harness.wait_exit(second, 20) == 4
    message = harness.output(1)
    assert "already running" in message and f"pid {first.pid}" in message
    assert "Traceback" not in message
    assert first.poll() is None and harness.state("exit_manager") is ProcessState.RUNNING

    first.send_signal(signal.SIGTERM)
    assert harness.wait_exit(first, 20) == 0


def test_lock_left_by_a_killed_supervisor_is_taken_over_and_its_orphans_cleaned(
    harness: Harness,
) -> None:
    first = harness.start()
    harness.wait_running("simulator", "exit_manager", "day_trader")
    sim_pid = harness.row("simulator").pid
    trader_pid = harness.row("day_trader").pid

    os.kill(first.pid, signal.SIGKILL)  # a crash: no clean-up at all
    first.wait(timeout=10)
    # Children on the child runtime notice their supervisor is gone and stop.
    harness.wait_for(
        lambda: trader_pid not in harness.alive_pids(), 10, "the orphaned day trader to stop"
    )
    assert sim_pid in harness.alive_pids()  # the simulator stand-in does not watch

    old_pids = {name: harness.row(name).pid for name in ("simulator", "exit_manager", "day_trader")}
    second = harness.start()
    for name, old in old_pids.items():
        harness.wait_for(
            lambda n=name, o=old: (
                harness.state(n) is ProcessState.RUNNING and harness.row(n).pid != o
            ),
            25,
            f"{name} RUNNING under the second supervisor",
        )
    out = harness.output(1)
    assert f"Took over a stale lock left by pid {first.pid}" in out
    assert sim_pid not in harness.alive_pids()  # the orphan was killed, a new one runs

    second.send_signal(signal.SIGTERM)
    assert harness.wait_exit(second, 20) == 0
    assert harness.alive_pids() == []


def test_simulator_port_held_by_another_program_is_refused_before_anything_starts(
    harness: Harness,
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = harness.start(SIM_PORT=str(port))
        assert harness.wait_exit(proc, 20) == 2
    out = harness.output()
    assert f"SIM_PORT {port} is already in use" in out and "Traceback" not in out
    assert harness.journal() == []  # no child was started
