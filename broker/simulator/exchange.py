"""The simulated exchange: validates orders, matches them against quotes, books fills.

Pure logic: no sockets, no asyncio. Every public method returns the events (types.py)
the protocol server turns into wire messages. Events carry *copies* of the orders, so a
later state change in the same call never rewrites an event already produced.

Matching model (deliberately simple, and deterministic for a given market):

- Each working order is matched on its own against its symbol's top of book; there is no
  queue position and no liquidity shared between orders.
- An order that is marketable when it *arrives* (placement, modification, activation at
  the open, release of a withheld acknowledgement) fills at the touch: the ask for a buy,
  the bid for a sell, for as long as it stays marketable. A MKT order always fills at the
  touch. A resting limit order that a later quote crosses fills at its limit price (it was
  in the book first; the conservative fill for the trader).
- Each matching step fills at most ``max(1, floor(partial_fill_volume_share * V))`` shares
  of one order, where ``V`` is the volume of the 1-min bar containing the step (the touch
  size when the market has no bar), so a large order fills over several steps.
- A halted quote fills nothing; orders rest.
- Sessions: in regular hours every working order may fill; in the pre-market (04:00 ET to
  the open) only ``outside_rth`` orders; after the close nothing. An order placed outside
  its hours is ``PreSubmitted`` until they begin. DAY orders expire at the close of the
  session they were placed for (early closes included); IOC remainders are cancelled right
  after their first matching attempt.
- Commission is computed per order (IBKR Pro fixed: per share, with a per-order minimum
  and a cap of a share of trade value); each fill is charged the growth of the order's
  commission, so partial fills add up to the commission of the whole order.
- No short selling: a SELL beyond the position not already reserved by other open sells is
  rejected, so fills can never take the position below zero.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from enum import StrEnum

from broker.simulator.account import AccountStore
from broker.simulator.types import (
    DONE_STATUSES,
    AccountSnapshot,
    Action,
    ExchangeConfig,
    ExchangeEvent,
    Execution,
    FillEvent,
    MarketData,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    PositionRow,
    Quote,
    SimOrder,
)
from market.calendar import Session, is_trading_day, next_trading_day, session
from market.clock import ET, Clock

log = logging.getLogger(__name__)

_QTY_EPS = 1e-9
_PRICE_EPS = 1e-9
_COMPLETED_WINDOW = timedelta(hours=24)

ORDER_TYPES = frozenset({"LMT", "MKT"})
TIFS = frozenset({"DAY", "GTC", "IOC"})

MSG_NO_SECURITY = "No security definition has been found for the request"
MSG_BAD_TICK = "The price does not conform to the minimum price variation for this contract."
MSG_NO_BUYING_POWER = "Order rejected - reason: insufficient buying power"
MSG_DUPLICATE_ID = "Duplicate order id"
MSG_MODIFY_MISMATCH = "Order being modified does not match original order"

NOTE_FILLED = "Filled"
NOTE_USER_CANCEL = "Cancelled by user"
NOTE_GLOBAL_CANCEL = "Cancelled by global cancel"
NOTE_DAY_EXPIRED = "Cancelled: DAY order expired at the close"
NOTE_IOC = "Cancelled: IOC remainder not immediately fillable"

#: The order lifecycle (TWS status names). Done statuses have no way out.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.PENDING_SUBMIT: frozenset(
        {OrderStatus.PRE_SUBMITTED, OrderStatus.SUBMITTED, OrderStatus.CANCELLED}
    ),
    OrderStatus.PRE_SUBMITTED: frozenset(
        {OrderStatus.PRE_SUBMITTED, OrderStatus.SUBMITTED, OrderStatus.CANCELLED}
    ),
    OrderStatus.SUBMITTED: frozenset(
        {OrderStatus.SUBMITTED, OrderStatus.FILLED, OrderStatus.CANCELLED}
    ),
}


class ExchangeError(RuntimeError):
    """An internal invariant of the exchange broke (a bug, not a client mistake)."""


class TradingPhase(StrEnum):
    CLOSED = "closed"
    PRE_MARKET = "pre_market"
    REGULAR = "regular"


@dataclass(frozen=True)
class Rejection:
    """Why an order is refused: a TWS error code and its text."""

    code: int
    message: str


@dataclass(frozen=True)
class _BarVolumes:
    """One symbol-day's 1-min bar start instants (epoch seconds) and volumes."""

    starts: list[float]
    volumes: list[int]
    loaded_at: float


def order_commission(shares: float, value: float, config: ExchangeConfig) -> float:
    """Return the commission of an order of ``shares`` worth ``value`` dollars in total.

    Per share, at least the minimum, at most the percentage of trade value (the cap wins
    over the minimum on very small orders, as at IBKR).
    """
    per_share = shares * config.commission_per_share
    return min(max(per_share, config.commission_min), config.commission_max_pct * value)


def rejected_text(code: int, reason: str) -> str:
    """Return the error text of a rejection: 201 reasons get TWS's prefix."""
    if code == 201 and not reason.startswith("Order rejected"):
        return f"Order rejected - reason: {reason}"
    return reason


def is_on_tick(price: float, tick: float) -> bool:
    """Return True when ``price`` is a whole multiple of ``tick`` (within 1e-9)."""
    return abs(round(price / tick) * tick - price) <= _PRICE_EPS


class Exchange:
    """Orders, matching and fills of the simulated broker, over a persistent account."""

    def __init__(
        self,
        account: AccountStore,
        market: MarketData,
        clock: Clock,
        config: ExchangeConfig,
    ) -> None:
        self.account = account
        self.market = market
        self.clock = clock
        self.config = config
        self._orders: dict[tuple[int, int], SimOrder] = {}  # live + recently done
        self._live: dict[int, SimOrder] = {}  # by perm id
        self._working: dict[str, dict[int, SimOrder]] = {}  # Submitted, by symbol
        self._waiting: dict[int, SimOrder] = {}  # PreSubmitted
        self._withheld: dict[int, SimOrder] = {}  # PendingSubmit, in placement order
        self._expiry: dict[int, datetime] = {}  # DAY orders' expiry instants
        self._next_expiry: datetime | None = None
        self._taking: set[int] = set()  # marketable since arrival: fill at the touch
        self._commission: dict[int, float] = {}  # charged so far, per live order
        self._marks: dict[str, float] = {}
        self._bars: dict[tuple[str, date], _BarVolumes] = {}
        self._sessions: dict[date, Session | None] = {}
        self._withholding = False
        self._reject_next: Rejection | None = None
        self._reload()

    def _reload(self) -> None:
        # Restart: live orders resume working; recent done orders stay listable.
        since = self.clock.now() - _COMPLETED_WINDOW
        for order in self.account.load_orders(done_since=since):
            self._orders[_key(order.request)] = order
            self._reindex(order)
        self._commission = self.account.commission_by_perm()
        if self._live:
            log.info("reloaded %d live orders from %s", len(self._live), self.account.path)

    # ----------------------------------------------------------------------- placing

    def place(self, req: OrderRequest) -> list[ExchangeEvent]:
        """Accept, modify or reject ``req``; a marketable order fills at once."""
        now = self.clock.now()
        existing = self._orders.get(_key(req))
        if existing is not None and not existing.is_done:
            return self._modify(existing, req, now)
        if existing is not None or self.account.find_order(req.client_id, req.order_id):
            return [self._reject_new(req, Rejection(103, MSG_DUPLICATE_ID), now)]
        rejection = self._take_injected_rejection() or self._validate(req, None)
        if rejection is not None:
            return [self._reject_new(req, rejection, now)]
        return self._accept(req, now)

    def _accept(self, req: OrderRequest, now: datetime) -> list[ExchangeEvent]:
        if self._withholding:
            status = OrderStatus.PENDING_SUBMIT
        else:
            status = self._initial_status(req, self._phase(now))
        order = SimOrder(req, self.account.next_perm_id(), status, submitted_time=now)
        self.account.record_order(order)
        self._orders[_key(req)] = order
        self._reindex(order)
        log.info("order %s accepted: %s (perm %d)", _label(order), status, order.perm_id)
        if status is OrderStatus.PENDING_SUBMIT:
            return []  # fault: acknowledgement withheld
        return [OrderUpdate(_copy(order)), *self._arrive(order, now)]

    def _arrive(self, order: SimOrder, now: datetime) -> list[ExchangeEvent]:
        """Match an order that just arrived (placed, modified, activated or released)."""
        events: list[ExchangeEvent] = []
        if order.status is OrderStatus.SUBMITTED:
            self._taking.add(order.perm_id)
            events += self._try_match(order, now)
        if order.request.tif == "IOC" and not order.is_done:
            events.append(self._set_status(order, OrderStatus.CANCELLED, now, NOTE_IOC))
        return events

    def _modify(self, live: SimOrder, req: OrderRequest, now: datetime) -> list[ExchangeEvent]:
        # TWS semantics: placeOrder with the id of a working order changes it.
        rejection = self._take_injected_rejection() or self._validate(req, live)
        if rejection is not None:
            return [OrderRejected(req.client_id, req.order_id, *_fields(rejection), _copy(live))]
        self._commit(live, replace(live, request=req))
        log.info("order %s modified: qty %g limit %s", _label(live), req.quantity, req.limit_price)
        if live.status is OrderStatus.PENDING_SUBMIT:
            return []  # still unacknowledged
        return [OrderUpdate(_copy(live)), *self._arrive(live, now)]

    def _reject_new(self, req: OrderRequest, rejection: Rejection, now: datetime) -> OrderRejected:
        """Refuse a new order; keep it as a done order so reconciliation can find it.

        The attached Cancelled order lets the server follow the error with an orderStatus
        (protocol section 6: after 110, ib_insync needs it to end the Trade). A duplicate
        id (103) is not kept: the id already belongs to the earlier order.
        """
        order = SimOrder(
            req,
            self.account.next_perm_id(),
            OrderStatus.CANCELLED,
            submitted_time=now,
            completed_time=now,
            completed_status=f"Rejected: {rejection.message}",
        )
        if rejection.code == 103:
            self.account.note_order_id(req.client_id, req.order_id)
        else:
            self.account.record_order(order)
            self._orders[_key(req)] = order
        log.info("order %s rejected: %d %s", _label(order), rejection.code, rejection.message)
        return OrderRejected(req.client_id, req.order_id, *_fields(rejection), _copy(order))

    def _take_injected_rejection(self) -> Rejection | None:
        rejection, self._reject_next = self._reject_next, None
        return rejection

    def _initial_status(self, req: OrderRequest, phase: TradingPhase) -> OrderStatus:
        if phase is TradingPhase.REGULAR or (phase is TradingPhase.PRE_MARKET and req.outside_rth):
            return OrderStatus.SUBMITTED
        return OrderStatus.PRE_SUBMITTED

    # ----------------------------------------------------------------------- validation

    def _validate(self, req: OrderRequest, live: SimOrder | None) -> Rejection | None:
        """Return why ``req`` (a new order, or a change of ``live``) is refused, or None."""
        checks = (
            self._check_contract,
            self._check_modification,
            self._check_shape,
            self._check_tick,
            self._check_funds,
        )
        for check in checks:
            rejection = check(req, live)
            if rejection is not None:
                return rejection
        return None

    def _check_contract(self, req: OrderRequest, live: SimOrder | None) -> Rejection | None:
        info = self.market.info(req.symbol)
        if info is None or (req.con_id and req.con_id != info.con_id):
            return Rejection(200, MSG_NO_SECURITY)
        return None

    def _check_modification(self, req: OrderRequest, live: SimOrder | None) -> Rejection | None:
        if live is None:
            return None
        old = live.request
        if (req.symbol, req.action) != (old.symbol, old.action):
            return Rejection(105, MSG_MODIFY_MISMATCH)
        if req.quantity <= live.filled + _QTY_EPS:
            return _reason(f"new quantity {req.quantity:g} is not above filled {live.filled:g}")
        return None

    def _check_shape(self, req: OrderRequest, live: SimOrder | None) -> Rejection | None:
        if req.order_type not in ORDER_TYPES:
            return _reason(f"order type {req.order_type!r} is not supported")
        if req.tif not in TIFS:
            return _reason(f"time in force {req.tif!r} is not supported")
        if not req.quantity > 0:
            return _reason(f"order quantity must be positive, got {req.quantity:g}")
        if abs(req.quantity - round(req.quantity)) > _QTY_EPS:
            return _reason(f"fractional quantity {req.quantity:g} is not allowed for stocks")
        if req.order_type == "LMT" and not (req.limit_price and req.limit_price > 0):
            return _reason(f"limit price must be positive, got {req.limit_price}")
        return None

    def _check_tick(self, req: OrderRequest, live: SimOrder | None) -> Rejection | None:
        info = self.market.info(req.symbol)
        if req.order_type == "LMT" and info is not None and req.limit_price is not None:
            if not is_on_tick(req.limit_price, info.min_tick):
                return Rejection(110, MSG_BAD_TICK)
        return None

    def _check_funds(self, req: OrderRequest, live: SimOrder | None) -> Rejection | None:
        remaining = req.quantity - (live.filled if live else 0.0)
        if req.action is Action.SELL:
            return self._check_position(req, live, remaining)
        # Open buys reserve buying power too, so several orders cannot overspend it.
        reserved = sum(
            o.remaining * self._reference_price(o.request)
            for o in self._live.values()
            if o is not live and o.request.action is Action.BUY
        )
        needed = remaining * self._reference_price(req)
        if needed + reserved > self.snapshot().buying_power + _PRICE_EPS:
            return Rejection(201, MSG_NO_BUYING_POWER)
        return None

    def _check_position(
        self, req: OrderRequest, live: SimOrder | None, remaining: float
    ) -> Rejection | None:
        position = self.account.position(req.symbol)
        held = position.quantity if position else 0.0
        reserved = sum(
            o.remaining
            for o in self._live.values()
            if o is not live and o.request.action is Action.SELL and o.request.symbol == req.symbol
        )
        if remaining > held - reserved + _QTY_EPS:
            return _reason(
                f"short selling is not supported in this paper account "
                f"(sell {remaining:g} {req.symbol}, held {held:g}, open sells {reserved:g})"
            )
        return None

    def _reference_price(self, req: OrderRequest) -> float:
        """Return the price a buy is funded at: its limit, else the ask, else the mark."""
        if req.order_type == "LMT" and req.limit_price:
            return req.limit_price
        quote = self.market.quote_at(req.symbol, self.clock.now())
        if quote is not None and quote.ask > 0:
            return quote.ask
        return self._mark(req.symbol, 0.0, self.clock.now())

    # ----------------------------------------------------------------------- cancelling

    def cancel(self, client_id: int, order_id: int) -> list[ExchangeEvent]:
        """Cancel a client's order; refuse with 10147 (unknown) or 10148 (already done)."""
        order = self._orders.get((client_id, order_id)) or self.account.find_order(
            client_id, order_id
        )
        if order is None:
            text = f"OrderId {order_id} that needs to be cancelled is not found."
            return [OrderRejected(client_id, order_id, 10147, text)]
        if order.is_done:
            text = (
                f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                f"state: {order.status.value}."
            )
            return [OrderRejected(client_id, order_id, 10148, text, _copy(order))]
        return [self._set_status(order, OrderStatus.CANCELLED, self.clock.now(), NOTE_USER_CANCEL)]

    def global_cancel(self) -> list[ExchangeEvent]:
        """Cancel every live order of every client."""
        now = self.clock.now()
        return [
            self._set_status(order, OrderStatus.CANCELLED, now, NOTE_GLOBAL_CANCEL)
            for order in sorted(self._live.values(), key=lambda o: o.perm_id)
        ]

    # ----------------------------------------------------------------------- the market step

    def on_market(
        self, now: datetime, quotes: Mapping[str, Quote] | None = None
    ) -> list[ExchangeEvent]:
        """Advance to ``now``: expire, activate at the open, and match resting orders.

        Called on every quote step, so it reads no SQLite and touches only symbols that
        have working orders. ``quotes`` may hand in the step's quotes the caller already
        has (symbols missing from it are asked of the market).
        """
        events: list[ExchangeEvent] = []
        if self._withheld and not self._withholding:
            events += self._release(now)  # PendingSubmit orders left by a restart
        if self._next_expiry is not None and now >= self._next_expiry:
            events += self._expire(now)
        phase = self._phase(now)
        if phase is TradingPhase.CLOSED:
            return events
        if self._waiting:
            events += self._activate(now, phase)
        for symbol in list(self._working):
            quote = quotes.get(symbol) if quotes else None
            events += self._match_symbol(symbol, now, phase, quote)
        return events

    def _expire(self, now: datetime) -> list[ExchangeEvent]:
        due = sorted(perm for perm, at in self._expiry.items() if at <= now)
        return [
            self._set_status(self._live[perm], OrderStatus.CANCELLED, now, NOTE_DAY_EXPIRED)
            for perm in due
        ]

    def _activate(self, now: datetime, phase: TradingPhase) -> list[ExchangeEvent]:
        events: list[ExchangeEvent] = []
        for order in list(self._waiting.values()):
            if self._initial_status(order.request, phase) is OrderStatus.SUBMITTED:
                events.append(self._set_status(order, OrderStatus.SUBMITTED, now))
                # Matched by the caller's symbol pass, as an arrival (at the touch).
                self._taking.add(order.perm_id)
        return events

    def _match_symbol(
        self, symbol: str, now: datetime, phase: TradingPhase, quote: Quote | None
    ) -> list[ExchangeEvent]:
        if quote is None:
            quote = self.market.quote_at(symbol, now)
        if quote is None:
            return []
        if quote.last > 0:
            self._marks[symbol] = quote.last
        if quote.halted:
            return []
        events: list[ExchangeEvent] = []
        for order in list(self._working.get(symbol, {}).values()):
            if phase is TradingPhase.REGULAR or order.request.outside_rth:
                events += self._match(order, quote, now)
        return events

    def _try_match(self, order: SimOrder, now: datetime) -> list[ExchangeEvent]:
        phase = self._phase(now)
        if phase is TradingPhase.CLOSED:
            return []
        if phase is TradingPhase.PRE_MARKET and not order.request.outside_rth:
            return []
        quote = self.market.quote_at(order.request.symbol, now)
        if quote is None or quote.halted:
            return []
        return self._match(order, quote, now)

    def _match(self, order: SimOrder, quote: Quote, now: datetime) -> list[ExchangeEvent]:
        price = self._fill_price(order, quote)
        if price is None:
            return []
        shares = min(order.remaining, self._step_cap(order, quote, now))
        return [self._fill(order, shares, price, now)]

    def _fill_price(self, order: SimOrder, quote: Quote) -> float | None:
        """Return the price ``order`` fills at against ``quote``, or None if not crossed."""
        req = order.request
        buying = req.action is Action.BUY
        touch = quote.ask if buying else quote.bid
        limit = req.limit_price if req.order_type == "LMT" else None
        if limit is None:
            crossed = touch > 0
        elif buying:
            crossed = touch > 0 and limit >= touch - _PRICE_EPS
        else:
            crossed = touch > 0 and limit <= touch + _PRICE_EPS
        if not crossed:
            self._taking.discard(order.perm_id)  # from now on it rests in the book
            return None
        if limit is None or order.perm_id in self._taking:
            return touch
        return limit

    def _step_cap(self, order: SimOrder, quote: Quote, now: datetime) -> float:
        volume = self._bar_volume(order.request.symbol, now)
        if volume is None:
            volume = quote.ask_size if order.request.action is Action.BUY else quote.bid_size
        return float(max(1, math.floor(self.config.partial_fill_volume_share * volume)))

    def _bar_volume(self, symbol: str, now: datetime) -> int | None:
        """Return the volume of the 1-min bar containing ``now`` (cached per symbol-day)."""
        day = now.astimezone(ET).date()
        ts = now.timestamp()
        bars = self._bars.get((symbol, day))
        if bars is None or _bars_stale(bars, ts):
            bars = self._load_bars(symbol, day, ts)
        i = bisect_right(bars.starts, ts) - 1
        return bars.volumes[i] if i >= 0 else None

    def _load_bars(self, symbol: str, day: date, ts: float) -> _BarVolumes:
        if any(d != day for _, d in self._bars):
            self._bars = {k: v for k, v in self._bars.items() if k[1] == day}
        bars = self.market.intraday_bars(symbol, day)
        loaded = _BarVolumes([b.time.timestamp() for b in bars], [b.volume for b in bars], ts)
        self._bars[(symbol, day)] = loaded
        return loaded

    def _fill(self, order: SimOrder, shares: float, price: float, now: datetime) -> FillEvent:
        """Book ``shares`` of ``order`` at ``price``: execution, account, order state."""
        filled = order.filled + shares
        avg = (order.avg_fill_price * order.filled + price * shares) / filled
        total_commission = order_commission(filled, avg * filled, self.config)
        charged = self._commission.get(order.perm_id, 0.0)
        commission = max(0.0, total_commission - charged)
        after = replace(order, filled=filled, avg_fill_price=avg, last_fill_price=price)
        if after.remaining <= _QTY_EPS:
            _check_transition(order, OrderStatus.FILLED)
            after.status, after.completed_time = OrderStatus.FILLED, now
            after.completed_status = NOTE_FILLED
        execution: Execution = self.account.apply_fill(after, shares, price, commission, now)
        _assign(order, after)
        self._commission[order.perm_id] = charged + commission
        self._marks[order.request.symbol] = price
        self._reindex(order)
        log.info(
            "order %s fill %g @ %.4f (cum %g, avg %.4f, commission %.4f) -> %s",
            _label(order),
            shares,
            price,
            filled,
            avg,
            commission,
            order.status,
        )
        return FillEvent(_copy(order), execution)

    # ----------------------------------------------------------------------- state changes

    def _set_status(
        self, order: SimOrder, status: OrderStatus, now: datetime, note: str = ""
    ) -> OrderUpdate:
        """Move ``order`` to ``status`` (the one path for non-fill transitions)."""
        _check_transition(order, status)
        after = replace(order, status=status)
        if status in DONE_STATUSES:
            after.completed_time, after.completed_status = now, note
        old = order.status
        self._commit(order, after)
        log.info("order %s: %s -> %s %s", _label(order), old, status, note)
        return OrderUpdate(_copy(order))

    def _commit(self, order: SimOrder, after: SimOrder) -> None:
        # Write first, then change memory, so memory never runs ahead of the file.
        self.account.update_order(after)
        _assign(order, after)
        self._reindex(order)

    def _reindex(self, order: SimOrder) -> None:
        """Put ``order`` in the in-memory indexes its status and time in force call for."""
        perm, symbol = order.perm_id, order.request.symbol
        self._waiting.pop(perm, None)
        self._withheld.pop(perm, None)
        book = self._working.get(symbol)
        if book is not None:
            book.pop(perm, None)
            if not book:
                del self._working[symbol]
        if order.is_done:
            self._live.pop(perm, None)
            self._taking.discard(perm)
            self._commission.pop(perm, None)
        else:
            self._index_live(order)
        self._index_expiry(order)

    def _index_live(self, order: SimOrder) -> None:
        perm = order.perm_id
        self._live[perm] = order
        if order.status is OrderStatus.PENDING_SUBMIT:
            self._withheld[perm] = order
        elif order.status is OrderStatus.PRE_SUBMITTED:
            self._waiting[perm] = order
        else:
            self._working.setdefault(order.request.symbol, {})[perm] = order

    def _index_expiry(self, order: SimOrder) -> None:
        perm, submitted = order.perm_id, order.submitted_time
        wanted = not order.is_done and order.request.tif == "DAY" and submitted is not None
        if wanted == (perm in self._expiry):
            return  # unchanged: keep the expiry computed when the order arrived
        if wanted and submitted is not None:
            self._expiry[perm] = self._day_expiry(submitted)
        else:
            del self._expiry[perm]
        self._next_expiry = min(self._expiry.values(), default=None)

    # ----------------------------------------------------------------------- calendar

    def _session(self, day: date) -> Session | None:
        # The calendar costs ~100 us per call; on_market asks several times a second.
        if day not in self._sessions:
            self._sessions[day] = session(day) if is_trading_day(day) else None
        return self._sessions[day]

    def _phase(self, now: datetime) -> TradingPhase:
        s = self._session(now.astimezone(ET).date())
        if s is None:
            return TradingPhase.CLOSED
        if s.open <= now < s.close:
            return TradingPhase.REGULAR
        if s.premarket_start <= now < s.open:
            return TradingPhase.PRE_MARKET
        return TradingPhase.CLOSED

    def _day_expiry(self, submitted: datetime) -> datetime:
        """Return the close of the first session that ends after ``submitted``."""
        day = submitted.astimezone(ET).date()
        s = self._session(day)
        if s is None or submitted >= s.close:
            s = self._session(next_trading_day(day))
        assert s is not None  # next_trading_day returns a trading day
        return s.close

    # ----------------------------------------------------------------------- faults

    def reject_next_order(self, code: int = 201, reason: str = "simulated rejection") -> None:
        """Make the next placeOrder (new or modification) fail with ``code``."""
        self._reject_next = Rejection(code, rejected_text(code, reason))

    def withhold_acknowledgements(self, on: bool) -> list[ExchangeEvent]:
        """Start or stop withholding acknowledgements of new orders (stuck PendingSubmit).

        Turning it off acknowledges and matches the withheld orders; their events return.
        """
        self._withholding = on
        log.info("acknowledgements %s", "withheld" if on else "released")
        return [] if on else self._release(self.clock.now())

    def _release(self, now: datetime) -> list[ExchangeEvent]:
        events: list[ExchangeEvent] = []
        phase = self._phase(now)
        for order in list(self._withheld.values()):
            events.append(self._set_status(order, self._initial_status(order.request, phase), now))
            events += self._arrive(order, now)
        return events

    def roll_back_next_valid_id(self, client_id: int, to: int) -> None:
        """Make the next ``next_valid_id(client_id)`` return ``to`` (fault after a restart)."""
        self.account.roll_back_next_valid_id(client_id, to)

    # ----------------------------------------------------------------------- queries

    def next_valid_id(self, client_id: int) -> int:
        """Return the next order id ``client_id`` may use."""
        return self.account.next_valid_id(client_id)

    def order(self, client_id: int, order_id: int) -> SimOrder | None:
        """Return a copy of the client's order (live or done in the last 24 h), if known."""
        order = self._orders.get((client_id, order_id))
        return None if order is None else _copy(order)

    def open_orders(
        self, client_id: int | None = None, include_pending: bool = False
    ) -> list[SimOrder]:
        """Return copies of live orders (of ``client_id``, or all), by perm id.

        Unacknowledged (withheld, PendingSubmit) orders are left out unless asked for.
        """
        return [
            _copy(o)
            for o in sorted(self._live.values(), key=lambda o: o.perm_id)
            if (client_id is None or o.request.client_id == client_id)
            and (include_pending or o.status is not OrderStatus.PENDING_SUBMIT)
        ]

    def completed_orders(self) -> list[SimOrder]:
        """Return copies of orders done in the last 24 h of market time, oldest first."""
        since = self.clock.now() - _COMPLETED_WINDOW
        stale = [
            k
            for k, o in self._orders.items()
            if o.is_done and o.completed_time is not None and o.completed_time < since
        ]
        for key in stale:  # forget old done orders; the file still has them
            del self._orders[key]
        done = [o for o in self._orders.values() if o.is_done]
        return [_copy(o) for o in sorted(done, key=lambda o: (o.completed_time, o.perm_id))]

    def executions(
        self, client_id: int | None = None, since: datetime | None = None
    ) -> list[Execution]:
        """Return executions since ``since`` (all when None); client 0 or None = every client."""
        return self.account.executions(since=since, client_id=client_id)

    def positions(self) -> list[PositionRow]:
        """Return the non-flat positions, by symbol."""
        return self.account.positions()

    def snapshot(self) -> AccountSnapshot:
        """Return the account values marked at current last prices (else recent marks)."""
        now = self.clock.now()
        marks = {p.symbol: self._mark(p.symbol, p.avg_cost, now) for p in self.account.positions()}
        return self.account.snapshot(marks)

    def _mark(self, symbol: str, fallback: float, now: datetime) -> float:
        """Return the current last price, else the last one seen, else a recent close."""
        quote = self.market.quote_at(symbol, now)
        if quote is not None and quote.last > 0:
            self._marks[symbol] = quote.last
            return quote.last
        if symbol not in self._marks:
            close = self._recent_close(symbol, now)
            if close is None:
                return fallback
            self._marks[symbol] = close
        return self._marks[symbol]

    def _recent_close(self, symbol: str, now: datetime) -> float | None:
        day = now.astimezone(ET).date()
        bars = [b for b in self.market.intraday_bars(symbol, day) if b.time <= now]
        if bars:
            return bars[-1].close
        close = self.market.prior_close(symbol, day)
        return close if close > 0 else None


# --------------------------------------------------------------------------- helpers


def _key(req: OrderRequest) -> tuple[int, int]:
    return (req.client_id, req.order_id)


def _label(order: SimOrder) -> str:
    req = order.request
    return f"{req.client_id}/{req.order_id} {req.action} {req.quantity:g} {req.symbol}"


def _copy(order: SimOrder) -> SimOrder:
    return replace(order)


def _assign(order: SimOrder, after: SimOrder) -> None:
    for f in fields(SimOrder):
        setattr(order, f.name, getattr(after, f.name))


def _fields(rejection: Rejection) -> tuple[int, str]:
    return rejection.code, rejection.message


def _reason(text: str) -> Rejection:
    return Rejection(201, rejected_text(201, text))


def _bars_stale(bars: _BarVolumes, ts: float) -> bool:
    # A market that publishes bars as they form: refetch past the last known bar, at
    # most once a minute of market time.
    past_end = not bars.starts or ts >= bars.starts[-1] + 60.0
    return past_end and ts - bars.loaded_at >= 60.0


def _check_transition(order: SimOrder, status: OrderStatus) -> None:
    if status not in TRANSITIONS.get(order.status, frozenset()):
        raise ExchangeError(f"order {_label(order)}: illegal transition {order.status} -> {status}")
