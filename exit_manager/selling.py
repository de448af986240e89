"""The exit order lifecycle: begin_exit -> place -> (replace steps) -> fills -> close.

Design 4, in this order, for every sell:

1. ``begin_exit`` commits OPEN -> EXIT_PENDING and the SELL intent with its unique
   ``order_ref`` (once: a second caller gets nothing);
2. the sell limit (bid minus LIMIT_AGGRESSION_PCT, on the tick) goes out with
   ``orderRef = order_ref``, for at most what the broker says is held;
3. the broker's word moves the order along ``lifecycle.STAGE_TRANSITIONS``; an order with
   no acknowledgement is UNKNOWN, never assumed cancelled;
4. at the broker's final status the fills are settled (``after_order`` decides): all sold
   -> ``close_position`` with reason and P&L net of commissions; part sold -> the
   remainder stays under protection and is sold by the next order; not filled in time ->
   cancel and replace more aggressively, a bounded number of steps, then alert.

One ``ExitOrder`` per symbol at most, so one symbol never has two sells working.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from datetime import date
from typing import Any

from broker.adapter import BrokerAdapter
from broker.errors import BrokerError, NotConnectedError, SymbolError
from broker.models import ExecutionView, OrderView
from broker.orders import ForgottenOrder
from exit_manager import failpoints, ledger
from exit_manager.book import Book
from exit_manager.db_lane import DbLane
from exit_manager.evidence import order_changes
from exit_manager.journal import Journal
from exit_manager.lifecycle import (
    Ending,
    ExitOrder,
    Next,
    NextKind,
    Stage,
    StageError,
    Trigger,
    after_order,
    ending_of,
    new_order_ref,
    next_stage,
    step_of,
    trigger_of,
)
from exit_manager.marks import Mark
from exit_manager.params import ManagerConfig
from exit_manager.rules import ExitParams, exit_limit, should_replace
from market.clock import ET, Clock
from shared_state import (
    ORDER_DONE_STATES,
    ActivePosition,
    ExitReason,
    OrderStatus,
    PositionState,
    Store,
)
from telemetry.tracing import set_attributes, span

log = logging.getLogger("exit_manager.selling")


MarkSource = Callable[[str], Mark | None]


class Seller:
    """Places, watches, replaces and settles the exit orders of every position."""

    def __init__(
        self,
        *,
        adapter: BrokerAdapter,
        store: Store,
        lane: DbLane,
        fast_lane: DbLane,
        journal: Journal,
        clock: Clock,
        book: Book,
        params: ExitParams,
        config: ManagerConfig,
        marks: MarkSource,
        market_open: Callable[[], bool],
    ) -> None:
        self.adapter = adapter
        self.store = store
        self.lane = lane
        self.fast_lane = fast_lane
        self.journal = journal
        self.clock = clock
        self.book = book
        self.params = params
        self.config = config
        self.marks = marks
        self.market_open = market_open
        self._orders: dict[str, ExitOrder] = {}  # by symbol
        self._by_ref: dict[str, ExitOrder] = {}
        self._busy: dict[str, int] = {}  # symbol -> tasks working on it
        self._cooldown: dict[str, float] = {}  # symbol -> monotonic time it may sell again
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ queries

    def busy(self, symbol: str) -> bool:
        """Return True while ``symbol`` has an exit under way (or is cooling down)."""
        if symbol in self._orders or symbol in self._busy:
            return True
        return self._cooldown.get(symbol, 0.0) > time.monotonic()

    def orders(self) -> list[ExitOrder]:
        """Return the exit orders being tracked."""
        return list(self._orders.values())

    def idle(self) -> bool:
        """Return True when no exit is under way."""
        return not self._orders and not self._busy

    def _today(self) -> date:
        return self.clock.now().astimezone(ET).date()

    # ------------------------------------------------------------------ begin an exit

    def request(self, symbol: str, reason: ExitReason, price: float, why: str) -> bool:
        """Start selling ``symbol`` for ``reason`` (at once, in a task); False when busy."""
        if self.busy(symbol) or not self.adapter.is_connected:
            return False
        begin = self._begin(symbol, reason, price, why, time.monotonic())
        self._spawn(begin, f"exit-{symbol}", symbol)
        return True

    async def _begin(
        self, symbol: str, reason: ExitReason, price: float, why: str, decided: float
    ) -> None:
        row = self.book.row(symbol)
        if row is None or row.state is not PositionState.OPEN:
            return
        planned = self._first_order(row, reason, price)
        if planned is None:
            return
        quantity, limit, mark = planned
        ref = new_order_ref(symbol, row.id, 0)
        shown = price if math.isfinite(price) else None  # an EOD exit may have no price
        with span(f"exit.{reason}", symbol=symbol, order_ref=ref, price=shown, why=why):
            # The fast lane: this transaction never queues behind settlements and events.
            ticket = await self.fast_lane.call(
                self.store.begin_exit, symbol, now=self.clock.now(), order_ref=ref,
                quantity=quantity, limit_price=limit, reason=reason,
            )  # fmt: skip
            if ticket is None:  # not OPEN any more in the database: someone else moved it
                return
            self.book.put(ticket.position)
            failpoints.hit(failpoints.AFTER_BEGIN_EXIT)
            order = ExitOrder(symbol, row.id, ref, reason, quantity, limit, 0, self._epoch())
            order.decided_at, order.intent_ms = decided, (time.monotonic() - decided) * 1000.0
            self._track(order)
            self.journal.record(  # only queued: the database lane writes it while the order goes
                "exit_decided", symbol, reason=reason, price=price, why=why,
                target=row.target_price, stop=row.stop_price, entry=row.entry_price,
                quantity=quantity, order_ref=ref, mark_source=mark.source if mark else None,
            )  # fmt: skip
            await self._send(order, mark.price if mark else price)

    def _first_order(
        self, row: ActivePosition, reason: ExitReason, price: float
    ) -> tuple[int, float, Mark | None] | None:
        """Return (quantity, limit, mark) of an exit's first order; None (explained) if none."""
        quantity = self._sellable(row)
        if quantity <= 0:
            self.journal.record(
                "no_broker_position", row.symbol, level=logging.WARNING, reason=reason,
                held=row.quantity,
            )  # fmt: skip
            self._cool(row.symbol, self.config.failure_cooldown_s)
            return None
        mark = self.marks(row.symbol)
        limit = self._limit(mark, price, 0)
        if limit is None:
            self.journal.record("no_price", row.symbol, level=logging.WARNING, reason=reason)
            self._cool(row.symbol, self.config.refusal_cooldown_s)
            return None
        return quantity, limit, mark

    def _sellable(self, row: ActivePosition) -> int:
        """Return min(database quantity, broker position): never sell more than is held."""
        try:
            broker = int(self.adapter.position(row.symbol))
        except NotConnectedError:
            return 0
        if broker != row.quantity:
            self.journal.record(
                "quantity_mismatch", row.symbol, database=row.quantity, broker=broker
            )
        return max(0, min(row.quantity, broker))

    def _limit(self, mark: Mark | None, fallback: float, step: int) -> float | None:
        """Return the sell limit of ``step`` from the mark's bid (None: no price known)."""
        bid = mark.bid if mark is not None else fallback
        if not (math.isfinite(bid) and bid > 0):
            return None
        return exit_limit(bid, min(step, self.params.replace_steps), self.params)

    def _epoch(self) -> int:
        return self.adapter.stats().connects

    # ------------------------------------------------------------------ sending

    async def _send(self, order: ExitOrder, reference: float) -> None:
        """Send ``order`` (its intent is committed), as span ``order.place``."""
        attributes = {"quantity": order.quantity, "limit": order.limit, "step": order.step}
        with span(
            "order.place", symbol=order.symbol, side="SELL", order_ref=order.order_ref,
            **attributes,
        ) as placing:  # fmt: skip
            set_attributes(placing, outcome=await self._place(order, reference))

    async def _place(self, order: ExitOrder, reference: float) -> str:
        """Send ``order``; classify what happened and return it in a word."""
        try:
            view = await self.adapter.place_limit(
                order.symbol,
                "SELL",
                order.quantity,
                order.limit,
                order.order_ref,
                reference_price=reference,
                wait_ack=False,
            )
        except NotConnectedError as exc:
            self._advance(order, Trigger.NOT_SENT)
            self.journal.record(
                "exit_unsent", order.symbol, order_ref=order.order_ref, why=str(exc)
            )
            return "not_sent"
        except BrokerError as exc:  # a pre-trade rule refused it: it was not sent
            await self._refused(order, exc)
            return "refused"
        except Exception as exc:  # noqa: BLE001 - it may have gone out: only the broker knows
            log.exception("placing %s failed", order.order_ref)
            self._advance(order, Trigger.NO_ACK)
            self.journal.record(
                "exit_order_unknown", order.symbol, level=logging.ERROR, error=str(exc)
            )
            return "unknown"
        order.sent_at = time.monotonic()
        order.epoch = self._epoch()
        self._advance(order, Trigger.SENT)
        # The broker may have answered already (ack, fill, rejection): the adapter's book
        # holds the freshest view; the one place_limit returned may be stale by now.
        self.on_order_view(self.adapter.order(order.order_ref) or view)
        failpoints.hit(failpoints.AFTER_PLACE)
        reaction = (order.sent_at - order.decided_at) * 1000.0 if order.decided_at else None
        self.journal.record(
            "order_placed",
            order.symbol,
            order_ref=order.order_ref,
            quantity=order.quantity,
            limit=order.limit,
            step=order.step,
            reason=order.reason,
            decision_to_send_ms=reaction,
            intent_ms=order.intent_ms,
        )
        return "sent"

    async def _refused(self, order: ExitOrder, exc: BrokerError) -> None:
        """The adapter refused the sell before sending it: back to OPEN, retry after a pause."""
        self._forget(order)
        reopened = await self.lane.call(
            self.store.cancel_exit,
            order.symbol,
            order.order_ref,
            now=self.clock.now(),
            reason=f"refused before sending: {exc}",
        )
        if reopened is not None:
            self.book.put(reopened)
        self._cool(order.symbol, self.config.refusal_cooldown_s)
        self.journal.record(
            "exit_refused",
            order.symbol,
            level=logging.WARNING,
            order_ref=order.order_ref,
            rule=getattr(exc, "rule", type(exc).__name__),
            error=str(exc),
        )

    # ------------------------------------------------------------------ broker events

    def on_order_view(self, view: OrderView) -> None:
        """Take a broker report of one of our orders: database first, then the stage."""
        order = self._by_ref.get(view.order_ref)
        if order is None:
            return
        order.view = view
        self.lane.post(f"order {view.order_ref}", self._write_order, view)
        trigger = trigger_of(view)
        if trigger is not None:
            self._advance(order, trigger)

    def on_fill(self, execution: ExecutionView) -> None:
        """Record one of this client's fills (exec id makes it idempotent)."""
        self.lane.post(f"fill {execution.exec_id}", self._write_fill, execution)

    def on_commission(self, execution: ExecutionView) -> None:
        """Attach the broker's commission report to its recorded fill."""
        if execution.commission is not None:
            self.lane.post(
                f"commission {execution.exec_id}",
                self.store.set_fill_commission,
                execution.exec_id,
                execution.commission,
            )

    def on_reconnected(self) -> None:
        """After a reconnect: an order sent on an older connection and absent now is lost."""
        snapshot = self.adapter.reconcile_snapshot()
        if snapshot is None:
            return
        epoch = self._epoch()
        for order in list(self._orders.values()):
            if order.stage in (Stage.DONE, Stage.UNSENT, Stage.SENDING) or order.epoch >= epoch:
                continue
            if snapshot.find(order.order_ref) is None and not self.adapter.executions(
                order.order_ref
            ):
                order.lost = True
                self._advance(order, Trigger.LOST)
                self._forget_lost(order)

    def _forget_lost(self, order: ExitOrder) -> None:
        """Let the adapter stop counting a lost sell (else its sell guard blocks the resend)."""
        if not self.adapter.forget_order(order.order_ref, "absent after a reconnect"):
            self.journal.record(
                "exit_order_not_forgotten", order.symbol, level=logging.WARNING,
                order_ref=order.order_ref,
                why="the adapter does not hold it proven absent; it counts as working",
            )  # fmt: skip

    def on_forgotten(self, event: ForgottenOrder) -> None:
        """Record that the adapter stopped counting one of our orders, and why."""
        self.journal.record(
            "order_forgotten", event.symbol, level=logging.WARNING, order_ref=event.order_ref,
            quantity=event.quantity, reason=event.reason, proof=event.proof,
        )  # fmt: skip

    def _write_order(self, view: OrderView) -> None:
        current = self.store.order(view.order_ref)
        if current is None:
            return
        changes = order_changes(current, view)
        if changes:
            self.store.update_order(view.order_ref, now=self.clock.now(), **changes)

    def _write_fill(self, execution: ExecutionView) -> None:
        self.store.record_fill(
            execution.exec_id,
            order_ref=execution.order_ref or None,
            symbol=execution.symbol,
            side="SELL" if execution.side == "SLD" else "BUY",
            quantity=int(round(execution.shares)),
            price=execution.price,
            commission=execution.commission,
            time=execution.time,
        )
        if execution.commission is not None:
            self.store.set_fill_commission(execution.exec_id, execution.commission)

    # ------------------------------------------------------------------ stages

    def _track(self, order: ExitOrder) -> None:
        self._orders[order.symbol] = order
        self._by_ref[order.order_ref] = order

    def _forget(self, order: ExitOrder) -> None:
        if self._orders.get(order.symbol) is order:
            del self._orders[order.symbol]
        self._by_ref.pop(order.order_ref, None)

    def _advance(self, order: ExitOrder, trigger: Trigger) -> None:
        """Move ``order`` per ``STAGE_TRANSITIONS``; a final status starts its settlement."""
        old = order.stage
        try:
            new = next_stage(old, trigger)
        except StageError as exc:
            log.error("%s: %s", order.order_ref, exc)
            return
        if new is old:
            return
        order.stage, order.since = new, time.monotonic()
        log.info("exit order %s from %s to %s (%s)", order.order_ref, old, new, trigger)
        if new is Stage.UNKNOWN:
            self.journal.record(
                "exit_order_unknown",
                order.symbol,
                level=logging.WARNING,
                order_ref=order.order_ref,
                why="no acknowledgement from the broker; waiting for its word",
            )
        if new is Stage.DONE:
            self._spawn(self._settle(order), f"settle-{order.symbol}", order.symbol)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str, symbol: str) -> None:
        """Run ``coro`` as a task that keeps ``symbol`` busy until it ends."""
        self._busy[symbol] = self._busy.get(symbol, 0) + 1
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            left = self._busy.get(symbol, 1) - 1
            if left > 0:
                self._busy[symbol] = left
            else:
                self._busy.pop(symbol, None)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("%s failed", name, exc_info=finished.exception())

        task.add_done_callback(done)

    def _cool(self, symbol: str, seconds: float) -> None:
        self._cooldown[symbol] = time.monotonic() + seconds

    # ------------------------------------------------------------------ the periodic pass

    async def manage(self) -> None:
        """Replace slow orders, chase unknown ones, resend unsent ones (one pass)."""
        for order in list(self._orders.values()):
            if order.symbol in self._busy:
                continue
            if order.stage is Stage.WORKING:
                await self._watch_working(order)
            elif order.stage is Stage.CANCELLING:
                await self._watch_cancelling(order)
            elif order.stage is Stage.UNKNOWN:
                await self._watch_unknown(order)
            elif order.stage is Stage.UNSENT and self.adapter.is_connected:
                mark = self.marks(order.symbol)
                await self._send(order, mark.price if mark else order.limit)

    async def _watch_working(self, order: ExitOrder) -> None:
        if order.view is None or not order.view.is_acknowledged:
            return  # not acknowledged yet: only the broker's word (or the ack timeout) moves it
        mark = self.marks(order.symbol)
        if mark is not None and mark.halted:
            if not order.halted_noted:
                order.halted_noted = True
                self.journal.record(
                    "exit_resting_halted",
                    order.symbol,
                    level=logging.WARNING,
                    order_ref=order.order_ref,
                    reason=order.reason,
                    why="trading halted: the sell rests until trading resumes or the close",
                )
            return
        if should_replace(order.age(), order.step, self.params):
            await self._cancel(order, Ending.REPLACED)
        elif (
            order.step >= self.params.replace_steps and order.age() >= self.params.replace_timeout_s
        ):
            if not order.alerted:
                order.alerted = True
                self.journal.record(
                    "exit_unfilled_alert",
                    order.symbol,
                    level=logging.ERROR,
                    order_ref=order.order_ref,
                    step=order.step,
                    limit=order.limit,
                    why=f"not filled after {order.step} replacements; left working",
                )

    async def _cancel(self, order: ExitOrder, why: Ending) -> None:
        order.cancel_for = why
        self._advance(order, Trigger.CANCEL)
        await self._request_cancel(order)

    async def _request_cancel(self, order: ExitOrder) -> None:
        try:
            view = await self.adapter.cancel(order.order_ref)
        except NotConnectedError:
            return  # the reconnect's reconciliation tells whether it still works
        except SymbolError:
            await self._refresh()  # not working at the broker as far as the adapter knows
            return
        if view is not None:
            self.on_order_view(view)

    async def _watch_cancelling(self, order: ExitOrder) -> None:
        if order.in_stage() < self.config.cancel_timeout_s:
            return
        order.since = time.monotonic()
        await self._refresh()
        if order.stage is Stage.CANCELLING and self.adapter.is_connected:
            await self._request_cancel(order)

    async def _watch_unknown(self, order: ExitOrder) -> None:
        now = time.monotonic()
        if now - order.last_check < self.config.unknown_reconcile_s:
            return
        order.last_check = now
        await self._refresh()

    async def _refresh(self) -> None:
        """Ask the broker for a fresh snapshot; the adapter reports what changed."""
        if not self.adapter.is_connected:
            return
        try:
            await self.adapter.reconcile()
        except Exception as exc:  # noqa: BLE001 - a failed look-up is retried next pass
            log.warning("broker snapshot failed: %s", exc)

    # ------------------------------------------------------------------ settlement

    async def _settle(self, order: ExitOrder) -> None:
        """Account for a finished order's fills; close, resell the rest, or reopen."""
        executions = await self._await_commissions(order)
        row = await self.lane.call(self.store.active_position, order.symbol)
        self._forget(order)
        if row is None or row.id != order.position_id or row.exit_order_ref != order.order_ref:
            # Settled already (a previous run), or not the row's exit any more: its fills
            # were counted when the row moved on; counting them here would count them twice.
            log.warning(
                "%s: %s is not the row's exit order; not settled", order.symbol, order.order_ref
            )
            return
        await self._finish_order_row(order)
        entry_fee = await self._entry_commission(row, executions)
        sale = ledger.sale_of(executions, row.entry_price or 0.0, entry_fee)
        if sale.missing_commissions:
            self.journal.record(
                "commission_missing", row.symbol, order_ref=order.order_ref,
                fills=sale.missing_commissions,
            )  # fmt: skip
        ending = ending_of(order)
        if ending is Ending.REJECTED:
            order.rejections += 1
            self._record_rejection(order)
        decision = after_order(
            sold=sale.shares,
            held=row.quantity,
            broker_left=self._broker_left(row.symbol),
            ending=ending,
            step=order.step,
            rejections=order.rejections,
            market_open=self.market_open(),
            params=self.params,
            max_rejections=self.config.max_rejections,
        )
        await self._apply(order, row, sale, ending, decision)

    async def _await_commissions(self, order: ExitOrder) -> tuple[ExecutionView, ...]:
        deadline = time.monotonic() + self.config.commission_wait_s
        while True:
            fills = ledger.sells(self.adapter.executions(order.order_ref), order.order_ref)
            if all(f.commission is not None for f in fills) or time.monotonic() >= deadline:
                return fills
            await asyncio.sleep(0.05)

    async def _finish_order_row(self, order: ExitOrder) -> None:
        """Make the order's row final before the position moves on (the store insists)."""
        await self.lane.drain()  # status updates posted earlier are written first
        current = await self.lane.call(self.store.order, order.order_ref)
        if current is None or current.status in ORDER_DONE_STATES:
            return
        status = OrderStatus.FILLED if ending_of(order) is Ending.FILLED else OrderStatus.CANCELLED
        why = "not at the broker after a full reconcile" if order.lost else "final at the broker"
        await self.lane.call(
            self.store.update_order, order.order_ref, now=self.clock.now(), status=status, error=why
        )

    async def _entry_commission(
        self, row: ActivePosition, executions: tuple[ExecutionView, ...]
    ) -> float:
        sold = int(round(sum(e.shares for e in executions)))
        if sold <= 0 or not row.entry_order_ref:
            return 0.0
        fills = await self.lane.call(self.store.fills, order_ref=row.entry_order_ref)
        total = sum(f.commission or 0.0 for f in fills)
        if not fills:
            total = sum(e.commission or 0.0 for e in self.adapter.executions(row.entry_order_ref))
        return ledger.entry_commission_share(total, sold, row.quantity + row.sold_quantity)

    def _broker_left(self, symbol: str) -> int:
        try:
            return int(self.adapter.position(symbol))
        except NotConnectedError:
            return 1  # unknown: not flat as far as a close is concerned

    def _record_rejection(self, order: ExitOrder) -> None:
        view = order.view
        self.journal.record(
            "exit_rejected",
            order.symbol,
            level=logging.WARNING,
            order_ref=order.order_ref,
            code=view.error_code if view else None,
            error=view.error if view else None,
            rejections=order.rejections,
        )

    async def _apply(
        self,
        order: ExitOrder,
        row: ActivePosition,
        sale: ledger.Sale,
        ending: Ending,
        decision: Next,
    ) -> None:
        """Carry out ``decision`` for the settled ``order``.

        Crash-safe order of writes: a partly sold order is first detached from the row
        (``cancel_exit``), then its sale is recorded (``reduce_position``). The row never
        points at an order whose fills were already counted, so a restart never counts
        them twice (a crash between the two loses that sale's P&L from the day's record;
        the shares are right, the broker's position is the truth for selling).
        """
        if decision.kind is NextKind.CLOSE:
            await self._close(order, row, sale, decision)
            return
        if sale.shares == 0 and decision.kind is NextKind.RESELL:
            await self._resell(order, row, ending, decision, in_place=True)
            return
        reopened = await self._detach(order, decision.why)
        if reopened is None:
            log.error("%s: the row no longer points at %s", order.symbol, order.order_ref)
            return
        if sale.shares > 0:
            reopened = await self._reduce(order, sale)
        if decision.kind is NextKind.RESELL:
            await self._resell(order, reopened, ending, decision, in_place=False)
        else:
            self._explain_reopen(order, reopened, sale, ending, decision)

    async def _close(
        self, order: ExitOrder, row: ActivePosition, sale: ledger.Sale, decision: Next
    ) -> None:
        price = sale.avg_price if sale.shares > 0 else (row.entry_price or order.limit)
        # Nothing sold and nothing held: the shares went elsewhere; the close says so.
        reason = order.reason if sale.shares > 0 else ExitReason.RECONCILED
        closed = await self.lane.call(
            self.store.close_position,
            row.symbol,
            trading_date=self._today(),
            now=self.clock.now(),
            exit_price=price,
            reason=reason,
            pnl=sale.pnl,
            commissions=sale.commissions,
            position_id=row.id,
        )
        self.book.drop(row.symbol)
        if closed is None:
            return
        self.journal.record(
            "closed",
            row.symbol,
            reason=reason,
            pnl=closed.pnl,
            commissions=closed.commissions,
            exit_price=price,
            quantity=closed.quantity,
            reentry_allowed=closed.reentry_allowed,
            order_ref=order.order_ref,
            why=decision.why,
        )

    async def _detach(self, order: ExitOrder, why: str) -> ActivePosition | None:
        """EXIT_PENDING -> OPEN: the finished order is no longer the row's exit."""
        reopened = await self.lane.call(
            self.store.cancel_exit, order.symbol, order.order_ref, now=self.clock.now(), reason=why
        )
        if reopened is not None:
            self.book.put(reopened)
        return reopened

    async def _reduce(self, order: ExitOrder, sale: ledger.Sale) -> ActivePosition:
        row = await self.lane.call(
            self.store.reduce_position,
            order.symbol,
            trading_date=self._today(),
            now=self.clock.now(),
            sold_quantity=sale.shares,
            pnl=sale.pnl,
            commissions=sale.commissions,
        )
        self.book.put(row)
        self.journal.record(
            "reduced", order.symbol, sold=sale.shares, pnl=sale.pnl, left=row.quantity,
            order_ref=order.order_ref,
        )  # fmt: skip
        return row

    async def _resell(
        self,
        old: ExitOrder,
        row: ActivePosition,
        ending: Ending,
        decision: Next,
        *,
        in_place: bool,
    ) -> None:
        """Sell what is left with a new order (intent first, then the send).

        ``in_place``: the old order sold nothing, so the EXIT_PENDING row is simply
        pointed at the new intent (one transaction); otherwise the row is OPEN again and
        ``begin_exit`` takes it once more.
        """
        if ending is Ending.REJECTED:
            await asyncio.sleep(self.config.refusal_cooldown_s / 2)
        mark = self.marks(row.symbol)
        limit = self._limit(mark, old.limit, decision.step) or old.limit
        quantity = max(0, min(row.quantity, self._broker_left(row.symbol)))
        ref = new_order_ref(row.symbol, row.id, decision.step)
        now = self.clock.now()
        if in_place:
            moved = await self.lane.call(
                self.store.replace_exit_order, row.symbol, now=now, old_order_ref=old.order_ref,
                order_ref=ref, quantity=quantity, limit_price=limit, reason=old.reason,
            )  # fmt: skip
        else:
            ticket = await self.lane.call(
                self.store.begin_exit, row.symbol, now=now, order_ref=ref, quantity=quantity,
                limit_price=limit, reason=old.reason,
            )  # fmt: skip
            moved = ticket is not None
            if ticket is not None:
                self.book.put(ticket.position)
        if not moved:
            log.error("%s: could not point the row at a new exit order", row.symbol)
            return
        order = ExitOrder(
            row.symbol, row.id, ref, old.reason, quantity, limit, decision.step, self._epoch()
        )
        order.rejections = old.rejections
        self._track(order)
        await self._send(order, mark.price if mark else limit)
        self.journal.record(
            "order_replaced" if ending is Ending.REPLACED else "exit_resent",
            row.symbol,
            old_order_ref=old.order_ref,
            order_ref=ref,
            step=decision.step,
            limit=limit,
            quantity=quantity,
            ending=ending,
            why=decision.why,
        )

    def _explain_reopen(
        self,
        order: ExitOrder,
        reopened: ActivePosition,
        sale: ledger.Sale,
        ending: Ending,
        decision: Next,
    ) -> None:
        """The rest is OPEN again, under the rules: say why (and pause if it failed)."""
        halted = order.halted_noted or bool((m := self.marks(order.symbol)) and m.halted)
        closed_market = not self.market_open()
        kind = "eod_unfilled" if closed_market else "exit_failed"
        if not closed_market:
            self._cool(order.symbol, self.config.failure_cooldown_s)
        self.journal.record(
            kind,
            order.symbol,
            level=logging.ERROR,
            order_ref=order.order_ref,
            reason=order.reason,
            ending=ending,
            sold=sale.shares,
            left=reopened.quantity,
            halted=halted,
            why=decision.why,
        )

    # ------------------------------------------------------------------ adoption at start-up

    def adopt_working(self, row: ActivePosition, view: OrderView) -> None:
        """Watch an exit order found working at the broker (sent by a previous run)."""
        ref = view.order_ref or (row.exit_order_ref or "")
        order = ExitOrder(
            row.symbol,
            row.id,
            ref,
            row.exit_reason or ExitReason.MANUAL,
            int(view.quantity),
            view.limit_price or 0.0,
            step_of(ref),
            epoch=0,
            stage=Stage.WORKING,
        )
        order.view = view
        self._track(order)
        trigger = trigger_of(view)
        if trigger is not None:
            self._advance(order, trigger)

    def adopt_absent(self, row: ActivePosition, quantity: int, limit: float) -> None:
        """Resolve an exit order the broker provably never received: settle it as lost."""
        ref = row.exit_order_ref or ""
        order = ExitOrder(
            row.symbol,
            row.id,
            ref,
            row.exit_reason or ExitReason.MANUAL,
            quantity,
            limit,
            step_of(ref),
            epoch=0,
            stage=Stage.WORKING,
        )
        order.lost = True
        self._track(order)
        self._advance(order, Trigger.LOST)

    async def close(self) -> None:
        """Stop the tasks (working orders stay at the broker, protecting the positions)."""
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._tasks, return_exceptions=True)
