"""Helpers for the adapter tests: a real simulator subprocess, adapters, polling with deadlines.

A plain module, not ``conftest``: test modules import it (``tests/broker/conftest.py``
belongs to the simulator's tests). The fixtures are named ``adapter_sim`` (one simulator
per test module) and ``private_sim`` (one per test) so they never shadow that
conftest's ``sim``. The simulator runs as ``python -m broker.simulator`` on loopback with
its account database in a temporary folder; ``SimProcess.restart`` stops it and starts
it again on the *same* ports with the same database (the account survives), which is
what a reconnecting adapter needs. Every process started here is stopped by its fixture.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.guards import Role
from broker.simulator.control import SimControl
from market.clock import VirtualClock

ROOT = Path(__file__).resolve().parents[2]

#: A Wednesday, mid-morning: regular hours for the next several real minutes at speed 1.
SIM_START = "2025-11-26T10:00:00-05:00"

LIBRARIES = ("ib_async", "ib_insync")

_client_ids = itertools.count(100)


def next_client_id() -> int:
    """Return a client id no other test in this process uses."""
    return next(_client_ids)


@dataclass
class SimProcess:
    """One running simulator subprocess."""

    db: Path
    log_path: Path
    start: str = SIM_START
    speed: float = 1.0
    quote_interval: float = 0.1
    port: int = 0
    control_port: int = 0
    proc: subprocess.Popen[str] | None = None
    control: SimControl = field(init=False)

    def launch(self, extra: tuple[str, ...] = ()) -> None:
        """Start the process; return once both listeners are bound."""
        args = [
            sys.executable, "-m", "broker.simulator",
            "--port", str(self.port), "--control-port", str(self.control_port),
            "--start", self.start, "--speed", str(self.speed), "--db", str(self.db),
            "--quote-interval", str(self.quote_interval), *extra,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "TRADING_CLOCK"}
        with self.log_path.open("a") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        self.port = _read_port(self.proc, "listening on")
        self.control_port = _read_port(self.proc, "control on")
        self.control = SimControl(self.control_port)

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc is None:
            return
        self.control.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def restart(self, extra: tuple[str, ...] = ()) -> None:
        """Stop and start again on the same ports with the same account database."""
        self.stop()
        self.launch(extra)

    def now(self) -> datetime:
        """Return the simulator clock's current instant."""
        return datetime.fromisoformat(self.control.status()["now"])

    def clock(self) -> VirtualClock:
        """Return a virtual clock that agrees with the simulator's (to loopback latency)."""
        return VirtualClock(start=self.now(), speed=self.speed, anchor=time.time())


def _read_port(proc: subprocess.Popen[str], prefix: str, timeout: float = 30.0) -> int:
    """Return the port of the simulator's ``prefix ... :PORT`` line, waiting at most ``timeout``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline and proc.poll() is None:
            if selector.select(timeout=0.2):
                line = proc.stdout.readline()
                if line.startswith(prefix):
                    return int(line.rsplit(":", 1)[1])
                break
    proc.kill()
    proc.wait()
    raise RuntimeError(f"simulator did not print {prefix!r} within {timeout} s")


def start_sim(tmp: Path, name: str = "sim", speed: float = 1.0) -> SimProcess:
    """Start a simulator with a fresh account database under ``tmp``."""
    sim = SimProcess(db=tmp / f"{name}.db", log_path=tmp / f"{name}.log", speed=speed)
    sim.launch()
    return sim


@pytest.fixture(scope="module")
def adapter_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    """A simulator shared by the tests of one module (each test uses its own client ids)."""
    process = start_sim(tmp_path_factory.mktemp("sim"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def private_sim(tmp_path: Path) -> Iterator[SimProcess]:
    """A simulator for one test (for restarts and faults that would disturb others)."""
    process = start_sim(tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def fast_sim(tmp_path: Path) -> Iterator[SimProcess]:
    """A simulator for one test whose clock runs 60 times real time (a bar a second)."""
    process = start_sim(tmp_path, speed=60.0)
    try:
        yield process
    finally:
        process.stop()


def adapter_config(sim: SimProcess, **overrides: Any) -> AdapterConfig:
    """Return a config for ``sim`` with test-friendly timeouts, limits and backoff."""
    values: dict[str, Any] = dict(
        port=sim.port,
        max_order_notional=2_000_000.0,
        price_collar_pct=5.0,
        connect_timeout_s=5.0,
        request_timeout_s=10.0,
        ack_timeout_s=2.0,
        backoff_base_s=0.1,
        backoff_cap_s=1.0,
        backoff_jitter=0.2,
        client_id_in_use_delay_s=0.3,
    )
    values.update(overrides)
    return AdapterConfig(**values)


def make_adapter(
    sim: SimProcess,
    library: str,
    *,
    client_id: int | None = None,
    role: Role = Role.TOOL,
    **overrides: Any,
) -> BrokerAdapter:
    """Return an adapter (not started) for ``sim`` using client library ``library``."""
    return BrokerAdapter(
        adapter_config(sim, **overrides),
        sim.clock(),
        client_id if client_id is not None else next_client_id(),
        role=role,
        library=library,
    )


def run(scenario: Callable[[], Awaitable[Any]], timeout: float = 60.0) -> Any:
    """Run one async scenario on a fresh event loop, failing after ``timeout`` seconds."""

    async def bounded() -> Any:
        return await asyncio.wait_for(scenario(), timeout)

    return asyncio.run(bounded())


async def until(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` every 20 ms until it is truthy; return it or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking control call without blocking the adapter's event loop."""
    return await asyncio.to_thread(fn, *args)
