"""The exit manager: the always-on guardian of every position, and the only process that sells.

Start-up (``run``): connect, reconcile *before anything else*, then report ready. A
failed connection or reconciliation says why and exits non-zero without ever reporting
ready, so the supervisor's restart policy applies.

Then two paths protect the positions:

- **event-driven**: every streaming quote is checked against its symbol's position (an
  O(1) look-up in the book) by the pure rules; a stop or target starts the sell at once;
- **the periodic pass** (``run_pass``), at most ``pass_interval_s`` apart, reads like a
  table of contents: the day, the book, the commands, the day's P&L, the rules on the
  best marks (portfolio fallback, EOD, liquidations), the exit orders, the drift between
  broker and database, the status.

After the close, flat and with nothing pending, ``run`` returns 0. With positions that
could not be sold (a halted symbol) it stays up, protecting them, and says so.

Contract with the supervisor (``supervision.child``): the ``processes`` row's ``ready``
flag is set only after the start-up reconciliation; heartbeats come from the runtime
every HEARTBEAT_INTERVAL_S; the row's ``detail`` carries ``marks``, ``broker_connected``,
``price_sources``, ``positions``, ``exits``, ``liquidation``. Exit codes: 0 done for the
day or stopped on request; 1 no broker within ``--connect-deadline``, reconciliation
failed, or a crash; 2 bad settings.

Contract with the day trader (the database): it claims (ENTRY_PENDING) and marks filled
(OPEN, with target/stop); from OPEN on the row is this process's, which alone moves it to
EXIT_PENDING and closes it, with the reason that decides re-entry. ENTRY_PENDING rows are
never touched; a broker position with no row at all is adopted.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import date

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.errors import NotConnectedError, SymbolError
from broker.guards import Role
from broker.models import Quote
from broker.state import ConnState, StateChange
from exit_manager.book import Book
from exit_manager.commands import Commands
from exit_manager.daily_guard import DailyGuard
from exit_manager.db_lane import DbLane
from exit_manager.journal import PROCESS, Journal
from exit_manager.marks import Mark, MarkSource, best_mark, quote_price
from exit_manager.params import InForce, ManagerConfig, exit_params, in_force, load_param_set
from exit_manager.reconcile import DriftWatch, ReconcileError, Reconciler
from exit_manager.rules import ExitParams, evaluate_exit
from exit_manager.selling import Seller
from exit_manager.session import TradingDay, trading_day
from exit_manager.status import status_detail
from market.clock import now_et
from shared_state import ExitReason, PositionState, StoreError
from supervision.child import EXIT_CRASH, EXIT_OK, ChildRuntime
from telemetry.tracing import setup_tracing

log = logging.getLogger("exit_manager")

#: A new subscription's first quote may take this long (real seconds) before it counts
#: as missing.
QUOTE_GRACE_S = 5.0

#: Consecutive failed passes after which the process gives up (the supervisor restarts it).
MAX_FAILED_PASSES = 40


class ExitManager:
    """Owns the broker connection, the book, the seller and the periodic pass."""

    def __init__(
        self,
        rt: ChildRuntime,
        adapter: BrokerAdapter,
        params: ExitParams,
        config: ManagerConfig,
        *,
        parameters: InForce | None = None,
    ) -> None:
        self.rt = rt
        self.clock = rt.clock
        self.store = rt.store
        self.adapter = adapter
        self.params = params
        self.config = config
        #: Where today's target/stop come from (the event ``params_in_force`` says it).
        self.parameters = parameters or in_force(rt.settings, None)
        self.max_quote_age_s = rt.settings.quote_max_age_s
        self.lane = DbLane()
        self.fast_lane = DbLane("exit-manager-db-fast")
        self.journal = Journal(self.store, self.lane, self.clock)
        self.book = Book(params)
        self.day = trading_day(self.clock.now(), params.eod_flatten_minutes)
        self.seller = Seller(
            adapter=adapter, store=self.store, lane=self.lane, fast_lane=self.fast_lane,
            journal=self.journal, clock=self.clock, book=self.book, params=params,
            config=config, marks=self.mark, market_open=self.market_open,
        )  # fmt: skip
        self.reconciler = Reconciler(
            adapter=adapter, store=self.store, lane=self.lane, journal=self.journal,
            clock=self.clock, book=self.book, seller=self.seller, params=params,
        )  # fmt: skip
        self.drift = DriftWatch(
            self.reconciler, adapter, self.book, self.seller, config.discrepancy_grace_s
        )
        self.commands = Commands(
            store=self.store, lane=self.lane, journal=self.journal, clock=self.clock,
            book=self.book, seller=self.seller, drift=self.drift,
        )  # fmt: skip
        self.guard = DailyGuard(
            store=self.store, lane=self.lane, journal=self.journal, clock=self.clock,
            params=params, book=self.book, marks=self.mark,
        )  # fmt: skip
        self._portfolio: dict[str, float] = {}
        self._subscribed: dict[str, float] = {}  # symbol -> when (monotonic)
        self._sources: dict[str, MarkSource] = {}
        self._was_ready = False
        self._holding_noted = False
        self._last_publish = 0.0
        self._failed_passes = 0

    # ================================================================== lifecycle

    async def run(self) -> int:
        """Connect, reconcile, report ready, protect until the day is done; return the code."""
        self.wire()
        try:
            await self.lane.call(self.clear_stale_ready)
            if not await self.connect():
                return EXIT_OK if self.rt.stopping else EXIT_CRASH
            if not await self.reconcile():
                return EXIT_CRASH
            await self.start_day(self.today())
            await self.commands.release_stale()  # taken by a run that died before finishing
            await self.subscribe(self.book.symbols())
            await self.lane.call(self.rt.report_ready, self.status())
            self.journal.record("started", client_id=self.adapter.client_id)
            self.journal.record("params_in_force", **self.parameters.detail())
            return await self.loop()
        finally:
            await self.shutdown()

    def clear_stale_ready(self) -> None:
        """Withdraw the row's readiness (a previous run's at start, this run's at the end)."""
        info = self.store.process(self.rt.name)
        if info is not None and info.ready:
            self.store.set_process_ready(self.rt.name, False, now=self.clock.now())

    def wire(self) -> None:
        """Subscribe to the adapter's events (before connecting: the first sync reports too)."""
        self.adapter.quotes_changed.subscribe(self.on_quotes)
        self.adapter.order_status.subscribe(self.seller.on_order_view)
        self.adapter.fills.subscribe(self.seller.on_fill)
        self.adapter.commissions.subscribe(self.seller.on_commission)
        self.adapter.forgotten.subscribe(self.seller.on_forgotten)
        self.adapter.state_changed.subscribe(self.on_connection)

    async def connect(self) -> bool:
        """Connect within ``connect_deadline_s``; False (logged) when not, or when stopping."""
        starting = asyncio.create_task(
            self.adapter.start(wait=True, timeout=self.config.connect_deadline_s)
        )
        stopping = asyncio.create_task(self.rt.wait_stop())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            return False
        error = starting.exception()
        if error is None:
            return True
        where = f"{self.adapter.config.host}:{self.adapter.config.port}"
        why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
        log.error(
            "cannot connect to the broker at %s as client %d within %.0f s: %s; not ready",
            where, self.adapter.client_id, self.config.connect_deadline_s, why,
        )  # fmt: skip
        await self._record_now("connect_failed", where=where, why=why)
        return False

    async def reconcile(self) -> bool:
        """Run the start-up reconciliation (a few attempts); False (logged) when it fails."""
        for attempt in range(1, self.config.reconcile_attempts + 1):
            try:
                await self.reconciler.at_start()
                return True
            except ReconcileError as exc:
                why = str(exc)
                log.warning("reconciliation attempt %d failed: %s", attempt, why)
            if self.rt.stopping or await self.rt.sleep(1.0):
                return False
        log.error("reconciliation failed: %s; not ready, exiting for a restart", why)
        await self._record_now("reconcile_failed", why=why)
        return False

    async def _record_now(self, kind: str, **detail: object) -> None:
        self.journal.record(kind, level=logging.ERROR, **detail)
        await self.lane.drain()

    async def start_day(self, today: date) -> None:
        """Open the day's record with NetLiquidation as the starting capital."""
        capital = self.net_liquidation()
        state = await self.guard.start_day(today, capital)
        if state.starting_capital is None:
            self.journal.record(
                "starting_capital_unknown", level=logging.WARNING,
                why="NetLiquidation not reported yet; the daily limits wait for it",
            )  # fmt: skip

    def net_liquidation(self) -> float | None:
        try:
            value = self.adapter.account_values().net_liquidation
        except NotConnectedError:
            return None
        return value if value is not None and value > 0 else None

    async def loop(self) -> int:
        """Run the periodic pass until the day is done or a stop is requested."""
        while not self.rt.stopping:
            started = time.monotonic()
            try:
                if await self.run_pass():
                    log.info("after the close, flat, nothing pending: done for the day")
                    return EXIT_OK
                self._failed_passes = 0
            except (StoreError, NotConnectedError, OSError) as exc:
                self._pass_failed(exc)
            except Exception as exc:  # noqa: BLE001 - keep protecting through one bad pass
                log.exception("pass failed")
                self._pass_failed(exc)
            elapsed = time.monotonic() - started
            await self.rt.sleep(max(0.0, self.config.pass_interval_s - elapsed))
        return EXIT_OK

    def _pass_failed(self, exc: BaseException) -> None:
        self._failed_passes += 1
        log.warning("pass failed (%d in a row): %s", self._failed_passes, exc)
        if self._failed_passes >= MAX_FAILED_PASSES:
            raise RuntimeError(f"{self._failed_passes} passes failed in a row; last: {exc}")

    async def shutdown(self) -> None:
        """Stop the tasks and disconnect; working sells stay at the broker, protecting."""
        self.journal.record("stopped", why=self.rt.stop_reason or "run ended")
        await self.seller.close()
        await self.adapter.close()
        self.lane.post("not ready", self.clear_stale_ready)  # this run's readiness ends here
        await asyncio.to_thread(self.lane.close)
        await asyncio.to_thread(self.fast_lane.close)

    # ================================================================== the periodic pass

    async def run_pass(self) -> bool:
        """One unit of work; return True when the day is done (exit 0)."""
        day = self.refresh_day()
        await self.roll_day(day)
        await self.refresh_book()
        await self.commands.take_all(day.date, day.is_open)
        liquidation = await self.guard.check(day.date)
        self.protect(day, liquidation)
        await self.seller.manage()
        await self.drift.check()
        self.publish(day)
        return self.done_for_the_day(day)

    def refresh_day(self) -> TradingDay:
        """Return the trading day now (and refresh the fallback marks)."""
        self.day = trading_day(self.clock.now(), self.params.eod_flatten_minutes)
        self.refresh_portfolio()
        return self.day

    def today(self) -> date:
        return self.refresh_day().date

    async def roll_day(self, day: TradingDay) -> None:
        """A new calendar day: a new daily record (and no liquidation carried over)."""
        if self.guard.day != day.date:
            self._holding_noted = False
            await self.start_day(day.date)

    async def refresh_book(self) -> None:
        """Re-read the active rows; subscribe quotes of new symbols."""
        change = self.book.load(await self.lane.call(self.store.active_positions))
        if change.added:
            await self.subscribe(change.added)

    def protect(self, day: TradingDay, liquidation: ExitReason | None) -> None:
        """Apply the rules to every OPEN row on its best mark (the quote path's safety net)."""
        if not day.is_open:
            return
        for row in self.book.rows():
            if row.state is not PositionState.OPEN or self.seller.busy(row.symbol):
                continue
            mark = self.mark(row.symbol)
            price = mark.price if mark else math.nan
            if liquidation is not None:
                self.seller.request(row.symbol, liquidation, price, f"daily {liquidation}")
            elif row.trading_date < day.date:
                self.seller.request(row.symbol, ExitReason.EOD, price, "held from an earlier day")
            else:
                self.judge(row.symbol, price, day)
        self.commands.continue_liquidations()

    def judge(self, symbol: str, price: float, day: TradingDay) -> bool:
        """Run the exit rules on one OPEN position; start the sell they ask for."""
        view = self.book.view(symbol)
        if view is None or day.close is None:
            return False
        decision = evaluate_exit(view, price, day.now, day.close, self.params)
        if decision is None:
            return False
        return self.seller.request(symbol, ExitReason(decision.reason), price, decision.detail)

    def done_for_the_day(self, day: TradingDay) -> bool:
        """After the close: True when flat with nothing pending; else say what is held."""
        if not day.after_close:
            return False
        held = self._broker_held()
        if not len(self.book) and held == [] and self.seller.idle():
            return True
        if not self._holding_noted:
            self._holding_noted = True
            self.journal.record(
                "after_close_holding", level=logging.WARNING,
                rows=[f"{r.symbol}:{r.state.value}:{r.quantity}" for r in self.book.rows()],
                broker=held, why="positions remain after the close; staying up to protect them",
            )  # fmt: skip
        return False

    def _broker_held(self) -> list[str] | None:
        """Return the symbols the broker holds (None when not connected: unknown)."""
        try:
            return [p.symbol for p in self.adapter.positions() if p.quantity]
        except NotConnectedError:
            return None

    # ================================================================== quotes and marks

    def on_quotes(self, quotes: tuple[Quote, ...]) -> None:
        """The event-driven path: judge each quoted symbol's position at once."""
        day = trading_day(self.clock.now(), self.params.eod_flatten_minutes)
        if not day.is_open or self.guard.mode is not None:
            return  # a liquidation is driven by the pass
        for quote in quotes:
            if (
                quote.delayed
                or self.seller.busy(quote.symbol)
                or self.book.view(quote.symbol) is None
            ):
                continue
            price = quote_price(quote)
            if price is not None:
                self.judge(quote.symbol, price, day)

    def mark(self, symbol: str) -> Mark | None:
        """Return the best price of ``symbol``: live quote, else the portfolio's price."""
        quote = self.adapter.quote(symbol)
        mark = best_mark(
            symbol, quote, self._portfolio.get(symbol), self.clock.now(), self.max_quote_age_s
        )
        if mark is not None:
            self._note_source(symbol, mark.source)
        return mark

    def _note_source(self, symbol: str, source: MarkSource) -> None:
        if self._sources.get(symbol) is source:
            return
        before = self._sources.get(symbol)
        since = self._subscribed.get(symbol)
        if before is None and since is not None and time.monotonic() - since < QUOTE_GRACE_S:
            if source is not MarkSource.QUOTE:
                return  # subscribed a moment ago: the first quote is still on its way
        self._sources[symbol] = source
        if before is not None or source is not MarkSource.QUOTE:
            self.journal.record(
                "price_source", symbol, source=source, before=before,
                why="no live quote: watching the portfolio price" if source is not
                MarkSource.QUOTE else "live quotes again",
            )  # fmt: skip

    def refresh_portfolio(self) -> None:
        """Keep the broker's portfolio prices (the fallback marks)."""
        try:
            rows = self.adapter.portfolio()
        except NotConnectedError:
            return
        self._portfolio = {r.symbol: r.market_price for r in rows if r.market_price > 0}

    async def subscribe(self, symbols: list[str] | tuple[str, ...]) -> None:
        """Stream quotes of ``symbols``; a symbol without data falls back to the portfolio."""
        wanted = [s for s in symbols if s not in self._subscribed]
        if not wanted or not self.adapter.is_connected:
            return
        self._subscribed.update(dict.fromkeys(wanted, time.monotonic()))
        try:
            await self.adapter.subscribe_quotes(wanted)
        except SymbolError as exc:
            self.journal.record("no_market_data", level=logging.WARNING, why=str(exc))

    def market_open(self) -> bool:
        """Return True inside the regular session now."""
        return trading_day(self.clock.now(), self.params.eod_flatten_minutes).is_open

    # ================================================================== connection and status

    def on_connection(self, change: StateChange) -> None:
        """Log losing and regaining the broker; look for sells lost on the way."""
        if change.new in (ConnState.READY, ConnState.PAUSED):
            if self._was_ready and change.old not in (ConnState.READY, ConnState.PAUSED):
                self.journal.record("broker_reconnected", why=change.reason)
                self.seller.on_reconnected()
            self._was_ready = True
        elif change.new is ConnState.DISCONNECTED:
            return  # closed by this process on its way out
        elif change.old in (ConnState.READY, ConnState.PAUSED) and self._was_ready:
            self.journal.record(
                "broker_disconnected", level=logging.WARNING, state=change.new, why=change.reason
            )

    def status(self) -> dict[str, object]:
        return status_detail(
            day=self.day,
            connected=self.adapter.is_connected,
            book=self.book,
            marks=self.mark,
            exits=self.seller.orders(),
            liquidation=self.guard.mode,
            daily_pnl_pct=self.guard.last_pnl_pct,
            notes=["positions remain after the close"] if self._holding_noted else (),
        )

    def publish(self, day: TradingDay) -> None:
        """Publish the status detail (at most every ``status_interval_s``)."""
        now = time.monotonic()
        if now - self._last_publish < self.config.status_interval_s:
            return
        self._last_publish = now
        self.lane.post("publish status", self.rt.publish, self.status())


def build_adapter(rt: ChildRuntime) -> BrokerAdapter:
    """Return the exit manager's broker adapter (SELL-only role, its own client id)."""
    settings = rt.settings
    config = AdapterConfig.from_settings(settings)
    return BrokerAdapter(
        config, rt.clock, settings.ib_client_id_exit_manager, role=Role.EXIT_MANAGER
    )


async def main(rt: ChildRuntime, config: ManagerConfig) -> int:
    """The child's entry point: build everything from the settings (and today's set) and run."""
    tracing = setup_tracing(rt.name, rt.settings, clock=rt.clock)
    try:
        param_set = await asyncio.to_thread(
            load_param_set, rt.settings.db_path, now_et(rt.clock).date()
        )
        parameters = in_force(rt.settings, param_set)
        params = exit_params(rt.settings, rt.clock, param_set)
        log.info("%s starting: %s; %s", PROCESS, params, config)
        log.info("parameters in force for new positions: %s", parameters)
        manager = ExitManager(rt, build_adapter(rt), params, config, parameters=parameters)
        return await manager.run()
    finally:
        await asyncio.to_thread(tracing.shutdown)
