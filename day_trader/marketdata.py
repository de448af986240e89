"""1-min bars per watchlist symbol, kept current by the broker; a bar close wakes the trader.

Choice: ``reqHistoricalData`` with ``keepUpToDate``, one stream per symbol, through the
adapter (``BrokerAdapter.stream_bars_1min``; the simulator supports it, as TWS does).
The request returns today's completed bars (pre-market included, so RSI and ATR are warm
at the open) and then pushes the forming bar; when a push starts a new bar the previous
one has closed, and the adapter emits ``bars_closed``: that is the decision trigger
(``BarClose``). Periodic requests were the alternative, but TWS refuses an identical
request within 15 s (the adapter's pacing guard answers such a repeat from its cache),
so at simulator speeds they would hand back old bars.

Only completed bars are handed out: the entry rules read the last *closed* bar.

The adapter renews the streams after a reconnect and after TWS's 1101; this feed renews
a stream that has gone silent for ``silence_market_s`` during the session (a
keepUpToDate stream can die quietly), and reads each symbol's prior close once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from broker.adapter import BrokerAdapter
from broker.bars import BarClosed
from broker.errors import BrokerError
from market.calendar import previous_trading_day
from market.clock import Clock

log = logging.getLogger("day_trader.marketdata")

#: Errors that make one symbol's data unavailable for now (the others carry on).
DATA_ERRORS = (BrokerError, TimeoutError, ConnectionError)


@dataclass(frozen=True)
class BarClose:
    """A 1-min bar of ``symbol`` closed (its successor started)."""

    symbol: str
    bar_time: datetime  # start of the closed bar, ET
    seen_mono: float  # time.monotonic() when the trader heard of it
    seen_at: datetime  # market time (the clock) when the adapter learned of it


class BarFeed:
    """Today's completed 1-min bars of the tracked symbols, and their prior closes."""

    def __init__(
        self,
        adapter: BrokerAdapter,
        clock: Clock,
        on_close: Callable[[BarClose], None],
        *,
        silence_market_s: float = 150.0,
    ) -> None:
        self.adapter = adapter
        self.clock = clock
        self.on_close = on_close
        self.silence_market_s = silence_market_s
        self._tracked: set[str] = set()
        self._prior_close: dict[str, float | None] = {}
        self._unsubscribe = adapter.bars_closed.subscribe(self._closed)

    # ------------------------------------------------------------------ queries

    def symbols(self) -> set[str]:
        """Return the symbols whose bars are streamed."""
        return set(self._tracked)

    def frame(self, symbol: str) -> pd.DataFrame | None:
        """Return the completed bars of ``symbol`` (None when not tracked)."""
        if symbol not in self._tracked:
            return None
        return self.adapter.streamed_bars_1min(symbol)

    def prior_close(self, symbol: str) -> float | None:
        """Return the previous session's close of ``symbol`` (None when unknown)."""
        return self._prior_close.get(symbol)

    # ------------------------------------------------------------------ subscriptions

    async def track(self, symbols: Iterable[str], day: date) -> dict[str, str]:
        """Stream the bars (and read the prior close) of new ``symbols``; return errors."""
        failed: dict[str, str] = {}
        for symbol in symbols:
            if symbol in self._tracked:
                continue
            try:
                frame = await self.adapter.stream_bars_1min(symbol)
            except DATA_ERRORS as exc:
                failed[symbol] = f"{type(exc).__name__}: {exc}"
                continue
            if frame.empty:
                self.adapter.stop_bars_1min(symbol)
                failed[symbol] = "no 1-min bars"
                continue
            self._tracked.add(symbol)
            log.info("bars of %s: %d completed, last %s", symbol, len(frame), frame.index[-1])
            if symbol not in self._prior_close:
                self._prior_close[symbol] = await self._fetch_prior_close(symbol, day)
        return failed

    def untrack(self, symbols: Iterable[str]) -> None:
        """Stop the streams of ``symbols``."""
        for symbol in symbols:
            if symbol in self._tracked:
                self._tracked.discard(symbol)
                self.adapter.stop_bars_1min(symbol)

    async def maintain(self, now: datetime, in_session: bool) -> None:
        """Renew, during the session, the streams silent for ``silence_market_s``."""
        if not (in_session and self.adapter.is_connected):
            return
        for symbol in sorted(self._tracked):
            last = self.adapter.bars_last_push(symbol)
            if last is not None and (now - last).total_seconds() <= self.silence_market_s:
                continue
            log.warning("bar stream of %s silent since %s: renewing it", symbol, last)
            try:
                await self.adapter.stream_bars_1min(symbol)
            except DATA_ERRORS as exc:
                log.warning("bars of %s not renewed: %s", symbol, exc)
                return  # the broker is struggling: try the others next pass

    def close(self) -> None:
        """Stop every stream and stop listening to the adapter."""
        self.untrack(list(self._tracked))
        self._unsubscribe()

    # ------------------------------------------------------------------ internals

    def _closed(self, bar: BarClosed) -> None:
        if bar.symbol in self._tracked:
            self.on_close(BarClose(bar.symbol, bar.time, time.monotonic(), bar.seen_at))

    async def _fetch_prior_close(self, symbol: str, day: date) -> float | None:
        try:
            frame = await self.adapter.daily_bars(symbol, 1, end_day=previous_trading_day(day))
        except (*DATA_ERRORS, ValueError) as exc:
            log.warning("no prior close of %s: %s", symbol, exc)
            return None
        if frame.empty:
            return None
        close = float(frame["close"].iloc[-1])
        return close if math.isfinite(close) and close > 0 else None
