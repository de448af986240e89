"""The one clock every process reads market time from.

Two kinds, both behind the same three methods:

- ``LiveClock``: the wall clock.
- ``VirtualClock``: a start instant that advances ``speed`` times faster than real
  time from a real-time anchor. Because the anchor is a wall-clock epoch, every
  process that parses the same ``spec()`` string agrees on "now" to within clock
  jitter, which is how the supervisor hands one simulated day to all its children.

Only *market* time goes through a clock. Intervals, timeouts, heartbeats and backoff
use ``time.monotonic()`` directly (design section 6): a sped-up clock must never
shorten a network timeout.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")

#: Environment variable through which the supervisor hands its clock to children.
CLOCK_ENV = "TRADING_CLOCK"

_MIN_SPEED = 0.001
_MAX_SPEED = 100_000.0


class ClockSpecError(ValueError):
    """A clock specification string could not be understood."""


class Clock(Protocol):
    """Market time: what every decision and timestamp in the product reads."""

    def now(self) -> datetime:
        """Return the current instant as an aware UTC datetime."""
        ...

    def to_real_seconds(self, market_seconds: float) -> float:
        """Return how many real seconds pass while ``market_seconds`` pass on this clock."""
        ...

    def spec(self) -> str:
        """Return the string that ``clock_from_spec`` turns back into this clock."""
        ...


@dataclass(frozen=True)
class LiveClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def to_real_seconds(self, market_seconds: float) -> float:
        return market_seconds

    def spec(self) -> str:
        return "live"


@dataclass(frozen=True)
class VirtualClock:
    """Market time that starts at ``start`` and runs ``speed`` times real time.

    ``anchor`` is the wall-clock epoch (``time.time()``) at which market time equals
    ``start``. Wall time rather than monotonic time is used for the anchor only so
    that separate processes share it; elapsed time is still measured from it.

    Before the anchor, market time holds at ``start``: a supervisor can set the anchor a
    few real seconds ahead so its children connect and warm up before a fast day begins.
    """

    start: datetime
    speed: float = 1.0
    anchor: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ClockSpecError(f"virtual clock start must be timezone-aware, got {self.start}")
        if not (_MIN_SPEED <= self.speed <= _MAX_SPEED):
            raise ClockSpecError(
                f"virtual clock speed must be between {_MIN_SPEED} and {_MAX_SPEED}, "
                f"got {self.speed}"
            )

    def now(self) -> datetime:
        elapsed = max(0.0, time.time() - self.anchor) * self.speed
        return (self.start + timedelta(seconds=elapsed)).astimezone(UTC)

    def to_real_seconds(self, market_seconds: float) -> float:
        return market_seconds / self.speed

    def spec(self) -> str:
        return f"virtual|{self.start.isoformat()}|{self.speed!r}|{self.anchor!r}"


def clock_from_spec(spec: str) -> Clock:
    """Return the clock a ``spec()`` string describes (``live`` or ``virtual|start|speed|anchor``).

    ``virtual|START|SPEED`` without an anchor starts the clock now.
    """
    text = spec.strip()
    if text in ("", "live"):
        return LiveClock()
    parts = text.split("|")
    if parts[0] != "virtual" or len(parts) not in (3, 4):
        raise ClockSpecError(
            f"clock spec {spec!r} is not 'live' or 'virtual|ISO-START|SPEED[|ANCHOR]'"
        )
    try:
        start = datetime.fromisoformat(parts[1])
        speed = float(parts[2])
        anchor = float(parts[3]) if len(parts) == 4 else time.time()
    except ValueError as exc:
        raise ClockSpecError(f"clock spec {spec!r}: {exc}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=ET)
    return VirtualClock(start=start, speed=speed, anchor=anchor)


def clock_from_env(environ: os._Environ[str] | dict[str, str] | None = None) -> Clock:
    """Return the clock handed down in ``TRADING_CLOCK``, or the live clock when unset."""
    env = os.environ if environ is None else environ
    return clock_from_spec(env.get(CLOCK_ENV, "live"))


def now_et(clock: Clock) -> datetime:
    """Return the clock's current instant in America/New_York."""
    return clock.now().astimezone(ET)


def real_seconds_until(clock: Clock, instant: datetime) -> float:
    """Return the real seconds to wait until ``instant`` on ``clock`` (0 if it has passed)."""
    market_seconds = (instant - clock.now()).total_seconds()
    held = max(0.0, clock.anchor - time.time()) if isinstance(clock, VirtualClock) else 0.0
    return max(0.0, held + clock.to_real_seconds(market_seconds))


def sleep_until(clock: Clock, instant: datetime, max_step: float = 1.0) -> None:
    """Block until ``instant`` on ``clock``, waking at least every ``max_step`` real seconds."""
    while (wait := real_seconds_until(clock, instant)) > 0:
        time.sleep(min(wait, max_step))


async def async_sleep_until(clock: Clock, instant: datetime, max_step: float = 1.0) -> None:
    """Await until ``instant`` on ``clock`` without blocking the event loop."""
    while (wait := real_seconds_until(clock, instant)) > 0:
        await asyncio.sleep(min(wait, max_step))
