"""Bars for the backtest: one symbol-day at a time, from the simulator's markets or a frame.

A ``SymbolDay`` holds one symbol's 1-min bars of one trading day, 04:00 ET to the
close, as arrays, with the prior close (for the gap) and the spread measured from the
market (fill rule F2). ``MarketSource`` reads them from any ``MarketData`` of the
simulator: ``SyntheticMarket`` or ``CsvMarket`` (the CSV format is documented in
``broker/simulator/market_data.py``).

The watchlist of a day is either a fixed symbol list, or, as a stand-in for the
pre-market watchlist phase until its ranking is a pure function the backtest can call,
the top ``N`` pre-market gainers at the watchlist phase's time (07:30 ET) from the
simulator's scanner.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from broker.simulator.scanner import top_gainers
from broker.simulator.types import Bar, MarketData
from market.calendar import PREMARKET_PHASE_TIMES, Phase, Session
from market.clock import ET

#: Spread assumed when the market cannot quote a symbol at the open (the CSV default).
DEFAULT_SPREAD_BPS = 5.0

Watchlist = Callable[[date], list[str]]


class DataError(ValueError):
    """Bars cannot be used: the message names the symbol, the day and what is wrong."""


@dataclass(frozen=True, eq=False)
class SymbolDay:
    """One symbol's 1-min bars of one trading day (bar starts from 04:00 ET), oldest first."""

    symbol: str
    day: date
    minutes: np.ndarray  # int64: bar start in minutes since 04:00 ET, strictly increasing
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    prior_close: float
    spread_bps: float

    def __len__(self) -> int:
        return len(self.minutes)

    def frame(self, session: Session) -> pd.DataFrame:
        """Return the bars as the DataFrame ``market.indicators`` reads (tz-aware index)."""
        start = pd.Timestamp(session.premarket_start)
        index = pd.DatetimeIndex(start + pd.to_timedelta(self.minutes, unit="min"))
        columns = {"open": self.open, "high": self.high, "low": self.low, "close": self.close}
        return pd.DataFrame({**columns, "volume": self.volume}, index=index)


def symbol_day_from_bars(
    symbol: str,
    session: Session,
    bars: Sequence[Bar],
    prior_close: float,
    spread_bps: float = DEFAULT_SPREAD_BPS,
) -> SymbolDay:
    """Return a checked ``SymbolDay`` from the simulator's ``Bar`` objects of one session."""
    start = session.premarket_start.timestamp()
    minutes = np.array([round((b.time.timestamp() - start) / 60) for b in bars], dtype=np.int64)
    columns = [
        np.array([getattr(b, name) for b in bars], dtype=np.float64)
        for name in ("open", "high", "low", "close", "volume")
    ]
    return _checked(symbol, session, minutes, columns, prior_close, spread_bps)


def symbol_day_from_frame(
    symbol: str,
    session: Session,
    frame: pd.DataFrame,
    prior_close: float,
    spread_bps: float = DEFAULT_SPREAD_BPS,
) -> SymbolDay:
    """Return a checked ``SymbolDay`` from a frame of one session's bars (tz-aware index)."""
    if not isinstance(frame.index, pd.DatetimeIndex) or frame.index.tz is None:
        raise DataError(f"{symbol} {session.day}: bars need a tz-aware DatetimeIndex")
    offsets = (frame.index - pd.Timestamp(session.premarket_start)) / pd.Timedelta(minutes=1)
    minutes = np.rint(np.asarray(offsets, dtype=np.float64)).astype(np.int64)
    names = ("open", "high", "low", "close", "volume")
    columns = [frame[name].to_numpy(dtype=np.float64) for name in names]
    return _checked(symbol, session, minutes, columns, prior_close, spread_bps)


def _checked(
    symbol: str,
    session: Session,
    minutes: np.ndarray,
    columns: list[np.ndarray],
    prior_close: float,
    spread_bps: float,
) -> SymbolDay:
    where = f"{symbol} {session.day.isoformat()}"
    day_minutes = round((session.close - session.premarket_start).total_seconds() / 60)
    if len(minutes) and (minutes[0] < 0 or minutes[-1] >= day_minutes):
        raise DataError(f"{where}: bars must start from 04:00 ET and before the close")
    if np.any(np.diff(minutes) <= 0):
        raise DataError(f"{where}: bar times must strictly increase, one bar per minute")
    prices = np.stack(columns[:4]) if len(minutes) else np.ones((4, 1))
    if not (np.isfinite(prices).all() and (prices > 0).all()):
        raise DataError(f"{where}: prices must be positive finite numbers")
    if not (math.isfinite(prior_close) and prior_close > 0):
        raise DataError(f"{where}: prior close must be a positive price, got {prior_close!r}")
    o, h, lo, c, v = columns
    return SymbolDay(symbol, session.day, minutes, o, h, lo, c, v, float(prior_close), spread_bps)


class MarketSource:
    """Reads symbol-days from one of the simulator's markets (synthetic or CSV replay)."""

    def __init__(self, market: MarketData) -> None:
        self.market = market

    def symbol_day(self, symbol: str, session: Session) -> SymbolDay | None:
        """Return ``symbol``'s bars of ``session``, or None when the market has none that day."""
        bars = self.market.intraday_bars(symbol, session.day)
        if not bars:
            return None
        prior = self.market.prior_close(symbol, session.day)
        return symbol_day_from_bars(symbol, session, bars, prior, self._spread_bps(symbol, session))

    def _spread_bps(self, symbol: str, session: Session) -> float:
        # The simulator quotes each symbol with a fixed spread in bps. Its markets know it
        # (``_spread_bps``, private until they expose it); a quote's whole-tick width only
        # approximates it, which would put 1 in 16 modelled quotes a tick off.
        known = getattr(self.market, "_spread_bps", None)
        if callable(known):
            return float(known(symbol))
        quote = self.market.quote_at(symbol, session.open + timedelta(seconds=1))
        if quote is None or not quote.last > 0 or not quote.ask >= quote.bid:
            return DEFAULT_SPREAD_BPS
        return (quote.ask - quote.bid) / quote.last * 10_000

    def day(self, session: Session, symbols: Iterable[str]) -> list[SymbolDay]:
        """Return the symbol-days of ``symbols`` that have bars in ``session``, in order."""
        found = (self.symbol_day(symbol, session) for symbol in symbols)
        return [symbol_day for symbol_day in found if symbol_day is not None]


def fixed_watchlist(symbols: Sequence[str]) -> Watchlist:
    """Return a watchlist that is ``symbols`` every day."""
    chosen = list(symbols)
    return lambda day: list(chosen)


def scanner_watchlist(market: MarketData, size: int) -> Watchlist:
    """Return a watchlist of the top ``size`` pre-market gainers at 07:30 ET each day."""
    at = PREMARKET_PHASE_TIMES[Phase.WATCHLIST]

    def pick(day: date) -> list[str]:
        return top_gainers(market, datetime.combine(day, at, tzinfo=ET), n=size, premarket=True)

    return pick
