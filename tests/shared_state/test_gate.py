"""The writers' gate: one holder at a time, bounded waits, released by a killed holder."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from state_fixtures import worker_env

from shared_state.gate import WriteGate

HOLD = """
import sys, time
from pathlib import Path
from shared_state.gate import WriteGate
gate = WriteGate(Path(sys.argv[1]), timeout_s=5.0)
assert gate.acquire()
print("holding", flush=True)
time.sleep(60)
"""


def test_a_second_writer_waits_for_the_gate_then_gets_it(tmp_path: Path) -> None:
    first = WriteGate(tmp_path / "x.db", timeout_s=1.0)
    second = WriteGate(tmp_path / "x.db", timeout_s=0.05)

    assert first.acquire() is True
    started = time.monotonic()
    assert second.acquire() is False  # gave up after its timeout: SQLite's lock decides
    assert time.monotonic() - started >= 0.05
    first.release()
    assert second.acquire() is True
    second.release()


def test_a_killed_holder_releases_the_gate(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / "x.db")],
        stdout=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        waiting = WriteGate(tmp_path / "x.db", timeout_s=0.05)
        assert waiting.acquire() is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        patient = WriteGate(tmp_path / "x.db", timeout_s=5.0)
        started = time.monotonic()
        assert patient.acquire() is True
        assert time.monotonic() - started < 1.0
        patient.release()
    finally:
        if holder.poll() is None:
            holder.kill()


def test_a_disabled_gate_never_holds_anything(tmp_path: Path) -> None:
    gate = WriteGate(tmp_path / "x.db", timeout_s=1.0, enabled=False)

    assert gate.acquire() is False
    assert not (tmp_path / "x.db-gate").exists()
