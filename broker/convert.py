"""Turn client-library objects (Trade, Fill, Ticker, Position, bars...) into our snapshots.

Pure functions over duck-typed objects: ``ib_async`` and ``ib_insync`` objects have the
same attribute names, so one function serves both, and tests feed them either
library's real dataclasses.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from broker.errors import ORDER_REJECT_CODES
from broker.models import (
    DONE_STATUSES,
    AccountValues,
    BrokerPosition,
    ContractInfo,
    ExecutionView,
    OrderStatus,
    OrderView,
    PortfolioRow,
    Quote,
)
from market.clock import ET

#: The libraries' "no value" double (Java's Double.MAX_VALUE).
UNSET_DOUBLE = sys.float_info.max

#: Column order of every bars frame.
BAR_COLUMNS = ["open", "high", "low", "close", "volume", "wap", "count"]

#: TWS status text -> ours. ``ValidationError`` (ib_async: a warning on a live order)
#: and ``ApiUpdate`` are not statuses of the order itself; see ``order_status``.
_STATUS = {s.value: s for s in OrderStatus}

#: Account value tags we read, by AccountValues field.
ACCOUNT_TAGS = {
    "net_liquidation": "NetLiquidation",
    "excess_liquidity": "ExcessLiquidity",
    "buying_power": "BuyingPower",
}


def number(value: Any) -> float | None:
    """Return ``value`` as a float, or None for NaN, unset (1.797e308), empty or junk."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(x) or x >= UNSET_DOUBLE:
        return None
    return x


def price(value: Any) -> float | None:
    """Return a usable price: a positive finite number, else None (ib_async sends -1)."""
    x = number(value)
    return x if x is not None and x > 0 else None


# --------------------------------------------------------------------------- orders


def order_status(trade: Any) -> tuple[OrderStatus, int, str]:
    """Return (status, error code, error text) of a library Trade.

    A broker-cancelled order whose log carries an order-rejection code is REJECTED;
    a warning status (``ValidationError``) keeps the last real status from the log.
    """
    code, text = last_error(trade)
    raw = trade.orderStatus.status
    status = _STATUS.get(raw)
    if status is None:
        status = _last_real_status(trade)
    if status == OrderStatus.CANCELLED and code in ORDER_REJECT_CODES:
        status = OrderStatus.REJECTED
    return status, code, text


def last_error(trade: Any) -> tuple[int, str]:
    """Return the last error code and message in a Trade's log ((0, "") when none)."""
    for entry in reversed(getattr(trade, "log", []) or []):
        if getattr(entry, "errorCode", 0):
            return int(entry.errorCode), str(entry.message)
    return 0, ""


def _last_real_status(trade: Any) -> OrderStatus:
    for entry in reversed(getattr(trade, "log", []) or []):
        status = _STATUS.get(getattr(entry, "status", ""))
        if status is not None:
            return status
    return OrderStatus.PENDING_SUBMIT


def order_view(trade: Any, source: str) -> OrderView:
    """Return the OrderView of a library Trade (live, open or completed order)."""
    order, st = trade.order, trade.orderStatus
    status, code, text = order_status(trade)
    quantity = number(order.totalQuantity) or 0.0
    filled = _filled(trade)
    # Remaining = what could still fill: nothing once the order is done.
    remaining = 0.0 if status in DONE_STATUSES else max(0.0, quantity - filled)
    return OrderView(
        order_ref=order.orderRef or "",
        order_id=int(order.orderId or 0),
        perm_id=int(order.permId or st.permId or 0),
        client_id=int(order.clientId or st.clientId or 0),
        symbol=trade.contract.symbol,
        action=order.action,
        quantity=quantity,
        limit_price=price(order.lmtPrice),
        status=status,
        filled=filled,
        remaining=remaining,
        avg_price=_avg_price(trade, filled),
        error_code=code,
        error=text,
        source=source,
    )


def _filled(trade: Any) -> float:
    # Live trades carry orderStatus.filled; completed orders only order.filledQuantity;
    # the fills list (execDetails) can run ahead of both, so take the largest.
    candidates = [
        number(trade.orderStatus.filled) or 0.0,
        number(getattr(trade.order, "filledQuantity", None)) or 0.0,
        sum(number(f.execution.shares) or 0.0 for f in trade.fills),
    ]
    return max(candidates)


def _avg_price(trade: Any, filled: float) -> float:
    avg = number(trade.orderStatus.avgFillPrice)
    if avg:
        return avg
    shares = sum(f.execution.shares for f in trade.fills)
    if shares:
        return sum(f.execution.shares * f.execution.price for f in trade.fills) / shares
    return 0.0


def execution_view(fill: Any) -> ExecutionView:
    """Return the ExecutionView of a library Fill (commission None until reported)."""
    ex, report = fill.execution, fill.commissionReport
    has_commission = bool(report and report.execId == ex.execId)
    return ExecutionView(
        exec_id=ex.execId,
        order_ref=ex.orderRef or "",
        perm_id=int(ex.permId),
        order_id=int(ex.orderId),
        client_id=int(ex.clientId),
        symbol=fill.contract.symbol,
        side=ex.side,
        shares=float(ex.shares),
        price=float(ex.price),
        time=_aware(ex.time),
        cum_qty=float(ex.cumQty),
        avg_price=float(ex.avgPrice),
        commission=float(report.commission) if has_commission else None,
    )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- quotes


def quote(symbol: str, ticker: Any, time: datetime) -> Quote:
    """Return the Quote of a library Ticker, stamped with market time ``time``."""
    halted = number(getattr(ticker, "halted", None))
    return Quote(
        symbol=symbol,
        bid=price(ticker.bid),
        ask=price(ticker.ask),
        last=price(ticker.last),
        time=time,
        delayed=int(getattr(ticker, "marketDataType", 1) or 1) in (3, 4),
        halted=bool(halted) and halted > 0,
        bid_size=number(ticker.bidSize),
        ask_size=number(ticker.askSize),
        volume=number(ticker.volume),
        close=price(ticker.close),
    )


# --------------------------------------------------------------------------- account


def account_values(account: str, values: Iterable[Any]) -> AccountValues:
    """Return AccountValues from library AccountValue rows (USD rows win over BASE)."""
    found: dict[str, float | None] = dict.fromkeys(ACCOUNT_TAGS)
    rank: dict[str, int] = {}
    for row in values:
        if account and row.account and row.account != account:
            continue
        for attr, tag in ACCOUNT_TAGS.items():
            score = {"USD": 2, "BASE": 1}.get(row.currency, 0)
            if row.tag == tag and score >= rank.get(attr, 0) and number(row.value) is not None:
                found[attr], rank[attr] = number(row.value), score
    return AccountValues(account=account, **found)


def position(row: Any) -> BrokerPosition:
    """Return the BrokerPosition of a library Position."""
    return BrokerPosition(
        account=row.account,
        symbol=row.contract.symbol,
        con_id=int(row.contract.conId),
        quantity=float(row.position),
        avg_cost=float(row.avgCost),
    )


def portfolio_row(item: Any) -> PortfolioRow:
    """Return the PortfolioRow of a library PortfolioItem."""
    return PortfolioRow(
        account=item.account,
        symbol=item.contract.symbol,
        con_id=int(item.contract.conId),
        quantity=float(item.position),
        market_price=float(item.marketPrice),
        market_value=float(item.marketValue),
        avg_cost=float(item.averageCost),
        unrealized_pnl=float(item.unrealizedPNL),
        realized_pnl=float(item.realizedPNL),
    )


def contract_info(details: Any) -> ContractInfo:
    """Return the ContractInfo of library ContractDetails."""
    contract = details.contract
    return ContractInfo(
        symbol=contract.symbol,
        con_id=int(contract.conId),
        primary_exchange=contract.primaryExchange or contract.exchange,
        currency=contract.currency,
        min_tick=number(details.minTick) or 0.01,
        long_name=details.longName or "",
    )


# --------------------------------------------------------------------------- bars


def bars_frame(bars: Iterable[Any]) -> pd.DataFrame:
    """Return library BarData rows as a DataFrame indexed by tz-aware ET time.

    Intraday bars (datetimes) keep their instant; daily bars (dates) are placed at
    00:00 ET of the session date.
    """
    rows = [
        (
            bar_time(b.date),
            float(b.open),
            float(b.high),
            float(b.low),
            float(b.close),
            float(b.volume),
            float(getattr(b, "average", 0.0)),
            int(b.barCount),
        )
        for b in bars
    ]
    frame = pd.DataFrame(rows, columns=["time", *BAR_COLUMNS])
    index = pd.DatetimeIndex(frame.pop("time"), name="time")
    frame.index = index.tz_convert(ET) if len(index) else pd.DatetimeIndex([], tz=ET, name="time")
    return frame


def bar_time(value: date | datetime) -> datetime:
    """Return a bar's date as an aware ET datetime (dates at 00:00 ET, naive times as ET)."""
    if isinstance(value, datetime):
        return value.astimezone(ET) if value.tzinfo else value.replace(tzinfo=ET)
    return datetime(value.year, value.month, value.day, tzinfo=ET)
