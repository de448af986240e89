"""Skip events without the flood: one per symbol and reason per interval (real seconds).

A signal that keeps firing on a halted symbol would otherwise write an ``entry_skipped``
event every pass; the first one says everything, a reminder a minute later says it is
still so.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SkipThrottle:
    """Decide which (symbol, reason) skips are worth an event now."""

    def __init__(self, interval_s: float, mono: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._mono = mono
        self._last: dict[tuple[str, str], float] = {}

    def due(self, symbol: str, reason: str) -> bool:
        """Return True (and remember it) when this skip should be recorded now."""
        now = self._mono()
        key = (symbol, reason)
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        return True
