"""What ``scripts/liquidate_all.py`` and ``scripts/liquidate_today.py`` share: the whole job.

1. **Preview** (always): what would be sold, from the broker (its own client id,
   ``IB_CLIENT_ID_SCRIPTS``, a role that may send no order) and the database: symbol,
   quantity, last and average price, unrealized P&L, whether the database has the row.
   ``liquidate_all`` sells every broker position (rows the database lacks are adopted
   first, as the exit manager does); ``liquidate_today`` the rows the system opened today
   (``exit_manager.commands.opened_today``: not adopted ones).
2. **Route.** The exit manager alive (its ``processes`` row RUNNING or ready, heartbeat
   fresher than HEARTBEAT_TIMEOUT_S as the status display reads it, its pid a live
   process), or a running supervisor bringing it back: the command goes to its queue
   (``Store.enqueue_command``) and the script waits, with a progress line, until the
   command is DONE/FAILED and the positions are gone (``--no-wait``: return at once).
   Otherwise no process sells, and the script *stands in for the exit manager*: the exit
   manager's own machinery (``exit_manager.manager.ExitManager``: reconciliation, the
   command, the seller's aggressive limits and replacements, fills, ``close_position``
   with reason ``manual``) runs in this process on its own client id with the adapter's
   exit-manager role (SELL only, never more than the broker holds) until they are gone.
3. **Market closed** (calendar and clock): ``--yes`` is refused with a clear message;
   ``--queue-for-open`` queues the command instead, and the exit manager carries it out
   at the next open (it leaves liquidations queued while the market is closed).

Settings come from ``.env`` like every process; market time from ``TRADING_CLOCK`` when
set, else from the running supervisor's clock (a simulated day), else the wall clock.
The database is DB_PATH, or the current simulated day's (``supervision.sim_folder``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import TextIO

import psutil
from tabulate import tabulate

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.errors import BrokerError, NotConnectedError
from broker.guards import Role
from broker.models import BrokerPosition, PortfolioRow
from config.settings import Settings, SettingsError, load_settings
from exit_manager.commands import opened_today
from exit_manager.manager import ExitManager
from exit_manager.params import exit_params, in_force, load_param_set, manager_config
from exit_manager.session import trading_day
from market.calendar import next_trading_day, session
from market.clock import CLOCK_ENV, ET, Clock, LiveClock, clock_from_env, now_et
from shared_state import (
    ActivePosition,
    ClosedPosition,
    Command,
    CommandKind,
    CommandStatus,
    ProcessState,
    Store,
    StoreError,
)
from supervision.child import ChildRuntime
from supervision.lock import holder, lock_path_for
from supervision.schedule import port_open
from supervision.sim_folder import current_db_path
from supervision.status import ProcessRow, process_rows, published_clock, published_marks
from telemetry.logs import configure_logging

#: Exit codes (each script's docstring, hence its --help, explains them).
EXIT_OK = 0
EXIT_NOT_DONE = 1
EXIT_BAD_SETTINGS = 2
EXIT_MARKET_CLOSED = 3
EXIT_NO_BROKER = 4

ACTOR = "scripts"
#: Real seconds to reach the broker for the preview (it is optional there).
PREVIEW_CONNECT_S = 8.0
#: Real seconds to reach the broker when this script must sell itself.
DIRECT_CONNECT_S = 30.0
POLL_S = 0.25

log = logging.getLogger("liquidation")


# ============================================================================ the plan


@dataclass(frozen=True)
class Holding:
    """One position the liquidation would sell."""

    symbol: str
    broker_qty: int | None  # None: the broker was not asked
    row: ActivePosition | None
    last: float | None
    avg_price: float | None

    @property
    def quantity(self) -> int:
        if self.broker_qty is not None:
            return self.broker_qty
        return self.row.quantity if self.row is not None else 0

    @property
    def unrealized(self) -> float | None:
        if self.last is None or self.avg_price is None:
            return None
        return round((self.last - self.avg_price) * self.quantity, 2)


@dataclass(frozen=True)
class BrokerView:
    """What the broker holds (``positions``: symbol -> shares) and its prices."""

    positions: dict[str, int]
    avg_cost: dict[str, float]
    prices: dict[str, float]


@dataclass(frozen=True)
class Plan:
    """What a liquidation sells, as seen now."""

    kind: CommandKind
    today: date
    holdings: tuple[Holding, ...]
    broker_seen: bool


def broker_view(
    positions: Sequence[BrokerPosition], portfolio: Sequence[PortfolioRow]
) -> BrokerView:
    """Return the broker's non-zero positions with their average cost and market price."""
    held = {p.symbol: int(round(p.quantity)) for p in positions if round(p.quantity)}
    return BrokerView(
        positions=held,
        avg_cost={p.symbol: p.avg_cost for p in positions if p.symbol in held},
        prices={r.symbol: r.market_price for r in portfolio if r.market_price > 0},
    )


def make_plan(
    kind: CommandKind,
    rows: Sequence[ActivePosition],
    broker: BrokerView | None,
    marks: dict[str, float],
    today: date,
) -> Plan:
    """Return what ``kind`` sells: every broker position and row, or today's rows."""
    by_symbol = {r.symbol: r for r in rows}
    if kind is CommandKind.LIQUIDATE_TODAY:
        symbols = [r.symbol for r in opened_today(list(rows), today)]
    else:
        symbols = sorted(set(by_symbol) | set(broker.positions if broker else ()))
    holdings = tuple(_holding(s, by_symbol.get(s), broker, marks) for s in symbols)
    return Plan(kind, today, holdings, broker is not None)


def _holding(
    symbol: str, row: ActivePosition | None, broker: BrokerView | None, marks: dict[str, float]
) -> Holding:
    qty = None if broker is None else broker.positions.get(symbol, 0)
    last = (broker.prices.get(symbol) if broker else None) or marks.get(symbol)
    avg = (broker.avg_cost.get(symbol) if broker else None) or (row.entry_price if row else None)
    return Holding(symbol, qty, row, last, avg)


def render_plan(plan: Plan) -> str:
    """Return the preview table of ``plan``."""
    if not plan.holdings:
        return "Nothing to sell: " + (
            "no position at the broker or in the database."
            if plan.kind is CommandKind.LIQUIDATE_ALL
            else f"no position the system opened on {plan.today} is held."
        )
    rows = [
        (
            h.symbol,
            _qty(h),
            _price(h.last),
            _price(h.avg_price),
            _money(h.unrealized),
            _row_note(h),
        )
        for h in plan.holdings
    ]
    headers = ("symbol", "quantity", "last", "avg price", "unrealized", "database row")
    table = tabulate(rows, headers=headers, disable_numparse=True)
    known = [h.unrealized for h in plan.holdings]
    total = "n/a" if any(u is None for u in known) else _money(sum(u or 0.0 for u in known))
    source = "" if plan.broker_seen else " (broker not reachable: database rows, last marks)"
    count = len(plan.holdings)
    return f"{table}\n{count} position{'s' if count > 1 else ''}, unrealized {total}{source}"


def _qty(h: Holding) -> str:
    if h.row is not None and h.broker_qty is not None and h.broker_qty != h.row.quantity:
        return f"{h.broker_qty} (db {h.row.quantity})"
    return str(h.quantity)


def _row_note(h: Holding) -> str:
    if h.row is None:
        return "no: adopted, then sold"
    notes = {
        "ENTRY_PENDING": "yes, ENTRY_PENDING: sold once filled",
        "EXIT_PENDING": "yes, EXIT_PENDING: already selling",
    }
    return notes.get(h.row.state.value, f"yes, {h.row.state.value}")


def _price(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.2f}"


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+,.2f}"


# ============================================================================ market time


@dataclass(frozen=True)
class Market:
    """The regular session as of now."""

    now: datetime  # ET
    is_open: bool
    next_open: datetime | None  # None while open

    @property
    def opens_today(self) -> bool:
        return self.next_open is not None and self.next_open.date() == self.now.date()

    def closed_text(self) -> str:
        at = self.next_open.strftime("%A %Y-%m-%d %H:%M") if self.next_open else "?"
        return (
            f"The market is closed ({self.now:%A %Y-%m-%d %H:%M} ET): nothing can be sold "
            f"before the next open, {at} ET."
        )


def market_now(clock: Clock, eod_flatten_minutes: int) -> Market:
    """Return the session state now, by the exit manager's own rule (``trading_day``)."""
    day = trading_day(clock.now(), eod_flatten_minutes)
    if day.is_open:
        return Market(day.now, True, None)
    if day.open is not None and day.now < day.open:
        return Market(day.now, False, day.open)
    return Market(day.now, False, session(next_trading_day(day.date)).open.astimezone(ET))


def script_clock(rows_clock: Callable[[], Clock], supervisor_running: bool) -> Clock:
    """Return TRADING_CLOCK's clock, else the running supervisor's, else the wall clock."""
    if os.environ.get(CLOCK_ENV):
        return clock_from_env()
    return rows_clock() if supervisor_running else LiveClock()


# ============================================================================ the route


class Route(StrEnum):
    QUEUE = "queue"  # the exit manager sells; this script queues and waits
    DIRECT = "direct"  # no exit manager: this script sells in its place


@dataclass(frozen=True)
class RouteChoice:
    route: Route
    why: str


def choose_route(
    em: ProcessRow | None, supervisor_running: bool, heartbeat_timeout_s: float, pid_runs: bool
) -> RouteChoice:
    """Return who sells: the exit manager (alive, or being restarted) or this script.

    Alive: RUNNING (or ready) with a heartbeat fresher than the timeout, and its pid
    still a live process (a process that exited cannot sell, however fresh its stamp).
    """
    age = None if em is None else em.heartbeat_age_s
    fresh = age is not None and age <= heartbeat_timeout_s and pid_runs
    if em is not None and fresh and (em.state == ProcessState.RUNNING.value or em.ready):
        why = f"the exit manager runs (pid {em.pid}, heartbeat {age:.1f} s ago)"
        return RouteChoice(Route.QUEUE, why)
    state = "no row" if em is None else em.state
    if supervisor_running and state != ProcessState.FATAL.value:
        why = f"the exit manager is {state} under a running supervisor, which brings it back"
        return RouteChoice(Route.QUEUE, why)
    stale = "" if em is None or age is None else f", heartbeat {age:.0f} s old"
    gone = "" if em is None or pid_runs else f", pid {em.pid} gone"
    return RouteChoice(Route.DIRECT, f"no exit manager runs ({state}{stale}{gone})")


def pid_runs(pid: int | None) -> bool:
    """Return False when ``pid`` is known and no longer a live process on this machine."""
    if pid is None:
        return True  # unknown: the heartbeat decides
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def render_route(choice: RouteChoice, settings: Settings) -> str:
    if choice.route is Route.QUEUE:
        return f"Route: {choice.why}: the command goes to its queue."
    return (
        f"Route: {choice.why}: this script sells in its place, as client id "
        f"{settings.ib_client_id_scripts} (IB_CLIENT_ID_SCRIPTS)."
    )


# ============================================================================ progress


@dataclass(frozen=True)
class Targets:
    """What must be gone: rows by id (today) or by symbol (all), and broker symbols."""

    kind: CommandKind
    rows: dict[str, int]  # symbol -> row id at the preview
    symbols: frozenset[str]

    @classmethod
    def of(cls, plan: Plan) -> Targets:
        rows = {h.symbol: h.row.id for h in plan.holdings if h.row is not None}
        return cls(plan.kind, rows, frozenset(h.symbol for h in plan.holdings))


@dataclass(frozen=True)
class Progress:
    command: Command | None
    left: tuple[str, ...]

    @property
    def finished(self) -> bool:
        return self.command is not None and self.command.status in (
            CommandStatus.DONE,
            CommandStatus.FAILED,
        )

    @property
    def done(self) -> bool:
        return self.finished and not self.left

    def line(self, targets: Targets, elapsed: float) -> str:
        status = "?" if self.command is None else self.command.status.value
        total = len(targets.symbols)
        gone = total - len(self.left)
        left = f"; left: {', '.join(self.left)}" if self.left else ""
        cid = self.command.id if self.command else "?"
        return f"[{elapsed:5.1f} s] command #{cid} {status}; {gone} of {total} gone{left}"


def progress(
    store: Store, command_id: int, targets: Targets, broker: dict[str, int] | None
) -> Progress:
    """Return the command's state and what of the targets is still held."""
    rows = {r.symbol: r for r in store.active_positions()}
    left = []
    for symbol in sorted(targets.symbols):
        row = rows.get(symbol)
        wanted = targets.rows.get(symbol)
        if row is not None and (targets.kind is CommandKind.LIQUIDATE_ALL or row.id == wanted):
            left.append(f"{symbol} {row.state.value}")
        elif broker is not None and broker.get(symbol, 0) > 0:
            left.append(f"{symbol} held at the broker")
    return Progress(store.command(command_id), tuple(left))


class ProgressLine:
    """One line rewritten in place on a terminal; a new line per change elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self._last = ""

    def show(self, text: str, key: str) -> None:
        if self.tty:
            self.out.write("\r\033[K" + text)
            self.out.flush()
        elif key != self._last:
            print(text, file=self.out, flush=True)
        self._last = key

    def end(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def render_result(closed: Sequence[ClosedPosition]) -> str:
    """Return the table of the round trips the liquidation closed."""
    if not closed:
        return "Closed: none"
    rows = [
        (c.symbol, c.quantity, _price(c.entry_price), _price(c.exit_price), _money(c.pnl),
         c.exit_reason.value)
        for c in closed
    ]  # fmt: skip
    headers = ("symbol", "quantity", "entry", "exit", "pnl (net)", "reason")
    total = _money(sum(c.pnl for c in closed))
    return f"Closed:\n{tabulate(rows, headers=headers, disable_numparse=True)}\nTotal {total}"


# ============================================================================ the job


@dataclass(frozen=True)
class Options:
    yes: bool
    wait: bool
    timeout_s: float
    queue_for_open: bool


@dataclass(frozen=True)
class Job:
    """One run of a liquidation script: its settings, store, clock and options."""

    kind: CommandKind
    settings: Settings
    store: Store
    clock: Clock
    options: Options
    out: TextIO = field(default=sys.stdout)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def today(self) -> date:
        return now_et(self.clock).date()

    def enqueue(self) -> Command:
        command_id = self.store.enqueue_command(self.kind, now=self.clock.now())
        command = self.store.command(command_id)
        assert command is not None
        return command


async def run_job(job: Job, supervisor_running: bool) -> int:
    """Preview, then (``--yes``) queue, wait or sell; return the exit code."""
    market = market_now(job.clock, job.settings.eod_flatten_minutes)
    adapter = await connect(job.settings, job.clock, Role.SCRIPTS, PREVIEW_CONNECT_S)
    try:
        rows = job.store.processes()
        broker = _broker_now(adapter)
        plan = make_plan(
            job.kind, job.store.active_positions(), broker, published_marks(rows), job.today()
        )
        em = next((p for p in process_rows(job.store, job.settings, job.clock)
                   if p.name == "exit_manager"), None)  # fmt: skip
        choice = choose_route(
            em, supervisor_running, job.settings.heartbeat_timeout_s,
            pid_runs(em.pid if em else None),
        )  # fmt: skip
        job.say(_heading(job, market))
        job.say(render_plan(plan))
        if not plan.holdings:
            return EXIT_OK
        job.say(render_route(choice, job.settings))
        _say_queued(job)
        if not job.options.yes:
            job.say(_preview_hint(market))
            return EXIT_OK
        if not market.is_open:
            return _closed(job, market)
        if choice.route is Route.QUEUE:
            return await queue_and_wait(job, Targets.of(plan), adapter)
    finally:
        if adapter is not None:
            await adapter.close()
    return await stand_in(job, Targets.of(plan))


def _heading(job: Job, market: Market) -> str:
    what = {
        CommandKind.LIQUIDATE_ALL: "every position at the broker",
        CommandKind.LIQUIDATE_TODAY: f"the positions the system opened on {job.today()}",
    }[job.kind]
    state = "open" if market.is_open else "closed"
    return (
        f"{job.kind.value}: {what} ({job.settings.broker} "
        f"{job.settings.broker_host}:{job.settings.broker_port}; "
        f"{market.now:%Y-%m-%d %H:%M:%S} ET, market {state})"
    )


def _say_queued(job: Job) -> None:
    waiting = job.store.commands(statuses=[CommandStatus.PENDING, CommandStatus.TAKEN])
    if waiting:
        names = ", ".join(f"#{c.id} {c.kind.value} {c.status.value}" for c in reversed(waiting))
        job.say(f"Already in the command queue (carried out first): {names}")


def _preview_hint(market: Market) -> str:
    if market.is_open:
        return "This is a preview: nothing was sold. Run again with --yes to sell."
    return (
        f"This is a preview: nothing was sold. {market.closed_text()} --yes would be "
        "refused; --yes --queue-for-open queues it for the exit manager to sell at the open."
    )


def _closed(job: Job, market: Market) -> int:
    if not job.options.queue_for_open:
        job.say(f"Refused: {market.closed_text()} Add --queue-for-open to queue it for the open.")
        return EXIT_MARKET_CLOSED
    if job.kind is CommandKind.LIQUIDATE_TODAY and not market.opens_today:
        job.say(
            f"Refused: {market.closed_text()} Today's session is over: at the next open the "
            "exit manager sells positions held from an earlier day anyway (rule 'held from "
            "an earlier day'). To be sure, use liquidate_all.py --yes --queue-for-open."
        )
        return EXIT_MARKET_CLOSED
    command = job.enqueue()
    job.say(
        f"Queued {job.kind.value} as command #{command.id}: the exit manager carries it out "
        f"at the open, {market.next_open:%A %Y-%m-%d %H:%M} ET (it leaves liquidations "
        "queued while the market is closed). Watch it with: uv run scripts/status.py"
    )
    return EXIT_OK


# ============================================================================ the broker


async def connect(
    settings: Settings, clock: Clock, role: Role, timeout_s: float
) -> BrokerAdapter | None:
    """Return an adapter connected as IB_CLIENT_ID_SCRIPTS, or None (closed) when unreachable."""
    if not await asyncio.to_thread(port_open, settings.broker_host, settings.broker_port):
        return None  # nothing listens: say so at once instead of retrying until the timeout
    config = AdapterConfig.from_settings(settings, connect_timeout_s=min(timeout_s, 10.0))
    adapter = BrokerAdapter(config, clock, settings.ib_client_id_scripts, role=role)
    try:
        await adapter.start(wait=True, timeout=timeout_s)
    except (TimeoutError, BrokerError, OSError) as exc:
        log.warning("broker not reachable: %s", exc)
        await adapter.close()
        return None
    return adapter


def _broker_now(adapter: BrokerAdapter | None) -> BrokerView | None:
    if adapter is None:
        return None
    try:
        return broker_view(adapter.positions(), adapter.portfolio())
    except NotConnectedError:
        return None


def _held(adapter: BrokerAdapter | None) -> dict[str, int] | None:
    view = _broker_now(adapter)
    return None if view is None else view.positions


# ============================================================================ queue path


async def queue_and_wait(job: Job, targets: Targets, adapter: BrokerAdapter | None) -> int:
    """Queue the command for the exit manager and wait until it is done (or not)."""
    command = job.enqueue()
    job.say(f"Queued {job.kind.value} as command #{command.id} for the exit manager.")
    if not job.options.wait:
        job.say("Not waiting (--no-wait). Watch it with: uv run scripts/status.py")
        return EXIT_OK
    held = partial(_held, adapter)
    return await watch(job, command, targets, held, partial(asyncio.sleep, POLL_S))


async def watch(
    job: Job,
    command: Command,
    targets: Targets,
    held: Callable[[], dict[str, int] | None],
    step: Callable[[], Awaitable[object]],
    idle: Callable[[], bool] = lambda: True,
    stopping: Callable[[], bool] = lambda: False,
) -> int:
    """Show progress until the command is finished and the targets are gone; the code."""
    line = ProgressLine(job.out)
    started = time.monotonic()
    state = progress(job.store, command.id, targets, held())
    while not (state.done and idle()) and not stopping():
        if state.finished and state.command.status is CommandStatus.FAILED:
            break
        elapsed = time.monotonic() - started
        if elapsed > job.options.timeout_s:
            break
        line.show(state.line(targets, elapsed), state.line(targets, 0.0))
        await step()
        state = progress(job.store, command.id, targets, held())
    line.show(state.line(targets, time.monotonic() - started), "")
    line.end()
    return _report(job, command, state, targets)


def _report(job: Job, command: Command, state: Progress, targets: Targets) -> int:
    final = state.command
    if final is not None and final.result:
        job.say(f"Command #{final.id} {final.status.value}: {final.result}")
    closed = [
        c for c in job.store.closed_today(job.today())
        if c.symbol in targets.symbols and c.closed_at >= command.created_at
    ]  # fmt: skip
    job.say(render_result(closed))
    if state.done:
        job.say(f"Done: every position of {job.kind.value} is gone.")
        return EXIT_OK
    if final is not None and final.status is CommandStatus.FAILED:
        job.say("Not done: the command FAILED (see above).")
    else:
        job.say(
            f"Not done within {job.options.timeout_s:g} s: still held: "
            f"{', '.join(state.left) or 'nothing'}; command "
            f"{final.status.value if final else '?'}. Sells already sent keep working at the "
            "broker; the exit manager (or a new run of this script) carries on."
        )
    return EXIT_NOT_DONE


# ============================================================================ direct path


async def stand_in(job: Job, targets: Targets) -> int:
    """Sell in the exit manager's place: its own machinery, this script's client id."""
    rt = ChildRuntime("liquidation", job.settings, job.clock, job.store, one_shot=True)
    return await rt.run(partial(_act_for_exit_manager, job, targets))


async def _act_for_exit_manager(job: Job, targets: Targets, rt: ChildRuntime) -> int:
    settings = job.settings
    param_set = await asyncio.to_thread(load_param_set, settings.db_path, job.today())
    adapter = BrokerAdapter(
        AdapterConfig.from_settings(settings), job.clock, settings.ib_client_id_scripts,
        role=Role.EXIT_MANAGER,
    )  # fmt: skip
    manager = ExitManager(
        rt, adapter, exit_params(settings, job.clock, param_set),
        manager_config(settings, DIRECT_CONNECT_S), parameters=in_force(settings, param_set),
    )  # fmt: skip
    manager.wire()
    try:
        if not await manager.connect():
            job.say(f"Cannot reach the broker at {settings.broker_host}:{settings.broker_port}.")
            return EXIT_NO_BROKER if not rt.stopping else EXIT_NOT_DONE
        if not await manager.reconcile():
            job.say("Reconciliation with the broker failed: nothing was sold (see the log).")
            return EXIT_NOT_DONE
        await manager.start_day(manager.today())
        command = job.enqueue()
        _audit(job, "liquidation_direct", command, client_id=adapter.client_id)
        ignored = "" if job.options.wait else " (--no-wait does not apply: no exit manager)"
        job.say(f"Selling as client id {adapter.client_id} (command #{command.id}){ignored}.")
        code = await watch(
            job, command, targets, partial(_held, adapter), partial(_one_pass, manager),
            idle=manager.seller.idle, stopping=lambda: rt.stopping,
        )  # fmt: skip
        _audit(job, "liquidation_direct_done", command, exit_code=code)
        return code
    finally:
        await manager.shutdown()


async def _one_pass(manager: ExitManager) -> None:
    """Run one pass of the stand-in exit manager (a failed pass is logged and retried)."""
    started = time.monotonic()
    try:
        await manager.run_pass()
    except (StoreError, NotConnectedError, OSError) as exc:
        log.warning("pass failed: %s", exc)
    interval = manager.config.pass_interval_s
    await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


def _audit(job: Job, kind: str, command: Command, **detail: object) -> None:
    with contextlib.suppress(StoreError):
        job.store.record_event(
            ACTOR, kind, now=job.clock.now(),
            detail={"command": command.id, "kind": job.kind.value, **detail},
        )  # fmt: skip


# ============================================================================ the CLI


def parse_args(doc: str, argv: list[str]) -> argparse.Namespace:
    """Return the options; ``doc`` (the script's docstring, exit codes included) is the help."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--yes", action="store_true", help="sell (default: preview only)")
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="queue the command for the running exit manager and return at once "
        "(without one the script sells itself and stays until done)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="give up waiting after this many real seconds (default 120; exit code 1)",
    )
    parser.add_argument(
        "--queue-for-open",
        action="store_true",
        help="market closed: queue the command; the exit manager sells at the next open",
    )
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    parser.add_argument(
        "--db", type=Path, help="database file (default: DB_PATH; sim: data/sim/<date>/)"
    )
    args = parser.parse_args(argv)
    if not args.timeout > 0:
        parser.error("--timeout must be > 0 seconds")
    return args


def main(kind: CommandKind, doc: str, argv: list[str] | None = None) -> int:
    """Run the liquidation script of ``kind``; return its exit code."""
    args = parse_args(doc, sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(env_file=args.env_file)
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    db = args.db or current_db_path(settings, os.environ, args.env_file)
    if not db.exists():
        print(f"No database at {db}: the system has not run yet.", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    settings = _with_db(settings, db)
    try:
        store = Store(db, create=False, process=ACTOR)
    except StoreError as exc:
        print(f"Cannot read {db}: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    try:
        return _run(kind, settings, store, args)
    finally:
        store.close()


def _with_db(settings: Settings, db: Path) -> Settings:
    return dataclasses.replace(settings, db_path=db)


def _run(kind: CommandKind, settings: Settings, store: Store, args: argparse.Namespace) -> int:
    running = holder(lock_path_for(settings.db_path)) is not None
    clock = script_clock(lambda: published_clock(store.processes()), running)
    configure_logging("liquidation", settings.log_dir, settings.log_level, clock, console=False)
    errors = logging.StreamHandler(sys.stderr)
    errors.setLevel(logging.ERROR)
    logging.getLogger().addHandler(errors)
    options = Options(args.yes, args.wait, args.timeout, args.queue_for_open)
    job = Job(kind, settings, store, clock, options)
    try:
        return asyncio.run(run_job(job, running))
    except KeyboardInterrupt:
        print("\nStopped (Ctrl+C). Sells already sent keep working at the broker.")
        return EXIT_NOT_DONE
