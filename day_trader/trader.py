"""The day trader's loop: the only process that buys.

Each pass is one unit of work and reads like a table of contents (freqtrade's bot step):

    refresh   the DB state of the day (``Book``), the watchlist's market data
    manage    pending entries: acknowledgements, fills, partial fills, timeouts
    gate      may anything be bought now? (halt, daily target, trades, positions,
              exit-manager heartbeat, broker 1100, EOD cutoff, session)
    evaluate  per watchlist symbol: re-entry rule, signal, quote, size, collar (pure)
    enter     claim + order, per plan

A pass runs as soon as a 1-min bar closes (the decision trigger), when an order event
arrives, and otherwise every LOOP_INTERVAL_S (real seconds). A symbol gets at most one
order per closed bar. Before the first pass: connect, resolve the previous run's
entries at the broker (``recovery``), and only then report ready.

Spans (``telemetry.tracing``): ``order.place`` for every entry; ``signal.evaluate`` for
a symbol's evaluation when its outcome changed (``evaluations``: a pass repeats the same
outcome almost always), written after the pass's orders went out.

Parameters: target, stop and allocation are today's accepted parameter set's when there
is one (``exit_manager.params.in_force``); the ``params_in_force`` event says which.

Waiting and ending: with no validated watchlist for today yet the trader says so once a
minute and stays up; outside the session and after the EOD cutoff the gate refuses
entries; after the close, once nothing of its own is pending, ``run`` returns 0 (done for
the day, do not restart). A stop request (SIGTERM...) also returns 0.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd

from broker.adapter import BrokerAdapter
from broker.errors import BrokerError, SymbolError
from day_trader.book import Book, read_book
from day_trader.decision import EntryPlan, EntrySkip, Funds, SymbolView, judge_entry, opening_gap
from day_trader.entries import DONE_PHASES, EntryBook, Trigger
from day_trader.evaluations import Evaluation, EvaluationSpans
from day_trader.gate import GateWatch, HeartbeatWatch, gate_state
from day_trader.journal import Journal
from day_trader.marketdata import BarClose, BarFeed
from day_trader.params import TraderParams
from day_trader.recovery import recover
from day_trader.reporting import SkipThrottle
from day_trader.sizing import entry_gate
from exit_manager.params import InForce, in_force
from market.calendar import NotATradingDay, Session, session
from market.clock import ET
from market.indicators import snapshot
from shared_state import StoreError, WatchlistItem
from supervision.child import ChildRuntime

log = logging.getLogger("day_trader")

#: Errors a pass may meet and the next pass may not: log, count, carry on.
TRANSIENT_ERRORS = (StoreError, BrokerError, TimeoutError, ConnectionError)
#: Consecutive failed passes after which the trader gives up (exit 1: the supervisor decides).
MAX_FAILED_PASSES = 30
#: Claim refusals that stop the other entries of the pass too (they are not per symbol).
GLOBAL_REFUSALS = frozenset(
    {"claim_halted", "claim_daily_target_reached", "claim_max_trades", "claim_max_positions"}
)
_MINUTE = timedelta(minutes=1)


class DayTrader:
    """One day of buying; see the module docstring."""

    def __init__(
        self,
        rt: ChildRuntime,
        adapter: BrokerAdapter,
        params: TraderParams,
        *,
        parameters: InForce | None = None,
    ) -> None:
        self.rt = rt
        self.clock = rt.clock
        self.store = rt.store
        self.adapter = adapter
        self.params = params
        #: Where today's target/stop/allocation come from (``params_in_force`` says it).
        self.parameters = parameters or in_force(rt.settings, None)
        self.journal = Journal(rt.store, rt.clock, rt.name)
        self.entries = EntryBook(
            rt.store, adapter, rt.clock, params, self.journal, owner="day_trader"
        )
        self.feed = BarFeed(
            adapter,
            rt.clock,
            self._on_bar_close,
            silence_market_s=params.bar_stream_silence_market_s,
        )
        self.heartbeat = HeartbeatWatch(rt.clock)
        self.gate_watch = GateWatch()
        self.skips = SkipThrottle(params.skip_event_interval_s)
        self._wake = asyncio.Event()
        self._closes: dict[str, BarClose] = {}  # latest bar close per symbol
        self._attempted: dict[str, datetime] = {}  # symbol -> bar of its last order
        self.evaluations = EvaluationSpans()
        self._gaps: dict[str, float] = {}  # fixed once the session's first bar exists
        self._unavailable: dict[str, float] = {}  # symbol -> monotonic time it failed
        self._waiting_recorded = False  # the waiting_watchlist event is written once
        self._waiting_said = -math.inf
        self._pass_mono = 0.0
        self._unsubscribe = [
            adapter.order_status.subscribe(self._poke),
            adapter.fills.subscribe(self._poke),
            adapter.state_changed.subscribe(self._poke),
        ]

    # ================================================================== lifecycle

    async def run(self) -> int:
        """Connect, recover, report ready, then pass after pass; return the exit code."""
        self.journal.start()
        log.info("parameters in force: %s", self.parameters)
        self.journal.record("params_in_force", None, self.parameters.detail())
        try:
            if not await self._connect():
                return 0
            report = await recover(self.entries, self._close_of(self._today()))
            self.rt.report_ready(
                {
                    "client_id": self.adapter.client_id,
                    "account": self.adapter.account,
                    "recovered": report.count,
                }
            )
            return await self._loop()
        finally:
            await self.entries.write_commissions()  # reports that came after the last pass
            self.feed.close()
            self.entries.close()
            for unsubscribe in self._unsubscribe:
                unsubscribe()
            await self.adapter.close()
            await self.journal.close()

    async def _connect(self) -> bool:
        """Wait for the broker (connected and synced); False when asked to stop first."""
        await self.adapter.start(wait=False)
        said = -math.inf
        while not self.adapter.is_connected:
            if time.monotonic() - said >= 30.0:
                said = time.monotonic()
                log.info("waiting for the broker (%s)", self.adapter.state)
            if await self.rt.sleep(0.2):
                return False
        return True

    async def _loop(self) -> int:
        failures = 0
        while not self.rt.stopping:
            try:
                done = await self.step()
                failures = 0
            except TRANSIENT_ERRORS as exc:
                failures += 1
                log.warning("pass failed (%d in a row): %s", failures, exc)
                if failures >= MAX_FAILED_PASSES:
                    raise
                done = False
            if done:
                log.info("the session is over and nothing is pending: done for the day")
                return 0
            await self._wait()
        return 0

    async def _wait(self) -> None:
        """Wait for a bar close or order event, a stop request, or the loop interval."""
        if not self._wake.is_set():
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(self.rt.wait_stop())
            _, pending = await asyncio.wait(
                {waiter, stopper},
                timeout=self.params.loop_interval_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in pending:
                task.cancel()
        self._wake.clear()

    def _poke(self, _event: object) -> None:
        self._wake.set()

    def _on_bar_close(self, close: BarClose) -> None:
        self._closes[close.symbol] = close
        self._wake.set()

    # ================================================================== one pass

    async def step(self) -> bool:
        """Run one pass; return True when the session is over and nothing is pending."""
        self._pass_mono = time.monotonic()
        now = self.clock.now()
        day = now.astimezone(ET).date()
        today = _session_or_none(day)
        book = await asyncio.to_thread(read_book, self.store, day, self.entries.prefix)
        await self._refresh_market_data(book, day, now, today)
        # On a day without a session every DAY order is past its close.
        await self.entries.sync(book.pending, now if today is None else today.close)
        if today is None or now >= today.close:
            return self._nothing_pending(book)
        if not book.watchlist:
            self._say_waiting(day)
            return False
        if self._gate(book, day, now, today) is not None:
            return False
        plans = self._evaluate(book, now, today)
        await self._enter(plans, day)
        self.evaluations.flush()  # after the orders: tracing never delays a buy
        return False

    # ------------------------------------------------------------------ refresh

    async def _refresh_market_data(
        self, book: Book, day: date, now: datetime, today: Session | None
    ) -> None:
        """Follow the watchlist: load bars and quotes of new symbols, drop removed ones."""
        wanted = {item.symbol for item in book.watchlist}
        held = self.feed.symbols()
        dropped = held - wanted - {entry.symbol for entry in book.pending}
        if dropped:
            self.feed.untrack(dropped)
            await self.adapter.unsubscribe_quotes(sorted(dropped))
        new = sorted(wanted - held - self._recently_failed())
        if new and self.adapter.is_connected:
            await self._subscribe(new, day)
        in_session = today is not None and today.open <= now < today.close
        await self.feed.maintain(now, in_session)

    async def _subscribe(self, symbols: list[str], day: date) -> None:
        try:
            await self.adapter.subscribe_quotes(symbols)
        except SymbolError as exc:
            log.warning("%s", exc)
        failed = await self.feed.track(symbols, day)
        for symbol, why in failed.items():
            self._unavailable[symbol] = time.monotonic()
            self._skip(EntrySkip(symbol, "symbol_unavailable", {"error": why}))
        loaded = [s for s in symbols if s not in failed]
        if loaded:
            log.info("watching %s", ", ".join(loaded))

    def _recently_failed(self) -> set[str]:
        now = time.monotonic()
        retry = self.params.watchlist_poll_s * 6
        return {s for s, at in self._unavailable.items() if now - at < retry}

    # ------------------------------------------------------------------ gate

    def _gate(self, book: Book, day: date, now: datetime, today: Session) -> str | None:
        """Return why no entry may be made now (None: entries allowed); report changes."""
        age = self.heartbeat.age_s(book.exit_manager_heartbeat)
        state = gate_state(book, day, age, self.adapter.entries_allowed)
        refusal = entry_gate(state, now, today, self.params.gate)
        change = self.gate_watch.update(refusal)
        if change is not None:
            old, new = change
            log.info("entries from %s to %s", old or "starting", new)
            detail: dict[str, Any] = {"from": old, "to": new, "trades_today": state.trades_today}
            if age is not None:
                detail["exit_manager_heartbeat_age_s"] = round(age, 3)
            kind = "entries_allowed" if refusal is None else "entries_blocked"
            self.journal.record(kind, None, detail)
            self.rt.publish({"entries": new, "watchlist": len(book.watchlist)})
        return refusal

    # ------------------------------------------------------------------ evaluate

    def _evaluate(
        self, book: Book, now: datetime, today: Session
    ) -> list[tuple[EntryPlan, datetime]]:
        """Return the plans of this pass (by watchlist rank); record the skips."""
        # A symbol with a row, or with an entry order of ours still settling (its row may be
        # gone), is not bought again until that settles.
        active = book.active_symbols() | {entry.symbol for entry in book.pending}
        funds = Funds(self._excess_liquidity(), len(book.watchlist))
        plans: list[tuple[EntryPlan, datetime]] = []
        for item in book.watchlist:
            if item.symbol in active:
                continue
            decision, bar_time = self._decide(item, book, funds, now, today)
            if isinstance(decision, EntryPlan) and bar_time is not None:
                plans.append((decision, bar_time))
            elif isinstance(decision, EntrySkip):
                self._skip(decision)
        return plans

    def _decide(
        self, item: WatchlistItem, book: Book, funds: Funds, now: datetime, today: Session
    ) -> tuple[EntryPlan | EntrySkip | None, datetime | None]:
        started = time.time_ns()
        bars = self.feed.frame(item.symbol)
        if bars is None or bars.empty:
            return None, None
        snap = snapshot(bars, today.open)
        if snap.bar_time is not None and self._attempted.get(item.symbol) == snap.bar_time:
            return None, None  # one order per symbol per closed bar
        view = SymbolView(
            symbol=item.symbol,
            snapshot=snap,
            gap_pct=self._gap(item, bars, today),
            quote=self.adapter.quote(item.symbol),
            exits_today=book.exits_today(item.symbol),
        )
        signal, decision = judge_entry(view, funds, now, self.params)
        self.evaluations.note(
            Evaluation(item.symbol, started, time.time_ns(), signal, decision, snap.bar_time, now)
        )
        return decision, snap.bar_time

    def _gap(self, item: WatchlistItem, bars: pd.DataFrame, today: Session) -> float:
        cached = self._gaps.get(item.symbol)
        if cached is not None:
            return cached
        gap = opening_gap(self.feed.prior_close(item.symbol), bars, today.open, item.gap_pct)
        if bars.index[-1] >= today.open and math.isfinite(gap):
            self._gaps[item.symbol] = gap  # the session's first open is known: fixed
        return gap

    def _excess_liquidity(self) -> float | None:
        try:
            return self.adapter.account_values().excess_liquidity
        except BrokerError as exc:
            log.warning("no account values: %s", exc)
            return None

    # ------------------------------------------------------------------ enter

    async def _enter(self, plans: list[tuple[EntryPlan, datetime]], day: date) -> None:
        """Claim and order each plan; stop at a refusal that is not about one symbol."""
        for plan, bar_time in plans:
            outcome = await self.entries.open_entry(plan, day, self._trigger(plan.symbol, bar_time))
            refusal = outcome.refusal
            if refusal is None or not refusal.startswith("claim_"):
                self._attempted[plan.symbol] = bar_time  # claimed: once per bar, sent or not
            if refusal is not None:
                detail = {"kind": plan.kind, "quantity": plan.quantity, "limit": plan.limit}
                self._skip(EntrySkip(plan.symbol, refusal, {**detail, **outcome.detail}))
                if refusal in GLOBAL_REFUSALS:
                    return

    def _trigger(self, symbol: str, bar_time: datetime) -> Trigger:
        close = self._closes.get(symbol)
        if close is not None and close.bar_time == bar_time:
            return Trigger("bar_close", close.seen_mono, bar_time + _MINUTE, close.seen_at)
        return Trigger("pass", self._pass_mono)

    # ------------------------------------------------------------------ reporting

    def _skip(self, skip: EntrySkip) -> None:
        if not self.skips.due(skip.symbol, skip.reason):
            return
        log.info("no entry in %s: %s", skip.symbol, skip.reason)
        self.journal.record(
            "entry_skipped", skip.symbol, {"reason": skip.reason, **dict(skip.detail)}
        )

    def _say_waiting(self, day: date) -> None:
        now = time.monotonic()
        if now - self._waiting_said < self.params.waiting_log_interval_s:
            return
        self._waiting_said = now
        log.info("waiting for today's validated watchlist (%s)", day.isoformat())
        if not self._waiting_recorded:
            self._waiting_recorded = True
            self.journal.record("waiting_watchlist", None, {"trading_date": day.isoformat()})
            self.rt.publish({"entries": "waiting_watchlist"})

    def _nothing_pending(self, book: Book) -> bool:
        return all(self.entries.phase(e.order_ref) in DONE_PHASES for e in book.pending)

    # ------------------------------------------------------------------ time

    def _today(self) -> date:
        return self.clock.now().astimezone(ET).date()

    def _close_of(self, day: date) -> datetime | None:
        today = _session_or_none(day)
        return None if today is None else today.close


def _session_or_none(day: date) -> Session | None:
    try:
        return session(day)
    except NotATradingDay:
        return None
