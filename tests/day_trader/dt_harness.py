"""Helpers for the day trader's end-to-end tests: price paths, the simulator, the processes.

A plain module (not ``conftest``): test modules and the benchmark import it.

- ``PricePath`` / ``write_paths``: 1-min bar CSV files (``CsvMarket`` format) built to
  fire or to fail each entry condition. Bars are "body only" (high/low = max/min of
  open and close) because the simulator's keepUpToDate pushes build a forming bar's
  high/low from its open and last price; with body-only bars the streamed bars equal
  the file's, so the indicators the trader computes live are the ones a test expects.
- ``Simulator``: ``python -m broker.simulator`` with the shared clock from
  ``TRADING_CLOCK`` (no ``--start``), on free ports.
- ``DayTraderProcess``: ``python -m day_trader`` with a test environment.
- ``ExitManagerStandIn``: heart-beats the ``exit_manager`` row from a thread and closes
  positions through the Store API as the exit manager would (the day trader never sells).
- ``broker_executions``: the simulator's executions of every client, read through a
  separate ``BrokerAdapter`` (role TOOL): what the exchange actually saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.guards import Role
from broker.models import ExecutionView
from broker.simulator.control import SimControl
from market.calendar import previous_trading_day, session
from market.clock import ET, VirtualClock
from shared_state import (
    ActivePosition,
    Event,
    Order,
    PositionState,
    Store,
    WatchlistItem,
    WatchlistSource,
)

ROOT = Path(__file__).resolve().parents[2]
DAY = date(2025, 11, 26)  # a Wednesday with a full session
STARTUP_TIMEOUT = 60.0


# =========================================================================== price paths


@dataclass(frozen=True)
class PricePath:
    """A symbol's bars for ``DAY``: closes step by ``pattern_pct`` percent, over and over.

    The session opens ``gap_pct`` above the prior close (the previous day's file ends
    there). Bars run from ``start`` to ``end`` ET; later minutes keep the last close.
    """

    symbol: str
    pattern_pct: tuple[float, ...]
    gap_pct: float
    start_price: float = 40.0
    start: tuple[int, int] = (9, 0)
    end: tuple[int, int] = (12, 30)
    volume: int = 1000

    def closes(self) -> np.ndarray:
        """Return the closes of ``DAY``, one per minute from ``start``."""
        t0, t1 = self._bounds()
        n = int((t1 - t0).total_seconds() // 60)
        steps = np.resize(np.asarray(self.pattern_pct, dtype="float64"), n)
        growth = np.concatenate([[1.0], np.cumprod(1.0 + steps[:-1] / 100.0)])
        return np.round(self.start_price * growth, 2)

    def rows(self) -> list[tuple[datetime, float, float, float, float, int]]:
        """Return ``DAY``'s bars (time, open, high, low, close, volume)."""
        t0, _ = self._bounds()
        closes = self.closes()
        opens = np.r_[closes[0], closes[:-1]]
        return [
            (t0 + timedelta(minutes=i), o, max(o, c), min(o, c), c, self.volume)
            for i, (o, c) in enumerate(zip(opens.tolist(), closes.tolist(), strict=True))
        ]

    def prior_close(self) -> float:
        """Return the previous session's close: the session open ``gap_pct`` below."""
        opening = next(r for r in self.rows() if r[0] >= session(DAY).open)
        return round(opening[1] / (1.0 + self.gap_pct / 100.0), 2)

    def prior_rows(self) -> list[tuple[datetime, float, float, float, float, int]]:
        """Return the previous day's last half hour, flat at the prior close."""
        day = previous_trading_day(DAY)
        close = session(day).close
        price = self.prior_close()
        return [
            (close - timedelta(minutes=30 - i), price, price, price, price, self.volume)
            for i in range(30)
        ]

    def _bounds(self) -> tuple[datetime, datetime]:
        return (
            datetime.combine(DAY, datetime.min.time(), ET).replace(
                hour=self.start[0], minute=self.start[1]
            ),
            datetime.combine(DAY, datetime.min.time(), ET).replace(
                hour=self.end[0], minute=self.end[1]
            ),
        )


def write_paths(directory: Path, paths: Iterable[PricePath]) -> Path:
    """Write one ``<SYMBOL>.csv`` per path into ``directory``; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in paths:
        with (directory / f"{path.symbol}.csv").open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("timestamp", "open", "high", "low", "close", "volume"))
            for t, o, h, lo, c, v in [*path.prior_rows(), *path.rows()]:
                writer.writerow((t.isoformat(), repr(o), repr(h), repr(lo), repr(c), v))
    return directory


#: Up 1.2%, up 1.2%, down 2%: price above VWAP, ATR ~1.45%, RSI 51-59 (rising 2 bars of 3).
VWAP_PATTERN = (1.2, 1.2, -2.0)
#: The same shape, tiny moves: ATR ~0.12% (fails the standard entry), RSI 52-59.
QUIET_PATTERN = (0.1, 0.1, -0.17)
#: Straight up: RSI 100.
CLIMB_PATTERN = (0.1,)
STEEP_CLIMB_PATTERN = (1.3,)
#: Mirror of VWAP_PATTERN: below VWAP, ATR fine, RSI ~45.
SLIDE_PATTERN = (-1.2, -1.2, 2.0)


# =========================================================================== processes


def _read_ports(proc: subprocess.Popen[str], timeout: float) -> tuple[int, int]:
    """Return (API port, control port) from the simulator's two ready lines."""
    found: dict[str, int] = {}
    lines: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=reader, daemon=True).start()
    deadline = time.monotonic() + timeout
    while len(found) < 2:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError("simulator did not print its ready lines in time") from None
            continue
        for prefix in ("listening on", "control on"):
            if line.startswith(prefix):
                found[prefix] = int(line.strip().rsplit(":", 1)[1])
    return found["listening on"], found["control on"]


@dataclass
class Simulator:
    """A running simulator subprocess that reads its clock from ``TRADING_CLOCK``."""

    proc: subprocess.Popen[str]
    port: int
    control: SimControl
    log: Path

    @classmethod
    def launch(cls, tmp: Path, clock: VirtualClock, data: Path | None) -> Simulator:
        """Start it on free ports; return once both listeners are bound."""
        log = tmp / f"simulator-{time.monotonic_ns()}.log"
        cmd = [
            sys.executable, "-m", "broker.simulator", "--port", "0", "--control-port", "0",
            "--db", str(tmp / "simulator.db"), "--quote-interval", "0.1",
        ]  # fmt: skip
        if data is not None:
            cmd += ["--data", str(data)]
        env = {**os.environ, "TRADING_CLOCK": clock.spec()}
        with log.open("w") as err:
            proc = subprocess.Popen(
                cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True, env=env
            )
        try:
            port, control = _read_ports(proc, STARTUP_TIMEOUT)
        except Exception:
            proc.kill()
            proc.wait()
            raise
        return cls(proc, port, SimControl(control), log)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        self.control.close()
        _terminate(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _terminate(proc: subprocess.Popen[Any], timeout: float = 10.0) -> int | None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def trader_env(
    db: Path, sim_port: int, clock: VirtualClock, log_dir: Path, **overrides: Any
) -> dict[str, str]:
    """Return the environment of a test day trader (short intervals, the shared clock)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("SUPERVISOR_CHILD", "SUPERVISOR_PARENT")
    }
    env.update(
        {
            "TRADING_CLOCK": clock.spec(),
            "DB_PATH": str(db),
            "BROKER": "sim",
            "SIM_PORT": str(sim_port),
            "LOG_DIR": str(log_dir),
            "SPANS_DB_PATH": str(db.with_name("spans.db")),  # never the repository's
            "LOOP_INTERVAL_S": "0.25",
            "HEARTBEAT_INTERVAL_S": "0.5",
            "HEARTBEAT_TIMEOUT_S": "30",
            "ENTRY_ORDER_TIMEOUT_S": "60",
            "QUOTE_MAX_AGE_S": "60",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


@dataclass
class DayTraderProcess:
    """``python -m day_trader`` as a subprocess (stdout+stderr to a log file)."""

    proc: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, tmp: Path, env: dict[str, str], name: str = "day_trader") -> DayTraderProcess:
        log = tmp / f"{name}-{time.monotonic_ns()}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "day_trader"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(proc, log)

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        """SIGTERM (the supervisor's stop), then SIGKILL; return the exit code."""
        return _terminate(self.proc, 20.0)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


# =========================================================================== the DB side


def new_store(path: Path, process: str = "test") -> Store:
    """Create the shared-state DB (schema) and return a Store on it."""
    return Store(path, process=process)


def publish_watchlist(store: Store, symbols: Sequence[str], day: date = DAY) -> None:
    """Write ``symbols`` as today's validated watchlist (rank by order)."""
    rows = [
        WatchlistItem(s, rank, 1.0, "test", WatchlistSource.RULES, validated=True)
        for rank, s in enumerate(symbols, start=1)
    ]
    store.replace_watchlist(day, rows)


class ExitManagerStandIn:
    """Heart-beat the ``exit_manager`` row and close positions through the Store API."""

    def __init__(self, store: Store, clock: VirtualClock, interval_s: float = 0.5) -> None:
        self.store = store
        self.clock = clock
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name="exit-manager-stand-in", daemon=True
        )
        self._closes = 0

    def __enter__(self) -> ExitManagerStandIn:
        self.store.heartbeat("exit_manager", self.clock.now())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):
                self.store.heartbeat("exit_manager", self.clock.now())

    def close(self, position: ActivePosition, reason: str, exit_pct: float) -> None:
        """Sell ``position`` on paper: begin_exit, then close with ``reason``."""
        assert position.entry_price is not None
        self._closes += 1
        now = self.clock.now()
        ticket = self.store.begin_exit(
            position.symbol,
            now=now,
            order_ref=f"em-test-{position.symbol}-{self._closes}",
            quantity=position.quantity,
            limit_price=None,
            reason=reason,
        )
        assert ticket is not None, f"{position.symbol} was not OPEN"
        price = round(position.entry_price * (1 + exit_pct / 100.0), 2)
        closed = self.store.close_position(
            position.symbol,
            trading_date=now.astimezone(ET).date(),
            now=now,
            exit_price=price,
            reason=reason,
            pnl=(price - position.entry_price) * position.quantity,
            commissions=0.0,
        )
        assert closed is not None


# =========================================================================== polling


def wait_for(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    every: float = 0.2,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Poll ``predicate`` until it is truthy; return its value or fail after ``timeout``.

    ``explain`` adds context to the failure (e.g. the end of a process log).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            context = f"\n{explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{context}")
        time.sleep(every)


def open_position(store: Store, symbol: str) -> ActivePosition | None:
    """Return ``symbol``'s active row when it is OPEN."""
    row = store.active_position(symbol)
    return row if row is not None and row.state is PositionState.OPEN else None


def events_of(store: Store, kind: str, symbol: str | None = None) -> list[Event]:
    """Return every event of ``kind`` (of ``symbol``)."""
    return store.events(0, 100_000, kind=kind, symbol=symbol)


def buy_orders(store: Store, symbol: str) -> list[Order]:
    """Return every BUY order row of ``symbol`` in the DB, oldest first."""
    from shared_state import OrderStatus

    rows = store.orders_in_status(*OrderStatus, symbol=symbol)
    return [o for o in rows if o.side.value == "BUY"]


def broker_executions(port: int, client_id: int = 90) -> list[ExecutionView]:
    """Return today's executions of every client at the simulator (a fresh reconcile)."""

    async def read() -> list[ExecutionView]:
        config = AdapterConfig(port=port, connect_timeout_s=10.0)
        adapter = BrokerAdapter(config, VirtualClock(datetime.now(ET)), client_id, role=Role.TOOL)
        await adapter.start(timeout=30.0)
        try:
            snapshot = await adapter.reconcile()
            return list(snapshot.executions)
        finally:
            await adapter.close()

    return asyncio.run(read())


def buys_by_symbol(executions: Iterable[ExecutionView]) -> dict[str, set[str]]:
    """Return symbol -> the order_refs of its BUY executions."""
    out: dict[str, set[str]] = {}
    for e in executions:
        if e.side == "BOT":
            out.setdefault(e.symbol, set()).add(e.order_ref)
    return out


@dataclass
class Cleanup:
    """Callables run in reverse order at teardown, each even if an earlier one failed."""

    actions: list[Callable[[], Any]] = field(default_factory=list)

    def add(self, action: Callable[[], Any]) -> None:
        self.actions.append(action)

    def run(self) -> None:
        for action in reversed(self.actions):
            with contextlib.suppress(Exception):
                action()
        self.actions.clear()


# =========================================================================== sessions


@dataclass
class Market:
    """One simulator replaying ``paths`` on a shared virtual clock, for a test module."""

    tmp: Path
    clock: VirtualClock
    sim: Simulator

    @property
    def control(self) -> SimControl:
        return self.sim.control

    def now(self) -> datetime:
        return self.clock.now().astimezone(ET)


@contextlib.contextmanager
def running_market(
    tmp: Path, paths: Sequence[PricePath], start: datetime, speed: float
) -> Iterator[Market]:
    """Start a simulator over ``paths`` whose clock starts at ``start``; stop it after."""
    data = write_paths(tmp / "data", paths)
    clock = VirtualClock(start, speed, anchor=time.time())
    sim = Simulator.launch(tmp, clock, data)
    try:
        yield Market(tmp, clock, sim)
    finally:
        sim.stop()


class Traders:
    """Day-trader processes of one test: started with a test environment, killed after."""

    def __init__(self, market: Market, tmp: Path) -> None:
        self.market = market
        self.tmp = tmp
        self.started: list[DayTraderProcess] = []

    def env(self, db: Path, **overrides: Any) -> dict[str, str]:
        return trader_env(
            db, self.market.sim.port, self.market.clock, self.tmp / "logs", **overrides
        )

    def start(self, db: Path, name: str = "day_trader", **overrides: Any) -> DayTraderProcess:
        process = DayTraderProcess.start(self.tmp, self.env(db, **overrides), name)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            with contextlib.suppress(Exception):
                process.stop()
