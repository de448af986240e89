"""The entry order lifecycle: claim, send, acknowledgement, fills, timeout, cancel.

Idempotent across crashes (design section 4):

1. ``open_entry`` commits the claim (ENTRY_PENDING row plus the BUY intent with a fresh,
   unique ``order_ref``) in one transaction *before* anything is sent, then sends the
   buy limit with ``orderRef = order_ref``. A refusal before sending (the adapter's
   guards, no connection) removes the claim; anything else leaves it for the broker
   to settle: it is never sent twice, and never assumed cancelled.
2. ``sync`` applies the broker's evidence (``OrderView`` and executions) to the DB on
   every pass: acknowledgement (ids, SUBMITTED), fills (the fills table, then the
   position OPEN with the *filled* quantity, its target and stop), the end (FILLED,
   CANCELLED, REJECTED: a buy that filled nothing removes the row). An order still
   working ``entry_order_timeout_market_s`` after its intent (market seconds: the time
   the market had to fill it, and never less than ``ORDER_FILL_FLOOR_S`` real seconds)
   is cancelled; a partial fill then stays a position of the filled quantity.
   Commission reports of our buys are written to their fills whenever they arrive
   (``write_commissions``, every pass), also after the entry is settled: the exit
   manager closes a round trip net of both commissions.
3. An order the broker does not know is looked up again (a fresh reconcile) at most
   every ``reconcile_interval_s``. ``resolve_absent`` decides what its absence proves:
   an intent that was never acknowledged, absent from a reconcile taken at least the
   ack timeout after the intent, never reached the broker (cancelled as never sent); an
   order the broker had acknowledged stays UNKNOWN until the broker says otherwise, or
   until the session has closed (a DAY order cannot trade after the close).

Every entry also has an in-process ``EntryPhase`` (enum plus transition table) whose
changes are logged "from X to Y" and recorded as ``entry_state`` events; the DB order
status is the durable truth the phase is derived from.

Order refs: ``dt<client id>-<yyyymmdd>-<SYMBOL>-<8 hex>``. The client id prefix is what
makes a row *this* process's own: a second day trader (another client id) never resolves
or cancels another's entries, and a restarted one (same client id) adopts its
predecessor's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal

from broker import models as bm
from broker.adapter import BrokerAdapter
from broker.errors import BrokerError, SymbolError
from day_trader.decision import EntryPlan
from day_trader.journal import Journal
from day_trader.params import TraderParams
from exit_manager.params import fill_timeout_real_s
from exit_manager.rules import stop_price, target_price
from market.clock import ET, Clock
from shared_state import (
    ActivePosition,
    ClaimRefusal,
    Order,
    OrderSide,
    OrderStatus,
    PositionState,
    Store,
    StoreError,
    TransitionError,
)
from shared_state.states import order_transition_allowed
from telemetry.tracing import set_attributes, span

log = logging.getLogger("day_trader.entries")

#: ``orders.error`` text of an intent proven never to have reached the broker.
NEVER_SENT = "never sent"
#: ``orders.error`` text of an UNKNOWN order the broker still did not know after the close.
EXPIRED_UNSEEN = "not at the broker after the close"

OWN_STATUSES = (OrderStatus.INTENT, OrderStatus.SUBMITTED, OrderStatus.PARTIAL, OrderStatus.UNKNOWN)


# ============================================================================ phases


class EntryPhase(StrEnum):
    """Where one entry order is, as this process sees it."""

    CLAIMED = "claimed"  # row + intent committed, not sent by this process
    SENT = "sent"  # placeOrder written, no acknowledgement yet
    WORKING = "working"  # acknowledged, nothing filled
    PARTIAL = "partial"  # some shares filled, the rest working
    CANCELLING = "cancelling"  # timed out: cancel requested
    UNKNOWN = "unknown"  # no acknowledgement / not reported: until the broker says
    FILLED = "filled"  # done: everything filled (position OPEN)
    PARTLY_FILLED = "partly_filled"  # done: cancelled after a partial fill (position OPEN)
    CANCELLED = "cancelled"  # done: nothing filled (row removed)
    REJECTED = "rejected"  # done: the broker refused it (row removed)
    NEVER_SENT = "never_sent"  # done: refused before sending / proven never sent (row removed)


_P = EntryPhase
#: Phases after which nothing more happens to the entry.
DONE_PHASES = frozenset({_P.FILLED, _P.PARTLY_FILLED, _P.CANCELLED, _P.REJECTED, _P.NEVER_SENT})
_BROKER_OUTCOMES = frozenset({_P.WORKING, _P.PARTIAL, _P.UNKNOWN} | DONE_PHASES - {_P.NEVER_SENT})

#: phase -> phases it may move to. Any other pair is a bug (logged, and the move is made:
#: the DB status is the truth the phase only mirrors).
ENTRY_TRANSITIONS: dict[EntryPhase, frozenset[EntryPhase]] = {
    # Adopted after a restart: the broker may already be anywhere.
    _P.CLAIMED: _BROKER_OUTCOMES | {_P.SENT, _P.NEVER_SENT, _P.CANCELLING},
    _P.SENT: _BROKER_OUTCOMES | {_P.CANCELLING, _P.NEVER_SENT},
    _P.WORKING: frozenset(
        {_P.PARTIAL, _P.CANCELLING, _P.UNKNOWN, _P.FILLED, _P.CANCELLED, _P.REJECTED}
    ),
    _P.PARTIAL: frozenset({_P.CANCELLING, _P.UNKNOWN, _P.FILLED, _P.PARTLY_FILLED}),
    _P.CANCELLING: frozenset({_P.UNKNOWN, _P.FILLED, _P.PARTLY_FILLED, _P.CANCELLED, _P.REJECTED}),
    _P.UNKNOWN: _BROKER_OUTCOMES | {_P.CANCELLING, _P.NEVER_SENT},
    **{done: frozenset() for done in DONE_PHASES},
}

del _P


def phase_of(order: Order, *, sent: bool, cancel_requested: bool) -> EntryPhase:
    """Return the phase the DB order status (and this process's own acts) amount to."""
    status = order.status
    if status is OrderStatus.INTENT:
        return EntryPhase.SENT if sent else EntryPhase.CLAIMED
    if status is OrderStatus.UNKNOWN:
        return EntryPhase.UNKNOWN
    if status in (OrderStatus.SUBMITTED, OrderStatus.PARTIAL):
        if cancel_requested:
            return EntryPhase.CANCELLING
        return EntryPhase.PARTIAL if status is OrderStatus.PARTIAL else EntryPhase.WORKING
    if status is OrderStatus.FILLED:
        return EntryPhase.FILLED
    if status is OrderStatus.REJECTED:
        return EntryPhase.REJECTED
    if order.filled_quantity > 0:
        return EntryPhase.PARTLY_FILLED
    if (order.error or "").startswith(NEVER_SENT):
        return EntryPhase.NEVER_SENT
    return EntryPhase.CANCELLED


# ============================================================================ evidence


#: Broker status -> orders.status. PendingSubmit/ApiPending say nothing (not acknowledged).
_BROKER_TO_DB: dict[bm.OrderStatus, OrderStatus] = {
    bm.OrderStatus.PRE_SUBMITTED: OrderStatus.SUBMITTED,
    bm.OrderStatus.SUBMITTED: OrderStatus.SUBMITTED,
    bm.OrderStatus.PENDING_CANCEL: OrderStatus.SUBMITTED,
    bm.OrderStatus.INACTIVE: OrderStatus.SUBMITTED,
    bm.OrderStatus.FILLED: OrderStatus.FILLED,
    bm.OrderStatus.CANCELLED: OrderStatus.CANCELLED,
    bm.OrderStatus.API_CANCELLED: OrderStatus.CANCELLED,
    bm.OrderStatus.REJECTED: OrderStatus.REJECTED,
    bm.OrderStatus.UNKNOWN: OrderStatus.UNKNOWN,
}


@dataclass(frozen=True)
class Evidence:
    """What the broker says about one order, in the DB's terms."""

    status: OrderStatus | None  # None: nothing to say about the status yet
    filled: int
    avg_price: float | None
    broker_order_id: int | None
    perm_id: int | None
    error: str | None


def evidence(view: bm.OrderView, quantity: int) -> Evidence:
    """Return the DB-facing evidence of ``view`` for an order of ``quantity`` shares."""
    filled = min(int(round(view.filled)), quantity)
    status = _BROKER_TO_DB.get(view.status)
    if status is OrderStatus.UNKNOWN and quantity > 0 and filled >= quantity:
        status = OrderStatus.FILLED  # fills alone prove every share traded
    elif status is OrderStatus.SUBMITTED and filled > 0:
        status = OrderStatus.PARTIAL
    elif status is OrderStatus.REJECTED and filled > 0:
        status = OrderStatus.CANCELLED  # a partly filled order ends cancelled, not rejected
    if status is OrderStatus.FILLED:
        filled = quantity
    avg = view.avg_price if math.isfinite(view.avg_price) and view.avg_price > 0 else None
    return Evidence(
        status=status,
        filled=filled,
        avg_price=avg,
        broker_order_id=view.order_id or None,
        perm_id=view.perm_id or None,
        error=view.error or None,
    )


def order_changes(order: Order, ev: Evidence) -> dict[str, Any]:
    """Return the ``update_order`` arguments that bring ``order`` up to ``ev`` (may be empty).

    A status the transition table does not allow from the current one is stale evidence
    and is ignored; the filled quantity only grows.
    """
    changes: dict[str, Any] = {}
    if (
        ev.status is not None
        and ev.status != order.status
        and order_transition_allowed(order.status, ev.status)
    ):
        changes["status"] = ev.status
    if ev.filled > order.filled_quantity:
        changes["filled_quantity"] = ev.filled
    if ev.avg_price is not None and ev.filled > 0 and ev.avg_price != order.avg_fill_price:
        changes["avg_fill_price"] = ev.avg_price
    if ev.broker_order_id is not None and ev.broker_order_id != order.broker_order_id:
        changes["broker_order_id"] = ev.broker_order_id
    if ev.perm_id is not None and ev.perm_id != order.perm_id:
        changes["perm_id"] = ev.perm_id
    if ev.error is not None and ev.error != order.error:
        changes["error"] = ev.error
    return changes


@dataclass(frozen=True)
class PositionStep:
    """What the entry's order means for its position row."""

    kind: Literal["none", "fill", "cancel", "late_fill"]
    quantity: int = 0  # shares to hold (fill)


def position_step(position: ActivePosition | None, order: Order) -> PositionStep:
    """Return the position change ``order`` calls for (pure; see the module docstring)."""
    if position is None or position.entry_order_ref != order.order_ref:
        return PositionStep("none")  # an orphan: its row is gone or belongs to another entry
    filled = order.filled_quantity
    if filled > 0:
        bought_known = position.quantity + position.sold_quantity
        if position.state is PositionState.ENTRY_PENDING:
            return PositionStep("fill", filled - position.sold_quantity)
        if bought_known < filled:
            if position.state is PositionState.OPEN:
                return PositionStep("fill", filled - position.sold_quantity)
            return PositionStep("late_fill", filled - bought_known)
        return PositionStep("none")
    done_empty = order.status in (OrderStatus.CANCELLED, OrderStatus.REJECTED)
    if done_empty and position.state is PositionState.ENTRY_PENDING:
        return PositionStep("cancel")
    return PositionStep("none")


def new_order_ref(client_id: int, day: date, symbol: str) -> str:
    """Return a fresh order_ref ``dt<client id>-<yyyymmdd>-<SYMBOL>-<8 hex>``."""
    return f"{ref_prefix(client_id)}{day:%Y%m%d}-{symbol}-{uuid.uuid4().hex[:8]}"


def ref_prefix(client_id: int) -> str:
    """Return the order_ref prefix of the day trader with ``client_id``."""
    return f"dt{client_id}-"


# ============================================================================ pending set


@dataclass(frozen=True)
class PendingEntry:
    """One of this process's unfinished entry orders, with its position row (None: orphan)."""

    order: Order
    position: ActivePosition | None

    @property
    def order_ref(self) -> str:
        return self.order.order_ref

    @property
    def symbol(self) -> str:
        return self.order.symbol


def read_pending(store: Store, prefix: str) -> list[PendingEntry]:
    """Return this process's unfinished entries (blocking: run it in a thread).

    Live BUY orders with the prefix, plus ENTRY_PENDING rows of the prefix whose order is
    already done (a crash between the order's end and the row's update).
    """
    active = store.active_positions()
    rows = {
        p.entry_order_ref: p
        for p in active
        if p.entry_order_ref is not None and p.entry_order_ref.startswith(prefix)
    }
    live = [
        o
        for o in store.orders_in_status(*OWN_STATUSES)
        if o.side is OrderSide.BUY and o.order_ref.startswith(prefix)
    ]
    known = {o.order_ref for o in live}
    for ref, row in rows.items():
        if row.state is PositionState.ENTRY_PENDING and ref not in known:
            order = store.order(ref)
            if order is not None:
                live.append(order)
    return [PendingEntry(order, rows.get(order.order_ref)) for order in live]


# ============================================================================ the book


@dataclass(frozen=True)
class Trigger:
    """What made the trader decide: a bar close it just learned of, or a plain pass."""

    kind: Literal["bar_close", "pass"]
    mono: float  # time.monotonic() of the trigger
    bar_end: datetime | None = None  # market time the closed bar ended
    seen_at: datetime | None = None  # market time the feed learned of it


@dataclass(frozen=True)
class OpenOutcome:
    """The result of ``open_entry``: the order_ref sent, or why nothing was sent."""

    order_ref: str | None
    refusal: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Tracked:
    phase: EntryPhase
    sent: bool = False
    trigger: Trigger | None = None
    sent_mono: float | None = None
    ack_mono: float | None = None
    latency_recorded: bool = False
    cancel_requested_at: datetime | None = None
    last_lookup_mono: float = -math.inf
    fills: set[str] = field(default_factory=set)
    commissions: set[str] = field(default_factory=set)


class EntryBook:
    """This process's entries: claims, sends, and their sync with the broker and the DB."""

    def __init__(
        self,
        store: Store,
        adapter: BrokerAdapter,
        clock: Clock,
        params: TraderParams,
        journal: Journal,
        *,
        owner: str,
    ) -> None:
        self.store = store
        self.adapter = adapter
        self.clock = clock
        self.params = params
        self.journal = journal
        self.owner = owner
        self.prefix = ref_prefix(adapter.client_id)
        self._tracked: dict[str, _Tracked] = {}
        self._commissions_due: dict[str, bm.ExecutionView] = {}  # by exec id
        self._unsubscribe = [
            adapter.order_status.subscribe(self._on_order_view),
            adapter.commissions.subscribe(self._on_commission),
        ]

    def close(self) -> None:
        """Stop listening to the adapter."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()

    # ------------------------------------------------------------------ opening

    async def open_entry(self, plan: EntryPlan, day: date, trigger: Trigger | None) -> OpenOutcome:
        """Claim ``plan.symbol`` and send its buy limit, as span ``order.place``.

        See the module docstring; the span's ``outcome`` is ``sent`` or the refusal.
        """
        ref = new_order_ref(self.adapter.client_id, day, plan.symbol)
        with span(
            "order.place", symbol=plan.symbol, side="BUY", order_ref=ref,
            quantity=plan.quantity, limit=plan.limit, kind=plan.kind,
        ) as placing:  # fmt: skip
            outcome = await self._open(plan, day, trigger, ref)
            set_attributes(placing, outcome=outcome.refusal or "sent")
        return outcome

    async def _open(
        self, plan: EntryPlan, day: date, trigger: Trigger | None, ref: str
    ) -> OpenOutcome:
        now = self.clock.now()
        claim = await asyncio.to_thread(
            self.store.claim_for_entry,
            plan.symbol,
            day,
            now=now,
            order_ref=ref,
            quantity=plan.quantity,
            limit_price=plan.limit,
            max_recovery_entries=self.params.max_recovery_entries,
            max_trades_per_day=self.params.max_trades_per_day,
            max_positions=self.params.max_positions,
            owner=self.owner,
        )
        if not claim.ok:
            assert claim.refusal is not None
            return OpenOutcome(None, _claim_reason(claim.refusal))
        tracked = self._tracked[ref] = _Tracked(EntryPhase.CLAIMED, trigger=trigger)
        try:
            await self.adapter.place_limit(
                plan.symbol,
                "BUY",
                plan.quantity,
                plan.limit,
                ref,
                reference_price=plan.reference,
                wait_ack=False,
            )
        except BrokerError as exc:
            # Every adapter refusal happens before placeOrder: nothing reached the broker.
            await self._never_sent(plan.symbol, ref, f"{NEVER_SENT}: {exc}")
            rule = getattr(exc, "rule", type(exc).__name__)
            return OpenOutcome(None, f"order_refused:{rule}", {"error": str(exc)})
        except Exception:
            # Sent or not, nobody can tell: the order is UNKNOWN until the broker says.
            log.exception("sending %s failed; the order is UNKNOWN", ref)
            await self._write(self.store.update_order, ref, now=self.clock.now(), status="UNKNOWN")
            self._set_phase(plan.symbol, ref, EntryPhase.UNKNOWN, "send failed")
            return OpenOutcome(ref)
        tracked.sent, tracked.sent_mono = True, time.monotonic()
        self._set_phase(plan.symbol, ref, EntryPhase.SENT, "sent")
        self.record("entry_order", plan.symbol, _order_detail(plan, ref, claim, trigger))
        return OpenOutcome(ref)

    async def _never_sent(self, symbol: str, ref: str, reason: str) -> None:
        now = self.clock.now()
        await self._write(self.store.update_order, ref, now=now, status="CANCELLED", error=reason)
        await self._write(self.store.cancel_entry, symbol, ref, now=now, reason=reason)
        self._set_phase(symbol, ref, EntryPhase.NEVER_SENT, reason)

    # ------------------------------------------------------------------ syncing

    async def sync(self, pending: Sequence[PendingEntry], session_close: datetime | None) -> None:
        """Apply the broker's word to every pending entry; cancel the ones that timed out."""
        await self.write_commissions()
        for entry in pending:
            try:
                await self._sync_one(entry, session_close)
            except (StoreError, BrokerError, TimeoutError) as exc:
                log.warning("entry %s not synced this pass: %s", entry.order_ref, exc)
            except ValueError:  # a bug; the next pass tries again rather than crash-looping
                log.exception("entry %s not synced this pass", entry.order_ref)

    async def _sync_one(self, entry: PendingEntry, session_close: datetime | None) -> None:
        view = self.adapter.find_order_now(entry.order_ref)
        tracked = self._track(entry)
        if view is None or view.status == bm.OrderStatus.UNKNOWN:
            view = await self._look_up(entry, tracked) or view
        if view is None:
            await self.resolve_absent(entry, session_close)
            return
        order = await self.apply(entry, view)
        await self._cancel_if_due(entry, order, tracked)

    async def apply(self, entry: PendingEntry, view: bm.OrderView) -> Order:
        """Write what ``view`` (and the order's executions) says to the order, fills, position.

        Return the order as it is now.
        """
        order = entry.order
        ev = evidence(view, order.quantity)
        changes = order_changes(order, ev)
        await self._record_fills(entry)
        if changes:
            order = await self._write(
                self.store.update_order, order.order_ref, now=self.clock.now(), **changes
            )
        await self._apply_position(entry.position, order, ev)
        tracked = self._track(entry)
        self._record_latency(order, tracked)
        self._set_phase(
            order.symbol,
            order.order_ref,
            phase_of(
                order, sent=tracked.sent, cancel_requested=tracked.cancel_requested_at is not None
            ),
            f"broker: {view.status} filled {ev.filled}/{order.quantity}",
        )
        return order

    async def resolve_absent(self, entry: PendingEntry, session_close: datetime | None) -> None:
        """Decide what the broker not knowing ``entry`` proves (see the module docstring)."""
        order, now = entry.order, self.clock.now()
        if order.status is OrderStatus.INTENT:
            if self._real_s_since(order.created_at, now) < self.adapter.config.ack_timeout_s:
                return  # could still be in flight: ask again later
            await self._never_sent(order.symbol, order.order_ref, f"{NEVER_SENT}: not at broker")
            return
        if session_close is not None and now >= session_close:
            await self._expire_unseen(entry)
            return
        if order.status is not OrderStatus.UNKNOWN:
            reason = "not reported by the broker"
            order = await self._write(
                self.store.update_order, order.order_ref, now=now, status="UNKNOWN", error=reason
            )
        self._set_phase(order.symbol, order.order_ref, EntryPhase.UNKNOWN, "absent")

    async def _expire_unseen(self, entry: PendingEntry) -> None:
        order, now = entry.order, self.clock.now()
        await self._write(
            self.store.update_order,
            order.order_ref,
            now=now,
            status="CANCELLED",
            error=EXPIRED_UNSEEN,
        )
        position = entry.position
        if position is not None and position.state is PositionState.ENTRY_PENDING:
            await self._write(
                self.store.cancel_entry,
                order.symbol,
                order.order_ref,
                now=now,
                reason=EXPIRED_UNSEEN,
            )
        self._set_phase(order.symbol, order.order_ref, EntryPhase.CANCELLED, EXPIRED_UNSEEN)

    async def _look_up(self, entry: PendingEntry, tracked: _Tracked) -> bm.OrderView | None:
        """Ask the broker again (a fresh reconcile), at most every reconcile interval."""
        mono = time.monotonic()
        if mono - tracked.last_lookup_mono < self.params.reconcile_interval_s:
            return self.adapter.find_order_now(entry.order_ref)
        tracked.last_lookup_mono = mono
        return await self.adapter.find_order(entry.order_ref, refresh=True)

    async def _record_fills(self, entry: PendingEntry) -> None:
        tracked = self._track(entry)
        for execution in self.adapter.executions(entry.order_ref):
            if execution.exec_id not in tracked.fills:
                await self._write(
                    self.store.record_fill,
                    execution.exec_id,
                    order_ref=entry.order_ref,
                    symbol=entry.symbol,
                    side="BUY",
                    quantity=int(round(execution.shares)),
                    price=execution.price,
                    commission=execution.commission,
                    time=execution.time,
                )
                tracked.fills.add(execution.exec_id)
                if execution.commission is not None:
                    tracked.commissions.add(execution.exec_id)
            elif execution.commission is not None and execution.exec_id not in tracked.commissions:
                await self._write(
                    self.store.set_fill_commission, execution.exec_id, execution.commission
                )
                tracked.commissions.add(execution.exec_id)

    def _on_commission(self, execution: bm.ExecutionView) -> None:
        # A report may come after the entry settled (no longer pending): keep it for the
        # next pass, which writes it whatever became of the entry.
        if execution.side == "BOT" and execution.order_ref.startswith(self.prefix):
            self._commissions_due[execution.exec_id] = execution

    async def write_commissions(self) -> None:
        """Write the commission reports of our buys that arrived since the last call.

        The fill is recorded first when it is not yet (exec id: once), so a report never
        waits for a pass that may not come. A failed write is tried again next time.
        """
        due, self._commissions_due = self._commissions_due, {}
        for exec_id, execution in due.items():
            try:
                await self._write(self._record_commission, execution)
            except StoreError as exc:
                log.warning("commission of fill %s not recorded yet: %s", exec_id, exc)
                self._commissions_due.setdefault(exec_id, execution)
            except ValueError as exc:  # a report the store refuses will not get better
                log.error("commission of fill %s not recorded: %s", exec_id, exc)

    def _record_commission(self, execution: bm.ExecutionView) -> None:
        assert execution.commission is not None
        self.store.record_fill(
            execution.exec_id,
            order_ref=execution.order_ref,
            symbol=execution.symbol,
            side="BUY",
            quantity=int(round(execution.shares)),
            price=execution.price,
            commission=execution.commission,
            time=execution.time,
        )
        self.store.set_fill_commission(execution.exec_id, execution.commission)

    async def _apply_position(
        self, position: ActivePosition | None, order: Order, ev: Evidence
    ) -> None:
        step = position_step(position, order)
        now = self.clock.now()
        if step.kind == "fill" and position is not None:
            price = self._entry_price(order, ev)
            params = self.params.exit
            try:
                await self._write(
                    self.store.mark_filled,
                    order.symbol,
                    now=now,
                    entry_price=price,
                    quantity=step.quantity,
                    target_price=target_price(price, position.is_recovery, params),
                    stop_price=stop_price(price, params),
                )
            except TransitionError as exc:  # the exit manager moved the row meanwhile
                log.warning("%s: fill not recorded on the position: %s", order.symbol, exc)
        elif step.kind == "cancel":
            reason = order.error or f"entry {order.status.value.lower()} with nothing filled"
            try:
                await self._write(
                    self.store.cancel_entry, order.symbol, order.order_ref, now=now, reason=reason
                )
            except TransitionError as exc:
                log.warning("%s: entry row not removed: %s", order.symbol, exc)
        elif step.kind == "late_fill":
            detail = {"order_ref": order.order_ref, "shares": step.quantity}
            self.record("entry_fill_after_exit", order.symbol, detail)

    def _entry_price(self, order: Order, ev: Evidence) -> float:
        for price in (ev.avg_price, order.avg_fill_price, self._avg_from_fills(order.order_ref)):
            if price is not None and math.isfinite(price) and price > 0:
                return price
        assert order.limit_price is not None
        log.warning("%s: no fill price reported; using the limit", order.order_ref)
        return order.limit_price

    def _avg_from_fills(self, order_ref: str) -> float | None:
        fills = self.adapter.executions(order_ref)
        shares = sum(e.shares for e in fills)
        return sum(e.shares * e.price for e in fills) / shares if shares else None

    async def _cancel_if_due(self, entry: PendingEntry, order: Order, tracked: _Tracked) -> None:
        if order.status not in (OrderStatus.SUBMITTED, OrderStatus.PARTIAL, OrderStatus.UNKNOWN):
            return
        now = self.clock.now()
        # Market seconds made real at the clock's speed, with a real-time floor.
        timeout = fill_timeout_real_s(self.params.entry_order_timeout_market_s, self.clock)
        if self._real_s_since(order.created_at, now) < timeout:
            return
        last = tracked.cancel_requested_at
        if last is not None and self._real_s_since(last, now) < timeout:
            return  # asked already; give the broker time to answer
        tracked.cancel_requested_at = now
        try:
            await self.adapter.cancel(order.order_ref)
        except SymbolError as exc:  # not a working order of this client (yet): ask later
            log.info("cancel of %s not sent: %s", order.order_ref, exc)
            return
        self._set_phase(
            order.symbol,
            order.order_ref,
            phase_of(order, sent=True, cancel_requested=True),
            "timeout",
        )
        detail = {
            "order_ref": order.order_ref,
            "timeout_market_s": self.params.entry_order_timeout_market_s,
            "timeout_real_s": round(timeout, 3),
        }
        self.record("entry_timeout", order.symbol, detail)

    # ------------------------------------------------------------------ tracking

    def phase(self, order_ref: str) -> EntryPhase | None:
        """Return the phase of ``order_ref`` as this process last saw it (None: never seen)."""
        tracked = self._tracked.get(order_ref)
        return None if tracked is None else tracked.phase

    def _track(self, entry: PendingEntry) -> _Tracked:
        tracked = self._tracked.get(entry.order_ref)
        if tracked is None:
            tracked = self._tracked[entry.order_ref] = _Tracked(EntryPhase.CLAIMED)
        return tracked

    def _on_order_view(self, view: bm.OrderView) -> None:
        # The moment the acknowledgement arrives (for the bar-to-order latency figure).
        tracked = self._tracked.get(view.order_ref)
        if tracked is not None and tracked.ack_mono is None and view.status in bm.ACKED_STATUSES:
            tracked.ack_mono = time.monotonic()

    def _set_phase(self, symbol: str, ref: str, new: EntryPhase, why: str) -> None:
        tracked = self._tracked.setdefault(ref, _Tracked(EntryPhase.CLAIMED))
        old = tracked.phase
        if new == old:
            return
        if new not in ENTRY_TRANSITIONS[old]:
            log.error("entry %s: %s -> %s is not in the transition table (%s)", ref, old, new, why)
        tracked.phase = new
        log.info("entry %s %s from %s to %s: %s", symbol, ref, old, new, why)
        self.record("entry_state", symbol, {"order_ref": ref, "from": old, "to": new, "why": why})

    def _record_latency(self, order: Order, tracked: _Tracked) -> None:
        if tracked.latency_recorded or tracked.ack_mono is None or tracked.trigger is None:
            return
        tracked.latency_recorded = True
        detail = latency_detail(tracked.trigger, tracked.sent_mono, tracked.ack_mono, self.clock)
        self.record("entry_acked", order.symbol, {"order_ref": order.order_ref, **detail})

    def _real_s_since(self, then: datetime, now: datetime) -> float:
        """Return the real seconds from market instant ``then`` to ``now``."""
        return self.clock.to_real_seconds(max(0.0, (now - then).total_seconds()))

    # ------------------------------------------------------------------ DB

    async def _write(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(method, *args, **kwargs)

    def record(self, kind: str, symbol: str | None, detail: dict[str, Any]) -> None:
        """Record an event of this process (queued; written in order in the background)."""
        self.journal.record(kind, symbol, detail)


def _claim_reason(refusal: ClaimRefusal) -> str:
    return f"claim_{refusal.value.lower()}"


def _order_detail(plan: EntryPlan, ref: str, claim: Any, trigger: Trigger | None) -> dict[str, Any]:
    metrics = {
        k: (round(v, 4) if math.isfinite(v) else None) for k, v in plan.signal.metrics.items()
    }
    return {
        "order_ref": ref,
        "kind": plan.kind,
        "is_recovery": claim.is_recovery,
        "quantity": plan.quantity,
        "limit": plan.limit,
        "reference": plan.reference,
        "metrics": metrics,
        "trigger": trigger.kind if trigger is not None else "pass",
    }


def latency_detail(
    trigger: Trigger, sent_mono: float | None, ack_mono: float, clock: Clock
) -> dict[str, Any]:
    """Return the bar-to-order figures of one entry, in real milliseconds."""
    detail: dict[str, Any] = {
        "trigger": trigger.kind,
        "trigger_to_ack_ms": round((ack_mono - trigger.mono) * 1000.0, 3),
    }
    if sent_mono is not None:
        detail["trigger_to_sent_ms"] = round((sent_mono - trigger.mono) * 1000.0, 3)
    if trigger.bar_end is not None and trigger.seen_at is not None:
        lag = clock.to_real_seconds((trigger.seen_at - trigger.bar_end).total_seconds())
        detail["bar_end_to_seen_ms"] = round(lag * 1000.0, 3)
        detail["bar_end_to_ack_ms"] = round((lag + ack_mono - trigger.mono) * 1000.0, 3)
        detail["bar_end"] = trigger.bar_end.astimezone(ET).isoformat()
    return detail


def own_symbols(pending: Iterable[PendingEntry]) -> set[str]:
    """Return the symbols with an unfinished entry of this process."""
    return {entry.symbol for entry in pending}
