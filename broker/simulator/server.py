"""The simulator's TWS API server: sessions, requests, and the market time loop.

One asyncio TCP server on 127.0.0.1 speaks the TWS API (server version 176, wire
details in ``codec``) to several clients at once, each under its own clientId:

- ``Connection`` owns one socket: handshake, the read loop (clients pipeline requests),
  the request handlers (``HANDLERS``, a table from request name to method), and that
  client's subscriptions (tickers, real-time bars, live history, scanners, account).
- ``SimServer`` owns the listener, the clientId registry, the routing of exchange events
  to the connection that owns the order, and the market loop: every quote step it calls
  ``exchange.on_market(now)`` and streams what changed to subscribers.
- Pure helpers turn market data into wire messages: tick lists, historical bars
  (durations, bar sizes, RTH filter, aggregation), account rows, contract lookup.

A clientId is freed at EOF; its orders keep working in the exchange, and the client sees
their later fills through reqOpenOrders / reqExecutions after reconnecting (TWS keeps API
orders alive the same way). Fault injection (``control``) goes through the ``SimServer``
methods in the "faults" section.

Simplifications a client may notice:

- Delayed market data (type 3/4) uses the delayed tick types and marketDataType 3, but
  the prices are current, not 15 minutes old.
- Historical bars are trade bars whatever ``whatToShow`` says; 1-min bars exist from
  04:00 ET to the close (no post-market); only completed bars are sent, and the forming
  bar only through keepUpToDate.
- reqExecutions answers the current day's executions (from midnight ET) matching the
  filter's clientId (0 = all), time, symbol and side.
- Orders for an account other than the simulator's are refused with error 321.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from broker.simulator import codec
from broker.simulator.codec import BarRow, ProtocolError, Request, StockContract, WireContract
from broker.simulator.types import (
    AccountSnapshot,
    Bar,
    ExchangeConfig,
    ExchangeEvent,
    Execution,
    FillEvent,
    MarketData,
    OrderRejected,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    PositionRow,
    Quote,
    SimOrder,
    SymbolInfo,
)
from market import calendar
from market.clock import ET, Clock

log = logging.getLogger("broker.simulator.server")

Fields = list[object]

#: Error texts (paraphrases of TWS's; the libraries never parse them).
TEXT_DUPLICATE_CLIENT = (
    "Unable to connect as the client id is already in use. Retry with a unique client id."
)
TEXT_NO_SECURITY = "No security definition has been found for the request"
TEXT_DELAYED = "Requested market data is not subscribed. Displaying delayed market data."
TEXT_CANCELLED = "Order Canceled - reason:"
TEXT_CONNECTIVITY = {
    1100: "Connectivity between IB and Trader Workstation has been lost.",
    1101: "Connectivity between IB and Trader Workstation has been restored - data lost.",
    1102: "Connectivity between IB and Trader Workstation has been restored - data maintained.",
}
FARM_NOTICES = (
    (2104, "Market data farm connection is OK:usfarm"),
    (2106, "HMDS data farm connection is OK:ushmds"),
    (2158, "Sec-def data farm connection is OK:secdefnj"),
)
_CANCEL_ERRORS = frozenset({10147, 10148})
#: The simulator serves loopback only: it is a paper exchange for processes on this host.
HOST = "127.0.0.1"


class ExchangeLike(Protocol):
    """What the server needs of ``broker.simulator.exchange.Exchange``."""

    def place(self, req: OrderRequest) -> list[ExchangeEvent]: ...
    def cancel(self, client_id: int, order_id: int) -> list[ExchangeEvent]: ...
    def global_cancel(self) -> list[ExchangeEvent]: ...
    def on_market(self, now: datetime) -> list[ExchangeEvent]: ...
    def open_orders(
        self, client_id: int | None = None, include_pending: bool = False
    ) -> list[SimOrder]: ...
    def completed_orders(self) -> list[SimOrder]: ...
    def executions(
        self, client_id: int | None = None, since: datetime | None = None
    ) -> list[Execution]: ...
    def positions(self) -> list[PositionRow]: ...
    def snapshot(self) -> AccountSnapshot: ...
    def next_valid_id(self, client_id: int) -> int: ...
    def reject_next_order(self, code: int = 201, reason: str = "") -> None: ...
    def withhold_acknowledgements(self, on: bool) -> list[ExchangeEvent]: ...
    def roll_back_next_valid_id(self, client_id: int, to: int) -> None: ...


class Scanner(Protocol):
    """Rank symbols for a scan code at an instant: ``(scan_code, now, n) -> symbols``."""

    def __call__(self, scan_code: str, now: datetime, n: int) -> list[str]: ...


@dataclass(frozen=True)
class ServerConfig:
    """Tunable behaviour of the protocol server (all intervals in real seconds)."""

    port: int = 0
    quote_interval: float = 0.25
    account_interval: float = 3.0
    scanner_interval: float = 10.0
    handshake_timeout: float = 10.0
    max_write_buffer: int = 16 * 1024 * 1024


# =========================================================================== contracts


@dataclass(frozen=True)
class Listing:
    """A known stock: what the wire says about it, and its reference data."""

    contract: StockContract
    info: SymbolInfo


class ContractBook:
    """Look stocks up by conId or by symbol/secType/currency, caching the answers."""

    def __init__(self, market: MarketData) -> None:
        self._market = market
        self._by_symbol: dict[str, Listing | None] = {}
        self._con_ids: dict[int, str] | None = None

    def by_symbol(self, symbol: str) -> Listing | None:
        """Return the listing of ``symbol``, or None when the market does not know it."""
        symbol = symbol.upper()
        if symbol not in self._by_symbol:
            info = self._market.info(symbol) if symbol else None
            self._by_symbol[symbol] = (
                None if info is None else Listing(StockContract.from_info(info), info)
            )
        return self._by_symbol[symbol]

    def by_con_id(self, con_id: int) -> Listing | None:
        """Return the listing with contract id ``con_id``, if any."""
        if self._con_ids is None:
            self._con_ids = {}
            for symbol in self._market.symbols():
                info = self._market.info(symbol)
                if info is not None:
                    self._con_ids[info.con_id] = symbol
        symbol = self._con_ids.get(con_id)
        return None if symbol is None else self.by_symbol(symbol)

    def resolve(self, wc: WireContract) -> Listing | None:
        """Return the stock a client's contract means: by conId when given, else by symbol."""
        if wc.con_id:
            return self.by_con_id(wc.con_id)  # an unknown conId is unknown, as at TWS
        if wc.sec_type.upper() not in ("", "STK") or wc.currency.upper() not in ("", "USD"):
            return None
        return self.by_symbol(wc.symbol or wc.local_symbol)


def trading_hours(day: date, days: int = 7) -> tuple[str, str]:
    """Return contractDetails' tradingHours (04:00-20:00) and liquidHours (RTH) from ``day``."""
    full: list[str] = []
    liquid: list[str] = []
    for offset in range(days):
        d = day + timedelta(days=offset)
        stamp = d.strftime("%Y%m%d")
        if not calendar.is_trading_day(d):
            full.append(f"{stamp}:CLOSED")
            liquid.append(f"{stamp}:CLOSED")
            continue
        s = calendar.session(d)
        full.append(f"{stamp}:0400-{stamp}:2000")
        liquid.append(f"{stamp}:{s.open:%H%M}-{stamp}:{s.close:%H%M}")
    return ";".join(full), ";".join(liquid)


# =========================================================================== market data ticks


#: Tick type per field: (live, delayed) (protocol doc 5.1).
TICK_TYPES: dict[str, tuple[int, int]] = {
    "bid_size": (0, 69),
    "bid": (1, 66),
    "ask": (2, 67),
    "ask_size": (3, 70),
    "last": (4, 68),
    "last_size": (5, 71),
    "high": (6, 72),
    "low": (7, 73),
    "volume": (8, 74),
    "close": (9, 75),
    "open": (14, 76),
    "last_timestamp": (45, 88),
}
_HALTED_TICK = 49  # both libraries know 49; ib_insync does not know the delayed 90


def tick_type(name: str, delayed: bool) -> int:
    """Return the tick type number of ``name`` for live or delayed data."""
    live, late = TICK_TYPES[name]
    return late if delayed else live


def quote_ticks(req_id: int, q: Quote, prev: Quote | None, delayed: bool) -> list[Fields]:
    """Return the tick messages that bring a ticker from ``prev`` (None: nothing) to ``q``."""

    def t(name: str) -> int:
        return tick_type(name, delayed)

    out: list[Fields] = []
    # Bid/ask always carry a positive size: ib_async reads size 0 as "no quote".
    if q.bid > 0 and (prev is None or (q.bid, q.bid_size) != (prev.bid, prev.bid_size)):
        out.append(codec.tick_price(req_id, t("bid"), q.bid, max(q.bid_size, 1)))
    if q.ask > 0 and (prev is None or (q.ask, q.ask_size) != (prev.ask, prev.ask_size)):
        out.append(codec.tick_price(req_id, t("ask"), q.ask, max(q.ask_size, 1)))
    traded = prev is None or (q.last, q.last_size, q.day_volume) != (
        prev.last,
        prev.last_size,
        prev.day_volume,
    )
    if q.last > 0 and traded:
        out.append(codec.tick_price(req_id, t("last"), q.last, max(q.last_size, 1)))
        out.append(codec.tick_size(req_id, t("last_size"), max(q.last_size, 1)))
        stamp = str(int(q.time.timestamp()))
        out.append(codec.tick_string(req_id, t("last_timestamp"), stamp))
    if prev is None or q.day_volume != prev.day_volume:
        out.append(codec.tick_size(req_id, t("volume"), q.day_volume))
    if prev is None or q.halted != prev.halted:
        out.append(codec.tick_generic(req_id, _HALTED_TICK, 1.0 if q.halted else 0.0))
    return out


def day_ticks(req_id: int, summary: DaySummary, delayed: bool) -> list[Fields]:
    """Return the day's open/high/low and the prior close as price ticks (size 0)."""
    out: list[Fields] = []
    for name, value in (
        ("close", summary.prior_close),
        ("open", summary.open),
        ("high", summary.high),
        ("low", summary.low),
    ):
        if value is not None and value > 0:
            out.append(codec.tick_price(req_id, tick_type(name, delayed), value, 0))
    return out


@dataclass(frozen=True)
class DaySummary:
    """The day so far: regular-session open/high/low and the previous session's close."""

    prior_close: float | None
    open: float | None = None
    high: float | None = None
    low: float | None = None


def day_summary(market: MarketData, symbol: str, now: datetime) -> DaySummary:
    """Return today's open/high/low from completed RTH bars, and the prior close."""
    day = now.astimezone(ET).date()
    prior = market.prior_close(symbol, day) or None
    if not calendar.is_trading_day(day):
        return DaySummary(prior)
    s = calendar.session(day)
    bars = [b for b in market.intraday_bars(symbol, day) if _completed(b, now) and _in_rth(b, s)]
    if not bars:
        return DaySummary(prior)
    return DaySummary(prior, bars[0].open, max(b.high for b in bars), min(b.low for b in bars))


# =========================================================================== historical bars

_MINUTE = timedelta(minutes=1)
_MAX_INTRADAY_DAYS = 30
_DAYS_PER_UNIT = {"D": 1, "W": 5, "M": 21, "Y": 252}


class HistoryError(ValueError):
    """A historical data request cannot be served (sent to the client as error 162)."""


@dataclass(frozen=True)
class Duration:
    """A TWS duration string such as ``1 D``, ``3600 S``, ``3 M``."""

    amount: int
    unit: str  # S, D, W, M, Y

    @property
    def trading_days(self) -> int:
        """Return about how many sessions the duration spans."""
        if self.unit == "S":
            return max(1, math.ceil(self.amount / 86_400)) + 1
        return self.amount * _DAYS_PER_UNIT[self.unit]


def parse_duration(text: str) -> Duration:
    """Parse a duration like ``2 D``; raise HistoryError when it is not one."""
    parts = text.strip().upper().split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in ("S", *_DAYS_PER_UNIT):
        raise HistoryError(f"invalid duration {text!r}")
    amount = int(parts[0])
    if amount <= 0:
        raise HistoryError(f"invalid duration {text!r}")
    return Duration(amount, parts[1])


def parse_bar_size(text: str) -> int:
    """Return the bar length in minutes (0 for daily bars) of ``1 min``, ``5 mins``, ``1 day``."""
    parts = text.strip().lower().split()
    if len(parts) == 2 and parts[0].isdigit():
        n, unit = int(parts[0]), parts[1]
        if unit.startswith("min") and n in (1, 2, 3, 5, 10, 15, 20, 30):
            return n
        if unit.startswith("hour") and n in (1, 2, 3, 4, 8):
            return 60 * n
        if unit.startswith("day") and n == 1:
            return 0
    raise HistoryError(f"unsupported bar size {text!r}")


def parse_end(text: str, now: datetime) -> datetime:
    """Return the end instant of a request: empty = ``now``; never later than ``now``.

    Accepts ``YYYYMMDD HH:MM:SS [zone]``, ``YYYYMMDD-HH:MM:SS`` (UTC) and ``YYYYMMDD``
    (the end of that day); a time without a zone is US/Eastern.
    """
    text = text.strip()
    if not text:
        return now
    try:
        end = _parse_ib_datetime(text)
    except (ValueError, ZoneInfoNotFoundError):
        raise HistoryError(f"invalid end date/time {text!r}") from None
    return min(end, now)


def _parse_ib_datetime(text: str) -> datetime:
    if len(text) == 8:
        day = datetime.strptime(text, "%Y%m%d").date()
        return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=ET)
    if "-" in text[:9] and len(text) >= 17 and text[8] == "-":
        return datetime.strptime(text[:17], "%Y%m%d-%H:%M:%S").replace(tzinfo=UTC)
    parts = text.split()
    stamp = datetime.strptime(parts[0] + parts[1], "%Y%m%d%H:%M:%S")
    zone = ZoneInfo(parts[2]) if len(parts) > 2 else ET
    return stamp.replace(tzinfo=zone)


def _completed(bar: Bar, now: datetime) -> bool:
    return bar.time + _MINUTE <= now


def _in_rth(bar: Bar, s: calendar.Session) -> bool:
    return s.open <= bar.time < s.close


def _session_or_none(day: date) -> calendar.Session | None:
    return calendar.session(day) if calendar.is_trading_day(day) else None


def minute_history(
    market: MarketData, symbol: str, end: datetime, duration: Duration, use_rth: bool
) -> list[Bar]:
    """Return completed 1-min bars up to ``end`` covering ``duration`` (RTH only if asked)."""
    span = min(duration.trading_days, _MAX_INTRADAY_DAYS)
    days = calendar.trading_days_back(end.astimezone(ET).date(), span + 1)
    per_day: list[list[Bar]] = []
    for day in days:
        s = calendar.session(day)
        bars = [
            b
            for b in market.intraday_bars(symbol, day)
            if _completed(b, end) and (not use_rth or _in_rth(b, s))
        ]
        if bars:
            per_day.append(bars)
    if duration.unit == "S":
        start = end - timedelta(seconds=duration.amount)
        return [b for bars in per_day for b in bars if b.time >= start]
    return [b for bars in per_day[-span:] for b in bars]


def aggregate(bars: Sequence[Bar], minutes: int) -> list[Bar]:
    """Merge 1-min bars into ``minutes``-long bars aligned to the ET clock."""
    if minutes <= 1:
        return list(bars)
    groups: dict[datetime, list[Bar]] = {}
    for bar in bars:
        local = bar.time.astimezone(ET)
        minute_of_day = local.hour * 60 + local.minute
        start = local.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
            minutes=minute_of_day - minute_of_day % minutes
        )
        groups.setdefault(start, []).append(bar)
    return [merge_bars(start, group) for start, group in sorted(groups.items())]


def merge_bars(start: datetime, group: Sequence[Bar]) -> Bar:
    """Return one bar starting at ``start`` that spans ``group`` (oldest first)."""
    volume = sum(b.volume for b in group)
    wap = sum((b.wap or b.close) * b.volume for b in group) / volume if volume else group[-1].close
    return Bar(
        time=start,
        open=group[0].open,
        high=max(b.high for b in group),
        low=min(b.low for b in group),
        close=group[-1].close,
        volume=volume,
        wap=round(wap, 4),
        count=sum(b.count for b in group),
    )


def daily_history(
    market: MarketData, symbol: str, end: datetime, count: int, use_rth: bool
) -> list[Bar]:
    """Return ``count`` daily bars up to ``end``; today's bar is built from bars so far."""
    last_done = calendar.latest_completed_session(end)
    bars = list(market.daily_bars(symbol, last_done, count))
    today = end.astimezone(ET).date()
    s = _session_or_none(today)
    if s is not None and today > last_done:
        partial = [
            b
            for b in market.intraday_bars(symbol, today)
            if _completed(b, end) and (not use_rth or _in_rth(b, s))
        ]
        if partial:
            bars.append(merge_bars(datetime.combine(today, datetime.min.time(), ET), partial))
    return bars[-count:]


def format_bar_date(bar_time: datetime, daily: bool, format_date: int) -> str:
    """Return a bar's date the way TWS formats it (doc section 6, historical bar dates)."""
    if daily:
        return bar_time.astimezone(ET).strftime("%Y%m%d")
    if format_date == 2:
        return str(int(bar_time.timestamp()))
    return bar_time.astimezone(ET).strftime("%Y%m%d %H:%M:%S") + " US/Eastern"


def bar_row(bar: Bar, daily: bool, format_date: int) -> BarRow:
    """Return ``bar`` in wire form."""
    return BarRow(
        date=format_bar_date(bar.time, daily, format_date),
        open=bar.open,
        high=bar.high,
        low=bar.low,
        close=bar.close,
        volume=float(bar.volume),
        wap=bar.wap or bar.close,
        count=bar.count,
    )


@dataclass(frozen=True)
class HistoryQuery:
    """A decoded reqHistoricalData."""

    symbol: str
    end: datetime
    duration: Duration
    minutes: int  # 0 = daily
    use_rth: bool
    format_date: int


def history_bars(market: MarketData, q: HistoryQuery) -> list[Bar]:
    """Return the bars a historical data query asks for (never from after ``q.end``)."""
    if q.minutes == 0:
        count = max(1, q.duration.trading_days - (1 if q.duration.unit == "S" else 0))
        return daily_history(market, q.symbol, q.end, count, q.use_rth)
    bars = minute_history(market, q.symbol, q.end, q.duration, q.use_rth)
    return aggregate(bars, q.minutes)


def forming_bar(market: MarketData, q: HistoryQuery, now: datetime) -> Bar | None:
    """Return the bar that contains ``now`` as it looks so far (for keepUpToDate)."""
    day = now.astimezone(ET).date()
    s = _session_or_none(day)
    if s is None or (q.use_rth and not (s.open <= now < s.close)):
        return None
    start = _period_start(now, q.minutes, s, q.use_rth)
    day_bars = market.intraday_bars(q.symbol, day)
    parts = [b for b in day_bars if b.time >= start and _completed(b, now)]
    partial = _partial_minute(market, q.symbol, day_bars, now)
    if partial is not None:
        parts.append(partial)
    if not parts:
        return None
    bar_start = datetime.combine(day, datetime.min.time(), ET) if q.minutes == 0 else start
    return merge_bars(bar_start, parts)


def _period_start(now: datetime, minutes: int, s: calendar.Session, use_rth: bool) -> datetime:
    if minutes == 0:
        return s.open if use_rth else s.premarket_start
    local = now.astimezone(ET)
    minute_of_day = local.hour * 60 + local.minute
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight + timedelta(minutes=minute_of_day - minute_of_day % minutes)


def _partial_minute(
    market: MarketData, symbol: str, day_bars: Sequence[Bar], now: datetime
) -> Bar | None:
    """Return the minute in progress: its known open, the current last, volume so far."""
    quote = market.quote_at(symbol, now)
    if quote is None or quote.last <= 0:
        return None
    minute = align_down(now, _MINUTE)
    current = next((b for b in day_bars if b.time == minute), None)
    open_ = current.open if current is not None else quote.last
    before = sum(b.volume for b in day_bars if b.time < minute)
    volume = max(quote.day_volume - before, 0)
    return Bar(minute, open_, max(open_, quote.last), min(open_, quote.last), quote.last, volume)


# =========================================================================== account rows


def account_rows(snap: AccountSnapshot) -> list[tuple[str, str, str]]:
    """Return (key, value, currency) rows of updateAccountValue / accountSummary."""
    margin = max(snap.net_liquidation - snap.excess_liquidity, 0.0)
    money = {
        "NetLiquidation": snap.net_liquidation,
        "TotalCashValue": snap.cash,
        "SettledCash": snap.cash,
        "CashBalance": snap.cash,
        "EquityWithLoanValue": snap.net_liquidation,
        "ExcessLiquidity": snap.excess_liquidity,
        "FullExcessLiquidity": snap.excess_liquidity,
        "AvailableFunds": snap.excess_liquidity,
        "FullAvailableFunds": snap.excess_liquidity,
        "BuyingPower": snap.buying_power,
        "GrossPositionValue": snap.gross_position_value,
        "InitMarginReq": margin,
        "MaintMarginReq": margin,
        "UnrealizedPnL": snap.unrealized_pnl,
        "RealizedPnL": snap.realized_pnl,
    }
    rows = [("AccountCode", snap.account, ""), ("AccountType", "INDIVIDUAL", "")]
    rows += [(key, f"{value:.2f}", "USD") for key, value in money.items()]
    return rows


@dataclass(frozen=True)
class PortfolioRow:
    """One updatePortfolio line."""

    listing: Listing
    position: PositionRow
    market_price: float

    def fields(self, account: str) -> Fields:
        """Return the updatePortfolio message of this row."""
        p = self.position
        value = p.quantity * self.market_price
        unrealized = (self.market_price - p.avg_cost) * p.quantity
        return codec.portfolio_value(
            self.listing.contract,
            p.quantity,
            self.market_price,
            round(value, 2),
            p.avg_cost,
            round(unrealized, 2),
            round(p.realized_pnl, 2),
            account,
        )


# =========================================================================== streams


@dataclass
class TickerStream:
    """A reqMktData subscription."""

    req_id: int
    listing: Listing
    delayed: bool
    last: Quote | None = None


@dataclass
class BarStream:
    """A reqRealTimeBars subscription (5-second bars)."""

    req_id: int
    listing: Listing
    use_rth: bool
    next_start: datetime


@dataclass
class HistoryStream:
    """A reqHistoricalData with keepUpToDate: the forming bar is pushed as it changes."""

    req_id: int
    query: HistoryQuery
    last: BarRow | None = None


@dataclass
class ScannerStream:
    """A reqScannerSubscription, re-sent periodically until cancelled."""

    req_id: int
    scan_code: str
    rows: int
    above_price: float | None
    below_price: float | None
    above_volume: int
    due: float = 0.0  # monotonic time of the next push


_REALTIME_BAR = timedelta(seconds=5)
_MAX_BARS_PER_STEP = 12
_SCAN_CODES = ("TOP_PERC_GAIN", "MOST_ACTIVE")

SCANNER_XML = """<?xml version="1.0" encoding="UTF-8"?>
<ScanParameterResponse>
  <InstrumentList>
    <Instrument><name>US Stocks</name><type>STK</type></Instrument>
  </InstrumentList>
  <LocationTree>
    <Location>
      <displayName>US Stocks</displayName><locationCode>STK.US.MAJOR</locationCode>
      <instruments>STK</instruments>
    </Location>
  </LocationTree>
  <ScanTypeList>
    <ScanType>
      <displayName>Top % Gainers</displayName><scanCode>TOP_PERC_GAIN</scanCode>
      <instruments>STK</instruments>
    </ScanType>
    <ScanType>
      <displayName>Most Active</displayName><scanCode>MOST_ACTIVE</scanCode>
      <instruments>STK</instruments>
    </ScanType>
  </ScanTypeList>
</ScanParameterResponse>
"""


def realtime_bar(market: MarketData, symbol: str, start: datetime) -> BarRow | None:
    """Return the 5-second bar starting at ``start``, sampled from quotes once a second."""
    samples = [market.quote_at(symbol, start + timedelta(seconds=i)) for i in range(6)]
    quotes = [q for q in samples if q is not None and q.last > 0]
    if len(quotes) < 2:
        return None
    prices = [q.last for q in quotes]
    volume = max(quotes[-1].day_volume - quotes[0].day_volume, 0)
    return BarRow(
        date="",
        open=prices[0],
        high=max(prices),
        low=min(prices),
        close=prices[-1],
        volume=float(volume),
        wap=round(sum(prices) / len(prices), 4),
        count=sum(
            1
            for a, b in zip(quotes, quotes[1:], strict=False)
            if (a.last, a.day_volume) != (b.last, b.day_volume)
        ),
    )


def align_down(instant: datetime, step: timedelta) -> datetime:
    """Return ``instant`` rounded down to a multiple of ``step`` since the epoch."""
    seconds = step.total_seconds()
    return datetime.fromtimestamp(math.floor(instant.timestamp() / seconds) * seconds, UTC)


# =========================================================================== the connection


class Connection:
    """One client socket: handshake, request loop, handlers and its subscriptions."""

    def __init__(
        self, server: SimServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.client_id: int | None = None
        self.version = 0
        self.market_data_type = 1
        self.tickers: dict[int, TickerStream] = {}
        self.bar_streams: dict[int, BarStream] = {}
        self.history_streams: dict[int, HistoryStream] = {}
        self.scanners: dict[int, ScannerStream] = {}
        self.account_updates = False
        self.positions_subscribed = False
        self.closed = False
        self._buffer = codec.FrameBuffer()

    def __repr__(self) -> str:
        return f"<client {self.client_id} {self.writer.get_extra_info('peername')}>"

    # ----------------------------------------------------------------------- I/O

    def send(self, fields: Fields) -> None:
        """Queue one message to the client (dropped once the socket is closing)."""
        if self.closed or self.writer.is_closing():
            return
        self.writer.write(codec.encode_message(fields))
        if self.writer.transport.get_write_buffer_size() > self.server.config.max_write_buffer:
            log.warning("%s is not reading; closing", self)
            self.close()

    def send_all(self, messages: Iterable[Fields]) -> None:
        """Queue several messages in order."""
        for fields in messages:
            self.send(fields)

    def send_error(self, req_id: int, code: int, text: str) -> None:
        """Send an error message (reqId -1 for notices)."""
        self.send(codec.error(req_id, code, text))

    def close(self) -> None:
        """Close the socket; the read loop then ends and frees the clientId."""
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()

    async def serve(self) -> None:
        """Run the connection until EOF, a protocol error or ``close``."""
        try:
            if await self._handshake():
                await self._read_loop()
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError) as exc:
            log.info("%s: connection ended: %r", self, exc)
        except ProtocolError as exc:
            log.warning("%s: protocol error: %s", self, exc)
        except Exception:
            log.exception("%s: connection failed", self)
        finally:
            self.close()
            self.server.forget(self)

    async def _read_some(self) -> bytes:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("EOF")
        return data

    async def _handshake(self) -> bool:
        timeout = self.server.config.handshake_timeout
        greeting = await asyncio.wait_for(self.reader.readexactly(4), timeout)
        if greeting != codec.API_GREETING:
            raise ProtocolError(f"bad greeting {greeting!r}")
        while (payload := self._buffer.next_payload()) is None:
            self._buffer.feed(await asyncio.wait_for(self._read_some(), timeout))
        offer = codec.parse_version_range(payload)
        version = codec.negotiate_version(offer)
        if version is None:
            log.warning("%s: no common version with %s", self, offer)
            return False
        self.version = version
        self.writer.write(codec.handshake_reply(version, self.server.clock.now()))
        return True

    async def _read_loop(self) -> None:
        while not self.closed:
            for fields in self._buffer.messages():
                self.handle(fields)
                if self.closed:
                    return
            self._buffer.feed(await self._read_some())

    # ----------------------------------------------------------------------- dispatch

    def handle(self, fields: list[str]) -> None:
        """Decode and serve one request; a failure answers error 322, never kills the socket."""
        try:
            req = codec.decode_request(fields)
        except (ValueError, ProtocolError) as exc:
            log.warning("%s: unreadable request %s: %s", self, fields[:3], exc)
            self.send_error(-1, 320, f"Error reading request: {exc}")
            return
        if self.client_id is None and req.name != "startApi":
            log.warning("%s: %s before startApi ignored", self, req.name)
            return
        handler = HANDLERS.get(req.name)
        if handler is None:
            log.info("%s: unsupported request %d ignored", self, req.msg_id)
            return
        try:
            handler(self, req)
        except Exception as exc:
            log.exception("%s: %s failed", self, req.name)
            req_id = req.get("req_id", req.get("order_id", -1))
            self.send_error(req_id, 322, f"Error processing request: {exc}")

    # ----------------------------------------------------------------------- session

    def on_start_api(self, req: Request) -> None:
        if self.client_id is not None:
            log.warning("%s: second startApi ignored", self)
            return
        client_id = req.get("client_id", 0)
        if not self.server.register(self, client_id):
            log.warning("%s: clientId %d already in use", self, client_id)
            self.send_error(-1, 326, TEXT_DUPLICATE_CLIENT)
            self.close()
            return
        self.client_id = client_id
        log.info("%s: API started", self)
        self.send(codec.managed_accounts([self.server.account_id]))
        self.send(codec.next_valid_id(self.server.exchange.next_valid_id(client_id)))
        for code, text in FARM_NOTICES:
            self.send_error(-1, code, text)

    def on_req_ids(self, req: Request) -> None:
        assert self.client_id is not None
        self.send(codec.next_valid_id(self.server.exchange.next_valid_id(self.client_id)))

    def on_req_current_time(self, req: Request) -> None:
        self.send(codec.current_time(int(self.server.clock.now().timestamp())))

    def on_noop(self, req: Request) -> None:
        log.debug("%s: %s accepted", self, req.name)

    # ----------------------------------------------------------------------- orders

    def on_place_order(self, req: Request) -> None:
        assert self.client_id is not None
        placed = self._resolved(codec.decode_place_order(req.raw, self.client_id))
        order_req = placed.request
        if order_req.account and order_req.account != self.server.account_id:
            text = f"Error validating request: account {order_req.account!r} is not managed"
            self.send_error(order_req.order_id, 321, text)
            self.send(codec.cancelled_status(order_req.order_id, self.client_id, 0.0))
            return
        if placed.what_if:
            self._answer_what_if(placed)
            return
        log.info("%s: placeOrder %s", self, order_req)
        self.server.deliver(self.server.exchange.place(order_req), placement=True)

    def _resolved(self, placed: codec.PlacedOrder) -> codec.PlacedOrder:
        """Name the stock the way the exchange does (a client may send only the conId)."""
        listing = self.server.contracts.resolve(placed.contract)
        if listing is None:
            return placed
        request = replace(placed.request, symbol=listing.info.symbol, con_id=listing.info.con_id)
        return replace(placed, request=request)

    def _answer_what_if(self, placed: codec.PlacedOrder) -> None:
        order_req = placed.request
        listing = self.server.contracts.by_symbol(order_req.symbol)
        if listing is None:
            self.send_error(order_req.order_id, 200, TEXT_NO_SECURITY)
            return
        price = order_req.limit_price or self.server.mark(order_req.symbol) or 0.0
        margin = order_req.quantity * price / max(self.server.exchange_config.margin_multiplier, 1)
        order = SimOrder(order_req, 0, OrderStatus.PRE_SUBMITTED)
        self.send(codec.what_if_order(order, listing.contract, self.server.account_id, margin))

    def on_cancel_order(self, req: Request) -> None:
        assert self.client_id is not None
        self.server.deliver(self.server.exchange.cancel(self.client_id, req["order_id"]))

    def on_global_cancel(self, req: Request) -> None:
        self.server.deliver(self.server.exchange.global_cancel())

    def on_open_orders(self, req: Request) -> None:
        self._send_open_orders(self.client_id)

    def on_all_open_orders(self, req: Request) -> None:
        self._send_open_orders(None)

    def _send_open_orders(self, client_id: int | None) -> None:
        for order in self.server.exchange.open_orders(client_id):
            self.send_all(self.server.order_messages(order))
        self.send(codec.open_order_end())

    def on_completed_orders(self, req: Request) -> None:
        for order in self.server.exchange.completed_orders():
            listing = self.server.contracts.by_symbol(order.request.symbol)
            if listing is None:
                continue
            when = codec.format_exec_time(order.completed_time or self.server.clock.now())
            self.send(codec.completed_order(order, listing.contract, self.server.account_id, when))
        self.send(codec.completed_orders_end())

    def on_executions(self, req: Request) -> None:
        req_id = req["req_id"]
        # TWS reports the executions of the current day only (midnight ET here).
        midnight = (
            self.server.clock.now()
            .astimezone(ET)
            .replace(hour=0, minute=0, second=0, microsecond=0)
        )
        since = max(parse_exec_filter_time(req.get("time", "")) or midnight, midnight)
        symbol = req.get("symbol", "").upper()
        side = _exec_side(req.get("side", ""))
        for ex in self.server.exchange.executions(req.get("client_id", 0) or None, since):
            if (symbol and ex.symbol != symbol) or (side and ex.side != side):
                continue
            listing = self.server.contracts.by_symbol(ex.symbol)
            if listing is None:
                continue
            self.send(codec.exec_details(req_id, ex, listing.contract))
            self.send(codec.commission_report(ex))
        self.send(codec.exec_details_end(req_id))

    # ----------------------------------------------------------------------- account

    def on_positions(self, req: Request) -> None:
        self.positions_subscribed = True
        for row in self.server.exchange.positions():
            self.send_all(self.server.position_messages(row))
        self.send(codec.position_end())

    def on_cancel_positions(self, req: Request) -> None:
        self.positions_subscribed = False

    def on_account_updates(self, req: Request) -> None:
        self.account_updates = bool(req.get("subscribe", False))
        if not self.account_updates:
            return
        self.send_all(self.server.account_messages())
        self.send(codec.account_download_end(self.server.account_id))

    def on_account_updates_multi(self, req: Request) -> None:
        req_id, account = req["req_id"], self.server.account_id
        for key, value, currency in account_rows(self.server.exchange.snapshot()):
            self.send(codec.account_update_multi(req_id, account, key, value, currency))
        self.send(codec.account_update_multi_end(req_id))

    def on_account_summary(self, req: Request) -> None:
        req_id, account = req["req_id"], self.server.account_id
        wanted = {t.strip() for t in req.get("tags", "").split(",") if t.strip()}
        for key, value, currency in account_rows(self.server.exchange.snapshot()):
            if key in wanted and key != "AccountCode":
                self.send(codec.account_summary(req_id, account, key, value, currency))
        self.send(codec.account_summary_end(req_id))

    # ----------------------------------------------------------------------- contracts

    def on_contract_details(self, req: Request) -> None:
        req_id = req["req_id"]
        listing = self.server.contracts.resolve(req["contract"])
        if listing is None:
            self.send_error(req_id, 200, TEXT_NO_SECURITY)
        else:
            day = self.server.clock.now().astimezone(ET).date()
            hours = trading_hours(day)
            self.send(codec.contract_details(req_id, listing.contract, listing.info, *hours))
        self.send(codec.contract_details_end(req_id))

    # ----------------------------------------------------------------------- market data

    def on_market_data_type(self, req: Request) -> None:
        self.market_data_type = req.get("market_data_type", 1)

    def on_mkt_data(self, req: Request) -> None:
        req_id = req["req_id"]
        listing = self.server.contracts.resolve(req["contract"])
        if listing is None:
            self.send_error(req_id, 200, TEXT_NO_SECURITY)
            return
        delayed = self.market_data_type in (3, 4)
        self.send(codec.tick_req_params(req_id, listing.info.min_tick))
        self.send(codec.market_data_type(req_id, 3 if delayed else 1))
        if delayed:
            self.send_error(req_id, 10167, TEXT_DELAYED)
        stream = TickerStream(req_id, listing, delayed)
        now = self.server.clock.now()
        summary = day_summary(self.server.market, listing.info.symbol, now)
        self.send_all(day_ticks(req_id, summary, delayed))
        self.stream_ticker(stream, now)
        if req.get("snapshot", False) or req.get("regulatory_snapshot", False):
            self.send(codec.tick_snapshot_end(req_id))
        else:
            self.tickers[req_id] = stream

    def stream_ticker(self, stream: TickerStream, now: datetime) -> None:
        """Send the ticks that changed since the last push of ``stream``."""
        quote = self.server.quote(stream.listing.info.symbol, now)
        if quote is None:
            return
        self.send_all(quote_ticks(stream.req_id, quote, stream.last, stream.delayed))
        stream.last = quote

    def on_cancel_mkt_data(self, req: Request) -> None:
        self.tickers.pop(req["req_id"], None)

    def on_real_time_bars(self, req: Request) -> None:
        req_id = req["req_id"]
        listing = self.server.contracts.resolve(req["contract"])
        if listing is None:
            self.send_error(req_id, 200, TEXT_NO_SECURITY)
            return
        start = align_down(self.server.clock.now(), _REALTIME_BAR)
        self.bar_streams[req_id] = BarStream(req_id, listing, req.get("use_rth", False), start)

    def stream_bars(self, stream: BarStream, now: datetime) -> None:
        """Send every 5-second bar of ``stream`` that completed by ``now``."""
        if now - stream.next_start > _REALTIME_BAR * _MAX_BARS_PER_STEP:
            stream.next_start = align_down(now, _REALTIME_BAR) - _REALTIME_BAR
        while stream.next_start + _REALTIME_BAR <= now:
            start, stream.next_start = stream.next_start, stream.next_start + _REALTIME_BAR
            if stream.use_rth and not calendar.is_market_open(start):
                continue
            bar = realtime_bar(self.server.market, stream.listing.info.symbol, start)
            if bar is not None:
                self.send(codec.realtime_bar(stream.req_id, int(start.timestamp()), bar))

    def on_cancel_real_time_bars(self, req: Request) -> None:
        self.bar_streams.pop(req["req_id"], None)

    def on_historical_data(self, req: Request) -> None:
        req_id = req["req_id"]
        listing = self.server.contracts.resolve(req["contract"])
        if listing is None:
            self.send_error(req_id, 200, TEXT_NO_SECURITY)
            return
        now = self.server.clock.now()
        try:
            query = HistoryQuery(
                symbol=listing.info.symbol,
                end=parse_end(req.get("end", ""), now),
                duration=parse_duration(req.get("duration", "")),
                minutes=parse_bar_size(req.get("bar_size", "")),
                use_rth=req.get("use_rth", False),
                format_date=req.get("format_date", 1),
            )
        except HistoryError as exc:
            self.send_error(req_id, 162, f"Historical Market Data Service error message:{exc}")
            return
        self._send_history(req_id, query, keep_up_to_date=req.get("keep_up_to_date", False))

    def _send_history(self, req_id: int, query: HistoryQuery, keep_up_to_date: bool) -> None:
        bars = history_bars(self.server.market, query)
        if not bars and not keep_up_to_date:
            text = "Historical Market Data Service error message:HMDS query returned no data"
            self.send_error(req_id, 162, text)
            return
        daily = query.minutes == 0
        rows = [bar_row(b, daily, query.format_date) for b in bars]
        start = bars[0].time if bars else query.end
        stamp = "%Y%m%d %H:%M:%S"
        end_text = query.end.astimezone(ET).strftime(stamp)
        self.send(
            codec.historical_data(req_id, start.astimezone(ET).strftime(stamp), end_text, rows)
        )
        if keep_up_to_date:
            self.history_streams[req_id] = HistoryStream(req_id, query, rows[-1] if rows else None)

    def stream_history(self, stream: HistoryStream, now: datetime) -> None:
        """Send historicalDataUpdate when the forming bar of ``stream`` changed."""
        bar = forming_bar(self.server.market, stream.query, now)
        if bar is None:
            return
        row = bar_row(bar, stream.query.minutes == 0, stream.query.format_date)
        if row != stream.last:
            self.send(codec.historical_data_update(stream.req_id, row))
            stream.last = row

    def on_cancel_historical_data(self, req: Request) -> None:
        self.history_streams.pop(req["req_id"], None)

    # ----------------------------------------------------------------------- scanner

    def on_scanner_parameters(self, req: Request) -> None:
        self.send(codec.scanner_parameters(SCANNER_XML))

    def on_scanner_subscription(self, req: Request) -> None:
        req_id = req["req_id"]
        scan_code = req.get("scan_code", "").upper()
        if scan_code not in _SCAN_CODES:
            self.send_error(req_id, 162, f"Scanner: unknown scan code {scan_code!r}")
            return
        rows = req.get("rows", -1)
        stream = ScannerStream(
            req_id,
            scan_code,
            50 if rows <= 0 else min(rows, 50),
            req.get("above_price"),
            req.get("below_price"),
            req.get("above_volume", 0),
        )
        self.scanners[req_id] = stream
        self.push_scanner(stream, self.server.clock.now())

    def push_scanner(self, stream: ScannerStream, now: datetime) -> None:
        """Send the current results of ``stream`` and schedule the next push."""
        listings = self.server.scan(stream, now)
        self.send(codec.scanner_data(stream.req_id, [x.contract for x in listings]))
        stream.due = time.monotonic() + self.server.config.scanner_interval

    def on_cancel_scanner(self, req: Request) -> None:
        self.scanners.pop(req["req_id"], None)

    # ----------------------------------------------------------------------- streaming

    def drop_market_data(self) -> None:
        """Forget every market data subscription (TWS's 1101 'data lost')."""
        self.tickers.clear()
        self.bar_streams.clear()
        self.history_streams.clear()
        self.scanners.clear()

    def stream(self, now: datetime, mono: float) -> None:
        """Push what changed to every market data subscription of this connection."""
        for ticker in list(self.tickers.values()):
            self.stream_ticker(ticker, now)
        for bars in list(self.bar_streams.values()):
            self.stream_bars(bars, now)
        for history in list(self.history_streams.values()):
            self.stream_history(history, now)
        for scanner in list(self.scanners.values()):
            if mono >= scanner.due:
                self.push_scanner(scanner, now)


def parse_exec_filter_time(text: str) -> datetime | None:
    """Parse an ExecutionFilter time (``yyyymmdd hh:mm:ss [zone]`` or ``yyyymmdd-hh:mm:ss``)."""
    text = text.strip()
    if not text:
        return None
    try:
        return _parse_ib_datetime(text)
    except (ValueError, IndexError, ZoneInfoNotFoundError):
        log.warning("unreadable execution filter time %r ignored", text)
        return None


def _exec_side(text: str) -> str:
    side = text.strip().upper()
    return {"BUY": "BOT", "SELL": "SLD"}.get(side, side)


Handler = Callable[[Connection, Request], None]

#: Request name (codec.REQUESTS) -> handler.
HANDLERS: dict[str, Handler] = {
    "startApi": Connection.on_start_api,
    "reqIds": Connection.on_req_ids,
    "reqCurrentTime": Connection.on_req_current_time,
    "reqAutoOpenOrders": Connection.on_noop,
    "placeOrder": Connection.on_place_order,
    "cancelOrder": Connection.on_cancel_order,
    "reqGlobalCancel": Connection.on_global_cancel,
    "reqOpenOrders": Connection.on_open_orders,
    "reqAllOpenOrders": Connection.on_all_open_orders,
    "reqCompletedOrders": Connection.on_completed_orders,
    "reqExecutions": Connection.on_executions,
    "reqPositions": Connection.on_positions,
    "cancelPositions": Connection.on_cancel_positions,
    "reqAccountUpdates": Connection.on_account_updates,
    "reqAccountUpdatesMulti": Connection.on_account_updates_multi,
    "cancelAccountUpdatesMulti": Connection.on_noop,
    "reqAccountSummary": Connection.on_account_summary,
    "cancelAccountSummary": Connection.on_noop,
    "reqContractDetails": Connection.on_contract_details,
    "reqMarketDataType": Connection.on_market_data_type,
    "reqMktData": Connection.on_mkt_data,
    "cancelMktData": Connection.on_cancel_mkt_data,
    "reqRealTimeBars": Connection.on_real_time_bars,
    "cancelRealTimeBars": Connection.on_cancel_real_time_bars,
    "reqHistoricalData": Connection.on_historical_data,
    "cancelHistoricalData": Connection.on_cancel_historical_data,
    "reqScannerParameters": Connection.on_scanner_parameters,
    "reqScannerSubscription": Connection.on_scanner_subscription,
    "cancelScannerSubscription": Connection.on_cancel_scanner,
}


# =========================================================================== the server


class SimServer:
    """The listener, the clientId registry, event routing and the market time loop."""

    def __init__(
        self,
        exchange: ExchangeLike,
        market: MarketData,
        clock: Clock,
        exchange_config: ExchangeConfig,
        config: ServerConfig | None = None,
        scanner: Scanner | None = None,
    ) -> None:
        self.exchange = exchange
        self.market = market
        self.clock = clock
        self.exchange_config = exchange_config
        self.config = config or ServerConfig()
        self.contracts = ContractBook(market)
        self.scanner = scanner
        self.port = self.config.port
        self._listener: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._by_client: dict[int, Connection] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outbox: deque[tuple[float, list[ExchangeEvent]]] = deque()
        self._quotes: dict[str, Quote | None] = {}
        self._quotes_at: datetime | None = None
        self._next_account_push = 0.0
        # Fault state (see ``control``).
        self.ack_delay = 0.0
        self.market_data_stalled = False
        self.connectivity_lost = False
        self._refuse_until = 0.0

    @property
    def account_id(self) -> str:
        return self.exchange_config.account_id

    # ----------------------------------------------------------------------- lifecycle

    async def start(self) -> int:
        """Bind the listener and start the market loop; return the bound port."""
        await self._listen(self.port)
        self._spawn(self._market_loop(), "market loop")
        return self.port

    async def _listen(self, port: int) -> None:
        self._listener = await asyncio.start_server(self._accept, HOST, port)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every client socket, and stop the background tasks."""
        if self._listener is not None:
            self._listener.close()
        for conn in list(self._connections):
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refuse_until:
            writer.close()  # the listener is being reopened; close what slipped through
            return
        conn = Connection(self, reader, writer)
        self._connections.add(conn)
        await conn.serve()

    def register(self, conn: Connection, client_id: int) -> bool:
        """Bind ``client_id`` to ``conn``; False when another live socket holds it."""
        holder = self._by_client.get(client_id)
        if holder is not None and holder is not conn and not holder.closed:
            return False
        self._by_client[client_id] = conn
        return True

    def forget(self, conn: Connection) -> None:
        """Free a closed connection's clientId (its orders keep working)."""
        self._connections.discard(conn)
        if conn.client_id is not None and self._by_client.get(conn.client_id) is conn:
            del self._by_client[conn.client_id]
            log.info("client %d disconnected", conn.client_id)

    def client_ids(self) -> list[int]:
        """Return the connected clientIds, sorted."""
        return sorted(self._by_client)

    # ----------------------------------------------------------------------- events

    def deliver(self, events: list[ExchangeEvent], placement: bool = False) -> None:
        """Route exchange events now, or after the injected acknowledgement delay.

        Delayed batches go through one FIFO outbox, so a later fill never overtakes
        the delayed acknowledgement of its order.
        """
        if not events:
            return
        delay = self.ack_delay if placement else 0.0
        if delay <= 0 and not self._outbox:
            self.dispatch(events)
            return
        due = time.monotonic() + delay
        if self._outbox:
            due = max(due, self._outbox[-1][0])
        self._outbox.append((due, events))

    def _drain_outbox(self, mono: float) -> None:
        while self._outbox and self._outbox[0][0] <= mono:
            self.dispatch(self._outbox.popleft()[1])

    def dispatch(self, events: Iterable[ExchangeEvent]) -> None:
        """Send each event to the connection that owns its order; push account changes."""
        touched: set[str] = set()
        for event in events:
            if isinstance(event, FillEvent):
                self._on_fill(event)
                touched.add(event.execution.symbol)
            elif isinstance(event, OrderUpdate):
                self._on_order_update(event.order)
            elif isinstance(event, OrderRejected):
                self._on_rejected(event)
        if touched:
            self._push_positions(touched)
            self._push_account(touched)

    def _owner(self, client_id: int) -> Connection | None:
        conn = self._by_client.get(client_id)
        return None if conn is None or conn.closed else conn

    def order_messages(self, order: SimOrder) -> list[Fields]:
        """Return openOrder + orderStatus of ``order``."""
        listing = self.contracts.by_symbol(order.request.symbol)
        messages: list[Fields] = []
        if listing is not None:
            messages.append(codec.open_order(order, listing.contract, self.account_id))
        messages.append(codec.order_status(order))
        return messages

    def _on_order_update(self, order: SimOrder) -> None:
        conn = self._owner(order.request.client_id)
        if conn is None:
            return
        conn.send_all(self.order_messages(order))
        if order.status in (OrderStatus.CANCELLED, OrderStatus.API_CANCELLED):
            conn.send_error(
                order.request.order_id, 202, f"{TEXT_CANCELLED} {order.completed_status}"
            )

    def _on_fill(self, event: FillEvent) -> None:
        conn = self._owner(event.order.request.client_id)
        listing = self.contracts.by_symbol(event.execution.symbol)
        if conn is None or listing is None:
            return
        # Doc 8.10: execDetails, then orderStatus, then commissionReport.
        conn.send(codec.exec_details(-1, event.execution, listing.contract))
        conn.send(codec.order_status(event.order))
        conn.send(codec.commission_report(event.execution))

    def _on_rejected(self, event: OrderRejected) -> None:
        conn = self._owner(event.client_id)
        if conn is None:
            return
        conn.send_error(event.order_id, event.code, event.message)
        if event.code in _CANCEL_ERRORS:
            return  # a refused cancel leaves the order as it was
        # Doc 8.18: follow an order error with a fresh orderStatus (final Cancelled for a
        # new order), or ib_insync leaves the Trade PendingSubmit after 110.
        if event.order is not None:
            conn.send(codec.order_status(event.order))
        else:
            conn.send(codec.cancelled_status(event.order_id, event.client_id, 0.0))

    # ----------------------------------------------------------------------- account pushes

    def mark(self, symbol: str) -> float | None:
        """Return the last price of ``symbol`` now, if it trades."""
        quote = self.quote(symbol, self.clock.now())
        return quote.last if quote is not None and quote.last > 0 else None

    def position_messages(self, row: PositionRow) -> list[Fields]:
        """Return the position message of ``row``."""
        listing = self.contracts.by_symbol(row.symbol)
        if listing is None:
            return []
        return [codec.position(self.account_id, listing.contract, row.quantity, row.avg_cost)]

    def account_messages(self, touched: Iterable[str] = ()) -> list[Fields]:
        """Return account values, updatePortfolio per position, and the account time.

        Symbols in ``touched`` that are now flat get a zero row, which is how the
        client learns to drop them from its portfolio.
        """
        snap = self.exchange.snapshot()
        messages = [codec.account_value(k, v, c, snap.account) for k, v, c in account_rows(snap)]
        for row in self._portfolio(set(touched)):
            messages.append(row.fields(snap.account))
        now_et = self.clock.now().astimezone(ET)
        messages.append(codec.account_time(now_et.strftime("%H:%M")))
        return messages

    def _portfolio(self, touched: set[str]) -> list[PortfolioRow]:
        positions = {p.symbol: p for p in self.exchange.positions()}
        rows: list[PortfolioRow] = []
        for symbol in sorted(positions.keys() | touched):
            listing = self.contracts.by_symbol(symbol)
            if listing is None:
                continue
            position = positions.get(symbol) or PositionRow(symbol, listing.info.con_id, 0.0, 0.0)
            price = self.mark(symbol) or position.avg_cost
            rows.append(PortfolioRow(listing, position, price))
        return rows

    def _push_positions(self, symbols: set[str]) -> None:
        rows = {r.symbol: r for r in self.exchange.positions()}
        messages: list[Fields] = []
        for symbol in sorted(symbols):
            listing = self.contracts.by_symbol(symbol)
            if listing is None:
                continue
            row = rows.get(symbol)
            qty, cost = (row.quantity, row.avg_cost) if row else (0.0, 0.0)
            messages.append(codec.position(self.account_id, listing.contract, qty, cost))
        for conn in self._live_connections():
            if conn.positions_subscribed:
                conn.send_all(messages)

    def _push_account(self, touched: Iterable[str] = ()) -> None:
        subscribers = [c for c in self._live_connections() if c.account_updates]
        if not subscribers:
            return
        messages = self.account_messages(touched)
        for conn in subscribers:
            conn.send_all(messages)

    def _live_connections(self) -> list[Connection]:
        return [c for c in self._connections if not c.closed and c.client_id is not None]

    # ----------------------------------------------------------------------- market loop

    def quote(self, symbol: str, now: datetime) -> Quote | None:
        """Return the quote of ``symbol`` at ``now``, computed once per market step."""
        if now != self._quotes_at:
            self._quotes, self._quotes_at = {}, now
        if symbol not in self._quotes:
            self._quotes[symbol] = self.market.quote_at(symbol, now)
        return self._quotes[symbol]

    def scan(self, stream: ScannerStream, now: datetime) -> list[Listing]:
        """Return the listings a scanner subscription shows at ``now``."""
        if self.scanner is None:
            return []
        symbols = self.scanner(stream.scan_code, now, max(stream.rows * 3, stream.rows))
        out: list[Listing] = []
        for symbol in symbols:
            listing = self.contracts.by_symbol(symbol)
            if listing is not None and self._passes_filters(stream, symbol, now):
                out.append(listing)
            if len(out) >= stream.rows:
                break
        return out

    def _passes_filters(self, stream: ScannerStream, symbol: str, now: datetime) -> bool:
        if stream.above_price is None and stream.below_price is None and not stream.above_volume:
            return True
        quote = self.quote(symbol, now)
        if quote is None:
            return False
        if stream.above_price is not None and quote.last < stream.above_price:
            return False
        if stream.below_price is not None and quote.last > stream.below_price:
            return False
        return quote.day_volume >= stream.above_volume

    async def _market_loop(self) -> None:
        interval = max(self.config.quote_interval, 0.01)
        while True:
            started = time.monotonic()
            try:
                self.step()
            except Exception:
                log.exception("market step failed")
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    def step(self) -> None:
        """Advance one quote step: match orders, deliver due events, stream data."""
        now, mono = self.clock.now(), time.monotonic()
        self.deliver(self.exchange.on_market(now))
        self._drain_outbox(mono)
        if not (self.market_data_stalled or self.connectivity_lost):
            for conn in self._live_connections():
                conn.stream(now, mono)
        if mono >= self._next_account_push:
            self._next_account_push = mono + self.config.account_interval
            self._push_account()

    # ----------------------------------------------------------------------- faults

    def drop_connections(self) -> int:
        """Close every client socket; return how many were closed."""
        conns = list(self._connections)
        for conn in conns:
            conn.close()
        log.warning("fault: dropped %d connections", len(conns))
        return len(conns)

    async def refuse_connections(self, seconds: float) -> None:
        """Refuse new API connections for ``seconds`` (the listener is closed, then reopened)."""
        self._refuse_until = max(self._refuse_until, time.monotonic() + seconds)
        if self._listener is not None:
            self._listener.close()
        log.warning("fault: refusing connections for %.1f s", seconds)
        self._spawn(self._reopen_when_due(), "reopen listener")

    async def _reopen_when_due(self) -> None:
        # Several overlapping refusals: the last one to end reopens, the others find it open.
        while (left := self._refuse_until - time.monotonic()) > 0:
            await asyncio.sleep(left)
        if self._listener is not None and self._listener.is_serving():
            return
        while True:
            try:
                await self._listen(self.port)
                log.warning("fault over: accepting connections on %d again", self.port)
                return
            except OSError as exc:
                log.error("cannot reopen port %d yet: %s", self.port, exc)
                await asyncio.sleep(0.2)

    def connectivity(self, code: int, seconds: float = 1.0) -> None:
        """Send 1100 (lost) to every client, then ``code`` (1101/1102) after ``seconds``."""
        if code not in TEXT_CONNECTIVITY:
            raise ValueError(f"connectivity code must be 1100, 1101 or 1102, not {code}")
        if not self.connectivity_lost:
            self._broadcast_error(1100)
            self.connectivity_lost = True
        if code != 1100:
            self._spawn(self._restore_after(code, seconds), "restore connectivity")

    async def _restore_after(self, code: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if code == 1101:
            for conn in self._live_connections():
                conn.drop_market_data()
        self.connectivity_lost = False
        self._broadcast_error(code)

    def _broadcast_error(self, code: int) -> None:
        log.warning("fault: connectivity %d sent to %s", code, self.client_ids())
        for conn in self._live_connections():
            conn.send_error(-1, code, TEXT_CONNECTIVITY[code])

    def withhold_acks(self, on: bool) -> None:
        """Withhold (or release) order acknowledgements in the exchange."""
        self.deliver(self.exchange.withhold_acknowledgements(on))

    def status(self) -> dict[str, Any]:
        """Return a summary for tests and operators."""
        return {
            "clients": self.client_ids(),
            "open_orders": len(self.exchange.open_orders(None, include_pending=True)),
            "positions": [
                {"symbol": p.symbol, "quantity": p.quantity, "avg_cost": p.avg_cost}
                for p in self.exchange.positions()
            ],
            "now": self.clock.now().isoformat(),
            "market_data_stalled": self.market_data_stalled,
            "connectivity_lost": self.connectivity_lost,
            "ack_delay": self.ack_delay,
            "refusing": time.monotonic() < self._refuse_until,
        }
