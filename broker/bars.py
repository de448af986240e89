"""Streaming 1-min bars: today's bars kept current by the broker, a closed bar as an event.

One ``reqHistoricalData`` with ``keepUpToDate`` per symbol (TWS and the simulator both
support it): the request returns today's bars, pre-market included, and then pushes the
forming bar as it changes. When a push starts a *new* bar, the previous one has closed;
``BarStreams`` appends it to the symbol's completed bars and emits ``BarClosed``.

The library's subscription belongs to one socket: the adapter calls ``open_all`` after
every (re)connect and after TWS's 1101 ("market data lost"). A renewed stream replaces
the completed bars with the fresh history (bars that closed while the stream was down
are in it, without events).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from broker import convert
from broker.events import Signal
from market.clock import Clock

_BAR = timedelta(minutes=1)


@dataclass(frozen=True)
class BarClosed:
    """A 1-min bar of ``symbol`` closed (the broker started its successor)."""

    symbol: str
    time: datetime  # the bar's start, ET
    open: float
    high: float
    low: float
    close: float
    volume: float
    seen_at: datetime  # market time (the clock) when the adapter learned of it


#: ``request(symbol) -> the library's BarDataList`` (keepUpToDate), on the current socket.
Request = Callable[[str], Awaitable[Any]]
#: ``cancel(bars)``: cancel a stream on the current socket.
Cancel = Callable[[Any], None]


class BarStreams:
    """The adapter's 1-min bar streams; ``closed`` hears every bar close."""

    def __init__(self, clock: Clock, request: Request, cancel: Cancel) -> None:
        self.clock = clock
        self.closed: Signal[BarClosed] = Signal("bars_closed")
        self._request = request
        self._cancel = cancel
        self._frames: dict[str, pd.DataFrame] = {}  # completed bars, kept across sockets
        self._handles: dict[str, Any] = {}  # the library's lists, this socket only
        self._last_push: dict[str, datetime] = {}

    def symbols(self) -> list[str]:
        """Return the streamed symbols."""
        return list(self._frames)

    def frame(self, symbol: str) -> pd.DataFrame | None:
        """Return the completed bars of ``symbol`` (None when not streamed)."""
        frame = self._frames.get(symbol)
        return None if frame is None else frame.copy()

    def last_push(self, symbol: str) -> datetime | None:
        """Return the market time of the last push of ``symbol``'s stream."""
        return self._last_push.get(symbol)

    async def open(self, symbol: str) -> pd.DataFrame:
        """Start (or restart) streaming ``symbol``; return its completed bars."""
        self.drop_handle(symbol)
        handle = await self._request(symbol)
        frame = self._completed(convert.bars_frame(list(handle)))
        self._frames[symbol] = frame
        self._handles[symbol] = handle
        self._last_push[symbol] = self.clock.now()
        handle.updateEvent += self._pusher(symbol, handle)
        return frame.copy()

    async def open_all(self) -> None:
        """Request every stream again (after a reconnect or 1101)."""
        self._handles.clear()  # the old socket's subscriptions are gone
        for symbol in list(self._frames):
            await self.open(symbol)

    def stop(self, symbol: str) -> None:
        """Stop streaming ``symbol`` and forget its bars."""
        self.drop_handle(symbol)
        self._frames.pop(symbol, None)
        self._last_push.pop(symbol, None)

    def drop_handle(self, symbol: str) -> None:
        """Cancel the library subscription of ``symbol`` (if any) on the current socket."""
        handle = self._handles.pop(symbol, None)
        if handle is not None:
            self._cancel(handle)

    def forget_handles(self) -> None:
        """Forget every library subscription (the socket closed; nothing to cancel)."""
        self._handles.clear()

    def _completed(self, frame: pd.DataFrame) -> pd.DataFrame:
        # TWS includes the forming bar at the end of a keepUpToDate history: drop it.
        if frame.empty:
            return frame
        cutoff = self.clock.now() - _BAR
        return frame[frame.index <= cutoff]

    def _pusher(self, symbol: str, handle: Any) -> Callable[[Any, bool], None]:
        def on_push(bars: Any, has_new_bar: bool) -> None:
            if self._handles.get(symbol) is not handle:
                return  # a replaced stream's late push
            self._last_push[symbol] = self.clock.now()
            if has_new_bar and len(bars) >= 2:
                self._close(symbol, bars[-2])

        return on_push

    def _close(self, symbol: str, bar: Any) -> None:
        row = convert.bars_frame([bar])
        frame = self._frames[symbol]
        if not frame.empty and row.index[-1] <= frame.index[-1]:
            return  # already known (an update of a bar we have)
        self._frames[symbol] = pd.concat([frame, row]) if not frame.empty else row
        values = row.iloc[-1]
        self.closed.emit(
            BarClosed(
                symbol=symbol,
                time=row.index[-1].to_pydatetime(),
                open=float(values["open"]),
                high=float(values["high"]),
                low=float(values["low"]),
                close=float(values["close"]),
                volume=float(values["volume"]),
                seen_at=self.clock.now(),
            )
        )
