"""What the adapter returns: frozen snapshots of quotes, orders, fills, positions, accounts.

None of these types carries a client-library object, so nothing outside ``broker/``
ever sees ``ib_async``/``ib_insync`` types. Times are aware datetimes in market time
(the injected clock) unless a field says it came from the broker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType


class OrderStatus(StrEnum):
    """Order statuses: TWS's names plus the adapter's REJECTED and UNKNOWN."""

    API_PENDING = "ApiPending"
    PENDING_SUBMIT = "PendingSubmit"
    PENDING_CANCEL = "PendingCancel"
    PRE_SUBMITTED = "PreSubmitted"
    SUBMITTED = "Submitted"
    API_CANCELLED = "ApiCancelled"
    CANCELLED = "Cancelled"
    FILLED = "Filled"
    INACTIVE = "Inactive"
    #: Cancelled by the broker with an order-rejection error (201, 110, 200...).
    REJECTED = "Rejected"
    #: No acknowledgement within the ack timeout, or only executions seen: the order may
    #: be working. Not "cancelled" (design section 4) until the broker says otherwise.
    UNKNOWN = "Unknown"


#: Final statuses: nothing more will happen to the order.
DONE_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.API_CANCELLED, OrderStatus.REJECTED}
)

#: Statuses that prove the broker has the order.
ACKED_STATUSES = frozenset(
    {
        OrderStatus.PRE_SUBMITTED,
        OrderStatus.SUBMITTED,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.API_CANCELLED,
        OrderStatus.REJECTED,
        OrderStatus.INACTIVE,
    }
)


@dataclass(frozen=True)
class ContractInfo:
    """A qualified US stock."""

    symbol: str
    con_id: int
    primary_exchange: str
    currency: str
    min_tick: float
    long_name: str = ""


@dataclass(frozen=True)
class Quote:
    """Top of book and last trade of one symbol, as the adapter last saw it.

    ``time`` is the market time (injected clock) of the last update the adapter
    received; a stalled feed shows as a growing ``age_s``. Prices are None when the
    broker has not sent one.
    """

    symbol: str
    bid: float | None
    ask: float | None
    last: float | None
    time: datetime
    delayed: bool = False
    halted: bool = False
    bid_size: float | None = None
    ask_size: float | None = None
    volume: float | None = None
    close: float | None = None  # previous session close

    @property
    def mid(self) -> float | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2.0

    def age_s(self, now: datetime) -> float:
        """Return how many market seconds passed since this quote was updated."""
        return max(0.0, (now - self.time).total_seconds())

    def is_stale(self, now: datetime, max_age_s: float) -> bool:
        """Return True when the quote is older than ``max_age_s`` market seconds."""
        return self.age_s(now) > max_age_s


@dataclass(frozen=True)
class AccountValues:
    """The account numbers the bot sizes and limits by (USD); None when not reported."""

    account: str
    net_liquidation: float | None
    excess_liquidity: float | None
    buying_power: float | None
    currency: str = "USD"


@dataclass(frozen=True)
class BrokerPosition:
    """One position as the broker holds it (shares; negative = short)."""

    account: str
    symbol: str
    con_id: int
    quantity: float
    avg_cost: float


@dataclass(frozen=True)
class PortfolioRow:
    """One position marked to market by the broker."""

    account: str
    symbol: str
    con_id: int
    quantity: float
    market_price: float
    market_value: float
    avg_cost: float
    unrealized_pnl: float
    realized_pnl: float


@dataclass(frozen=True)
class OrderView:
    """An order as the broker (or, before its acknowledgement, the adapter) reports it."""

    order_ref: str
    order_id: int
    perm_id: int
    client_id: int
    symbol: str
    action: str
    quantity: float
    limit_price: float | None
    status: OrderStatus
    filled: float
    remaining: float
    avg_price: float
    error_code: int = 0
    error: str = ""
    source: str = ""  # "live", "open", "completed", "executions", "local"

    @property
    def is_done(self) -> bool:
        return self.status in DONE_STATUSES

    @property
    def is_acknowledged(self) -> bool:
        return self.status in ACKED_STATUSES or self.perm_id != 0


@dataclass(frozen=True)
class ExecutionView:
    """One fill. ``commission`` is None until the broker's commission report arrives."""

    exec_id: str
    order_ref: str
    perm_id: int
    order_id: int
    client_id: int
    symbol: str
    side: str  # "BOT" or "SLD"
    shares: float
    price: float
    time: datetime  # the broker's execution time
    cum_qty: float
    avg_price: float
    commission: float | None = None

    @property
    def signed_shares(self) -> float:
        return self.shares if self.side == "BOT" else -self.shares


def _freeze(rows: Mapping[str, OrderView]) -> Mapping[str, OrderView]:
    return MappingProxyType(dict(rows))


@dataclass(frozen=True)
class ReconcileSnapshot:
    """What the broker said at one (re)connect: positions, orders of all clients, fills.

    Orders are keyed by ``order_ref`` (orders without one, e.g. typed into TWS, by
    ``perm:<perm id>``). Design section 4: look up by order_ref, then perm id, then
    executions; an order found here is adopted, never sent again.
    """

    time: datetime
    account: str
    positions: tuple[BrokerPosition, ...]
    open_orders: Mapping[str, OrderView]
    completed_orders: Mapping[str, OrderView]
    executions: tuple[ExecutionView, ...]
    _by_perm: Mapping[int, OrderView] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "open_orders", _freeze(self.open_orders))
        object.__setattr__(self, "completed_orders", _freeze(self.completed_orders))
        by_perm = {o.perm_id: o for o in self.completed_orders.values() if o.perm_id}
        by_perm.update({o.perm_id: o for o in self.open_orders.values() if o.perm_id})
        object.__setattr__(self, "_by_perm", MappingProxyType(by_perm))

    def executions_for(self, order_ref: str = "", perm_id: int = 0) -> tuple[ExecutionView, ...]:
        """Return the executions of one order, matched by order_ref or perm id."""
        return tuple(
            e
            for e in self.executions
            if (order_ref and e.order_ref == order_ref) or (perm_id and e.perm_id == perm_id)
        )

    def by_perm_id(self, perm_id: int) -> OrderView | None:
        """Return the open or completed order with ``perm_id`` (open wins)."""
        return self._by_perm.get(perm_id)

    def find(self, order_ref: str) -> OrderView | None:
        """Return the order with ``order_ref``: open, else completed, else built from fills."""
        found = self.open_orders.get(order_ref) or self.completed_orders.get(order_ref)
        if found is not None:
            return found
        return order_from_executions(order_ref, self.executions_for(order_ref))

    def position(self, symbol: str) -> float:
        """Return the shares held in ``symbol`` (0 when none)."""
        return sum(p.quantity for p in self.positions if p.symbol == symbol)


def order_key(order_ref: str, perm_id: int) -> str:
    """Return the key an order is filed under: its order_ref, else ``perm:<perm id>``."""
    return order_ref or f"perm:{perm_id}"


def order_from_executions(
    order_ref: str, executions: tuple[ExecutionView, ...] | list[ExecutionView]
) -> OrderView | None:
    """Return an UNKNOWN-status view of an order known only by its fills (None if no fills).

    The fills prove the order existed and how much filled; not whether it is done.
    """
    if not executions:
        return None
    first = executions[0]
    shares = sum(e.shares for e in executions)
    avg = sum(e.shares * e.price for e in executions) / shares if shares else math.nan
    return OrderView(
        order_ref=order_ref,
        order_id=first.order_id,
        perm_id=first.perm_id,
        client_id=first.client_id,
        symbol=first.symbol,
        action="BUY" if first.side == "BOT" else "SELL",
        quantity=shares,
        limit_price=None,
        status=OrderStatus.UNKNOWN,
        filled=shares,
        remaining=0.0,
        avg_price=avg,
        source="executions",
    )
