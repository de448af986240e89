"""The day's plan: which trading date, which clock, each phase's ET time, what is due.

- ``BROKER=sim``: the simulated date is ``SIM_DATE`` (``--date``) or the latest
  completed session; a virtual clock starts at 06:50 ET of that date (``DAY_START``,
  five minutes before the first phase) and runs ``SIM_SPEED`` times real time. At high
  speeds the clock is first *held* at its start for a warm-up (``warmup_seconds``): the
  simulator, the exit manager and the day trader start while no market time passes, so
  a fast day does not lose its first market hours to process start-up. The hold is part
  of the clock spec every child receives (``VirtualClock.anchor``), so all agree on it.
- ``BROKER=ibkr``: the wall clock and today's ET date; started before 06:50 ET (a
  Task Scheduler trigger that fires early because the PC is not on Eastern time, or
  across a DST change) the supervisor waits for 06:50 ET with a countdown; then it waits
  for the gateway's API port (``port_open``), alerting if it is not up by 09:00 ET.
- A weekend or exchange holiday raises ``NoSession`` (the caller says so and exits 0).
  Early closes come from the calendar, so the EOD cutoff, close and post-close phases
  move with them.

Phases run in calendar order. ``next_phase`` is the whole late-start rule: the first
phase not yet finished is due as soon as its time has passed, so missed phases run one
after the other at once; a phase DONE in ``phase_runs`` counts as finished and is not
run again. Pre-market phases missed entirely (started after the close) are skipped.
"""

from __future__ import annotations

import math
import socket
import time as time_module
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time

from config.settings import Settings
from market.calendar import (
    Phase,
    Session,
    is_trading_day,
    latest_completed_session,
    phase_times,
    session,
)
from market.clock import ET, Clock, LiveClock, VirtualClock

#: When the supervisor's day begins (ET): children start, the sim clock starts here.
DAY_START = time(6, 50)

#: An IBKR gateway not reachable by this ET time raises an alert.
GATEWAY_ALERT_AT = time(9, 0)

#: Real seconds the children need to be RUNNING (simulator, exit manager, day trader,
#: measured at 5-6 s on a loaded 2-core machine), with a margin: the default warm-up.
DEFAULT_WARMUP_S = 8.0
#: Below this much market time lost to the start-up (speed x warm-up), no hold is needed.
WARMUP_WORTH_MARKET_S = 60.0

#: Phases that prepare the day; pointless once the session has closed.
PREMARKET_PHASES: frozenset[Phase] = frozenset(
    {Phase.UNIVERSE, Phase.DATA, Phase.WATCHLIST, Phase.VALIDATE, Phase.PREMARKET}
)


class NoSession(Exception):  # noqa: N818 - "raise NoSession" reads as what happened
    """The chosen date has no NYSE session: nothing to do today."""

    def __init__(self, day: date) -> None:
        self.day = day
        super().__init__(
            f"{day.isoformat()} ({day.strftime('%A')}) is not an NYSE trading day "
            "(weekend or exchange holiday): nothing to do, exiting."
        )


@dataclass(frozen=True)
class DayPlan:
    """One trading day as the supervisor runs it."""

    mode: str  # "sim" or "ibkr"
    trading_date: date
    clock: Clock
    session: Session
    times: Mapping[Phase, datetime]  # in calendar order
    day_start: datetime

    @property
    def early_close(self) -> bool:
        return self.session.is_early_close

    @property
    def warmup_left(self) -> float:
        """Return the real seconds the virtual clock still holds at its start (0: running)."""
        if not isinstance(self.clock, VirtualClock):
            return 0.0
        # The anchor is a wall-clock epoch (shared by every process), so it is read so too.
        return max(0.0, self.clock.anchor - time_module.time())

    @property
    def gateway_alert_at(self) -> datetime:
        return datetime.combine(self.trading_date, GATEWAY_ALERT_AT, tzinfo=ET)

    def summary(self) -> str:
        """Return one line that says which day, which clock, and when it closes."""
        close = self.session.close.strftime("%H:%M")
        early = " (early close)" if self.early_close else ""
        if self.mode == "sim":
            speed = getattr(self.clock, "speed", 1.0)
            begins = getattr(self.clock, "start", self.day_start)
            start = begins.astimezone(ET).strftime("%H:%M")
            how = f"simulated on the built-in simulator from {start} ET at {speed:g}x"
            if (held := self.warmup_left) >= 0.5:
                how += f" (clock held at {start} for {held:.0f} s while the processes start)"
        else:
            how = "live on the wall clock (BROKER=ibkr)"
        return f"Trading day {self.trading_date.isoformat()}: {how}; close {close} ET{early}"


def sim_date(settings: Settings, now: datetime) -> date:
    """Return the date to simulate: SIM_DATE, or the latest completed session."""
    if settings.sim_date:
        return date.fromisoformat(settings.sim_date)
    return latest_completed_session(now)


def warmup_seconds(speed: float, asked: float | None = None) -> float:
    """Return how long (real seconds) to hold a virtual clock at its start.

    ``asked`` (``--warm-up``) wins. By default the clock is held ``DEFAULT_WARMUP_S``
    when the start-up would otherwise cost more than a market minute; at low speeds a
    hold would only delay the day.
    """
    if asked is not None:
        return max(0.0, asked)
    return DEFAULT_WARMUP_S if speed * DEFAULT_WARMUP_S > WARMUP_WORTH_MARKET_S else 0.0


def plan_day(
    settings: Settings,
    now: datetime,
    start_at: time | None = None,
    warmup_s: float | None = None,
) -> DayPlan:
    """Return the plan of the day; raise ``NoSession`` on a weekend or holiday.

    ``now`` is the real (wall-clock) instant; ``start_at`` (sim only) starts the virtual
    clock at another ET time than 06:50, to rehearse a late start; ``warmup_s`` (sim
    only) holds it there that many real seconds after ``now`` (None: ``warmup_seconds``).
    """
    clock: Clock
    if settings.broker == "sim":
        day = sim_date(settings, now)
        if not is_trading_day(day):
            raise NoSession(day)
        start = datetime.combine(day, start_at or DAY_START, tzinfo=ET)
        hold = warmup_seconds(settings.sim_speed, warmup_s)
        clock = VirtualClock(start=start, speed=settings.sim_speed, anchor=now.timestamp() + hold)
    else:
        clock = LiveClock()
        day = now.astimezone(ET).date()
        if not is_trading_day(day):
            raise NoSession(day)
    return DayPlan(
        mode=settings.broker,
        trading_date=day,
        clock=clock,
        session=session(day),
        times=phase_times(day, settings.eod_flatten_minutes),
        day_start=datetime.combine(day, DAY_START, tzinfo=ET),
    )


# -------------------------------------------------------------------- the agenda


def next_phase(
    times: Mapping[Phase, datetime], finished: Collection[Phase], now: datetime
) -> Phase | None:
    """Return the phase to run now, or None: the first unfinished phase, once it is due."""
    for phase, at in times.items():
        if phase in finished:
            continue
        return phase if at <= now else None
    return None


def skip_reason(phase: Phase, times: Mapping[Phase, datetime], now: datetime) -> str | None:
    """Return why a due phase is skipped instead of run (None: run it)."""
    if phase in PREMARKET_PHASES and now >= times[Phase.CLOSE]:
        return "started after the close"
    return None


def upcoming(
    times: Mapping[Phase, datetime], finished: Collection[Phase]
) -> tuple[Phase, datetime] | None:
    """Return the next unfinished phase and its time (None: the day is done)."""
    return next(((p, at) for p, at in times.items() if p not in finished), None)


# ------------------------------------------------------------------ waiting helpers


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def countdown(until: datetime, now: datetime) -> str:
    """Return ``H:MM:SS`` left until ``until``, rounded up (``0:00:00`` once it has passed)."""
    seconds = max(0, math.ceil((until - now).total_seconds()))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
