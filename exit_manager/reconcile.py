"""Reconcile the broker with the database: at start-up before anything else, then every pass.

Design 4 and NautilusTrader's rule: trading starts only after the venue and the database
agree. ``plan_start`` (pure) compares one fresh broker snapshot with the active rows and
the open order intents:

- a broker position with no row is *adopted* under the default target/stop (avg cost as
  entry; the store records ``adopted``);
- an OPEN row with no broker position and no live order for the symbol is closed as
  ``reconciled``;
- an EXIT_PENDING row's sell is looked up by order_ref, then perm id, then executions:
  found (working or done) it is adopted and settled by the seller, never sent again;
  provably absent (the snapshot is from a connection made after the sell was written,
  and shows no trace of it) it is sent again under a new order_ref;
- ENTRY_PENDING rows belong to the day trader and are left alone.

During the session ``DriftWatch`` looks for the same differences on the adapter's live
position reports; one must last ``discrepancy_grace_s`` and survive a fresh snapshot
before it is acted on (a fill and its position report arrive in separate messages).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from broker.adapter import BrokerAdapter
from broker.models import BrokerPosition, OrderView, ReconcileSnapshot
from exit_manager.book import Book
from exit_manager.db_lane import DbLane
from exit_manager.evidence import locate, order_changes
from exit_manager.journal import Journal
from exit_manager.ledger import sells
from exit_manager.rules import ExitParams, stop_price, target_price
from exit_manager.selling import Seller
from market.clock import ET, Clock
from shared_state import (
    ORDER_DONE_STATES,
    ActivePosition,
    ExitReason,
    Order,
    OrderPurpose,
    OrderStatus,
    PositionState,
    Store,
)

log = logging.getLogger("exit_manager.reconcile")

_OPEN_ORDER_STATES = (
    OrderStatus.INTENT,
    OrderStatus.SUBMITTED,
    OrderStatus.PARTIAL,
    OrderStatus.UNKNOWN,
)


class ReconcileError(RuntimeError):
    """The start-up reconciliation could not complete; the process must not report ready."""


@dataclass(frozen=True)
class Resume:
    """An EXIT_PENDING row and what the broker says about its sell."""

    row: ActivePosition
    view: OrderView | None  # None: the broker provably never received it


@dataclass(frozen=True)
class StartPlan:
    """What the start-up reconciliation will do."""

    adopt: tuple[BrokerPosition, ...]
    close_reconciled: tuple[ActivePosition, ...]
    resume: tuple[Resume, ...]
    mismatches: tuple[tuple[str, int, int], ...]  # symbol, database, broker
    shorts: tuple[BrokerPosition, ...]  # short positions: the exit manager cannot buy


def live_order_symbols(snapshot: ReconcileSnapshot) -> frozenset[str]:
    """Return the symbols with an order still working at the broker (any client)."""
    return frozenset(v.symbol for v in snapshot.open_orders.values() if not v.is_done)


def plan_start(
    rows: Sequence[ActivePosition],
    exit_orders: dict[str, Order],
    snapshot: ReconcileSnapshot,
) -> StartPlan:
    """Return the start-up plan for ``rows`` against one broker ``snapshot``."""
    by_symbol = {row.symbol: row for row in rows}
    held = {p.symbol: p for p in snapshot.positions if p.quantity != 0}
    working = live_order_symbols(snapshot)
    adopt = tuple(p for s, p in sorted(held.items()) if s not in by_symbol and p.quantity > 0)
    shorts = tuple(p for _, p in sorted(held.items()) if p.quantity < 0)
    closing, resume, mismatches = [], [], []
    for row in rows:
        broker = int(held[row.symbol].quantity) if row.symbol in held else 0
        if row.state is PositionState.EXIT_PENDING:
            order = exit_orders.get(row.exit_order_ref or "")
            view = locate(order, snapshot) if order is not None else None
            resume.append(Resume(row, view))
        elif row.state is PositionState.OPEN:
            if broker <= 0 and row.symbol not in working:
                closing.append(row)
            elif broker != row.quantity:
                mismatches.append((row.symbol, row.quantity, broker))
    return StartPlan(adopt, tuple(closing), tuple(resume), tuple(mismatches), shorts)


def adoption_levels(avg_cost: float, params: ExitParams) -> tuple[float, float]:
    """Return the (target, stop) of a position adopted at ``avg_cost`` (the defaults)."""
    return target_price(avg_cost, False, params), stop_price(avg_cost, params)


class Reconciler:
    """Applies reconciliation plans through the store and the seller."""

    def __init__(
        self,
        *,
        adapter: BrokerAdapter,
        store: Store,
        lane: DbLane,
        journal: Journal,
        clock: Clock,
        book: Book,
        seller: Seller,
        params: ExitParams,
    ) -> None:
        self.adapter = adapter
        self.store = store
        self.lane = lane
        self.journal = journal
        self.clock = clock
        self.book = book
        self.seller = seller
        self.params = params

    def _today(self) -> date:
        return self.clock.now().astimezone(ET).date()

    # ------------------------------------------------------------------ start-up

    async def at_start(self) -> StartPlan:
        """Reconcile once, from a fresh snapshot; raise ``ReconcileError`` saying why not."""
        try:
            snapshot = await self.adapter.reconcile()
        except Exception as exc:
            raise ReconcileError(f"broker snapshot failed: {type(exc).__name__}: {exc}") from exc
        try:
            return await self._apply_start(snapshot)
        except Exception as exc:
            raise ReconcileError(f"applying the reconciliation failed: {exc}") from exc

    async def _apply_start(self, snapshot: ReconcileSnapshot) -> StartPlan:
        rows = await self.lane.call(self.store.active_positions)
        exit_orders = await self.lane.call(self._exit_orders, rows)
        await self.lane.call(self._update_orders, exit_orders.values(), snapshot)
        plan = plan_start(rows, exit_orders, snapshot)
        for position in plan.adopt:
            await self.adopt(position, "start-up reconciliation")
        for row in plan.close_reconciled:
            await self.close_reconciled(row, "no broker position and no live order at start-up")
        for symbol, database, broker in plan.mismatches:
            self.journal.record(
                "quantity_mismatch", symbol, level=logging.WARNING, database=database,
                broker=broker, why="start-up: selling never exceeds the broker's position",
            )  # fmt: skip
        for short in plan.shorts:
            self.journal.record(
                "short_position", short.symbol, level=logging.ERROR, quantity=short.quantity,
                why="a short position: the exit manager only sells; a person must cover it",
            )  # fmt: skip
        self.book.load(await self.lane.call(self.store.active_positions))
        self._resume_exits(plan.resume, snapshot)
        self.journal.record(
            "reconcile_done",
            adopted=[p.symbol for p in plan.adopt],
            closed_reconciled=[r.symbol for r in plan.close_reconciled],
            exits_found=[r.row.symbol for r in plan.resume if r.view is not None],
            exits_absent=[r.row.symbol for r in plan.resume if r.view is None],
            mismatches=[m[0] for m in plan.mismatches],
            broker_positions=len([p for p in snapshot.positions if p.quantity]),
        )
        return plan

    def _exit_orders(self, rows: Iterable[ActivePosition]) -> dict[str, Order]:
        """Return the not-done exit intents and every EXIT_PENDING row's order, by ref."""
        found = {
            o.order_ref: o
            for o in self.store.orders_in_status(*_OPEN_ORDER_STATES)
            if o.purpose is OrderPurpose.EXIT
        }
        for row in rows:
            ref = row.exit_order_ref
            if ref and ref not in found:
                order = self.store.order(ref)
                if order is not None:
                    found[ref] = order
        return found

    def _update_orders(self, orders: Iterable[Order], snapshot: ReconcileSnapshot) -> None:
        """Bring the exit intents' rows up to the broker's word and record their fills."""
        for order in orders:
            view = locate(order, snapshot)
            if view is None:
                continue
            changes = order_changes(order, view)
            if changes:
                self.store.update_order(order.order_ref, now=self.clock.now(), **changes)
            for execution in sells(snapshot.executions, order.order_ref):
                self.seller.on_fill(execution)

    def _resume_exits(self, resume: Iterable[Resume], snapshot: ReconcileSnapshot) -> None:
        for item in resume:
            row = item.row
            if item.view is not None:
                self.seller.adopt_working(row, item.view)
                continue
            held = int(snapshot.position(row.symbol))
            self.journal.record(
                "exit_order_absent", row.symbol, level=logging.WARNING,
                order_ref=row.exit_order_ref, broker_position=held,
                why="no open order, completed order or execution at the broker: never received",
            )  # fmt: skip
            self.seller.adopt_absent(row, max(0, min(row.quantity, held)), row.entry_price or 0.0)

    # ------------------------------------------------------------------ shared actions

    async def adopt(self, position: BrokerPosition, why: str) -> ActivePosition | None:
        """Put an unknown broker position under protection with the default target/stop."""
        avg = position.avg_cost
        if not avg > 0:
            mark = self.seller.marks(position.symbol)
            avg = mark.price if mark else 0.0
        if not avg > 0:
            log.warning("cannot adopt %s: no cost and no price", position.symbol)
            return None
        target, stop = adoption_levels(avg, self.params)
        row = await self.lane.call(
            self.store.adopt_position,
            position.symbol,
            trading_date=self._today(),
            now=self.clock.now(),
            quantity=int(position.quantity),
            entry_price=avg,
            target_price=target,
            stop_price=stop,
            detail={"why": why, "account": position.account, "avg_cost": position.avg_cost},
        )
        if row is not None:
            self.book.put(row)
            log.info("adopted %s: %d @ %.4f (%s)", row.symbol, row.quantity, avg, why)
        return row

    async def close_reconciled(self, row: ActivePosition, why: str) -> None:
        """Close a row the broker holds nothing of (P&L unknown: recorded as 0)."""
        closed = await self.lane.call(
            self.store.close_position,
            row.symbol,
            trading_date=self._today(),
            now=self.clock.now(),
            exit_price=row.entry_price or 0.01,
            reason=ExitReason.RECONCILED,
            pnl=0.0,
            commissions=0.0,
            position_id=row.id,
        )
        self.book.drop(row.symbol)
        if closed is not None:
            self.journal.record("reconciled", row.symbol, why=why, quantity=row.quantity)


class DriftWatch:
    """Finds broker/database differences during the session and settles lasting ones."""

    def __init__(
        self,
        reconciler: Reconciler,
        adapter: BrokerAdapter,
        book: Book,
        seller: Seller,
        grace_s: float,
    ) -> None:
        self.reconciler = reconciler
        self.adapter = adapter
        self.book = book
        self.seller = seller
        self.grace_s = grace_s
        self._seen: dict[tuple[str, str], float] = {}  # (kind, symbol) -> first seen

    def _suspects(self) -> set[tuple[str, str]]:
        held = {p.symbol: p.quantity for p in self.adapter.positions() if p.quantity > 0}
        found = {("adopt", s) for s in held if self.book.row(s) is None}
        for row in self.book.rows():
            if row.state is PositionState.OPEN and held.get(row.symbol, 0) <= 0:
                found.add(("reconcile", row.symbol))
        return {(k, s) for k, s in found if not self.seller.busy(s)}

    async def check(self) -> None:
        """Act on differences that lasted ``grace_s`` and a fresh snapshot confirms."""
        if not self.adapter.is_connected:
            return
        now = time.monotonic()
        suspects = self._suspects()
        self._seen = {key: self._seen.get(key, now) for key in suspects}
        due = {key for key, since in self._seen.items() if now - since >= self.grace_s}
        if due:
            await self.settle(due)

    async def adopt_all_now(self) -> list[str]:
        """Adopt every unknown broker position at once (a liquidate-all command)."""
        if not self.adapter.is_connected:
            return []
        snapshot = await self.adapter.reconcile()
        adopted = []
        for position in snapshot.positions:
            if position.quantity > 0 and self.book.row(position.symbol) is None:
                if await self.reconciler.adopt(position, "liquidation command") is not None:
                    adopted.append(position.symbol)
        return adopted

    async def settle(self, due: set[tuple[str, str]]) -> None:
        snapshot = await self.adapter.reconcile()
        rows = await self.reconciler.lane.call(self.reconciler.store.active_positions)
        self.book.load(rows)
        working = live_order_symbols(snapshot)
        for kind, symbol in sorted(due):
            self._seen.pop((kind, symbol), None)
            held = int(snapshot.position(symbol))
            row = self.book.row(symbol)
            if kind == "adopt" and row is None and held > 0:
                position = next(p for p in snapshot.positions if p.symbol == symbol)
                await self.reconciler.adopt(position, "broker position with no row")
            elif kind == "reconcile" and row is not None and row.state is PositionState.OPEN:
                if held <= 0 and symbol not in working and not self.seller.busy(symbol):
                    await self.reconciler.close_reconciled(
                        row, "no broker position and no live order"
                    )


__all__ = ["ORDER_DONE_STATES", "DriftWatch", "ReconcileError", "Reconciler", "StartPlan"]
