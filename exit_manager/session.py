"""The trading day as the exit manager sees it: open, flatten time, close (early closes too).

Pure: built from the clock's instant and the NYSE calendar. Exits begin only in the
regular session (a sell sent outside it would only rest until the next open).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from market.calendar import NotATradingDay, session
from market.clock import ET


@dataclass(frozen=True)
class TradingDay:
    """One instant of one calendar day, with that day's session (None: no session)."""

    date: date
    now: datetime
    open: datetime | None
    close: datetime | None
    flatten_at: datetime | None

    @property
    def is_open(self) -> bool:
        """True inside the regular session (open inclusive, close exclusive)."""
        return (
            self.open is not None and self.close is not None and self.open <= self.now < self.close
        )

    @property
    def after_close(self) -> bool:
        """True once the day's session is over, or all day when there is none."""
        return self.close is None or self.now >= self.close

    @property
    def early_close(self) -> bool:
        return self.close is not None and (self.close.hour, self.close.minute) < (16, 0)

    def at(self, now: datetime) -> TradingDay:
        """Return the same day at another instant of it."""
        return TradingDay(self.date, now, self.open, self.close, self.flatten_at)


def trading_day(now: datetime, eod_flatten_minutes: int) -> TradingDay:
    """Return the trading day ``now`` (any time zone) falls on, in ET."""
    local = now.astimezone(ET)
    try:
        s = session(local.date())
    except NotATradingDay:
        return TradingDay(local.date(), local, None, None, None)
    flatten = s.close - timedelta(minutes=eod_flatten_minutes)
    return TradingDay(local.date(), local, s.open, s.close, flatten)
