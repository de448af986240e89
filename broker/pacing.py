"""Request pacing: a token bucket for all requests and a guard against repeated history queries.

IBKR allows 50 API messages per second per client; we stay at 45 (the client
libraries' own limit) so our bucket, not TWS, decides when a burst waits. A token
bucket lets at most ``capacity + rate * T`` messages through in any window of ``T``
seconds, so ``bucket_for(45)`` uses rate 40 and a burst of 5: never more than 45 in
any one second, 40 per second sustained. Historical
data has its own rule: an identical request within 15 seconds is a pacing violation
(error 162), so ``HistoryGuard`` answers a repeat from its cache instead of asking
again, and lets concurrent identical requests share one flight.

Both take ``now`` from ``time.monotonic`` by default (intervals never use the market
clock) and are plain objects so tests drive them with a fake time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

#: Messages per second we allow ourselves (TWS: 50; the client libraries: 45).
MAX_MESSAGES_PER_SECOND = 45.0

#: Messages a burst may send at once; the sustained rate is the limit minus this.
DEFAULT_BURST = 5.0

#: An identical historical request within this many seconds is refused by TWS.
HISTORY_REPEAT_WINDOW_S = 15.0


@dataclass
class TokenBucket:
    """At most ``rate`` tokens per second, bursts up to ``capacity``."""

    rate: float = MAX_MESSAGES_PER_SECOND
    capacity: float = MAX_MESSAGES_PER_SECOND
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity < 1:
            raise ValueError(
                f"rate must be > 0 and capacity >= 1, got {self.rate}, {self.capacity}"
            )
        self._tokens = self.capacity
        self._stamp = self.clock()

    def take(self, count: float = 1.0) -> float:
        """Take ``count`` tokens now; return 0, or the seconds to wait before they exist.

        A positive answer takes nothing: the caller waits that long and asks again.
        """
        self._refill()
        # A hair of tolerance: float refill arithmetic must not turn "due now" into a
        # wait too small to move the clock (a busy loop).
        if self._tokens >= count - 1e-9:
            self._tokens = max(0.0, self._tokens - count)
            return 0.0
        return (count - self._tokens) / self.rate

    async def acquire(self, count: float = 1.0) -> None:
        """Wait (without blocking the loop) until ``count`` tokens are taken."""
        while (wait := self.take(count)) > 0:
            await asyncio.sleep(wait)

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now


def bucket_for(
    per_second: float = MAX_MESSAGES_PER_SECOND, burst: float = DEFAULT_BURST
) -> TokenBucket:
    """Return a bucket that never lets more than ``per_second`` messages into any 1 s window."""
    if not 1 <= burst < per_second:
        raise ValueError(f"need 1 <= burst < per_second, got {burst}, {per_second}")
    return TokenBucket(rate=per_second - burst, capacity=burst)


@dataclass
class HistoryGuard:
    """Answer an identical historical request within ``window`` seconds from the cache."""

    window: float = HISTORY_REPEAT_WINDOW_S
    clock: Callable[[], float] = time.monotonic
    _done: dict[Hashable, tuple[float, Any]] = field(default_factory=dict, init=False)
    _flying: dict[Hashable, asyncio.Future[Any]] = field(default_factory=dict, init=False)

    def cached(self, key: Hashable) -> tuple[bool, Any]:
        """Return (True, result) when ``key`` was answered less than ``window`` s ago."""
        self._expire()
        hit = self._done.get(key)
        return (True, hit[1]) if hit is not None else (False, None)

    async def fetch(self, key: Hashable, request: Callable[[], Awaitable[Any]]) -> Any:
        """Return the result for ``key``: cached, shared with a running identical request, or new.

        Only successful results are cached; a failure reaches every waiter and the next
        call asks again.
        """
        hit, value = self.cached(key)
        if hit:
            return value
        flying = self._flying.get(key)
        if flying is not None:
            return await asyncio.shield(flying)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._flying[key] = future
        try:
            value = await request()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: a lone caller re-raises it below
            raise
        finally:
            self._flying.pop(key, None)
        self._done[key] = (self.clock(), value)
        future.set_result(value)
        return value

    def forget(self, key: Hashable) -> None:
        """Drop the cached answer of ``key`` (e.g. an empty result worth asking again)."""
        self._done.pop(key, None)

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, (t, _) in self._done.items() if now - t >= self.window]:
            del self._done[key]
