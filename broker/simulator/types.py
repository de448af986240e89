"""Value types shared by the simulator's market data, exchange and protocol server.

These are the seams between the three parts of the simulator:

- ``market_data``: what the market does (bars and quotes), per symbol and instant;
- ``exchange`` + ``account``: orders, matching, fills, cash and positions;
- ``server`` + ``codec``: the TWS API socket protocol spoken to clients.

All datetimes are timezone-aware. Prices are floats in dollars, quantities floats in
shares (the wire carries decimals; US stocks are whole shares).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol

# --------------------------------------------------------------------------- market


@dataclass(frozen=True)
class SymbolInfo:
    """Static reference data of one stock, as contract details report it."""

    symbol: str
    con_id: int
    long_name: str
    primary_exchange: str  # "NASDAQ" or "NYSE" (or "ARCA", "AMEX")
    min_tick: float = 0.01
    industry: str = ""


@dataclass(frozen=True)
class Bar:
    """One OHLCV bar; ``time`` is the bar's start (1-min bars) or the session date at 00:00 ET."""

    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    wap: float = 0.0
    count: int = 0


@dataclass(frozen=True)
class Quote:
    """The top of book and last trade of one symbol at one instant."""

    symbol: str
    time: datetime
    bid: float
    ask: float
    last: float
    bid_size: int
    ask_size: int
    last_size: int
    day_volume: int  # cumulative shares traded today up to ``time``
    halted: bool = False


class MarketData(Protocol):
    """What the simulated market looks like; deterministic for a given seed and data dir."""

    def symbols(self) -> list[str]:
        """Return every symbol this market knows, sorted."""
        ...

    def info(self, symbol: str) -> SymbolInfo | None:
        """Return the reference data of ``symbol``, or None when it is unknown."""
        ...

    def intraday_bars(self, symbol: str, day: date) -> list[Bar]:
        """Return the 1-min bars of ``day`` from 04:00 ET to the session close (empty off-days)."""
        ...

    def daily_bars(self, symbol: str, end_day: date, count: int) -> list[Bar]:
        """Return ``count`` daily bars of the sessions up to and including ``end_day``."""
        ...

    def quote_at(self, symbol: str, instant: datetime) -> Quote | None:
        """Return the quote at ``instant``; None before 04:00 ET, after the close or off-days."""
        ...

    def prior_close(self, symbol: str, day: date) -> float:
        """Return the regular-session close of the trading day before ``day``."""
        ...


# --------------------------------------------------------------------------- orders


class Action(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderStatus(StrEnum):
    """TWS order status names (the wire values)."""

    PENDING_SUBMIT = "PendingSubmit"
    PRE_SUBMITTED = "PreSubmitted"  # accepted, waiting (outside RTH, or held)
    SUBMITTED = "Submitted"  # working at the exchange
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    API_CANCELLED = "ApiCancelled"


DONE_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.API_CANCELLED})


@dataclass(frozen=True)
class OrderRequest:
    """An order as a client placed it (decoded from placeOrder)."""

    client_id: int
    order_id: int
    symbol: str
    con_id: int
    action: Action
    quantity: float
    order_type: str  # "LMT" or "MKT"
    limit_price: float | None
    tif: str = "DAY"  # "DAY", "GTC", "IOC"
    outside_rth: bool = False
    order_ref: str = ""
    account: str = ""


@dataclass
class SimOrder:
    """A live or finished order inside the simulated exchange (mutable; the exchange owns it)."""

    request: OrderRequest
    perm_id: int
    status: OrderStatus
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    submitted_time: datetime | None = None
    completed_time: datetime | None = None
    completed_status: str = ""  # text for completedOrder, e.g. "Filled", "Cancelled by user"
    why_held: str = ""

    @property
    def remaining(self) -> float:
        return self.request.quantity - self.filled

    @property
    def is_done(self) -> bool:
        return self.status in DONE_STATUSES


@dataclass(frozen=True)
class Execution:
    """One fill, as execDetails and commissionReport report it."""

    exec_id: str
    perm_id: int
    order_id: int
    client_id: int
    symbol: str
    con_id: int
    side: str  # "BOT" or "SLD"
    shares: float
    price: float
    time: datetime
    cum_qty: float
    avg_price: float
    order_ref: str
    account: str
    exchange: str = "ISLAND"
    commission: float = 0.0
    realized_pnl: float | None = None  # None -> sent as UNSET on the wire (opening fills)


@dataclass(frozen=True)
class PositionRow:
    """One account position."""

    symbol: str
    con_id: int
    quantity: float
    avg_cost: float
    realized_pnl: float = 0.0


@dataclass(frozen=True)
class AccountSnapshot:
    """Account values at one instant (marked to the current market)."""

    account: str
    cash: float
    net_liquidation: float
    excess_liquidity: float
    buying_power: float
    gross_position_value: float
    unrealized_pnl: float
    realized_pnl: float


# --------------------------------------------------------------------------- exchange events


@dataclass(frozen=True)
class OrderUpdate:
    """An order was accepted or changed state (send openOrder + orderStatus to its owner)."""

    order: SimOrder


@dataclass(frozen=True)
class FillEvent:
    """An order (partly) filled (send execDetails, orderStatus, commissionReport, portfolio)."""

    order: SimOrder
    execution: Execution


@dataclass(frozen=True)
class OrderRejected:
    """An order or cancel was refused with a TWS error code (201, 200, 110, 10147, 10148...)."""

    client_id: int
    order_id: int
    code: int
    message: str
    order: SimOrder | None = None


ExchangeEvent = OrderUpdate | FillEvent | OrderRejected


@dataclass(frozen=True)
class ExchangeConfig:
    """Tunable behaviour of the simulated exchange."""

    commission_per_share: float = 0.005  # IBKR Pro fixed: $0.005/share
    commission_min: float = 1.00
    commission_max_pct: float = 0.01  # of trade value
    partial_fill_volume_share: float = 0.25  # at most this share of a 1-min bar's volume per fill
    starting_cash: float = 1_000_000.0
    margin_multiplier: float = 4.0  # intraday buying power = 4 x excess liquidity (Reg T day)
    account_id: str = "DU1234567"
    extra: dict[str, str] = field(default_factory=dict)
