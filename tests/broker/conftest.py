"""Fixtures for the simulator tests: a real simulator subprocess, client libraries, a raw client.

- ``sim``: one simulator for the test session (free ports, its own tmp database, a
  virtual clock started inside a regular session: 2025-11-26 10:00 ET, speed 5). Tests
  that share it use their own clientIds and symbols, do not depend on each other's
  orders, and undo the faults they inject.
- ``start_sim``: a factory for tests that need their own simulator (restart, faults).
- ``client_lib``: parametrized over ("ib_async", "ib_insync"): the library module, with
  an event loop set in the thread (ib_insync needs one under Python 3.12).
- ``connect``: open ``IB`` connections of a library that are closed after the test.
- ``raw_client``: a minimal TWS API client built on ``codec``, for exact wire checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from broker.simulator import codec
from broker.simulator.control import SimControl

REPO = Path(__file__).resolve().parents[2]
SESSION_START = "2025-11-26T10:00:00-05:00"
STARTUP_TIMEOUT = 30.0
LIBRARIES = ("ib_async", "ib_insync")


@dataclass
class Simulator:
    """A running ``python -m broker.simulator`` subprocess."""

    proc: subprocess.Popen[str]
    port: int
    control_port: int
    control: SimControl
    db: Path
    log: Path

    def __iter__(self) -> Iterator[Any]:
        """Unpack as ``port, control, proc``."""
        return iter((self.port, self.control, self.proc))

    def stop(self) -> int:
        """Terminate the process (SIGTERM) and return its exit code."""
        self.control.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        """Return the end of the simulator's stderr log."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if sel.select(timeout=0.2):
                line = proc.stdout.readline()
                if line:
                    return line.strip()
            if proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {proc.returncode} before it was ready")
    raise TimeoutError("simulator did not print its ready lines in time")


def launch_simulator(
    tmp: Path,
    db: Path | None = None,
    start: str = SESSION_START,
    speed: float = 1.0,
    extra: tuple[str, ...] = (),
) -> Simulator:
    """Start the simulator on free ports and wait for its ``listening``/``control`` lines."""
    tmp.mkdir(parents=True, exist_ok=True)
    db = db or tmp / "simulator.db"
    log = tmp / f"simulator-{time.monotonic_ns()}.log"
    cmd = [
        sys.executable, "-m", "broker.simulator", "--port", "0", "--control-port", "0",
        "--start", start, "--speed", str(speed), "--db", str(db), "--quote-interval", "0.1",
        *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "TRADING_CLOCK"}
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        listening = _read_line(proc, deadline)
        control = _read_line(proc, deadline)
    except Exception:
        proc.kill()
        proc.wait()
        raise
    assert listening.startswith("listening on 127.0.0.1:"), listening
    assert control.startswith("control on 127.0.0.1:"), control
    port = int(listening.rsplit(":", 1)[1])
    control_port = int(control.rsplit(":", 1)[1])
    return Simulator(proc, port, control_port, SimControl(control_port), db, log)


@pytest.fixture(scope="session")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator for every test that asks for it (startup costs seconds on 2 cores)."""
    simulator = launch_simulator(tmp_path_factory.mktemp("sim"), speed=5.0)
    yield simulator
    assert simulator.stop() == 0, simulator.log_tail()  # SIGTERM is a clean exit
    problems = [
        line
        for line in simulator.log.read_text(errors="replace").splitlines()
        if " ERROR " in line or "Traceback" in line
    ]
    assert not problems, "\n".join(problems[:20])


@pytest.fixture
def start_sim(tmp_path: Path) -> Iterator[Callable[..., Simulator]]:
    """Return a factory of simulators that are all stopped after the test."""
    started: list[Simulator] = []

    def factory(**kwargs: Any) -> Simulator:
        simulator = launch_simulator(tmp_path, **kwargs)
        started.append(simulator)
        return simulator

    yield factory
    for simulator in started:
        simulator.stop()


# --------------------------------------------------------------------------- client libraries


@pytest.fixture(params=LIBRARIES)
def client_lib(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """Yield ``ib_async`` or ``ib_insync`` with a fresh event loop set for this thread."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield importlib.import_module(request.param)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
def ib_lib() -> Iterator[ModuleType]:
    """Yield ``ib_async`` with a fresh event loop (for tests where one library is enough)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield importlib.import_module("ib_async")
    finally:
        asyncio.set_event_loop(None)
        loop.close()


@pytest.fixture
def connect() -> Iterator[Callable[..., Any]]:
    """Return ``connect(lib, port, client_id, **kw)`` -> connected IB; all closed at teardown."""
    opened: list[Any] = []

    def _connect(lib: ModuleType, port: int, client_id: int, **kwargs: Any) -> Any:
        ib = lib.IB()
        opened.append(ib)
        kwargs.setdefault("timeout", 10)
        ib.connect("127.0.0.1", port, clientId=client_id, **kwargs)
        return ib

    yield _connect
    for ib in opened:
        with contextlib.suppress(Exception):
            ib.disconnect()


def _wait_until(
    ib: Any, predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Let ``ib`` process messages until ``predicate()`` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        ib.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """Return ``wait_until(ib, predicate, timeout, what)``: poll while ``ib`` runs its loop."""
    return _wait_until


# --------------------------------------------------------------------------- raw client


@dataclass
class RawClient:
    """A bare TWS API client: handshake, startApi, send requests, collect messages."""

    sock: socket.socket
    server_version: int = 0
    messages: list[list[str]] = field(default_factory=list)
    closed: bool = False
    _buffer: codec.FrameBuffer = field(default_factory=codec.FrameBuffer)

    @classmethod
    def open(cls, port: int, client_id: int | None = None, timeout: float = 10.0) -> RawClient:
        """Connect, handshake, and (if ``client_id`` is given) send startApi."""
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        client = cls(sock)
        sock.sendall(codec.API_GREETING + codec.frame(b"v157..176"))
        reply = client.wait_for(lambda m: len(m) == 2, timeout)
        client.server_version = int(reply[0])
        client.messages.remove(reply)
        if client_id is not None:
            client.send([71, 2, client_id, ""])
        return client

    def send(self, fields: list[object]) -> None:
        """Send one request."""
        self.sock.sendall(codec.encode_message(fields))

    def _pump(self, timeout: float) -> None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self._buffer.feed(data)
        self.messages.extend(self._buffer.messages())

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float = 10.0) -> list[str]:
        """Return the first received message matching ``predicate`` (waiting for it)."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if predicate(message):
                    return message
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                raise AssertionError(f"no matching message; got {self.messages[-10:]}")
            self._pump(min(remaining, 0.2))

    def wait_closed(self, timeout: float = 10.0) -> bool:
        """Return True once the server closed the socket (within ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self._pump(0.2)
        return self.closed

    def collect(self, seconds: float) -> list[list[str]]:
        """Read for ``seconds`` and return everything received so far."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self.closed:
            self._pump(min(0.2, max(deadline - time.monotonic(), 0.01)))
        return self.messages

    def errors(self, code: int) -> list[list[str]]:
        """Return the received error messages (4) with ``code``."""
        return [m for m in self.messages if m[0] == "4" and m[3] == str(code)]

    def wait_error(self, code: int, timeout: float = 10.0) -> list[str]:
        """Return the first error message with ``code`` (waiting for it)."""
        return self.wait_for(lambda m: m[0] == "4" and len(m) > 3 and m[3] == str(code), timeout)

    def close(self) -> None:
        """Close the socket."""
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def raw_client() -> Iterator[Callable[..., RawClient]]:
    """Return ``raw_client(port, client_id)``; every socket is closed after the test."""
    opened: list[RawClient] = []

    def _open(port: int, client_id: int | None = None) -> RawClient:
        client = RawClient.open(port, client_id)
        opened.append(client)
        return client

    yield _open
    for client in opened:
        client.close()
