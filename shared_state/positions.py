"""Active and closed positions: the claim, fill, exit and close rules of design section 3.

Every function here runs inside the caller's ``BEGIN IMMEDIATE`` transaction (see
``db.Database.write``) and takes already-validated input. Each state change goes through
``_transition``, which consults ``POSITION_TRANSITIONS`` and records an event old -> new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, Update, bindparam, func, literal_column, or_, select
from sqlalchemy.exc import IntegrityError

from shared_state import daily, events, orders, prepared
from shared_state.db import Rollback
from shared_state.errors import NotFoundError, TransitionError
from shared_state.models import ActivePosition, ClaimResult, ClosedPosition, ExitTicket
from shared_state.schema import active_positions as ap
from shared_state.schema import closed_positions as cp
from shared_state.schema import daily_state as ds
from shared_state.states import (
    ORDER_LIVE_STATES,
    POSITION_TRANSITIONS,
    RECOVERY_EXITS,
    ClaimRefusal,
    ExitReason,
    OrderPurpose,
    OrderSide,
    OrderStatus,
    PositionState,
    PositionTrigger,
)

ADOPTED = "adopted"

_BY_SYMBOL = select(ap).where(ap.c.symbol == bindparam("symbol"))
_ALL_ACTIVE = select(ap).order_by(ap.c.symbol)
_INSERT_ACTIVE = ap.insert().returning(*ap.c)
_UPDATE = ap.update().where(ap.c.id == bindparam("pid")).where(ap.c.state == bindparam("old"))
_DELETE = ap.delete().where(ap.c.id == bindparam("pid")).where(ap.c.state == bindparam("old"))
_INSERT_CLOSED = cp.insert().returning(*cp.c)
_CLOSED_ON = select(cp).where(cp.c.trading_date == bindparam("d")).order_by(cp.c.id)


@cache
def _update(columns: tuple[str, ...]) -> Update:
    """Return the guarded UPDATE of ``columns``, built once per column set (compiled cache)."""
    values = {name: bindparam(f"v_{name}") for name in columns}
    return _UPDATE.values(values).returning(*ap.c)


def _prefixed(changes: dict[str, Any]) -> dict[str, Any]:
    return {f"v_{name}": value for name, value in changes.items()}


def _scalar(query: Any) -> Any:
    return query.scalar_subquery()


def _closed_today_of_symbol(*conditions: Any) -> Any:
    query = select(func.count()).select_from(cp)
    return _scalar(
        query.where(cp.c.trading_date == bindparam("d"), cp.c.symbol == bindparam("symbol")).where(
            *conditions
        )
    )


# One round trip for every rule of a claim: the day's flags and counts, and the
# symbol's closes today.
_CLAIM_CONTEXT = select(
    _scalar(select(ds.c.halted).where(ds.c.trading_date == bindparam("d"))).label("halted"),
    _scalar(select(ds.c.daily_target_reached).where(ds.c.trading_date == bindparam("d"))).label(
        "target_reached"
    ),
    _scalar(select(func.count()).select_from(ap).where(ap.c.symbol != bindparam("symbol"))).label(
        "other_active"
    ),
    _scalar(
        select(func.count())
        .select_from(ap)
        .where(ap.c.trading_date == bindparam("d"), ap.c.source != ADOPTED)
    ).label("active_entries"),
    _scalar(
        select(func.count())
        .select_from(cp)
        .where(cp.c.trading_date == bindparam("d"), cp.c.source != ADOPTED)
    ).label("closed_entries"),
    _closed_today_of_symbol(cp.c.reentry_allowed.is_(False)).label("forbidding"),
    # Literal values, not in_(): an expanding IN parameter is re-rendered on every call.
    _closed_today_of_symbol(
        or_(*(cp.c.exit_reason == literal_column(f"'{reason.value}'") for reason in RECOVERY_EXITS))
    ).label("recovery_exits"),
    _closed_today_of_symbol(cp.c.is_recovery.is_(True)).label("recoveries"),
)


@dataclass(frozen=True)
class ClaimRequest:
    """Validated input of ``claim``."""

    symbol: str
    trading_date: date
    now: datetime
    order_ref: str
    quantity: int
    limit_price: float | None
    max_recovery_entries: int
    max_trades_per_day: int
    max_positions: int
    owner: str


def position(row: Row[Any]) -> ActivePosition:
    """Return the snapshot of an ``active_positions`` row."""
    return ActivePosition(
        id=row.id,
        symbol=row.symbol,
        state=PositionState(row.state),
        trading_date=row.trading_date,
        source=row.source,
        is_recovery=bool(row.is_recovery),
        quantity=row.quantity,
        entry_price=row.entry_price,
        target_price=row.target_price,
        stop_price=row.stop_price,
        entry_order_ref=row.entry_order_ref,
        exit_order_ref=row.exit_order_ref,
        exit_reason=None if row.exit_reason is None else ExitReason(row.exit_reason),
        sold_quantity=row.sold_quantity,
        realized_pnl=row.realized_pnl,
        commissions=row.commissions,
        opened_at=row.opened_at,
        updated_at=row.updated_at,
    )


def closed(row: Row[Any]) -> ClosedPosition:
    """Return the snapshot of a ``closed_positions`` row."""
    return ClosedPosition(
        id=row.id,
        position_id=row.position_id,
        trading_date=row.trading_date,
        symbol=row.symbol,
        source=row.source,
        entry_price=row.entry_price,
        exit_price=row.exit_price,
        quantity=row.quantity,
        exit_reason=ExitReason(row.exit_reason),
        pnl=row.pnl,
        commissions=row.commissions,
        reentry_allowed=bool(row.reentry_allowed),
        is_recovery=bool(row.is_recovery),
        entry_order_ref=row.entry_order_ref,
        exit_order_ref=row.exit_order_ref,
        opened_at=row.opened_at,
        closed_at=row.closed_at,
    )


# ------------------------------------------------------------------------------ reads


def get(conn: Connection, symbol: str) -> ActivePosition | None:
    """Return the symbol's active position, if any."""
    row = prepared.execute(conn, _BY_SYMBOL, {"symbol": symbol}).first()
    return None if row is None else position(row)


def all_active(conn: Connection) -> list[ActivePosition]:
    """Return every active position, by symbol."""
    return [position(row) for row in prepared.execute(conn, _ALL_ACTIVE)]


def closed_on(conn: Connection, trading_date: date) -> list[ClosedPosition]:
    """Return the round trips closed on ``trading_date``, in closing order."""
    return [closed(row) for row in prepared.execute(conn, _CLOSED_ON, {"d": trading_date})]


# ------------------------------------------------------------------------ transitions


def _transition(
    conn: Connection,
    current: ActivePosition,
    trigger: PositionTrigger,
    *,
    now: datetime,
    actor: str,
    values: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> ActivePosition | None:
    """Apply ``trigger`` to ``current`` per the transition table; record old -> new."""
    key = (current.state, trigger)
    if key not in POSITION_TRANSITIONS:
        raise TransitionError(
            f"{current.symbol}: {trigger.value} is not allowed in state {current.state.value}"
        )
    new_state = POSITION_TRANSITIONS[key]
    guard = {"pid": current.id, "old": current.state.value}
    moved: ActivePosition | None = None
    if new_state is None:
        changed = prepared.execute(conn, _DELETE, guard).rowcount == 1
    else:
        changes = {**(values or {}), "state": new_state.value, "updated_at": now}
        statement = _update(tuple(sorted(changes)))
        row = prepared.execute(conn, statement, _prefixed(changes) | guard).first()
        changed = row is not None
        moved = None if row is None else position(row)
    if not changed:  # cannot happen under BEGIN IMMEDIATE; refuse loudly if it does
        raise TransitionError(f"{current.symbol}: row changed under a write transaction")
    to = None if new_state is None else new_state.value
    event = {"from": current.state.value, "to": to, "position_id": current.id, **(detail or {})}
    events.insert(
        conn, now=now, process=actor, kind=trigger.value, symbol=current.symbol, detail=event
    )
    return moved


# ---------------------------------------------------------------------------- claim


def _rule_refusal(conn: Connection, req: ClaimRequest) -> tuple[ClaimRefusal | None, bool]:
    """Return (refusal or None, is_recovery) from the day's state and the symbol's closes."""
    params = {"d": req.trading_date, "symbol": req.symbol}
    ctx = prepared.execute(conn, _CLAIM_CONTEXT, params).one()
    if ctx.halted:
        return ClaimRefusal.HALTED, False
    if ctx.target_reached:
        return ClaimRefusal.DAILY_TARGET_REACHED, False
    if ctx.forbidding:
        return ClaimRefusal.REENTRY_FORBIDDEN, False
    # After a stop exit today the entry is a recovery trade, up to the configured number.
    is_recovery = ctx.recovery_exits > 0
    if is_recovery and ctx.recoveries >= req.max_recovery_entries:
        return ClaimRefusal.RECOVERY_LIMIT, True
    if ctx.active_entries + ctx.closed_entries >= req.max_trades_per_day:
        return ClaimRefusal.MAX_TRADES, is_recovery
    if ctx.other_active >= req.max_positions:
        return ClaimRefusal.MAX_POSITIONS, is_recovery
    return None, is_recovery


def claim(conn: Connection, req: ClaimRequest, actor: str) -> ClaimResult:
    """Insert the ENTRY_PENDING row and its BUY intent, or return why not.

    ALREADY_ACTIVE comes from the UNIQUE(symbol) constraint itself, not from a prior
    look-up: the constraint is what holds the one-active-row invariant.
    """
    refusal, is_recovery = _rule_refusal(conn, req)
    if refusal is not None:
        return ClaimResult(refusal)
    orders.insert_intent(
        conn,
        order_ref=req.order_ref,
        symbol=req.symbol,
        side=OrderSide.BUY,
        purpose=OrderPurpose.ENTRY,
        quantity=req.quantity,
        limit_price=req.limit_price,
        now=req.now,
        actor=actor,
        record_event=False,  # the claim event below names the order_ref
    )
    row = {
        "symbol": req.symbol,
        "state": PositionState.ENTRY_PENDING.value,
        "trading_date": req.trading_date,
        "source": req.owner,
        "is_recovery": is_recovery,
        "quantity": req.quantity,
        "entry_order_ref": req.order_ref,
        "opened_at": req.now,
        "updated_at": req.now,
    }
    try:
        created = position(prepared.execute(conn, _INSERT_ACTIVE, row).one())
    except IntegrityError as exc:
        if "active_positions.symbol" in str(exc.orig):
            raise Rollback(ClaimResult(ClaimRefusal.ALREADY_ACTIVE)) from None
        raise
    detail = {
        "from": None,
        "to": created.state.value,
        "position_id": created.id,
        "order_ref": req.order_ref,
        "quantity": req.quantity,
        "limit_price": req.limit_price,
        "is_recovery": is_recovery,
        "trading_date": req.trading_date,
    }
    events.insert(conn, now=req.now, process=actor, kind="claim", symbol=req.symbol, detail=detail)
    return ClaimResult(None, created)


# ------------------------------------------------------------------------ fill/cancel


def mark_filled(
    conn: Connection, symbol: str, *, now: datetime, actor: str, values: dict[str, Any]
) -> ActivePosition:
    """Move ENTRY_PENDING -> OPEN (or update an OPEN row after more fills)."""
    current = _require(conn, symbol)
    moved = _transition(
        conn, current, PositionTrigger.FILL, now=now, actor=actor, values=values, detail=values
    )
    assert moved is not None
    return moved


def _require(conn: Connection, symbol: str) -> ActivePosition:
    current = get(conn, symbol)
    if current is None:
        raise NotFoundError(f"{symbol}: no active position")
    return current


def _settle_unsent(
    conn: Connection, order_ref: str, what: str, reason: str, now: datetime, actor: str
) -> None:
    """Refuse while the order may still trade; an INTENT never sent becomes CANCELLED."""
    order = orders.get(conn, order_ref)
    if order is None:
        return
    if order.filled_quantity > 0 or orders.filled_by_fills(conn, order_ref) > 0:
        raise TransitionError(
            f"{order.symbol}: {what} order {order_ref} has filled shares; "
            "record them (mark_filled / reduce_position) instead"
        )
    if order.status in ORDER_LIVE_STATES:
        raise TransitionError(
            f"{order.symbol}: {what} order {order_ref} is {order.status.value} at the broker; "
            "cancel it there and record the broker's final status first"
        )
    if order.status is OrderStatus.INTENT:
        orders.update(
            conn,
            order_ref,
            now=now,
            actor=actor,
            changes={"status": OrderStatus.CANCELLED, "error": reason},
        )


def cancel_entry(
    conn: Connection, symbol: str, order_ref: str, *, now: datetime, reason: str, actor: str
) -> bool:
    """Remove an ENTRY_PENDING row whose order filled nothing; False if already gone."""
    current = get(conn, symbol)
    if current is None or current.entry_order_ref != order_ref:
        return False
    if current.state is not PositionState.ENTRY_PENDING:
        raise TransitionError(f"{symbol}: cancel_entry in state {current.state.value}")
    _settle_unsent(conn, order_ref, "entry", reason, now, actor)
    _transition(
        conn,
        current,
        PositionTrigger.CANCEL_ENTRY,
        now=now,
        actor=actor,
        detail={"order_ref": order_ref, "reason": reason},
    )
    return True


# ---------------------------------------------------------------------------- exits


@dataclass(frozen=True)
class ExitRequest:
    symbol: str
    now: datetime
    order_ref: str
    quantity: int
    limit_price: float | None
    reason: ExitReason


def begin_exit(conn: Connection, req: ExitRequest, actor: str) -> ExitTicket | None:
    """OPEN -> EXIT_PENDING with its SELL intent; None unless the row is OPEN."""
    current = get(conn, req.symbol)
    if current is None or current.state is not PositionState.OPEN:
        return None
    if req.quantity > current.quantity:
        raise ValueError(
            f"quantity={req.quantity} is not allowed: {req.symbol} holds {current.quantity}"
        )
    orders.insert_intent(
        conn,
        order_ref=req.order_ref,
        symbol=req.symbol,
        side=OrderSide.SELL,
        purpose=OrderPurpose.EXIT,
        quantity=req.quantity,
        limit_price=req.limit_price,
        now=req.now,
        actor=actor,
        record_event=False,  # the begin_exit event names the order_ref
    )
    values = {"exit_order_ref": req.order_ref, "exit_reason": req.reason.value}
    moved = _transition(
        conn,
        current,
        PositionTrigger.BEGIN_EXIT,
        now=req.now,
        actor=actor,
        values=values,
        detail={**values, "quantity": req.quantity, "limit_price": req.limit_price},
    )
    assert moved is not None
    return ExitTicket(moved, req.order_ref, req.quantity, req.limit_price, req.reason)


def replace_exit_order(conn: Connection, req: ExitRequest, old_ref: str, actor: str) -> bool:
    """Point an EXIT_PENDING row at a new SELL intent (the old order is done and unfilled)."""
    current = get(conn, req.symbol)
    if current is None or current.exit_order_ref != old_ref:
        return False
    if req.quantity > current.quantity:
        raise ValueError(
            f"quantity={req.quantity} is not allowed: {req.symbol} holds {current.quantity}"
        )
    _settle_unsent(conn, old_ref, "exit", "replaced", req.now, actor)
    orders.insert_intent(
        conn,
        order_ref=req.order_ref,
        symbol=req.symbol,
        side=OrderSide.SELL,
        purpose=OrderPurpose.EXIT,
        quantity=req.quantity,
        limit_price=req.limit_price,
        now=req.now,
        actor=actor,
    )
    changes = {
        "exit_order_ref": req.order_ref,
        "exit_reason": req.reason.value,
        "updated_at": req.now,
    }
    guard = {"pid": current.id, "old": PositionState.EXIT_PENDING.value}
    prepared.execute(conn, _update(tuple(sorted(changes))), _prefixed(changes) | guard)
    detail = {"old_order_ref": old_ref, "order_ref": req.order_ref, "reason": req.reason.value}
    events.insert(
        conn, now=req.now, process=actor, kind="exit_replaced", symbol=req.symbol, detail=detail
    )
    return True


def cancel_exit(
    conn: Connection, symbol: str, order_ref: str, *, now: datetime, reason: str, actor: str
) -> ActivePosition | None:
    """EXIT_PENDING -> OPEN once the sell is done without selling (the rest of) it."""
    current = get(conn, symbol)
    if current is None or current.exit_order_ref != order_ref:
        return None
    order = orders.get(conn, order_ref)
    if order is not None and order.status in ORDER_LIVE_STATES:
        raise TransitionError(
            f"{symbol}: exit order {order_ref} is {order.status.value} at the broker; "
            "cancel it there and record the broker's final status first"
        )
    if order is not None and order.status is OrderStatus.INTENT:
        orders.update(
            conn,
            order_ref,
            now=now,
            actor=actor,
            changes={"status": OrderStatus.CANCELLED, "error": reason},
        )
    values = {"exit_order_ref": None, "exit_reason": None}
    return _transition(
        conn,
        current,
        PositionTrigger.CANCEL_EXIT,
        now=now,
        actor=actor,
        values=values,
        detail={"order_ref": order_ref, "reason": reason},
    )


@dataclass(frozen=True)
class Realized:
    """Validated money of a (partial) exit."""

    trading_date: date
    now: datetime
    pnl: float
    commissions: float


def reduce(conn: Connection, symbol: str, sold: int, money: Realized, actor: str) -> ActivePosition:
    """Record a partial exit: fewer shares held, its P&L realized for the day now."""
    current = _require(conn, symbol)
    if sold >= current.quantity:
        raise ValueError(
            f"sold_quantity={sold} is not allowed: {symbol} holds {current.quantity}; "
            "selling all of it is close_position"
        )
    values = {
        "quantity": current.quantity - sold,
        "sold_quantity": current.sold_quantity + sold,
        "realized_pnl": current.realized_pnl + money.pnl,
        "commissions": current.commissions + money.commissions,
    }
    moved = _transition(
        conn,
        current,
        PositionTrigger.REDUCE,
        now=money.now,
        actor=actor,
        values=values,
        detail={"sold": sold, "pnl": money.pnl},
    )
    daily.add_realized(conn, money.trading_date, money.pnl, trades=0)
    assert moved is not None
    return moved


@dataclass(frozen=True)
class CloseRequest:
    symbol: str
    money: Realized
    exit_price: float
    reason: ExitReason
    reentry_allowed: bool
    position_id: int | None


def close(conn: Connection, req: CloseRequest, actor: str) -> ClosedPosition | None:
    """Move the row to ``closed_positions`` and add its P&L to the day, exactly once."""
    current = get(conn, req.symbol)
    if current is None or req.position_id not in (None, current.id):
        return None
    if current.state is PositionState.ENTRY_PENDING:
        raise TransitionError(f"{req.symbol}: nothing bought yet; use cancel_entry")
    assert current.entry_price is not None  # CHECK ck_entry_px
    money = req.money
    row = {
        "position_id": current.id,
        "trading_date": money.trading_date,
        "symbol": current.symbol,
        "source": current.source,
        "entry_price": current.entry_price,
        "exit_price": req.exit_price,
        "quantity": current.quantity + current.sold_quantity,
        "exit_reason": req.reason.value,
        "pnl": current.realized_pnl + money.pnl,
        "commissions": current.commissions + money.commissions,
        "reentry_allowed": req.reentry_allowed,
        "is_recovery": current.is_recovery,
        "entry_order_ref": current.entry_order_ref,
        "exit_order_ref": current.exit_order_ref,
        "opened_at": current.opened_at,
        "closed_at": money.now,
    }
    result = closed(prepared.execute(conn, _INSERT_CLOSED, row).one())
    detail = {
        "reason": req.reason.value,
        "pnl": result.pnl,
        "exit_price": req.exit_price,
        "trading_date": money.trading_date,
        "closed_id": result.id,
    }
    _transition(conn, current, PositionTrigger.CLOSE, now=money.now, actor=actor, detail=detail)
    # Partial exits were added to the day when they happened; add only this sale.
    daily.add_realized(conn, money.trading_date, money.pnl, trades=1)
    return result


@dataclass(frozen=True)
class AdoptRequest:
    symbol: str
    trading_date: date
    now: datetime
    quantity: int
    entry_price: float
    target_price: float | None
    stop_price: float | None
    detail: dict[str, Any]


def adopt(conn: Connection, req: AdoptRequest, actor: str) -> ActivePosition | None:
    """Insert an OPEN row for a broker position the DB did not know; None if active."""
    row = {
        "symbol": req.symbol,
        "state": PositionState.OPEN.value,
        "trading_date": req.trading_date,
        "source": ADOPTED,
        "is_recovery": False,
        "quantity": req.quantity,
        "entry_price": req.entry_price,
        "target_price": req.target_price,
        "stop_price": req.stop_price,
        "opened_at": req.now,
        "updated_at": req.now,
    }
    try:
        created = position(prepared.execute(conn, _INSERT_ACTIVE, row).one())
    except IntegrityError as exc:
        if "active_positions.symbol" in str(exc.orig):
            raise Rollback(None) from None
        raise
    detail = {
        "from": None,
        "to": created.state.value,
        "position_id": created.id,
        "quantity": req.quantity,
        "entry_price": req.entry_price,
        "target_price": req.target_price,
        "stop_price": req.stop_price,
        **req.detail,
    }
    events.insert(
        conn, now=req.now, process=actor, kind="adopted", symbol=req.symbol, detail=detail
    )
    return created
