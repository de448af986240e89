"""Price helpers shared by the buying and the selling side: ticks and limit prices.

Every limit price the product sends is computed here, so buys and sells round the same
way. Rounding works in whole ticks with a small tolerance for binary floating-point
noise (``0.1 + 0.2`` is ``0.30000000000000004``; it must round *up* to 0.30, not
0.31), and the result is rebuilt through ``Decimal`` so it prints as the tick grid.

IBKR's minimum price increment for US stocks is $0.01 at or above $1.00 and $0.0001
below $1.00 (the SEC Rule 612 sub-penny rule).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Literal

#: Tick below $1.00 and at or above it (US stocks at IBKR).
SUB_DOLLAR_TICK = 0.0001
PENNY_TICK = 0.01

#: How close to a tick (in ticks) a price must be to count as *on* it. Far below any
#: real price difference (a millionth of a tick) and far above float noise.
_ON_TICK_TOLERANCE = 1e-6

#: Extra aggression added per cancel/replace step of an unfilled sell, in percent.
DEFAULT_STEP_PCT = 0.5

Direction = Literal["up", "down", "nearest"]


def min_tick_for(price: float) -> float:
    """Return the minimum tick of a US stock trading at ``price``."""
    return SUB_DOLLAR_TICK if price < 1.0 else PENNY_TICK


def round_to_tick(price: float, tick: float, direction: Direction) -> float:
    """Round ``price`` onto the ``tick`` grid: ``up`` for buys, ``down`` for sells.

    A price already within a millionth of a tick of the grid is taken as on it, so
    float noise never moves a price by a whole tick.
    """
    if not math.isfinite(price) or not math.isfinite(tick) or tick <= 0:
        raise ValueError(f"cannot round price {price!r} to tick {tick!r}")
    ticks = price / tick
    nearest = round(ticks)
    if abs(ticks - nearest) < _ON_TICK_TOLERANCE or direction == "nearest":
        count = nearest
    elif direction == "up":
        count = math.ceil(ticks)
    elif direction == "down":
        count = math.floor(ticks)
    else:
        raise ValueError(f"direction must be 'up', 'down' or 'nearest', got {direction!r}")
    # Decimal from the tick's shortest repr keeps 1001 * 0.01 at 10.01, not 10.010000000000002.
    return float(Decimal(count) * Decimal(repr(tick)))


def buy_limit(ask: float, aggression_pct: float, tick: float | None = None) -> float:
    """Return a buy limit ``aggression_pct`` percent above ``ask``, rounded up to the tick.

    With ``tick`` None the tick is the minimum tick of the raw limit price.
    """
    _require_positive("ask", ask)
    raw = ask * (1.0 + aggression_pct / 100.0)
    return round_to_tick(raw, tick or min_tick_for(raw), "up")


def sell_limit(
    bid: float,
    aggression_pct: float,
    tick: float | None = None,
    step: int = 0,
    step_pct: float = DEFAULT_STEP_PCT,
) -> float:
    """Return a sell limit below ``bid``, rounded down to the tick, never below one tick.

    ``step`` counts cancel/replace rounds of an unfilled sell (0 for the first order);
    each step adds ``step_pct`` percent of aggression. The caller bounds the steps.
    """
    _require_positive("bid", bid)
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    raw = bid * (1.0 - (aggression_pct + step * step_pct) / 100.0)
    grid = tick or min_tick_for(raw)
    return max(round_to_tick(raw, grid, "down"), grid)


def _require_positive(name: str, value: float) -> None:
    # Fail fast: a limit derived from a NaN or zero quote must never reach the broker.
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite price, got {value!r}")
