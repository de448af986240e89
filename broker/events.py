"""Signals: the adapter's events that the processes subscribe to.

A ``Signal`` calls its subscribers synchronously, in subscription order, on the event
loop thread; a subscriber that raises is logged and does not stop the others (one
faulty consumer must not starve the exit manager of a fill).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

_log = logging.getLogger(__name__)


class Signal[T]:
    """A named event with plain-callable subscribers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[Callable[[T], None]] = []

    def subscribe(self, callback: Callable[[T], None]) -> Callable[[], None]:
        """Call ``callback(value)`` on every emit; return a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Callable[[T], None]) -> None:
        """Stop calling ``callback`` (no error when it was not subscribed)."""
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def emit(self, value: T) -> None:
        """Call every subscriber with ``value``."""
        for callback in list(self._subscribers):
            try:
                callback(value)
            except Exception:
                _log.exception("subscriber %r of %s failed", callback, self.name)

    def __len__(self) -> int:
        return len(self._subscribers)
