"""Run the whole system (``supervisor.py`` with the real children) on a virtual day.

Everything is real and private to the test: the supervisor and its children as OS
processes, the simulator on free loopback ports, the SQLite files and logs in a
temporary folder, the settings in the environment (never a ``.env``). ``SystemDay``
remembers every process the run started (as ``psutil.Process``, so a reused pid is never
mistaken for one of them) and ``cleanup`` kills whatever is left, also after a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import psutil

from broker.simulator.account import AccountStore
from broker.simulator.control import SimControl
from broker.simulator.types import ExchangeConfig
from config.settings import SPECS
from market.clock import Clock, clock_from_spec
from shared_state import ProcessInfo, ProcessState, Store

ROOT = Path(__file__).resolve().parents[2]

#: A Wednesday with a regular session on which the seeded market trades (measured: seed
#: 7 at 1000x gives three round trips, stop and target exits).
DAY = "2025-11-26"
SEED = "7"
SPEED = "1000"
CHILDREN = ("simulator", "exit_manager", "day_trader")


def free_port_pair() -> int:
    """Return a port P such that P and P + 1 (the simulator's control port) are free."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


class SystemDay:
    """One supervisor run over a temporary installation."""

    def __init__(self, tmp: Path, *, speed: str = SPEED, **settings: str) -> None:
        self.tmp = tmp
        self.db = tmp / "data" / "trading_state.db"
        self.reports = tmp / "reports"
        self.port = free_port_pair()
        self.speed = float(speed)
        self.day = date.fromisoformat(settings.get("SIM_DATE", DAY))
        self.env = self._environment(speed, settings)
        self.proc: subprocess.Popen[str] | None = None
        self.family: dict[int, psutil.Process] = {}
        self._store: Store | None = None
        self._clock: Clock | None = None
        self.started_at = 0.0
        self.exit_code: int | None = None

    def _environment(self, speed: str, settings: dict[str, str]) -> dict[str, str]:
        names = {spec.env for spec in SPECS}
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in names and k != "TRADING_CLOCK" and not k.startswith("SUPERVISOR_")
        }
        env.update(
            BROKER="sim",
            SIM_DATE=DAY,
            SIM_SEED=SEED,
            SIM_SPEED=speed,
            SIM_PORT=str(self.port),
            DB_PATH=str(self.db),
            LOG_DIR=str(self.tmp / "logs"),
            REPORTS_DIR=str(self.reports),
            SPANS_DB_PATH=str(self.tmp / "data" / "spans.db"),
            STATUS_INTERVAL_MIN="60",
            PYTHONUNBUFFERED="1",
        )
        env.update(settings)
        return env

    # ------------------------------------------------------------------ running

    def start(self, *args: str) -> None:
        """Start ``supervisor.py`` (output to ``supervisor.out``)."""
        argv = [sys.executable, str(ROOT / "supervisor.py"), "--env-file", "/nonexistent/.env"]
        with (self.tmp / "supervisor.out").open("w") as out:
            self.proc = subprocess.Popen(
                [*argv, *args], cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                text=True, start_new_session=True,
            )  # fmt: skip
        self.started_at = time.monotonic()
        self.remember(self.proc.pid)

    def remember(self, pid: int | None) -> None:
        """Remember ``pid`` and its descendants as processes of this run."""
        if pid is None:
            return
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in (root, *root.children(recursive=True)):
                self.family.setdefault(proc.pid, proc)

    def watch(self) -> None:
        """Remember the supervisor's current descendants (call it while waiting)."""
        if self.proc is not None:
            self.remember(self.proc.pid)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float) -> int:
        """Wait for the supervisor's exit code, remembering its children meanwhile."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() >= deadline:
                raise AssertionError(f"supervisor still running after {timeout} s\n{self.tail()}")
            self.watch()
            time.sleep(0.1)
        return self.proc.returncode

    def wait_for[T](
        self, predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
    ) -> T:
        """Return ``predicate()``'s first truthy value; fail with the output on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.watch()
            with contextlib.suppress(Exception):
                if value := predicate():
                    return value
            if time.monotonic() >= deadline:
                message = f"timed out after {timeout} s waiting for {what}"
                raise AssertionError(f"{message}\n{self.tail()}")
            if not self.running():
                raise AssertionError(f"supervisor exited while waiting for {what}\n{self.tail()}")
            time.sleep(interval)

    def output(self) -> str:
        path = self.tmp / "supervisor.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    # ------------------------------------------------------------------ looking

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db, process="test")
        return self._store

    def row(self, name: str) -> ProcessInfo | None:
        return self.store.process(name) if self.db.exists() else None

    def running_pid(self, name: str) -> int | None:
        """Return the pid of ``name`` when its row says RUNNING, else None."""
        row = self.row(name)
        return row.pid if row is not None and row.state is ProcessState.RUNNING else None

    def clock(self) -> Clock:
        """Return the trading clock the running supervisor published (its virtual day)."""
        if self._clock is None:
            row = self.row("supervisor")
            assert row is not None and row.detail.get("clock"), "no supervisor row yet"
            self._clock = clock_from_spec(row.detail["clock"])
        return self._clock

    def control(self) -> SimControl:
        """Return a control connection to the running simulator."""
        return SimControl(self.port + 1)

    def sim_account(self) -> AccountStore:
        """Return the simulator's own account file (read it after the simulator stopped)."""
        return AccountStore(self.db.parent / "simulator.db", ExchangeConfig())

    def alive(self) -> list[psutil.Process]:
        """Return the remembered processes that still run (zombies count as gone)."""
        alive = []
        for proc in self.family.values():
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    alive.append(proc)
        return alive

    def sigkill(self, name: str) -> int:
        """SIGKILL the child ``name`` (its pid from its RUNNING row); return the pid."""
        pid = self.running_pid(name)
        assert pid is not None, f"{name} is not RUNNING"
        self.remember(pid)
        os.kill(pid, signal.SIGKILL)
        return pid

    # ------------------------------------------------------------------ teardown

    def cleanup(self) -> None:
        """Kill the supervisor and every process of this run that is still alive."""
        self.watch()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        for proc in self.alive():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        if self._store is not None:
            self._store.close()


def by_reason(rows: list[Any]) -> dict[str, int]:
    """Return how many closed rows have each exit reason."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.exit_reason.value] = counts.get(row.exit_reason.value, 0) + 1
    return counts
