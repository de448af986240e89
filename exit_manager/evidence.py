"""What the broker says about an order, in the database's terms. Pure functions.

Design 4: an order is looked up by ``order_ref``, then by perm id, then by executions; an
order found is adopted, never sent again. The broker's status names (``broker.models``)
map onto the ``orders`` table's lifecycle (``shared_state.states``), and evidence only
moves a row forward: a done row never changes, a partly filled row never goes back to
SUBMITTED, and a filled quantity never goes down.
"""

from __future__ import annotations

from typing import Any

from broker.models import OrderStatus as BrokerStatus
from broker.models import OrderView, ReconcileSnapshot, order_from_executions
from shared_state import ORDER_DONE_STATES, Order, OrderStatus
from shared_state.states import order_transition_allowed

_WORKING = frozenset(
    {
        BrokerStatus.PRE_SUBMITTED,
        BrokerStatus.SUBMITTED,
        BrokerStatus.PENDING_CANCEL,
        BrokerStatus.INACTIVE,
    }
)
_CANCELLED = frozenset({BrokerStatus.CANCELLED, BrokerStatus.API_CANCELLED})


def locate(order: Order, snapshot: ReconcileSnapshot) -> OrderView | None:
    """Return the broker's view of ``order``: by order_ref, then perm id, then executions."""
    found = snapshot.find(order.order_ref)
    if found is not None:
        return found
    if order.perm_id:
        found = snapshot.by_perm_id(order.perm_id)
        if found is not None:
            return found
        return order_from_executions(
            order.order_ref, snapshot.executions_for(perm_id=order.perm_id)
        )
    return None


def db_status(view: OrderView) -> OrderStatus | None:
    """Return the ``orders`` status the broker's view proves (None: no news yet)."""
    if view.status == BrokerStatus.FILLED:
        return OrderStatus.FILLED
    if view.status == BrokerStatus.REJECTED:
        # A rejection after fills is the end of a partly filled order.
        return OrderStatus.CANCELLED if view.filled > 0 else OrderStatus.REJECTED
    if view.status in _CANCELLED:
        return OrderStatus.CANCELLED
    if view.status == BrokerStatus.UNKNOWN:
        return OrderStatus.UNKNOWN
    if view.status in _WORKING:
        return OrderStatus.PARTIAL if view.filled > 0 else OrderStatus.SUBMITTED
    return None  # PendingSubmit / ApiPending: sent, not yet acknowledged


def order_changes(current: Order, view: OrderView) -> dict[str, Any]:
    """Return the ``update_order`` arguments that bring ``current`` up to ``view`` ({} if none).

    Only changes the order table's lifecycle allows: evidence never moves a row back.
    """
    changes: dict[str, Any] = {}
    status = db_status(view)
    if current.status in ORDER_DONE_STATES:
        status = None
    elif status is OrderStatus.SUBMITTED and current.status is OrderStatus.PARTIAL:
        status = None  # a stale working report after a fill
    if status is not None and status != current.status:
        if order_transition_allowed(current.status, status):
            changes["status"] = status
    filled = min(int(round(view.filled)), current.quantity)
    if filled > current.filled_quantity and current.status not in ORDER_DONE_STATES:
        changes["filled_quantity"] = filled
        if view.avg_price > 0:
            changes["avg_fill_price"] = view.avg_price
    if view.order_id and current.broker_order_id is None:
        changes["broker_order_id"] = view.order_id
    if view.perm_id and current.perm_id is None:
        changes["perm_id"] = view.perm_id
    if view.error and view.error != current.error and "status" in changes:
        changes["error"] = view.error[:500]
    return changes
