"""NYSE sessions and the day's schedule, from exchange_calendars (XNYS).

Every instant returned here is an aware datetime in America/New_York, computed from
the exchange's UTC session times, so the answers do not depend on the host's time
zone. Holidays and early closes (13:00 ET) come from the library, not from tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache

import exchange_calendars as xcals
import pandas as pd

from market.clock import ET


class Phase(StrEnum):
    """The day's scheduled steps, in the order they happen."""

    UNIVERSE = "universe"
    DATA = "data"
    WATCHLIST = "watchlist"
    VALIDATE = "validate"
    PREMARKET = "premarket"
    OPEN = "open"
    EOD_CUTOFF = "eod_cutoff"
    CLOSE = "close"
    POST_CLOSE = "post_close"


#: Fixed pre-market times (ET wall-clock) of the phases that run before the open.
PREMARKET_PHASE_TIMES: dict[Phase, time] = {
    Phase.UNIVERSE: time(6, 55),
    Phase.DATA: time(7, 0),
    Phase.WATCHLIST: time(7, 30),
    Phase.VALIDATE: time(8, 15),
    Phase.PREMARKET: time(9, 0),
}

#: Pre-market trading at IBKR begins at 04:00 ET.
PREMARKET_START = time(4, 0)

#: How long after the close the evaluation phase runs.
POST_CLOSE_DELAY = timedelta(minutes=10)


class NotATradingDay(ValueError):
    """The date asked about is a weekend or an exchange holiday."""


@dataclass(frozen=True)
class Session:
    """One trading day's key instants (all America/New_York)."""

    day: date
    open: datetime
    close: datetime

    @property
    def is_early_close(self) -> bool:
        return self.close.timetz().replace(tzinfo=None) < time(16, 0)

    @property
    def premarket_start(self) -> datetime:
        return datetime.combine(self.day, PREMARKET_START, tzinfo=ET)


@lru_cache(maxsize=1)
def _xnys() -> xcals.ExchangeCalendar:
    # Building the calendar takes a noticeable fraction of a second; do it once.
    return xcals.get_calendar("XNYS", start="2000-01-01")


def _as_date(day: date | datetime | str) -> date:
    if isinstance(day, str):
        return date.fromisoformat(day)
    if isinstance(day, datetime):
        return day.astimezone(ET).date() if day.tzinfo else day.date()
    return day


def is_trading_day(day: date | datetime | str) -> bool:
    """Return True when the NYSE holds a regular session on ``day``."""
    return bool(_xnys().is_session(pd.Timestamp(_as_date(day))))


def session(day: date | datetime | str) -> Session:
    """Return the session of ``day``; raise ``NotATradingDay`` on a weekend or holiday."""
    return _session(_as_date(day))


@lru_cache(maxsize=4096)
def _session(d: date) -> Session:
    # Cached: hot paths (matching, exit rules) ask for the same day many times a second.
    if not is_trading_day(d):
        raise NotATradingDay(f"{d.isoformat()} is not an NYSE trading day")
    open_utc, close_utc = _xnys().session_open_close(pd.Timestamp(d))
    return Session(
        day=d,
        open=open_utc.to_pydatetime().astimezone(ET),
        close=close_utc.to_pydatetime().astimezone(ET),
    )


def phase_times(day: date | datetime | str, eod_flatten_minutes: int = 5) -> dict[Phase, datetime]:
    """Return every phase of ``day`` mapped to its America/New_York instant, in order."""
    s = session(day)
    times = {
        phase: datetime.combine(s.day, at, tzinfo=ET) for phase, at in PREMARKET_PHASE_TIMES.items()
    }
    times[Phase.OPEN] = s.open
    times[Phase.EOD_CUTOFF] = s.close - timedelta(minutes=eod_flatten_minutes)
    times[Phase.CLOSE] = s.close
    times[Phase.POST_CLOSE] = s.close + POST_CLOSE_DELAY
    return times


def previous_trading_day(day: date | datetime | str) -> date:
    """Return the last trading day strictly before ``day``."""
    d = _as_date(day) - timedelta(days=1)
    return _xnys().date_to_session(pd.Timestamp(d), direction="previous").date()


def next_trading_day(day: date | datetime | str) -> date:
    """Return the first trading day strictly after ``day``."""
    d = _as_date(day) + timedelta(days=1)
    return _xnys().date_to_session(pd.Timestamp(d), direction="next").date()


def trading_days_back(day: date | datetime | str, count: int) -> list[date]:
    """Return the ``count`` trading days up to and including ``day`` (if it trades), oldest
    first."""
    d = _as_date(day)
    days: list[date] = [d] if is_trading_day(d) else []
    while len(days) < count:
        d = previous_trading_day(d)
        days.append(d)
    return sorted(days[:count])


def latest_completed_session(now: datetime) -> date:
    """Return the most recent trading day whose close is at or before ``now``."""
    d = now.astimezone(ET).date()
    if is_trading_day(d) and session(d).close <= now:
        return d
    return previous_trading_day(d)


def is_market_open(now: datetime) -> bool:
    """Return True during a regular session (open inclusive, close exclusive)."""
    d = now.astimezone(ET).date()
    if not is_trading_day(d):
        return False
    s = session(d)
    return s.open <= now < s.close
