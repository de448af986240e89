"""Exit rules: pure functions of a position, a price, the time and parameters.

Per position (``evaluate_exit``), in order of precedence:

1. ``stop``: the price is at or below the stop. A stop is a stop even at EOD time, so
   the day's record shows the loss for what it was and a recovery stays possible.
2. ``target``: the price is at or above the target (the lower recovery target for a
   recovery trade; the position carries its own target, set at entry or adoption).
3. ``eod``: ``now`` is at or after the close minus ``eod_flatten_minutes``. The close
   is the session's, so an early close (13:00) flattens from 12:55.

For the whole book (``evaluate_daily``): realized plus unrealized P&L against the
day's starting capital reaching ``+daily_target_pct`` gives ``daily_target``, falling
to ``-daily_loss_limit_pct`` gives ``loss_limit``. Both mean: liquidate everything
and halt entries for the rest of the day.

Selling: a sell limit at the bid minus ``limit_aggression_pct``, rounded down to the
tick. An order not filled within ``replace_timeout_s`` is cancelled and replaced
``replace_step_pct`` more aggressively, at most ``replace_steps`` times; the last
replacement then stays working and the caller alerts. ``replace_timeout_s`` is real
seconds, the unit the caller measures an order's age in (``time.monotonic``):
``exit_manager.params`` makes it from EXIT_ORDER_TIMEOUT_S, which is *market* seconds
(how long the market gets to fill the order), at the clock's speed and never below a
real-time floor.

Exit reasons are a contract with the database (``closed_positions.exit_reason``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from market.pricing import sell_limit

TARGET = "target"
STOP = "stop"
EOD = "eod"
DAILY_TARGET = "daily_target"
LOSS_LIMIT = "loss_limit"
MANUAL = "manual"
RECONCILED = "reconciled"

EXIT_REASONS = frozenset({TARGET, STOP, EOD, DAILY_TARGET, LOSS_LIMIT, MANUAL, RECONCILED})

PositionExitReason = Literal["target", "stop", "eod"]
DailyExitReason = Literal["daily_target", "loss_limit"]


@dataclass(frozen=True)
class ExitParams:
    """Thresholds of the exit rules (percentages in percent, e.g. 1.8 for 1.8%)."""

    profit_target_pct: float = 1.8
    recovery_target_pct: float = 1.1
    stop_loss_pct: float = 0.9
    eod_flatten_minutes: int = 5
    daily_target_pct: float = 1.8
    daily_loss_limit_pct: float = 2.0
    limit_aggression_pct: float = 0.5
    replace_steps: int = 3
    replace_step_pct: float = 0.5
    #: Real seconds an exit order works before it is replaced (EXIT_ORDER_TIMEOUT_S market
    #: seconds made real by ``exit_manager.params.fill_timeout_real_s``).
    replace_timeout_s: float = 10.0


@dataclass(frozen=True)
class PositionView:
    """What the rules need to know about one open position."""

    symbol: str
    quantity: int
    entry_price: float
    is_recovery: bool
    target_price: float
    stop_price: float


@dataclass(frozen=True)
class ExitDecision:
    """Sell the whole position, for ``reason``."""

    symbol: str
    reason: PositionExitReason
    quantity: int
    price: float  # the price that triggered the decision (NaN for an EOD exit without one)
    detail: str


@dataclass(frozen=True)
class DailyDecision:
    """Liquidate every position and halt entries for the day, for ``reason``."""

    reason: DailyExitReason
    pnl: float
    pnl_pct: float
    threshold_pct: float
    detail: str


def target_price(entry: float, is_recovery: bool, params: ExitParams) -> float:
    """Return the profit target of a position bought at ``entry``."""
    pct = params.recovery_target_pct if is_recovery else params.profit_target_pct
    # Rounded to a millionth so a price printing exactly at the target reaches it.
    return round(entry * (1.0 + pct / 100.0), 6)


def stop_price(entry: float, params: ExitParams) -> float:
    """Return the stop-loss price of a position bought at ``entry``."""
    return round(entry * (1.0 - params.stop_loss_pct / 100.0), 6)


def evaluate_exit(
    position: PositionView,
    price: float,
    now: datetime,
    session_close: datetime,
    params: ExitParams,
) -> ExitDecision | None:
    """Return the exit ``position`` needs at ``price`` and ``now``, or None to hold it.

    Precedence: stop, then target, then end of day (see the module docstring). A NaN or
    non-positive price triggers neither stop nor target; the EOD flatten still applies.
    """
    if position.quantity <= 0:
        return None
    if math.isfinite(price) and price > 0:
        if price <= position.stop_price:
            return _exit(position, STOP, price, f"price {price} <= stop {position.stop_price}")
        if price >= position.target_price:
            return _exit(
                position, TARGET, price, f"price {price} >= target {position.target_price}"
            )
    flatten_at = session_close - timedelta(minutes=params.eod_flatten_minutes)
    if now >= flatten_at:
        return _exit(position, EOD, price, f"now {now.isoformat()} >= flatten {flatten_at}")
    return None


def _exit(
    position: PositionView, reason: PositionExitReason, price: float, why: str
) -> ExitDecision:
    return ExitDecision(position.symbol, reason, position.quantity, price, why)


def evaluate_daily(
    realized_pnl: float,
    unrealized_pnl: float,
    starting_capital: float,
    params: ExitParams,
) -> DailyDecision | None:
    """Return a liquidate-and-halt decision when the day's P&L hits the target or loss limit.

    Non-finite P&L or a non-positive starting capital gives None: no decision can be
    made on figures that are missing, and the caller must not treat that as safe.
    """
    pnl = realized_pnl + unrealized_pnl
    if not math.isfinite(pnl) or not (math.isfinite(starting_capital) and starting_capital > 0):
        return None
    pct = pnl / starting_capital * 100.0
    detail = f"realized {realized_pnl:.2f} + unrealized {unrealized_pnl:.2f} = {pct:.3f}%"
    # The tiny slack keeps a P&L exactly on the threshold (float noise aside) on it.
    if pct >= params.daily_target_pct - 1e-9:
        return DailyDecision(DAILY_TARGET, pnl, pct, params.daily_target_pct, detail)
    if pct <= -params.daily_loss_limit_pct + 1e-9:
        return DailyDecision(LOSS_LIMIT, pnl, pct, -params.daily_loss_limit_pct, detail)
    return None


def reentry_allowed(reason: str) -> bool:
    """Return True when a position closed for ``reason`` may be re-entered today.

    Only a stop allows it (as a recovery trade); a target, the end of day, a daily
    liquidation, a manual close or a reconciliation all end the symbol's day.
    """
    if reason not in EXIT_REASONS:
        raise ValueError(f"unknown exit reason {reason!r}; expected one of {sorted(EXIT_REASONS)}")
    return reason == STOP


def next_entry_kind(
    exit_reasons_today: Sequence[str], max_recovery_entries: int
) -> Literal["fresh", "recovery"] | None:
    """Return how the symbol may be entered next given today's exits (oldest first), or None.

    No exit yet: a fresh entry. Every exit a stop and fewer recoveries than
    ``max_recovery_entries`` taken (each recovery follows a stop, so recoveries taken
    are the stops so far minus one): a recovery entry. Otherwise: no entry.
    """
    if not exit_reasons_today:
        return "fresh"
    if not all(reentry_allowed(reason) for reason in exit_reasons_today):
        return None
    recoveries_taken = len(exit_reasons_today) - 1
    return "recovery" if recoveries_taken < max_recovery_entries else None


def exit_limit(bid: float, step: int, params: ExitParams, tick: float | None = None) -> float:
    """Return the sell limit of replacement round ``step`` (0 for the first order)."""
    if step > params.replace_steps:
        raise ValueError(f"step {step} exceeds replace_steps {params.replace_steps}")
    return sell_limit(bid, params.limit_aggression_pct, tick, step, params.replace_step_pct)


def should_replace(order_age_s: float, step: int, params: ExitParams) -> bool:
    """Return True when a sell working for ``order_age_s`` real seconds is due a replacement.

    ``params.replace_timeout_s`` is real seconds too (see the module docstring).
    """
    return order_age_s >= params.replace_timeout_s and step < params.replace_steps
