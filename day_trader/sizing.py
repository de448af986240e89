"""Pre-trade checks and position size: may the day trader buy now, and how many shares?

Each check returns the *first* reason it refuses, as a short code for the events
table, or None when it allows. All of them are pure: quotes, account figures, gate
state and time are arguments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from market.calendar import Session
from market.clock import ET

# Quote refusal codes.
HALTED = "halted"
NAN_QUOTE = "nan_quote"
ZERO_QUOTE = "zero_quote"
NEGATIVE_QUOTE = "negative_quote"
CROSSED_QUOTE = "crossed_quote"
STALE_QUOTE = "stale_quote"

# Entry gate refusal codes, in the order ``entry_gate`` checks them.
ENTRIES_HALTED = "halted"
DAILY_TARGET_REACHED = "daily_target_reached"
MAX_TRADES = "max_trades"
MAX_POSITIONS = "max_positions"
EXIT_MANAGER_HEARTBEAT_STALE = "exit_manager_heartbeat_stale"
BROKER_DISCONNECTED = "broker_disconnected"
AFTER_EOD_CUTOFF = "after_eod_cutoff"
OUTSIDE_SESSION = "outside_session"

# A share count within this fraction of the next whole share is that share: 0.3 / 0.1
# is 2.9999999999999996 in binary floating point and must buy 3.
_SHARE_TOLERANCE = 1e-9


def check_quote(
    bid: float,
    ask: float,
    last: float,
    quote_time: datetime | None,
    now: datetime,
    halted: bool,
    max_age_s: float,
) -> str | None:
    """Return why the quote must not be traded on (halted, NaN, zero, negative, crossed, stale).

    A locked quote (bid == ask) is accepted; a crossed one (bid > ask) is not.
    """
    if halted:
        return HALTED
    prices = (bid, ask, last)
    if any(p is None or math.isnan(p) or math.isinf(p) for p in prices):
        return NAN_QUOTE
    if any(p == 0 for p in prices):
        return ZERO_QUOTE
    if any(p < 0 for p in prices):
        return NEGATIVE_QUOTE
    if bid > ask:
        return CROSSED_QUOTE
    if quote_time is None or (now - quote_time).total_seconds() > max_age_s:
        return STALE_QUOTE
    return None


def position_size(
    excess_liquidity: float,
    allocation: float,
    watchlist_size: int,
    price: float,
    max_order_notional: float,
) -> int:
    """Return the whole shares to buy: ``allocation`` of excess liquidity split over the watchlist.

    At least one share when one is affordable (price within excess liquidity) even if
    the split budget is smaller; never more than ``max_order_notional`` allows, so 0
    when a single share already exceeds it. Invalid inputs give 0.
    """
    inputs = (excess_liquidity, allocation, price, max_order_notional)
    if not all(math.isfinite(x) and x > 0 for x in inputs) or watchlist_size < 1:
        return 0
    if price > excess_liquidity:
        return 0
    budget = excess_liquidity * allocation / watchlist_size
    shares = max(1, _whole_shares(budget, price))
    return min(shares, _whole_shares(max_order_notional, price))


def _whole_shares(amount: float, price: float) -> int:
    return math.floor(amount / price * (1.0 + _SHARE_TOLERANCE))


def price_collar_ok(limit: float, reference: float, collar_pct: float) -> bool:
    """Return True when ``limit`` is within ``collar_pct`` percent of ``reference``."""
    if not all(math.isfinite(x) and x > 0 for x in (limit, reference)) or collar_pct < 0:
        return False
    # The small slack keeps a limit exactly on the collar (float noise aside) inside it.
    return abs(limit - reference) / reference * 100.0 <= collar_pct + 1e-9


@dataclass(frozen=True)
class GateState:
    """What the day trader knows at the start of a pass about whether it may buy at all."""

    entries_halted: bool
    daily_target_reached: bool
    trades_today: int
    #: Real (monotonic) seconds since the exit manager's last heartbeat; None if never seen.
    exit_manager_heartbeat_age_s: float | None
    #: The broker reported 1100 (connectivity between IB and TWS lost) and not yet 1101/1102.
    broker_connection_lost: bool
    #: Positions the bot holds or is entering now (active rows).
    open_positions: int = 0


@dataclass(frozen=True)
class GateParams:
    """Limits of the entry gate."""

    max_trades_per_day: int
    max_positions: int = 8
    heartbeat_max_age_s: float = 30.0
    #: Minutes before the close after which no entry starts (default: the EOD flatten time).
    entry_cutoff_minutes: int = 5


def entry_gate(
    state: GateState, now: datetime, session: Session | None, params: GateParams
) -> str | None:
    """Return the first reason no entry may be made at ``now``, or None when entries may go.

    ``session`` is today's session (``market.calendar.session``), None on a non-trading
    day; a session of another day than ``now``'s counts as outside the session. Early
    closes come with the session, so the cutoff moves with them.
    """
    heartbeat = state.exit_manager_heartbeat_age_s
    checks = (
        (state.entries_halted, ENTRIES_HALTED),
        (state.daily_target_reached, DAILY_TARGET_REACHED),
        (state.trades_today >= params.max_trades_per_day, MAX_TRADES),
        (state.open_positions >= params.max_positions, MAX_POSITIONS),
        (heartbeat is None or heartbeat > params.heartbeat_max_age_s, EXIT_MANAGER_HEARTBEAT_STALE),
        (state.broker_connection_lost, BROKER_DISCONNECTED),
    )
    for refused, reason in checks:
        if refused:
            return reason
    if session is None or now.astimezone(ET).date() != session.day:
        return OUTSIDE_SESSION
    # Spec order: past the cutoff (which includes after the close) wins over "outside".
    if now >= session.close - timedelta(minutes=params.entry_cutoff_minutes):
        return AFTER_EOD_CUTOFF
    if now < session.open:
        return OUTSIDE_SESSION
    return None
