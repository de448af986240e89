"""The restart policy of design section 5, as frozen parameters and pure functions.

Times here are monotonic seconds (``time.monotonic()``), never the trading clock: a
sped-up virtual clock must not shorten a backoff or a heartbeat timeout (design 6).

The rules:

- **startsecs**: a child is RUNNING only once it reported ready *and* stayed up
  ``startsecs`` after that; a child that is not ready within ``ready_timeout_s`` is
  killed and counts as a crash.
- **backoff**: the n-th crash inside the flapping window waits
  ``base * factor**(n - 1)`` seconds, capped at ``cap``, before the restart.
- **flapping**: ``flap_crashes`` crashes within ``flap_window_s`` is a crash loop: the
  child goes FATAL with an alert ("the day trader goes FATAL after N crashes in M
  minutes"), unless ``keep_alive_while_positions`` is set and positions are open: then
  it is restarted every ``cap`` seconds for as long as they are, with an alert (the
  exit manager must protect open positions).
- **clean exit** (code 0): not a crash; the child stays EXITED, except a keep-alive
  child while positions are open, which is restarted.
- **heartbeat**: a RUNNING child whose heartbeat value has not changed for
  ``timeout`` seconds (measured on the supervisor's monotonic clock) is hung.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class RestartPolicy:
    """How one child is restarted after it exits on its own."""

    backoff_base_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_cap_s: float = 30.0
    flap_crashes: int = 5  # N crashes ...
    flap_window_s: float = 300.0  # ... within M seconds is a crash loop
    keep_alive_while_positions: bool = False

    def __post_init__(self) -> None:
        if not self.backoff_base_s > 0:
            raise ValueError(f"backoff_base_s={self.backoff_base_s} must be > 0")
        if not self.backoff_factor >= 1:
            raise ValueError(f"backoff_factor={self.backoff_factor} must be >= 1")
        if not self.backoff_cap_s >= self.backoff_base_s:
            raise ValueError(f"backoff_cap_s={self.backoff_cap_s} must be >= backoff_base_s")
        if self.flap_crashes < 1:
            raise ValueError(f"flap_crashes={self.flap_crashes} must be >= 1")
        if not self.flap_window_s > 0:
            raise ValueError(f"flap_window_s={self.flap_window_s} must be > 0")


@dataclass(frozen=True)
class StartRule:
    """When a starting child counts as RUNNING, and when it has failed to start."""

    startsecs: float = 1.0
    ready_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.startsecs < 0:
            raise ValueError(f"startsecs={self.startsecs} must be >= 0")
        if not self.ready_timeout_s > 0:
            raise ValueError(f"ready_timeout_s={self.ready_timeout_s} must be > 0")


# ------------------------------------------------------------------------ backoff


def backoff_delay(policy: RestartPolicy, attempt: int) -> float:
    """Return the wait before restart number ``attempt`` (1 = first): geometric, capped."""
    if attempt < 1:
        raise ValueError(f"attempt={attempt} must be >= 1")
    # Cap the exponent too: factor**attempt overflows a float long before attempt does.
    steps = min(attempt - 1, 64)
    return min(policy.backoff_cap_s, policy.backoff_base_s * policy.backoff_factor**steps)


def recent_crashes(crash_times: Sequence[float], now: float, window_s: float) -> tuple[float, ...]:
    """Return the crash times inside the window ending at ``now`` (older ones forgotten)."""
    return tuple(t for t in crash_times if 0.0 <= now - t <= window_s)


def is_flapping(policy: RestartPolicy, crash_times: Sequence[float], now: float) -> bool:
    """Return True when the crashes inside the window reach ``flap_crashes``."""
    return len(recent_crashes(crash_times, now, policy.flap_window_s)) >= policy.flap_crashes


# ---------------------------------------------------------------------- decisions


class Verdict(StrEnum):
    """What to do with a child that exited on its own."""

    RESTART = "restart"  # after ``delay_s``
    FATAL = "fatal"  # give up: a crash loop
    LEAVE = "leave"  # a clean exit: stays EXITED


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    delay_s: float = 0.0
    crashes: int = 0  # crashes inside the flapping window, this one included
    alert: str | None = None


def decide(
    policy: RestartPolicy,
    *,
    crash_times: Sequence[float],
    now: float,
    clean_exit: bool,
    positions_open: bool,
) -> Decision:
    """Decide what follows an exit the supervisor did not ask for.

    ``crash_times`` are the monotonic times of this child's crashes, including this exit
    when it is a crash (``clean_exit`` False).
    """
    keep_alive = policy.keep_alive_while_positions and positions_open
    crashes = len(recent_crashes(crash_times, now, policy.flap_window_s))
    if clean_exit:
        if keep_alive:
            return Decision(Verdict.RESTART, policy.backoff_base_s, crashes)
        return Decision(Verdict.LEAVE, 0.0, crashes)
    window_min = policy.flap_window_s / 60.0
    if crashes >= policy.flap_crashes:
        if keep_alive:
            alert = (
                f"crash loop: {crashes} crashes in {window_min:g} min; still restarting "
                f"every {policy.backoff_cap_s:g} s because positions are open"
            )
            return Decision(Verdict.RESTART, policy.backoff_cap_s, crashes, alert)
        alert = f"crash loop: {crashes} crashes in {window_min:g} min; FATAL, not restarted"
        return Decision(Verdict.FATAL, 0.0, crashes, alert)
    return Decision(Verdict.RESTART, backoff_delay(policy, max(crashes, 1)), crashes)


# ----------------------------------------------------------------------- starting


class StartVerdict(StrEnum):
    WAIT = "wait"
    RUNNING = "running"
    TIMED_OUT = "timed_out"


def start_verdict(
    rule: StartRule, *, spawned_at: float, ready_at: float | None, now: float
) -> StartVerdict:
    """Return whether a STARTING child is RUNNING, still starting, or failed to start.

    ``ready_at`` is when the supervisor first saw the child's ready signal (None: not
    yet). The ready timeout only applies while the child is not ready.
    """
    if ready_at is not None:
        return StartVerdict.RUNNING if now - ready_at >= rule.startsecs else StartVerdict.WAIT
    if now - spawned_at >= rule.ready_timeout_s:
        return StartVerdict.TIMED_OUT
    return StartVerdict.WAIT


# ---------------------------------------------------------------------- heartbeat


@dataclass(frozen=True)
class HeartbeatSeen:
    """The last heartbeat value the supervisor read, and when (monotonic) it changed."""

    value: datetime | None
    changed_at: float


def observe_heartbeat(seen: HeartbeatSeen, value: datetime | None, now: float) -> HeartbeatSeen:
    """Return the new observation: the change time moves only when the value changes.

    Heartbeat rows carry trading-clock timestamps, which are virtual in sim mode; only
    the *fact* that the value changed is used, timed on the supervisor's own clock.
    """
    return seen if value == seen.value else HeartbeatSeen(value, now)


def heartbeat_stale(seen: HeartbeatSeen, now: float, timeout_s: float) -> bool:
    """Return True when the heartbeat has not changed for more than ``timeout_s``."""
    return now - seen.changed_at > timeout_s
