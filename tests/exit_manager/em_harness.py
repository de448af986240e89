"""Real processes for the exit manager's end-to-end tests (and its benchmark).

A plain module, not ``conftest``: the test modules and ``bench/exit_reaction_bench.py``
import it. Everything here drives the product the way production does:

- ``Simulator``: ``python -m broker.simulator`` on free loopback ports, its clock handed
  in ``TRADING_CLOCK`` (a ``VirtualClock.spec()``), the same string the exit manager gets;
- ``ExitManagerProcess``: ``python -m exit_manager`` with its settings in the environment
  (``DB_PATH``, ``SIM_PORT``, ``TRADING_CLOCK``, ``LOG_DIR``, ``SPANS_DB_PATH`` in the
  test's folder, short timeouts);
- ``Trader``: another IBKR client (``ib_async``, its own client id) that buys the way the
  day trader will: claim the symbol in the database, buy, mark the row filled; or buys
  without a row, for a position the exit manager must adopt;
- ``wait_for``: polling with a deadline (never a bare sleep).

Every process started here is killed by ``Processes.stop_all`` (the fixtures call it in
teardown, also on failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from broker.simulator.control import SimControl
from exit_manager.rules import ExitParams, stop_price, target_price
from market.clock import ET, VirtualClock
from shared_state import ActivePosition, Event, Store

ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 60.0

#: Settings every exit manager under test runs with (the environment beats any .env).
BASE_ENV = {
    "BROKER": "sim",
    "IB_CLIENT_ID_EXIT_MANAGER": "11",
    "LOOP_INTERVAL_S": "0.25",
    "HEARTBEAT_INTERVAL_S": "0.5",
    "HEARTBEAT_TIMEOUT_S": "10",
    "EXIT_ORDER_TIMEOUT_S": "5",
    "LOG_LEVEL": "info",
    "MAX_ORDER_NOTIONAL": "100000",
}

_client_ids = itertools.count(60)


def clock_spec(start: str, speed: float) -> str:
    """Return the TRADING_CLOCK string of a virtual clock starting now at ``start``."""
    return VirtualClock(datetime.fromisoformat(start), speed).spec()


def wait_for[T](
    predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05
) -> T:
    """Return ``predicate()``'s first truthy value, polling until ``timeout`` real seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _read_line(proc: subprocess.Popen[str], prefix: str, deadline: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.2):
                line = proc.stdout.readline()
                if line.startswith(prefix):
                    return line.strip()
            if proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {prefix!r}")
    raise TimeoutError(f"no {prefix!r} line within the deadline")


@dataclass
class Simulator:
    """A running simulator subprocess on free ports."""

    proc: subprocess.Popen[str]
    port: int
    control: SimControl
    log: Path
    clock: str

    def now(self) -> datetime:
        """Return the simulator clock's current instant (ET)."""
        return datetime.fromisoformat(self.control.status()["now"]).astimezone(ET)

    def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL)."""
        self.control.close()
        _terminate(self.proc)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _terminate(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPERVISOR_", "EXIT_MAN"))}
    env.update(extra)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def launch_simulator(tmp: Path, clock: str, quote_interval: float = 0.1) -> Simulator:
    """Start ``python -m broker.simulator`` with ``clock`` (a TRADING_CLOCK string)."""
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / f"simulator-{time.monotonic_ns()}.log"
    cmd = [
        sys.executable, "-m", "broker.simulator", "--port", "0", "--control-port", "0",
        "--db", str(tmp / "simulator.db"), "--quote-interval", str(quote_interval),
    ]  # fmt: skip
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
            env=_child_env({"TRADING_CLOCK": clock}),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        port = int(_read_line(proc, "listening on", deadline).rsplit(":", 1)[1])
        control = int(_read_line(proc, "control on", deadline).rsplit(":", 1)[1])
    except Exception:
        proc.kill()
        proc.wait()
        raise
    return Simulator(proc, port, SimControl(control), log, clock)


@dataclass
class ExitManagerProcess:
    """One ``python -m exit_manager`` subprocess."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` (default SIGKILL: no cleanup at all)."""
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        """Wait for the exit code."""
        return self.proc.wait(timeout)

    def stop(self) -> None:
        _terminate(self.proc, grace=20.0)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def launch_exit_manager(
    tmp: Path,
    sim: Simulator,
    db: Path,
    env: dict[str, str] | None = None,
    args: tuple[str, ...] = (),
) -> ExitManagerProcess:
    """Start ``python -m exit_manager`` against ``sim`` with its database ``db``."""
    settings = {
        **BASE_ENV,
        "DB_PATH": str(db),
        "SIM_PORT": str(sim.port),
        "TRADING_CLOCK": sim.clock,
        "LOG_DIR": str(tmp / "logs"),
        "SPANS_DB_PATH": str(tmp / "spans.db"),  # never the repository's data/spans.db
        **(env or {}),
    }
    log = tmp / f"exit_manager-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exit_manager", *args],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=_child_env(settings),
        )  # fmt: skip
    return ExitManagerProcess(proc, log)


def wait_ready(store: Store, em: ExitManagerProcess, timeout: float = STARTUP_TIMEOUT_S) -> None:
    """Wait until the exit manager reported ready (its ``processes`` row), or fail loudly."""

    def ready() -> bool:
        if not em.alive():
            raise AssertionError(f"exit manager exited {em.proc.returncode}:\n{em.log_text()}")
        info = store.process("exit_manager")
        return info is not None and info.ready

    wait_for(ready, timeout, "the exit manager to report ready")


class Trader:
    """Another IBKR client: buys like the day trader, reads what the simulator executed."""

    def __init__(self, port: int, client_id: int | None = None) -> None:
        import ib_async

        self.lib = ib_async
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self.client_id = client_id if client_id is not None else next(_client_ids)
        self.ib = ib_async.IB()
        self.ib.connect("127.0.0.1", port, clientId=self.client_id, timeout=20)
        self._contracts: dict[str, Any] = {}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ib.disconnect()
        asyncio.set_event_loop(None)
        self._loop.close()

    def reconnect(self, port: int, timeout: float = 20.0) -> None:
        """Connect again after the simulator dropped the connection."""
        with contextlib.suppress(Exception):
            self.ib.disconnect()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ib.connect("127.0.0.1", port, clientId=self.client_id, timeout=5)
                return
            except (OSError, TimeoutError, ConnectionError):
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def contract(self, symbol: str) -> Any:
        if symbol not in self._contracts:
            stock = self.lib.Stock(symbol, "SMART", "USD")
            self.ib.qualifyContracts(stock)
            self._contracts[symbol] = stock
        return self._contracts[symbol]

    def buy(self, symbol: str, quantity: int, limit: float, order_ref: str) -> Any:
        """Buy with a limit order; return the library's Trade once filled with commissions."""
        order = self.lib.LimitOrder("BUY", quantity, round(limit, 2), orderRef=order_ref)
        trade = self.ib.placeOrder(self.contract(symbol), order)
        deadline = time.monotonic() + 30

        def settled() -> bool:
            reported = all(f.commissionReport.execId for f in trade.fills)
            return trade.isDone() and reported

        while not settled() and time.monotonic() < deadline:
            self.ib.sleep(0.05)
        if trade.orderStatus.status != "Filled":
            raise AssertionError(f"buy {symbol} not filled: {trade.orderStatus} {trade.log[-3:]}")
        return trade

    def sells(self, symbol: str) -> list[Any]:
        """Return today's sell executions of ``symbol`` at the simulator (every client)."""
        fills = self.ib.reqExecutions(self.lib.ExecutionFilter(symbol=symbol, side="SELL"))
        return [f for f in fills if f.execution.side == "SLD"]

    def sell_orders(self, symbol: str) -> set[str]:
        """Return the order refs of every sell the simulator executed for ``symbol``."""
        return {f.execution.orderRef for f in self.sells(symbol)}

    def sold(self, symbol: str) -> int:
        """Return the shares of ``symbol`` sold today at the simulator (every client)."""
        return int(sum(f.execution.shares for f in self.sells(symbol)))

    def pump(self, seconds: float = 0.05) -> None:
        self.ib.sleep(seconds)


@dataclass
class Opened:
    """A position opened for a test."""

    symbol: str
    entry: float
    quantity: int
    row: ActivePosition | None


class Desk:
    """Opens positions the way the day trader will, and reads the outcome."""

    def __init__(
        self,
        store: Store,
        trader: Trader,
        sim: Simulator,
        params: ExitParams,
        max_trades: int = 100,
    ) -> None:
        self.store = store
        self.trader = trader
        self.sim = sim
        self.params = params
        self.max_trades = max_trades

    def today(self) -> date:
        return self.sim.now().date()

    def price(self, symbol: str) -> float:
        """Return the simulator's last price of ``symbol`` now, on the cent."""
        [ticker] = self.trader.ib.reqTickers(self.trader.contract(symbol))
        return round(float(ticker.last), 2)

    def open(
        self, symbol: str, quantity: int, price: float | None = None, *, with_row: bool = True
    ) -> Opened:
        """Pin ``symbol`` (at ``price``, default its price now), claim it (``with_row``), buy,
        and mark the row filled with the target/stop the day trader computes."""
        price = price if price is not None else self.price(symbol)
        self.sim.control.set_price(symbol, price)
        ref = f"dt-{symbol}-{time.monotonic_ns() % 10**9}"
        if not with_row:
            trade = self.trader.buy(symbol, quantity, price * 1.005, ref)
            status = trade.orderStatus
            return Opened(symbol, status.avgFillPrice, int(status.filled), None)
        claim = self.store.claim_for_entry(
            symbol, self.today(), now=self.sim.now(), order_ref=ref, quantity=quantity,
            limit_price=round(price * 1.005, 2), max_recovery_entries=self.max_trades,
            max_trades_per_day=self.max_trades, max_positions=50, owner="day_trader",
        )  # fmt: skip
        assert claim.ok, claim.refusal
        trade = self.trader.buy(symbol, quantity, price * 1.005, ref)
        entry, filled = trade.orderStatus.avgFillPrice, int(trade.orderStatus.filled)
        for fill in trade.fills:  # the day trader records its fills, commissions included
            ex = fill.execution
            self.store.record_fill(
                ex.execId, order_ref=ref, symbol=symbol, side="BUY", quantity=int(ex.shares),
                price=ex.price, commission=fill.commissionReport.commission, time=ex.time,
            )  # fmt: skip
        recovery = claim.is_recovery
        row = self.store.mark_filled(
            symbol, now=self.sim.now(), entry_price=entry, quantity=filled,
            target_price=target_price(entry, recovery, self.params),
            stop_price=stop_price(entry, self.params),
        )  # fmt: skip
        return Opened(symbol, entry, filled, row)

    def closed(self, symbol: str) -> list[Any]:
        """Return today's closed rows of ``symbol``."""
        return [c for c in self.store.closed_today(self.today()) if c.symbol == symbol]

    def wait_closed(self, symbol: str, timeout: float = 30.0, count: int = 1) -> Any:
        """Wait until ``symbol`` has ``count`` closed rows today; return the last."""
        rows = wait_for(
            lambda: (found := self.closed(symbol)) and len(found) >= count and found,
            timeout, f"{symbol} to be closed",
        )  # fmt: skip
        assert self.store.active_position(symbol) is None or count > 1
        return rows[-1]

    def events(self, kind: str, symbol: str | None = None) -> list[Event]:
        return self.store.events(kind=kind, symbol=symbol, limit=10_000)


@dataclass
class Processes:
    """Everything a test module started, stopped in reverse order at teardown."""

    started: list[Any] = field(default_factory=list)

    def add[T](self, thing: T) -> T:
        self.started.append(thing)
        return thing

    def stop_all(self) -> None:
        for thing in reversed(self.started):
            with contextlib.suppress(Exception):
                if isinstance(thing, Trader):
                    thing.close()
                elif isinstance(thing, Store):
                    thing.close()
                else:
                    thing.stop()
        self.started.clear()


@contextlib.contextmanager
def processes() -> Iterator[Processes]:
    """Yield a ``Processes`` that is always stopped."""
    running = Processes()
    try:
        yield running
    finally:
        running.stop_all()


@dataclass
class World:
    """One simulator, one database, one exit manager, one trading client."""

    tmp: Path
    sim: Simulator
    db: Path
    store: Store
    em: ExitManagerProcess
    trader: Trader
    desk: Desk
    running: Processes

    def diagnose(self, lines: int = 60) -> str:
        """Return the end of the exit manager's log and its latest events (for failures)."""
        log = "\n".join(self.em.log_text().splitlines()[-lines:])
        events = self.store.events(limit=10_000)[-25:]
        shown = "\n".join(f"  {e.kind} {e.symbol} {e.detail}" for e in events)
        return f"--- exit manager log ---\n{log}\n--- last events ---\n{shown}"

    def restart_exit_manager(self, env: dict[str, str] | None = None) -> ExitManagerProcess:
        """Start a new exit manager on the same database (the old one must be gone)."""
        assert not self.em.alive()
        # What the supervisor does before every start: the row says STARTING, not ready.
        self.store.set_process_state("exit_manager", "STARTING", now=self.sim.now(), force=True)
        self.em = self.running.add(launch_exit_manager(self.tmp, self.sim, self.db, env))
        return self.em

    def exit_orders(self, symbol: str) -> list[Any]:
        """Return the exit order rows of ``symbol`` in the database, oldest first."""
        from shared_state import OrderStatus

        return [
            o
            for o in self.store.orders_in_status(*OrderStatus, symbol=symbol)
            if o.purpose.value == "exit"
        ]


def start_world(
    running: Processes,
    tmp: Path,
    start: str,
    speed: float,
    params: ExitParams,
    env: dict[str, str] | None = None,
    quote_interval: float = 0.1,
    before: Callable[[Desk], object] | None = None,
) -> World:
    """Start a simulator and an exit manager sharing one clock; wait until it is ready.

    ``before(desk)`` runs first, with the exit manager not started yet (to open positions
    it must find at start-up).
    """
    sim = running.add(launch_simulator(tmp, clock_spec(start, speed), quote_interval))
    db = tmp / "state.db"
    store = running.add(Store(db, process="test"))
    trader = running.add(Trader(sim.port))
    desk = Desk(store, trader, sim, params)
    if before is not None:
        before(desk)
    em = running.add(launch_exit_manager(tmp, sim, db, env))
    world = World(tmp, sim, db, store, em, trader, desk, running)
    wait_ready(store, em)
    return world
