"""The child runtime's contract, on a stand-in child run without a supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from standin_journal import read

from shared_state import Store
from supervision.identity import ProcessIdentity

HERE = Path(__file__).resolve().parent
CHILD = HERE / "standin_child.py"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "standin").mkdir()
    return {
        "PATH": os.environ.get("PATH", ""),
        "DB_PATH": str(tmp_path / "t.db"),
        "LOG_DIR": str(tmp_path / "logs"),
        "HEARTBEAT_INTERVAL_S": "0.1",
        "HEARTBEAT_TIMEOUT_S": "1",
        "STANDIN_DIR": str(tmp_path / "standin"),
        "SUPERVISOR_CHILD": "exit_manager",
    }


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _wait(predicate, timeout: float = 15.0):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_child_heartbeats_reports_ready_and_stops_cleanly_on_sigterm(
    env: dict[str, str], procs: list, tmp_path: Path
) -> None:
    proc = subprocess.Popen([sys.executable, str(CHILD)], env=env, cwd=tmp_path)
    procs.append(proc)
    store = Store(tmp_path / "t.db", process="test")
    try:
        row = _wait(lambda: (r := store.process("exit_manager")) is not None and r.ready and r)
        assert row.pid == proc.pid and row.detail == {"standin": True}
        first = row.last_heartbeat
        _wait(lambda: store.process("exit_manager").last_heartbeat != first, 5)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        store.close()
    stops = [r for r in read(tmp_path / "standin") if r[1] == "stop"]
    assert stops and stops[0][4] == "SIGTERM"


def test_child_stops_by_itself_when_its_supervisor_is_gone(
    env: dict[str, str], procs: list, tmp_path: Path
) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    procs.append(parent)
    identity = ProcessIdentity.of(parent.pid)
    assert identity is not None
    env["SUPERVISOR_PARENT"] = str(identity)
    child = subprocess.Popen([sys.executable, str(CHILD)], env=env, cwd=tmp_path)
    procs.append(child)
    _wait(lambda: any(r[1] == "ready" for r in read(tmp_path / "standin")))

    parent.kill()
    parent.wait(10)
    assert child.wait(10) == 0
    stops = [r for r in read(tmp_path / "standin") if r[1] == "stop"]
    assert stops and f"supervisor (pid {parent.pid}) is gone" in stops[0][4]
