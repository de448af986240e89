"""The broker adapter: the only code that talks to IBKR (TWS, IB Gateway or the simulator).

``BrokerAdapter`` is asyncio-first (the One Rule: never block the event loop). It owns
one client-library ``IB`` object per connection and turns everything the library says
into frozen snapshots (``broker.models``) and classified events (``broker.events``).

Lifecycle (``broker.state``): ``start()`` runs a connection loop that connects with the
process's client id, waits for the library's initial sync, takes its own reconciliation
snapshot (positions, open orders of all clients, completed orders, executions), and
only then reports READY. A lost connection goes to BACKOFF and reconnects with capped
exponential backoff and jitter; error 326 (client id in use) waits longer. Every
(re)connect reconciles again: orders found at the broker are adopted, fills that
happened while disconnected are reported, and order ids never go below ids already used.

TWS connectivity notices: 1100 pauses entries (PAUSED), 1101 resubscribes market data
and resumes, 1102 resumes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from enum import StrEnum
from typing import Any

import pandas as pd

from broker import convert, guards
from broker.backoff import backoff_delays
from broker.bars import BarClosed, BarStreams
from broker.config import AdapterConfig
from broker.errors import (
    LIVE_DATA_UNAVAILABLE,
    BrokerError,
    BrokerErrorEvent,
    ErrorAction,
    InterlockError,
    NotConnectedError,
    OrderRefusal,
    OrderRefusedError,
    SymbolError,
    classify,
)
from broker.events import Signal
from broker.guards import Role
from broker.ib import IbLib, load
from broker.interlock import trading_account
from broker.models import (
    ACKED_STATUSES,
    AccountValues,
    BrokerPosition,
    ContractInfo,
    ExecutionView,
    OrderView,
    PortfolioRow,
    Quote,
    ReconcileSnapshot,
    order_key,
)
from broker.orders import ForgottenOrder, OrderBook
from broker.pacing import HistoryGuard, bucket_for
from broker.state import ConnectionStateMachine, ConnState, StateChange
from market.clock import ET, Clock

log = logging.getLogger("broker.adapter")

#: States in which the socket is up and synced: requests may be sent.
CONNECTED_STATES = frozenset({ConnState.READY, ConnState.PAUSED})

#: A day's 1-min bars run to the end of the after-hours session.
_AFTER_HOURS_END = time(20, 0)


class ScanCode(StrEnum):
    """Scanner codes the phases use (IBKR names)."""

    #: Top % gainers; before the open IBKR ranks by the pre-market move.
    TOP_PERC_GAIN = "TOP_PERC_GAIN"
    MOST_ACTIVE = "MOST_ACTIVE"


@dataclass(frozen=True)
class _OrderOptions:
    """The keyword options of one ``place_limit`` call."""

    reference_price: float | None
    outside_rth: bool
    tif: str
    wait_ack: bool


@dataclass(frozen=True)
class AdapterStats:
    """Counters for health displays and tests."""

    connects: int
    reconciles: int
    market_data_requests: int
    orders_sent: int
    history_requests: int


class BrokerAdapter:
    """One process's connection to IBKR; see the module docstring.

    ``config`` is an ``AdapterConfig`` or the validated ``Settings``; ``clock`` gives
    market time (quote ages, event times); ``client_id`` is the process's IBKR client
    id; ``role`` decides which order sides it may send (``Role``); ``library`` forces
    ``ib_async`` or ``ib_insync`` (default: ``broker.ib.load()``).

    Events (``Signal``, subscribe with a plain callable): ``state_changed``
    (StateChange), ``order_status`` (OrderView), ``fills`` (ExecutionView, once per
    execution of this client, including fills found on reconnect), ``commissions``
    (ExecutionView with its commission, once), ``errors`` (BrokerErrorEvent, already
    classified), ``refusals`` (OrderRefusal), ``quotes_changed`` (tuple of Quote, on every
    market data update), ``bars_closed`` (BarClosed), ``forgotten`` (ForgottenOrder: an
    order ``forget_order`` stopped counting, with why).

    Typical use::

        adapter = BrokerAdapter(settings, clock, settings.ib_client_id_exit_manager,
                                role=Role.EXIT_MANAGER)
        await adapter.start(timeout=60)            # READY: synced and reconciled
        snapshot = adapter.reconcile_snapshot()    # positions, orders, fills at connect
        await adapter.subscribe_quotes(["AAPL"])
        view = await adapter.place_limit("AAPL", "SELL", 100, 189.5, "exit-42",
                                         reference_price=190.0)
        await adapter.close()
    """

    def __init__(
        self,
        config: AdapterConfig | Any,
        clock: Clock,
        client_id: int,
        *,
        role: Role | str,
        library: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = AdapterConfig.coerce(config)
        self.clock = clock
        self.client_id = int(client_id)
        self.role = Role(role)
        self.lib: IbLib = load(library)
        self._rng = rng or random.Random()
        # -- events the processes subscribe to
        self.state_changed: Signal[StateChange] = Signal("state_changed")
        self.order_status: Signal[OrderView] = Signal("order_status")
        self.fills: Signal[ExecutionView] = Signal("fills")
        self.commissions: Signal[ExecutionView] = Signal("commissions")
        self.errors: Signal[BrokerErrorEvent] = Signal("errors")
        self.refusals: Signal[OrderRefusal] = Signal("refusals")
        self.forgotten: Signal[ForgottenOrder] = Signal("forgotten")
        self.quotes_changed: Signal[tuple[Quote, ...]] = Signal("quotes_changed")
        self._bar_streams = BarStreams(clock, self._request_bar_stream, self._cancel_bar_stream)
        self.bars_closed: Signal[BarClosed] = self._bar_streams.closed
        # -- state that survives reconnects
        self._sm = ConnectionStateMachine(self._on_state_change, clock.now)
        self._orders = OrderBook(self.client_id, self._on_order_view)
        self._executions: dict[str, ExecutionView] = {}
        self._contracts: dict[str, tuple[Any, ContractInfo]] = {}
        self._quote_symbols: dict[str, None] = {}  # ordered set
        self._quotes: dict[str, Quote] = {}
        self._market_data_type = self.config.market_data_type
        self._max_order_id = 0
        self._snapshot: ReconcileSnapshot | None = None
        # Connections are counted (``connects``): the one each order was sent on, and the
        # one the last snapshot came from, tell whether a snapshot can prove an order absent.
        self._snapshot_connection = 0
        self._sent_on: dict[str, int] = {}
        self._account: str | None = None
        self._interlock: InterlockError | None = None
        self._upstream_lost = False
        self._ack_waiters: dict[str, asyncio.Event] = {}
        self._reconcile_lock = asyncio.Lock()
        self._placing: dict[str, asyncio.Future[OrderView]] = {}
        self._bucket = bucket_for(self.config.messages_per_second, self.config.message_burst)
        self._history = HistoryGuard(self.config.history_repeat_window_s)
        self._counts = dict.fromkeys(AdapterStats.__dataclass_fields__, 0)
        # -- state of the current connection (reset by ``_new_session``)
        self._ib: Any = None
        self._tickers: dict[str, Any] = {}
        self._trades: dict[str, Any] = {}  # order key -> library Trade of this client
        self._md_type_sent: int | None = None
        self._lost = asyncio.Event()
        self._abort: asyncio.Future[str] | None = None
        self._client_id_in_use = False
        self._run_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    # ======================================================================= lifecycle

    @property
    def state(self) -> ConnState:
        return self._sm.state

    @property
    def is_connected(self) -> bool:
        """True when requests can be sent (READY or PAUSED)."""
        return self._sm.state in CONNECTED_STATES and self._ib is not None

    @property
    def entries_allowed(self) -> bool:
        """True when new entries may be placed: READY (not paused by 1100) and interlock ok."""
        return self._sm.state == ConnState.READY and self._account is not None

    @property
    def account(self) -> str | None:
        """The account orders go to, or None while the interlock refuses (or not connected)."""
        return self._account

    @property
    def library_name(self) -> str:
        return self.lib.name

    async def start(self, *, wait: bool = True, timeout: float | None = None) -> None:
        """Start the connection loop; with ``wait``, return once READY (or PAUSED).

        Raise ``BrokerError`` if the loop gives up (FATAL) and ``TimeoutError`` when
        ``timeout`` real seconds pass first.
        """
        if self._run_task is None or self._run_task.done():
            self._closing = False
            self._run_task = asyncio.create_task(self._run(), name=f"broker-{self.client_id}")
        if wait:
            await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the adapter is connected and synced (READY or PAUSED)."""
        reached = asyncio.Event()

        def check(_: StateChange | None = None) -> None:
            if self._sm.state in CONNECTED_STATES or self._sm.state == ConnState.FATAL:
                reached.set()

        unsubscribe = self.state_changed.subscribe(check)
        try:
            check()
            await asyncio.wait_for(reached.wait(), timeout)
        finally:
            unsubscribe()
        if self._sm.state == ConnState.FATAL:
            raise BrokerError(f"broker connection gave up (client id {self.client_id})")

    async def close(self) -> None:
        """Disconnect, stop reconnecting, cancel helper tasks; state DISCONNECTED."""
        self._closing = True
        tasks = [t for t in (self._run_task, *self._tasks) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._drop_session()
        self._change(ConnState.DISCONNECTED, "closed")

    async def _run(self) -> None:
        delays = self._delays()
        failures = 0
        while not self._closing:
            self._change(ConnState.CONNECTING, f"connecting to {self._where()}")
            try:
                await self._open_session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # every failure to connect is retried with backoff
                failures += 1
                if not await self._back_off(exc, failures, delays):
                    return
                continue
            failures, delays = 0, self._delays()
            await self._lost.wait()
            if self._closing:
                return
            self._change(ConnState.BACKOFF, "connection lost")
            self._drop_session()
            await asyncio.sleep(next(delays))

    async def _back_off(self, exc: Exception, failures: int, delays: Iterator[float]) -> bool:
        reason = _reason(exc, self._client_id_in_use)
        log.warning("connect attempt %d failed: %s", failures, reason)
        if not isinstance(exc, OSError | TimeoutError | ConnectionError | BrokerError):
            log.exception("unexpected error while connecting", exc_info=exc)
        self._drop_session()
        limit = self.config.max_connect_attempts
        if limit is not None and failures >= limit:
            self._change(ConnState.FATAL, f"gave up after {failures} attempts: {reason}")
            return False
        self._change(ConnState.BACKOFF, reason)
        delay = next(delays)
        if self._client_id_in_use:
            delay = max(delay, self.config.client_id_in_use_delay_s)
        await asyncio.sleep(delay)
        return True

    def _delays(self) -> Iterator[float]:
        c = self.config
        return backoff_delays(c.backoff_base_s, c.backoff_cap_s, c.backoff_jitter, self._rng)

    def _where(self) -> str:
        return f"{self.config.host}:{self.config.port} as client {self.client_id}"

    def _change(self, new: ConnState, reason: str) -> None:
        self._sm.change(new, reason)

    def _on_state_change(self, change: StateChange) -> None:
        log.info("broker connection from %s to %s: %s", change.old, change.new, change.reason)
        self.state_changed.emit(change)

    # ======================================================================= sessions

    async def _open_session(self) -> None:
        """Connect, let the library sync, reconcile, resubscribe; then READY.

        The whole sequence races the connection: a drop or refusal at any step (error
        326, peer closed, disconnected) abandons it at once instead of waiting for the
        request timeouts.
        """
        ib = self._new_session()
        assert self._abort is not None
        work = asyncio.ensure_future(self._connect_and_sync(ib))
        await asyncio.wait({work, self._abort}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise ConnectionError(self._abort.result())
        work.result()
        self._change(ConnState.READY, f"synced with account {self._account or '(refused)'}")
        if self._upstream_lost:
            self._change(ConnState.PAUSED, "TWS reports connectivity to IB lost (1100)")

    async def _connect_and_sync(self, ib: Any) -> None:
        c = self.config
        await ib.connectAsync(c.host, c.port, clientId=self.client_id, timeout=c.connect_timeout_s)
        if not ib.isConnected():
            raise ConnectionError("socket closed during the initial sync")
        self._counts["connects"] += 1
        if self._sm.state == ConnState.CONNECTING:
            self._change(ConnState.SYNCING, "initial sync done; reconciling")
        await self._reconcile(ib)
        await self._subscribe_all(ib)
        await self._open_bar_streams()

    def _new_session(self) -> Any:
        self._drop_session()
        ib = self.lib.IB()
        self._ib = ib
        self._lost = asyncio.Event()
        self._abort = asyncio.get_running_loop().create_future()
        self._client_id_in_use = False
        # A new connection starts from what TWS says now: a 1100 of the old one is history.
        self._upstream_lost = False
        self._wire(ib)
        return ib

    def _drop_session(self) -> None:
        ib, self._ib = self._ib, None
        self._tickers.clear()
        self._trades.clear()
        self._bar_streams.forget_handles()
        self._md_type_sent = None
        if ib is not None and ib.isConnected():
            ib.disconnect()

    def _wire(self, ib: Any) -> None:
        """Subscribe to the library's events; calls from a replaced session are ignored."""

        def guarded(handler: Callable[..., None]) -> Callable[..., None]:
            def call(*args: Any) -> None:
                if ib is self._ib:
                    handler(*args)

            return call

        ib.client.apiStart += guarded(self._on_api_start)
        ib.client.apiError += guarded(self._on_api_error)
        ib.disconnectedEvent += guarded(self._on_disconnected)
        ib.errorEvent += guarded(self._on_error)
        ib.orderStatusEvent += guarded(self._on_trade)
        ib.openOrderEvent += guarded(self._on_trade)
        ib.execDetailsEvent += guarded(self._on_exec_details)
        ib.commissionReportEvent += guarded(self._on_commission)
        ib.pendingTickersEvent += guarded(self._on_tickers)

    def _require_ib(self) -> Any:
        if not self.is_connected:
            raise NotConnectedError(f"broker not connected (state {self._sm.state})")
        return self._ib

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("broker task %s failed", task.get_name(), exc_info=task.exception())

    # ======================================================================= reconcile

    async def reconcile(self) -> ReconcileSnapshot:
        """Ask the broker now for positions, all open orders, completed orders and fills."""
        return await self._reconcile(self._require_ib())

    def reconcile_snapshot(self) -> ReconcileSnapshot | None:
        """Return the snapshot of the last (re)connect or ``reconcile()`` (None before any)."""
        return self._snapshot

    async def _reconcile(self, ib: Any) -> ReconcileSnapshot:
        # One at a time: open-order requests share one reply slot in the library.
        async with self._reconcile_lock:
            return await self._reconcile_unlocked(ib)

    async def _reconcile_unlocked(self, ib: Any) -> ReconcileSnapshot:
        timeout = self.config.request_timeout_s
        await self._bucket.acquire(4)
        positions, open_trades, completed = await asyncio.wait_for(
            asyncio.gather(
                ib.reqPositionsAsync(),
                ib.reqAllOpenOrdersAsync(),
                ib.reqCompletedOrdersAsync(False),
            ),
            timeout,
        )
        # Executions after the orders, so each fill finds its order's perm id.
        fills = await asyncio.wait_for(ib.reqExecutionsAsync(self.lib.ExecutionFilter()), timeout)
        # A fill the library saw before comes back as a new object without its commission;
        # the library's own copy has it.
        seen = {f.execution.execId: f for f in ib.fills()}
        fills = [seen.get(f.execution.execId, f) for f in fills]
        self._check_interlock(ib)
        snapshot = self._build_snapshot(positions, open_trades, completed, fills)
        for trade in open_trades:
            if trade.order.clientId == self.client_id:
                self._trades[order_key(trade.order.orderRef, trade.order.permId)] = trade
        for execution in snapshot.executions:
            self._note_execution(execution)
        self._orders.adopt(snapshot)
        self._raise_order_id_floor(ib, snapshot)
        self._snapshot = snapshot
        self._snapshot_connection = self._counts["connects"]
        self._counts["reconciles"] += 1
        return snapshot

    def _build_snapshot(
        self, positions: list[Any], open_trades: list[Any], completed: list[Any], fills: list[Any]
    ) -> ReconcileSnapshot:
        def keyed(trades: list[Any], source: str) -> dict[str, OrderView]:
            views = (convert.order_view(t, source) for t in trades)
            return {order_key(v.order_ref, v.perm_id): v for v in views}

        executions = tuple(convert.execution_view(f) for f in fills)
        done = {k: _with_fill_ids(v, executions) for k, v in keyed(completed, "completed").items()}
        return ReconcileSnapshot(
            time=self.clock.now(),
            account=self._account or "",
            positions=tuple(convert.position(p) for p in positions),
            open_orders=keyed(open_trades, "open"),
            completed_orders=done,
            executions=executions,
        )

    def _raise_order_id_floor(self, ib: Any, snapshot: ReconcileSnapshot) -> None:
        # The library's id counter starts at nextValidId, which a (restarted) gateway may
        # report below ids this client already used; a reused id would *modify* the old
        # order. Keep the counter above every id we know this client used.
        mine = [o.order_id for o in snapshot.open_orders.values() if o.client_id == self.client_id]
        mine += [e.order_id for e in snapshot.executions if e.client_id == self.client_id]
        self.note_used_order_id(max([*mine, self._orders.max_order_id()], default=0))

    def note_used_order_id(self, order_id: int) -> None:
        """Tell the adapter this client already used ``order_id`` (e.g. from the orders table)."""
        self._max_order_id = max(self._max_order_id, int(order_id))
        if self._ib is not None and self._ib.isConnected():
            self._ib.client.updateReqId(self._max_order_id + 1)

    def _check_interlock(self, ib: Any) -> None:
        c = self.config
        try:
            self._account = trading_account(
                ib.managedAccounts(), c.account, c.trading_mode, c.live_trading_confirm
            )
            self._interlock = None
        except InterlockError as exc:
            self._account, self._interlock = None, exc
            log.error("%s", exc)
            self._emit_error(-1, 0, str(exc), ErrorAction.STOP_TRADING)

    # ======================================================================= account

    def account_values(self) -> AccountValues:
        """Return NetLiquidation, ExcessLiquidity and BuyingPower (kept current by TWS)."""
        ib = self._require_ib()
        account = self._account or next(iter(ib.managedAccounts()), "")
        return convert.account_values(account, ib.accountValues())

    def positions(self) -> list[BrokerPosition]:
        """Return the broker's positions (kept current by the positions subscription)."""
        return [convert.position(p) for p in self._require_ib().positions()]

    def position(self, symbol: str) -> float:
        """Return the shares the broker says are held in ``symbol`` (0 when none)."""
        return sum(p.quantity for p in self.positions() if p.symbol == symbol)

    def portfolio(self) -> list[PortfolioRow]:
        """Return positions marked to market by the broker."""
        return [convert.portfolio_row(p) for p in self._require_ib().portfolio()]

    # ======================================================================= contracts and data

    async def qualify(self, symbol: str) -> ContractInfo:
        """Return the qualified US stock ``symbol``; raise SymbolError when unknown."""
        symbol = symbol.upper()
        cached = self._contracts.get(symbol)
        if cached is not None:
            return cached[1]
        ib = self._require_ib()
        await self._bucket.acquire()
        request = ib.reqContractDetailsAsync(self.lib.Stock(symbol, "SMART", "USD"))
        details = await asyncio.wait_for(request, self.config.request_timeout_s)
        matches = [d for d in details or [] if d.contract.symbol == symbol]
        if not matches:
            raise SymbolError(f"no US stock {symbol} at the broker")
        contract = matches[0].contract
        contract.exchange = "SMART"
        info = convert.contract_info(matches[0])
        self._contracts[symbol] = (contract, info)
        return info

    async def _contract(self, symbol: str) -> Any:
        await self.qualify(symbol)
        return self._contracts[symbol.upper()][0]

    async def bars_1min(
        self,
        symbol: str,
        day: date | None = None,
        *,
        duration: str = "1 D",
        include_premarket: bool = True,
    ) -> pd.DataFrame:
        """Return 1-min TRADES bars (tz-aware ET index) ending at ``day``'s 20:00 ET, or now.

        With ``include_premarket`` the bars start at 04:00 ET (useRTH off).
        """
        end = datetime.combine(day, _AFTER_HOURS_END, tzinfo=ET) if day else None
        return await self._bars(symbol, end, duration, "1 min", not include_premarket)

    async def daily_bars(
        self, symbol: str, count: int, *, end_day: date | None = None
    ) -> pd.DataFrame:
        """Return the last ``count`` daily bars (regular hours) up to ``end_day`` or now.

        Without ``end_day`` the last row is today's session so far (while it trades).
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        # Ask for more days than bars (a "D" may count calendar days) and keep the last ones.
        days = count + count // 2 + 3
        duration = f"{days} D" if days <= 365 else f"{math.ceil(count / 250) + 1} Y"
        end = datetime.combine(end_day, time(23, 59, 59), tzinfo=ET) if end_day else None
        frame = await self._bars(symbol, end, duration, "1 day", True)
        return frame.tail(count)

    async def _bars(
        self, symbol: str, end: datetime | None, duration: str, size: str, use_rth: bool
    ) -> pd.DataFrame:
        contract = await self._contract(symbol)
        key = (symbol.upper(), end.isoformat() if end else "", duration, size, use_rth)

        async def request() -> pd.DataFrame:
            ib = self._require_ib()
            await self._bucket.acquire()
            self._counts["history_requests"] += 1
            bars = await ib.reqHistoricalDataAsync(
                contract,
                end or "",
                duration,
                size,
                "TRADES",
                use_rth,
                formatDate=2,
                timeout=self.config.request_timeout_s,
            )
            return convert.bars_frame(bars or [])

        frame = await self._history.fetch(key, request)
        if frame.empty:
            self._history.forget(key)  # nothing to protect; ask again next time
        return frame.copy()

    async def scan(
        self, code: ScanCode | str, *, rows: int = 50, location: str = "STK.US.MAJOR"
    ) -> list[str]:
        """Return the symbols of an IBKR market scanner (``TOP_PERC_GAIN``, ``MOST_ACTIVE``)."""
        ib = self._require_ib()
        await self._bucket.acquire(2)  # the request and its cancel
        subscription = self.lib.ScannerSubscription(
            numberOfRows=rows, instrument="STK", locationCode=location, scanCode=str(code)
        )
        data = await asyncio.wait_for(
            ib.reqScannerDataAsync(subscription), self.config.request_timeout_s
        )
        return [d.contractDetails.contract.symbol for d in sorted(data, key=lambda d: d.rank)]

    # ======================================================================= quotes

    async def subscribe_quotes(self, symbols: list[str] | tuple[str, ...]) -> None:
        """Stream quotes of ``symbols`` (kept across reconnects); skip unknown symbols.

        Raise ``SymbolError`` listing the symbols that could not be qualified, after
        subscribing all the others.
        """
        unknown = []
        for symbol in (s.upper() for s in symbols):
            try:
                await self.qualify(symbol)
            except SymbolError:
                unknown.append(symbol)
                continue
            if symbol in self._quote_symbols:
                continue
            self._quote_symbols[symbol] = None
            if self.is_connected:
                await self._request_quotes(self._ib, symbol)
        if unknown:
            raise SymbolError(f"no quotes for unknown symbols: {', '.join(unknown)}")

    async def unsubscribe_quotes(self, symbols: list[str] | tuple[str, ...]) -> None:
        """Stop streaming ``symbols``."""
        for symbol in (s.upper() for s in symbols):
            self._quote_symbols.pop(symbol, None)
            self._quotes.pop(symbol, None)
            ticker = self._tickers.pop(symbol, None)
            if ticker is not None and self.is_connected:
                await self._bucket.acquire()
                self._ib.cancelMktData(ticker.contract)

    def quote(self, symbol: str) -> Quote | None:
        """Return the latest quote of a subscribed symbol (None before the first tick)."""
        return self._quotes.get(symbol.upper())

    def quotes(self) -> dict[str, Quote]:
        """Return the latest quote of every subscribed symbol that has one."""
        return dict(self._quotes)

    def is_stale(self, symbol: str) -> bool:
        """Return True when ``symbol`` has no quote or one older than QUOTE_MAX_AGE_S."""
        q = self.quote(symbol)
        return q is None or q.is_stale(self.clock.now(), self.config.quote_max_age_s)

    async def _subscribe_all(self, ib: Any) -> None:
        for symbol in list(self._quote_symbols):
            await self._request_quotes(ib, symbol)

    async def _request_quotes(self, ib: Any, symbol: str, *, renew: bool = False) -> None:
        contract = self._contracts[symbol][0]
        if renew and symbol in self._tickers:
            await self._bucket.acquire()
            ib.cancelMktData(contract)
        if self._md_type_sent != self._market_data_type:
            await self._bucket.acquire()
            ib.reqMarketDataType(self._market_data_type)
            self._md_type_sent = self._market_data_type
        await self._bucket.acquire()
        self._tickers[symbol] = ib.reqMktData(contract, "", False, False)
        self._counts["market_data_requests"] += 1

    async def _resubscribe(self, reason: str) -> None:
        ib = self._ib
        if ib is None:
            return
        log.info("resubscribing market data of %d symbols: %s", len(self._quote_symbols), reason)
        for symbol in list(self._quote_symbols):
            await self._request_quotes(ib, symbol, renew=True)

    def _on_tickers(self, tickers: Any) -> None:
        now = self.clock.now()
        changed = []
        for ticker in tickers:
            symbol = ticker.contract.symbol if ticker.contract else ""
            if symbol in self._quote_symbols:
                self._quotes[symbol] = quote = convert.quote(symbol, ticker, now)
                changed.append(quote)
        if changed:
            self.quotes_changed.emit(tuple(changed))

    async def _fall_back_to_delayed(self, symbol: str, code: int) -> None:
        if self._market_data_type == 3 and self._md_type_sent == 3:
            return
        log.warning("live market data unavailable (%d) for %s: using delayed data", code, symbol)
        self._market_data_type = 3
        if self._ib is not None and symbol in self._tickers:
            await self._request_quotes(self._ib, symbol, renew=True)

    # ======================================================================= streaming bars

    async def stream_bars_1min(self, symbol: str) -> pd.DataFrame:
        """Stream today's 1-min bars of ``symbol`` (pre-market included); return the completed ones.

        Each bar that closes afterwards is emitted on ``bars_closed``. The adapter renews
        the stream after every reconnect and after 1101; calling this again renews it
        now (e.g. when ``bars_last_push`` shows it went silent).
        """
        await self.qualify(symbol)
        return await self._bar_streams.open(symbol.upper())

    def streamed_bars_1min(self, symbol: str) -> pd.DataFrame | None:
        """Return the completed 1-min bars of a streamed symbol (None when not streamed)."""
        return self._bar_streams.frame(symbol.upper())

    def bars_last_push(self, symbol: str) -> datetime | None:
        """Return the market time of the last update of ``symbol``'s bar stream."""
        return self._bar_streams.last_push(symbol.upper())

    def stop_bars_1min(self, symbol: str) -> None:
        """Stop streaming the 1-min bars of ``symbol``."""
        self._bar_streams.stop(symbol.upper())

    async def _request_bar_stream(self, symbol: str) -> Any:
        ib = self._ib
        if ib is None or not ib.isConnected():
            raise NotConnectedError(f"broker not connected (state {self._sm.state})")
        contract = self._contracts[symbol][0]
        await self._bucket.acquire()
        self._counts["history_requests"] += 1
        return await ib.reqHistoricalDataAsync(
            contract,
            "",
            "1 D",
            "1 min",
            "TRADES",
            False,
            formatDate=2,
            keepUpToDate=True,
            timeout=self.config.request_timeout_s,
        )

    def _cancel_bar_stream(self, handle: Any) -> None:
        ib = self._ib
        if ib is not None and ib.isConnected():
            ib.cancelHistoricalData(handle)

    async def _open_bar_streams(self) -> None:
        for symbol in self._bar_streams.symbols():
            try:
                await self._bar_streams.open(symbol)
            except (BrokerError, TimeoutError) as exc:
                # One symbol's bars must not cost the connection; the caller sees the
                # stream go silent (``bars_last_push``) and may renew it.
                log.warning("1-min bar stream of %s not renewed: %s", symbol, exc)

    # ======================================================================= orders

    async def place_limit(
        self,
        symbol: str,
        action: str,
        quantity: float,
        limit_price: float,
        order_ref: str,
        *,
        reference_price: float | None = None,
        outside_rth: bool = False,
        tif: str = "DAY",
        wait_ack: bool = True,
    ) -> OrderView:
        """Send a limit order carrying ``orderRef=order_ref``; return its view.

        An ``order_ref`` the adapter already knows (sent, or found at the broker) is not
        sent again: its current view is returned (idempotent across retries and
        restarts). Every order passes the role, interlock, tick, notional-cap and
        price-collar checks (``reference_price``: the caller's last price; default the
        streaming quote's last or mid); the exit manager's sells are exempt from the
        notional cap and may not exceed the position minus the sells still working
        (``broker.guards``). A refusal raises a ``BrokerError`` naming the rule and emits
        a ``refusals`` event. With ``wait_ack`` wait up to the ack timeout for the
        broker's acknowledgement; an order still unacknowledged then is UNKNOWN (it may
        yet appear at the broker).
        """
        if not order_ref:
            raise OrderRefusedError("order_ref", "every order needs an order_ref")
        existing = self.find_order_now(order_ref)
        if existing is not None:
            return existing
        flying = self._placing.get(order_ref)
        if flying is None:
            # One placement per order_ref at a time: a concurrent second call waits for
            # the first instead of sending a duplicate. Shielded, so a caller that gives
            # up never leaves an order half sent.
            flying = asyncio.ensure_future(
                self._place_new(
                    symbol.upper(),
                    action.upper(),
                    quantity,
                    limit_price,
                    order_ref,
                    _OrderOptions(reference_price, outside_rth, tif, wait_ack),
                )
            )
            self._placing[order_ref] = flying
            flying.add_done_callback(lambda _: self._placing.pop(order_ref, None))
        return await asyncio.shield(flying)

    async def _place_new(
        self,
        symbol: str,
        action: str,
        quantity: float,
        limit_price: float,
        order_ref: str,
        options: _OrderOptions,
    ) -> OrderView:
        try:
            contract, limit = await self._checked_order(
                symbol, action, quantity, limit_price, options.reference_price
            )
        except BrokerError as exc:
            self._refused(order_ref, symbol, action, exc)
            raise
        return await self._send(contract, action, quantity, limit, order_ref, options)

    async def _checked_order(
        self, symbol: str, action: str, quantity: float, limit: float, reference: float | None
    ) -> tuple[Any, float]:
        guards.check_role(self.role, action)
        self._require_ib()
        if self._account is None:
            raise self._interlock or InterlockError("interlock: no trading account")
        shares = guards.check_quantity(quantity)
        info = await self.qualify(symbol)
        rounded = guards.round_limit(action, limit, info.min_tick)
        covered = guards.is_covered_sell(self.role, action)
        if not covered:  # the cap stops fat-fingered entries, never a sell reducing risk
            guards.check_notional(shares, rounded, self.config.max_order_notional)
        guards.check_collar(
            rounded, reference or self._reference(symbol), self.config.price_collar_pct
        )
        if covered:
            held = self.position(symbol)
            guards.check_sell_covered(shares, held, self._orders.pending(symbol, "SELL"))
        return self._contracts[symbol][0], rounded

    def _reference(self, symbol: str) -> float | None:
        q = self._quotes.get(symbol)
        if q is None:
            return None
        return q.last or q.mid

    async def _send(
        self,
        contract: Any,
        action: str,
        quantity: float,
        limit: float,
        order_ref: str,
        options: _OrderOptions,
    ) -> OrderView:
        ib = self._require_ib()
        await self._bucket.acquire()
        order = self.lib.LimitOrder(
            action,
            int(quantity),
            limit,
            orderRef=order_ref,
            tif=options.tif,
            outsideRth=options.outside_rth,
            account=self._account,
        )
        ib.client.updateReqId(self._max_order_id + 1)  # never reuse an id (see reconcile)
        waiter = self._ack_waiters[order_ref] = asyncio.Event()
        self._sent_on[order_ref] = self._counts["connects"]
        try:
            trade = ib.placeOrder(contract, order)
        except ConnectionError as exc:  # the socket closed under us: nothing was sent
            self._ack_waiters.pop(order_ref, None)
            raise NotConnectedError(f"order {order_ref} not sent: {exc}") from exc
        self._max_order_id = max(self._max_order_id, trade.order.orderId)
        self._trades[order_ref] = trade
        self._counts["orders_sent"] += 1
        view = self._orders.update(convert.order_view(trade, "live"))
        timeout = self.config.ack_timeout_s
        if not options.wait_ack:
            asyncio.get_running_loop().call_later(timeout, self._ack_deadline, order_ref)
            return view
        try:
            await asyncio.wait_for(waiter.wait(), timeout)
        except TimeoutError:
            self._ack_deadline(order_ref)
        return self._orders.get(order_ref) or view

    def _ack_deadline(self, order_ref: str) -> None:
        self._ack_waiters.pop(order_ref, None)
        reason = f"no acknowledgement within {self.config.ack_timeout_s:g} s"
        if self._orders.mark_unknown(order_ref, reason) is not None:
            log.warning("order %s is UNKNOWN: %s", order_ref, reason)

    def _refused(self, order_ref: str, symbol: str, action: str, exc: BrokerError) -> None:
        rule = getattr(exc, "rule", type(exc).__name__)
        log.warning("order %s refused: %s", order_ref, exc)
        refusal = OrderRefusal(
            order_ref, symbol, action, rule, str(exc), exc.action, self.clock.now()
        )
        self.refusals.emit(refusal)

    async def cancel(self, order_ref: str) -> OrderView | None:
        """Ask the broker to cancel this client's order ``order_ref``; return its view.

        A done order is returned unchanged. Raise ``SymbolError`` when this client has
        no such working order (orders of other clients cannot be cancelled from here).
        """
        view = self._orders.get(order_ref)
        if view is not None and view.is_done:
            return view
        ib = self._require_ib()
        trade = self._trades.get(order_ref) or self._find_trade(ib, order_ref)
        if trade is None:
            raise SymbolError(f"no working order {order_ref} of client {self.client_id} to cancel")
        await self._bucket.acquire()
        ib.cancelOrder(trade.order)
        return self._orders.update(convert.order_view(trade, "live"))

    def _find_trade(self, ib: Any, order_ref: str) -> Any:
        for trade in ib.openTrades():
            if trade.order.orderRef == order_ref and trade.order.clientId == self.client_id:
                return trade
        return None

    def forget_order(self, order_ref: str, reason: str) -> bool:
        """Stop counting this client's unfinished order ``order_ref``: the broker never had it.

        Only for an order that the reconcile snapshot of a connection *newer* than the one
        it was sent on shows no trace of (no open order, completed order or execution, by
        order_ref or perm id): it never reached the broker, yet it would count as a
        working sell forever (the sell guard: never more than held minus pending sells).
        The order becomes CANCELLED with ``reason`` (an ``order_status`` event) and a
        ``forgotten`` event says why; the order_ref stays known, so it is never sent again.

        Return False and change nothing when the order is not this client's, is done,
        is found at the broker (live or not: design 4, an order found at the broker is
        adopted, never sent twice), or when no newer connection's reconcile has looked
        for it yet.
        """
        view = self._orders.get(order_ref)
        refusal = self._forget_refusal(order_ref, view)
        if view is None or refusal is not None:
            log.warning("order %s not forgotten (%s): %s", order_ref, reason, refusal)
            return False
        proof = f"absent from the reconcile of connection {self._snapshot_connection}"
        self._ack_waiters.pop(order_ref, None)
        self._orders.forget(order_ref, reason)
        log.warning("order %s forgotten: %s; %s", order_ref, reason, proof)
        left = view.quantity - view.filled
        event = ForgottenOrder(
            order_ref, view.symbol, view.action, left, reason, proof, self.clock.now()
        )
        self.forgotten.emit(event)
        return True

    def _forget_refusal(self, order_ref: str, view: OrderView | None) -> str | None:
        """Return why ``order_ref`` may not be forgotten (None: proven never at the broker)."""
        if view is None:
            return "not an order of this client"
        if view.is_done:
            return f"already final ({view.status})"
        snapshot = self._snapshot
        if snapshot is None or self._snapshot_connection <= self._sent_on.get(order_ref, 0):
            return "no reconcile of a newer connection has looked for it yet"
        found = snapshot.find(order_ref) or snapshot.by_perm_id(view.perm_id)
        if found is not None and not found.is_done and found.remaining > 0:
            return f"live at the broker ({found.status}, {found.remaining:g} left)"
        if found is not None or snapshot.executions_for(order_ref, view.perm_id):
            return "the broker reports it"
        return None

    def order(self, order_ref: str) -> OrderView | None:
        """Return this client's order ``order_ref`` as last reported (None when unknown)."""
        return self._orders.get(order_ref)

    def orders(self) -> list[OrderView]:
        """Return every order of this client the adapter knows."""
        return self._orders.views()

    def find_order_now(self, order_ref: str) -> OrderView | None:
        """Return ``order_ref`` from this client's orders, else the last snapshot (no I/O)."""
        found = self._orders.get(order_ref)
        if found is None and self._snapshot is not None:
            found = self._snapshot.find(order_ref)
        return found

    async def find_order(self, order_ref: str, *, refresh: bool = False) -> OrderView | None:
        """Return ``order_ref`` from open orders, completed orders or executions.

        With ``refresh``, reconcile with the broker first (design section 4: an order
        found at the broker is adopted, never sent again).
        """
        if refresh:
            await self.reconcile()
        return self.find_order_now(order_ref)

    def executions(self, order_ref: str | None = None) -> list[ExecutionView]:
        """Return the fills the adapter knows (today's, all clients), optionally of one order."""
        return [e for e in self._executions.values() if order_ref in (None, e.order_ref)]

    # ======================================================================= library events

    def _on_order_view(self, view: OrderView) -> None:
        # Wait for a real status, not just the perm id of openOrder (orderStatus follows it).
        if view.status in ACKED_STATUSES:
            waiter = self._ack_waiters.pop(view.order_ref, None)
            if waiter is not None:
                waiter.set()
        self.order_status.emit(view)

    def _on_trade(self, trade: Any) -> None:
        order = trade.order
        if order.clientId not in (self.client_id, 0):
            return
        key = order_key(order.orderRef, order.permId)
        self._trades.setdefault(key, trade)
        self._max_order_id = max(self._max_order_id, order.orderId)
        self._orders.update(convert.order_view(trade, "live"))

    def _on_exec_details(self, trade: Any, fill: Any) -> None:
        self._note_execution(convert.execution_view(fill))
        self._on_trade(trade)

    def _on_commission(self, trade: Any, fill: Any, report: Any) -> None:
        self._note_execution(convert.execution_view(fill))

    def _note_execution(self, execution: ExecutionView) -> None:
        """File a fill; report this client's new fills once, and their commission once."""
        known = self._executions.get(execution.exec_id)
        if known is not None and known.commission is not None and execution.commission is None:
            execution = replace(execution, commission=known.commission)
        self._executions[execution.exec_id] = execution
        if execution.client_id != self.client_id:
            return
        if known is None:
            self.fills.emit(execution)
        if execution.commission is not None and (known is None or known.commission is None):
            self.commissions.emit(execution)

    def _on_api_start(self) -> None:
        if self._sm.state == ConnState.CONNECTING:
            self._change(ConnState.SYNCING, "API handshake done; initial sync")

    def _on_api_error(self, message: str) -> None:
        if self._abort is not None and not self._abort.done():
            self._abort.set_result(message)

    def _on_disconnected(self) -> None:
        self._lost.set()
        if self._abort is not None and not self._abort.done():
            self._abort.set_result("disconnected")

    def _on_error(self, req_id: int, code: int, message: str, contract: Any = None) -> None:
        symbol = getattr(contract, "symbol", "") or ""
        trade = self._trade_by_order_id(req_id)
        order_ref = trade.order.orderRef if trade is not None else ""
        if trade is not None:
            symbol = symbol or trade.contract.symbol
        action = classify(code)
        self._emit_error(req_id, code, message, action, symbol, order_ref)
        self._react(code, req_id, symbol)
        if trade is not None:
            self._on_trade(trade)

    def _emit_error(
        self,
        req_id: int,
        code: int,
        message: str,
        action: ErrorAction,
        symbol: str = "",
        order_ref: str = "",
    ) -> None:
        event = BrokerErrorEvent(code, req_id, message, action, self.clock.now(), symbol, order_ref)
        level = logging.INFO if action == ErrorAction.INFO else logging.WARNING
        log.log(level, "broker %s %d (req %d) %s: %s", action, code, req_id, symbol, message)
        self.errors.emit(event)

    def _react(self, code: int, req_id: int, symbol: str) -> None:
        if code == 326:
            self._client_id_in_use = True
            if self._abort is not None and not self._abort.done():
                self._abort.set_result("client id in use (326)")
        elif code == 1100:
            self._upstream_lost = True
            if self._sm.state == ConnState.READY:
                self._change(ConnState.PAUSED, "TWS lost connectivity to IB (1100)")
        elif code in (1101, 1102):
            self._upstream_lost = False
            self._spawn(self._restored(code), f"restored-{code}")
        elif code in LIVE_DATA_UNAVAILABLE and symbol in self._tickers:
            if self._tickers[symbol] is not None:
                self._spawn(self._fall_back_to_delayed(symbol, code), f"delayed-{symbol}")

    async def _restored(self, code: int) -> None:
        if code == 1101:
            await self._resubscribe("connectivity restored, market data lost (1101)")
            await self._open_bar_streams()
        if self._sm.state == ConnState.PAUSED and not self._upstream_lost:
            self._change(ConnState.READY, f"connectivity restored ({code})")

    def _trade_by_order_id(self, order_id: int) -> Any:
        if order_id <= 0:
            return None
        return next((t for t in self._trades.values() if t.order.orderId == order_id), None)

    # ======================================================================= stats

    def stats(self) -> AdapterStats:
        """Return the adapter's counters."""
        return AdapterStats(**self._counts)


def _with_fill_ids(view: OrderView, executions: tuple[ExecutionView, ...]) -> OrderView:
    """Return a completed order with the order id, client id and average its fills show.

    TWS's completedOrder message carries neither order id nor client id.
    """
    own = [e for e in executions if view.perm_id and e.perm_id == view.perm_id]
    if not own:
        return view
    shares = sum(e.shares for e in own)
    return replace(
        view,
        order_id=view.order_id or own[0].order_id,
        client_id=view.client_id or own[0].client_id,
        avg_price=view.avg_price or sum(e.shares * e.price for e in own) / shares,
    )


def _reason(exc: BaseException, client_id_in_use: bool) -> str:
    if client_id_in_use:
        return "client id in use (326)"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


__all__ = [
    "AdapterConfig",
    "AdapterStats",
    "BrokerAdapter",
    "ConnState",
    "Role",
    "BarClosed",
    "ScanCode",
]
