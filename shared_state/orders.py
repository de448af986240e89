"""Order intents, their broker status (transition table), and fills by exec id.

Design 4: the intent row is committed before the order is sent, with the unique
``order_ref`` that is also the order's ``orderRef`` at the broker; reconciliation finds
it again by order_ref, then perm id, then executions.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, Update, bindparam, func, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import IntegrityError

from shared_state import events, prepared
from shared_state.errors import DuplicateKeyError, NotFoundError, TransitionError
from shared_state.models import Fill, Order
from shared_state.schema import fills, orders
from shared_state.states import (
    OrderPurpose,
    OrderSide,
    OrderStatus,
    order_transition_allowed,
)

_BY_REF = select(orders).where(orders.c.order_ref == bindparam("ref"))
_BY_PERM = select(orders).where(orders.c.perm_id == bindparam("perm")).order_by(orders.c.id)
_INSERT = orders.insert()
_FILLED_BY_FILLS = select(func.coalesce(func.sum(fills.c.quantity), 0)).where(
    fills.c.order_ref == bindparam("ref")
)
_INSERT_FILL = insert(fills).on_conflict_do_nothing(index_elements=["exec_id"])
_SET_COMMISSION = (
    fills.update().where(fills.c.exec_id == bindparam("x")).values(commission=bindparam("c"))
)


def order(row: Row[Any]) -> Order:
    """Return the snapshot of an ``orders`` row."""
    return Order(
        order_ref=row.order_ref,
        symbol=row.symbol,
        side=OrderSide(row.side),
        purpose=OrderPurpose(row.purpose),
        quantity=row.quantity,
        limit_price=row.limit_price,
        status=OrderStatus(row.status),
        broker_order_id=row.broker_order_id,
        perm_id=row.perm_id,
        filled_quantity=row.filled_quantity,
        avg_fill_price=row.avg_fill_price,
        error=row.error,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def fill(row: Row[Any]) -> Fill:
    """Return the snapshot of a ``fills`` row."""
    return Fill(
        exec_id=row.exec_id,
        order_ref=row.order_ref,
        symbol=row.symbol,
        side=OrderSide(row.side),
        quantity=row.quantity,
        price=row.price,
        commission=row.commission,
        time=row.time,
    )


def get(conn: Connection, order_ref: str) -> Order | None:
    """Return the order with ``order_ref``, if any."""
    row = prepared.execute(conn, _BY_REF, {"ref": order_ref}).first()
    return None if row is None else order(row)


def by_perm_id(conn: Connection, perm_id: int) -> Order | None:
    """Return the order the broker knows by ``perm_id``, if any."""
    row = conn.execute(_BY_PERM, {"perm": perm_id}).first()
    return None if row is None else order(row)


def in_status(
    conn: Connection, statuses: Iterable[OrderStatus], symbol: str | None = None
) -> list[Order]:
    """Return the orders in any of ``statuses`` (optionally of one symbol), oldest first."""
    query = select(orders).where(orders.c.status.in_([s.value for s in statuses]))
    if symbol is not None:
        query = query.where(orders.c.symbol == symbol)
    return [order(row) for row in conn.execute(query.order_by(orders.c.id))]


def insert_intent(
    conn: Connection,
    *,
    order_ref: str,
    symbol: str,
    side: OrderSide,
    purpose: OrderPurpose,
    quantity: int,
    limit_price: float | None,
    now: datetime,
    actor: str,
    record_event: bool = True,
) -> None:
    """Write the INTENT row (before anything is sent); a reused order_ref is a caller bug.

    ``record_event=False`` when the caller's own event (claim, begin_exit) names the order.
    """
    row = {
        "order_ref": order_ref,
        "symbol": symbol,
        "side": side.value,
        "purpose": purpose.value,
        "quantity": quantity,
        "limit_price": limit_price,
        "status": OrderStatus.INTENT.value,
        "filled_quantity": 0,
        "created_at": now,
        "updated_at": now,
    }
    try:
        prepared.execute(conn, _INSERT, row)
    except IntegrityError as exc:
        if "orders.order_ref" in str(exc.orig):
            raise DuplicateKeyError(f"order_ref={order_ref!r} is already used") from None
        raise
    if not record_event:
        return
    detail = {
        "order_ref": order_ref,
        "side": side.value,
        "purpose": purpose.value,
        "quantity": quantity,
        "limit_price": limit_price,
        "to": OrderStatus.INTENT.value,
    }
    events.insert(conn, now=now, process=actor, kind="order_intent", symbol=symbol, detail=detail)


@cache
def _update(columns: tuple[str, ...]) -> Update:
    values = {name: bindparam(f"v_{name}") for name in columns}
    return orders.update().where(orders.c.order_ref == bindparam("ref")).values(values)


def _check_change(current: Order, changes: dict[str, Any]) -> None:
    new_status = changes.get("status", current.status)
    if not order_transition_allowed(current.status, new_status):
        raise TransitionError(
            f"order {current.order_ref}: {current.status.value} -> {new_status.value} "
            "is not in the order transition table"
        )
    filled = changes.get("filled_quantity")
    if filled is not None and filled < current.filled_quantity:
        raise TransitionError(
            f"order {current.order_ref}: filled_quantity may not go down "
            f"({current.filled_quantity} -> {filled})"
        )
    if filled is not None and filled > current.quantity:
        raise ValueError(
            f"filled_quantity={filled} is not allowed: order {current.order_ref} "
            f"is for {current.quantity}"
        )


def update(
    conn: Connection, order_ref: str, *, now: datetime, actor: str, changes: dict[str, Any]
) -> Order:
    """Apply broker-reported ``changes``; a status change follows ``ORDER_TRANSITIONS``."""
    current = get(conn, order_ref)
    if current is None:
        raise NotFoundError(f"order_ref={order_ref!r}: no such order")
    _check_change(current, changes)
    stored = {k: (v.value if isinstance(v, OrderStatus) else v) for k, v in changes.items()}
    stored["updated_at"] = now
    params = {f"v_{k}": v for k, v in stored.items()} | {"ref": order_ref}
    prepared.execute(conn, _update(tuple(sorted(stored))), params)
    new_status = changes.get("status", current.status)
    if new_status != current.status:
        detail = {
            "order_ref": order_ref,
            "from": current.status.value,
            "to": new_status.value,
            **{k: v for k, v in stored.items() if k not in ("status", "updated_at")},
        }
        events.insert(
            conn, now=now, process=actor, kind="order_status", symbol=current.symbol, detail=detail
        )
    result = get(conn, order_ref)
    assert result is not None
    return result


def filled_by_fills(conn: Connection, order_ref: str) -> int:
    """Return the shares the recorded executions of ``order_ref`` add up to."""
    return int(conn.execute(_FILLED_BY_FILLS, {"ref": order_ref}).scalar_one())


def record_fill(conn: Connection, row: dict[str, Any], actor: str) -> bool:
    """Insert an execution once; False if its exec id was already recorded."""
    result = conn.execute(_INSERT_FILL, row)
    if result.rowcount != 1:
        return False
    detail = {k: row[k] for k in ("exec_id", "order_ref", "side", "quantity", "price")}
    events.insert(
        conn, now=row["time"], process=actor, kind="fill", symbol=row["symbol"], detail=detail
    )
    return True


def set_commission(conn: Connection, exec_id: str, commission: float) -> bool:
    """Attach IBKR's later commission report to an execution; False if unknown."""
    return conn.execute(_SET_COMMISSION, {"x": exec_id, "c": commission}).rowcount == 1


def fills_of(
    conn: Connection, order_ref: str | None = None, symbol: str | None = None
) -> list[Fill]:
    """Return recorded executions, optionally of one order or symbol, in time order."""
    query = select(fills)
    if order_ref is not None:
        query = query.where(fills.c.order_ref == order_ref)
    if symbol is not None:
        query = query.where(fills.c.symbol == symbol)
    return [fill(row) for row in conn.execute(query.order_by(fills.c.time, fills.c.id))]
