"""The adapter's book of its own orders: one OrderView per order_ref, and the merge rules.

Evidence only ever moves an order forward (design section 4, and NautilusTrader's
"missing evidence must not become a confirmed outcome"):

- a done order (filled, cancelled, rejected) never comes back to life;
- filled quantity never goes down;
- an order with no acknowledgement after the ack timeout is UNKNOWN, and stays
  UNKNOWN until the broker acknowledges it (then it is adopted with the broker's status);
- on reconnect, an unfinished order the broker does not report at all becomes UNKNOWN,
  not cancelled;
- only the caller's explicit ``forget`` ends an order without the broker's word: for an
  order a reconcile on a newer connection proved the broker never had (the adapter
  checks that, ``BrokerAdapter.forget_order``). Should the broker report it after all,
  its fills still count (a done order's filled quantity can only grow).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from broker.models import (
    DONE_STATUSES,
    ExecutionView,
    OrderStatus,
    OrderView,
    ReconcileSnapshot,
    order_from_executions,
    order_key,
)

#: Statuses that say "sent, not yet acknowledged": they do not replace UNKNOWN.
_UNACKED = frozenset({OrderStatus.PENDING_SUBMIT, OrderStatus.API_PENDING})

#: Fields whose change is worth an order-status event.
_WATCHED = ("status", "filled", "remaining", "avg_price", "perm_id", "order_id", "error_code")


@dataclass(frozen=True)
class ForgottenOrder:
    """An unfinished order the adapter stopped counting: the broker provably never had it."""

    order_ref: str
    symbol: str
    action: str
    quantity: float
    reason: str  # the caller's reason
    proof: str  # what showed the broker never had it
    time: datetime  # market time (the injected clock)


class OrderBook:
    """Order views of one client, keyed by order_ref; ``on_change`` hears every change."""

    def __init__(self, client_id: int, on_change: Callable[[OrderView], None]) -> None:
        self.client_id = client_id
        self._on_change = on_change
        self._views: dict[str, OrderView] = {}

    def get(self, order_ref: str) -> OrderView | None:
        """Return the current view of ``order_ref`` (None when never seen)."""
        return self._views.get(order_ref)

    def views(self) -> list[OrderView]:
        """Return every order view, oldest first."""
        return list(self._views.values())

    def by_perm_id(self, perm_id: int) -> OrderView | None:
        """Return the order with ``perm_id`` (None when unknown or 0)."""
        if not perm_id:
            return None
        return next((v for v in self._views.values() if v.perm_id == perm_id), None)

    def max_order_id(self) -> int:
        """Return the highest broker order id in the book (0 when empty)."""
        return max((v.order_id for v in self._views.values()), default=0)

    def pending(self, symbol: str, action: str) -> float:
        """Return the shares of unfinished ``action`` orders in ``symbol`` still to fill."""
        return sum(
            v.remaining
            for v in self._views.values()
            if v.symbol == symbol and v.action == action and not v.is_done
        )

    def update(self, new: OrderView) -> OrderView:
        """Merge ``new`` evidence into the book; emit and return the resulting view."""
        key = order_key(new.order_ref, new.perm_id)
        old = self._views.get(key)
        merged = new if old is None else merge(old, new)
        self._views[key] = merged
        if old is None or _changed(old, merged):
            self._on_change(merged)
        return merged

    def mark_unknown(self, order_ref: str, reason: str) -> OrderView | None:
        """Make an unacknowledged, unfinished order UNKNOWN; return it (None: no change)."""
        view = self._views.get(order_ref)
        if view is None or view.is_done or view.status == OrderStatus.UNKNOWN:
            return None
        if view.is_acknowledged and view.status not in _UNACKED:
            return None
        return self.update(replace(view, status=OrderStatus.UNKNOWN, error=reason))

    def forget(self, order_ref: str, reason: str) -> OrderView | None:
        """End an unfinished order as CANCELLED with ``reason``; return it (None: no change).

        Only for an order the broker provably never had (the caller proves it).
        """
        view = self._views.get(order_ref)
        if view is None or view.is_done:
            return None
        lost = replace(
            view, status=OrderStatus.CANCELLED, remaining=0.0, error=reason, source="local"
        )
        return self.update(lost)

    def adopt(self, snapshot: ReconcileSnapshot) -> list[OrderView]:
        """Reconcile the book with a broker snapshot; return the views that changed.

        Orders of this client (or already in the book) are adopted from open orders,
        then completed orders, then executions; unfinished book orders the broker does
        not mention become UNKNOWN.
        """
        changed: list[OrderView] = []
        seen: set[str] = set()
        for view in _broker_views(snapshot):
            key = order_key(view.order_ref, view.perm_id)
            mine = view.client_id == self.client_id or key in self._views
            if not mine:
                mine = self.by_perm_id(view.perm_id) is not None
            if mine:
                seen.add(key)
                before = self._views.get(key)
                after = self.update(with_executions(view, snapshot.executions_for(key)))
                if before != after:
                    changed.append(after)
        for ref, execs in _own_executions(snapshot.executions, self.client_id).items():
            if ref not in seen and ref not in self._views:
                built = order_from_executions(ref, execs)
                if built is not None:
                    seen.add(ref)
                    changed.append(self.update(built))
        for view in list(self._views.values()):
            key = order_key(view.order_ref, view.perm_id)
            if key not in seen and not view.is_done:
                gone = self.mark_unknown(key, "not reported by the broker after reconnect")
                if gone is not None:
                    changed.append(gone)
        return changed


def merge(old: OrderView, new: OrderView) -> OrderView:
    """Return what is known after ``new`` evidence about the order ``old`` describes."""
    if old.is_done and not new.is_done:
        # A stale report cannot reopen a finished order; fills can still grow the count.
        return replace(old, filled=max(old.filled, new.filled))
    status = new.status
    if old.status == OrderStatus.REJECTED and status == OrderStatus.CANCELLED:
        status = old.status  # the completed-orders report forgets why it was cancelled
    if old.status == OrderStatus.UNKNOWN and status in _UNACKED and not new.perm_id:
        status = OrderStatus.UNKNOWN
    if new.source == "executions" and old.source != "executions":
        # Fills alone say nothing about the status; keep ours and only raise the count.
        status = old.status
    filled = max(old.filled, new.filled)
    return replace(
        new,
        status=status,
        filled=filled,
        remaining=0.0 if status in DONE_STATUSES else max(0.0, new.quantity - filled),
        order_id=new.order_id or old.order_id,
        perm_id=new.perm_id or old.perm_id,
        client_id=new.client_id or old.client_id,
        limit_price=new.limit_price if new.limit_price is not None else old.limit_price,
        avg_price=new.avg_price or old.avg_price,
        quantity=new.quantity if new.source != "executions" else old.quantity,
        error_code=new.error_code or old.error_code,
        error=new.error or old.error,
    )


def with_executions(view: OrderView, executions: Iterable[ExecutionView]) -> OrderView:
    """Return ``view`` with its filled quantity raised to what the executions prove."""
    shares = sum(e.shares for e in executions)
    if shares <= view.filled:
        return view
    remaining = 0.0 if view.is_done else max(0.0, view.quantity - shares)
    return replace(view, filled=shares, remaining=remaining)


def _broker_views(snapshot: ReconcileSnapshot) -> list[OrderView]:
    # Completed first, open last: for the same key the fresher open report is merged last.
    return [*snapshot.completed_orders.values(), *snapshot.open_orders.values()]


def _own_executions(
    executions: Iterable[ExecutionView], client_id: int
) -> dict[str, list[ExecutionView]]:
    grouped: dict[str, list[ExecutionView]] = {}
    for e in executions:
        if e.client_id == client_id:
            grouped.setdefault(order_key(e.order_ref, e.perm_id), []).append(e)
    return grouped


def _changed(old: OrderView, new: OrderView) -> bool:
    return any(getattr(old, f) != getattr(new, f) for f in _WATCHED)
