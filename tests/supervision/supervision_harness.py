"""Run ``supervisor.py`` over the stand-in children in a temporary folder, and look at it.

Everything is real: OS processes, the SQLite file, signals. Waits poll with deadlines;
``cleanup`` kills whatever a test left (the supervisor and every descendant).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from standin_journal import read  # noqa: E402

from shared_state import ProcessInfo, ProcessState, Store  # noqa: E402

SIM_DATE = "2025-11-26"  # a Wednesday with a regular session
TABLE = str(HERE / "standin_table.py")


def free_port() -> int:
    """Return a loopback port free right now (each harness its own: tests run in parallel)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Harness:
    """One temporary installation: DB, logs, stand-in folder, and supervisors."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = tmp / "data" / "trading_state.db"
        self.logs = tmp / "logs"
        self.dir = tmp / "standin"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[subprocess.Popen[str]] = []
        self.known: set[int] = set()
        self._store: Store | None = None
        self.sim_port = free_port()

    # ------------------------------------------------------------------ set-up

    def behave(self, name: str, **plan: Any) -> None:
        """Configure a stand-in (see standin_child.py)."""
        (self.dir / f"{name}.json").write_text(json.dumps(plan))

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "SYSTEMROOT": os.environ.get("SYSTEMROOT", ""),
            "BROKER": "sim",
            "SIM_DATE": SIM_DATE,
            "SIM_SPEED": "1",
            "DB_PATH": str(self.db),
            "LOG_DIR": str(self.logs),
            "REPORTS_DIR": str(self.tmp / "reports"),
            "HEARTBEAT_INTERVAL_S": "0.2",
            "HEARTBEAT_TIMEOUT_S": "1.0",
            "STATUS_INTERVAL_MIN": "60",
            "SIM_PORT": str(self.sim_port),
            "SPANS_DB_PATH": str(self.tmp / "data" / "spans.db"),
            "STANDIN_DIR": str(self.dir),
            "PYTHONUNBUFFERED": "1",
        }
        env.update(extra)
        return env

    def start(self, *args: str, table: str | None = TABLE, **env: str) -> subprocess.Popen[str]:
        """Start ``supervisor.py`` with the stand-in table; output to a file."""
        argv = [sys.executable, str(ROOT / "supervisor.py"), "--env-file", str(self.tmp / "none")]
        if table:
            argv += ["--children-table", table]
        out = (self.tmp / f"supervisor-{len(self.procs)}.out").open("w")
        proc = subprocess.Popen(
            [*argv, *args],
            cwd=self.tmp,
            env=self.env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def output(self, index: int = -1) -> str:
        path = self.tmp / f"supervisor-{index % len(self.procs)}.out"
        return path.read_text(errors="replace") if path.exists() else ""

    # ------------------------------------------------------------------ looking

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db, process="test")
        return self._store

    def row(self, name: str) -> ProcessInfo | None:
        if not self.db.exists():
            return None
        return self.store.process(name)

    def state(self, name: str) -> ProcessState | None:
        row = self.row(name)
        return None if row is None else row.state

    def journal(self) -> list[tuple[str, str, int, float, str]]:
        rows = read(self.dir)
        self.known.update(pid for _, _, pid, _, _ in rows)
        return rows

    def events(self, kind: str) -> list[Any]:
        return self.store.events(kind=kind, limit=10_000)

    def transitions(self, name: str) -> list[str]:
        """Return the states ``name`` went through, in order, from the events."""
        return [e.detail["to"] for e in self.events("process_state") if e.process == name]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
    ) -> Any:
        """Poll ``predicate`` until truthy; fail with the supervisor's output on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if value := predicate():
                    return value
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.output()}")

    def wait_running(self, *names: str, timeout: float = 20.0) -> None:
        for name in names:
            self.wait_for(
                lambda n=name: self.state(n) is ProcessState.RUNNING, timeout, f"{name} RUNNING"
            )

    def wait_exit(self, proc: subprocess.Popen[str], timeout: float) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            message = f"supervisor still running after {timeout} s\n{self.output()}"
            raise AssertionError(message) from None

    def alive_pids(self) -> list[int]:
        """Return the stand-in / supervisor pids seen so far that still run."""
        self.journal()
        pids = self.known | {p.pid for p in self.procs}
        alive = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
        return alive

    # ------------------------------------------------------------------ teardown

    def cleanup(self) -> None:
        """Kill every supervisor started here and everything they started."""
        self.journal()
        for proc in self.procs:
            with contextlib.suppress(psutil.Error):
                family = psutil.Process(proc.pid).children(recursive=True)
                for child in family:
                    self.known.add(child.pid)
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for pid in self.known:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                # Only ours: a pid from the journal may have been reused meanwhile.
                if any("standin_" in part or "supervisor.py" in part for part in proc.cmdline()):
                    proc.kill()
        if self._store is not None:
            self._store.close()
