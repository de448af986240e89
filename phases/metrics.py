"""The day's performance figures, from its closed round trips (pure functions).

- trades, wins (P&L > 0), losses (P&L < 0), win rate % of all trades;
- net P&L (after commissions), gross profit, gross loss, commissions;
- profit factor: gross profit over the absolute gross loss (None with no losing trade);
- max drawdown: the largest fall of equity from a running peak, with equity = starting
  capital + realized P&L after each close, in dollars and % of that peak;
- Sharpe-like ratio: the mean of per-trade returns (P&L over the position's cost) over
  their standard deviation, times the square root of the number of trades. Not
  annualised and not a real Sharpe ratio: a day is too short; it says how steady the
  trades were. None below two trades or with no spread;
- average hold time in minutes (close minus open).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from shared_state import ClosedPosition


@dataclass(frozen=True)
class DayMetrics:
    """The figures of one trading day (money in dollars, percentages in percent)."""

    trades: int
    wins: int
    losses: int
    win_rate_pct: float | None
    net_pnl: float
    gross_profit: float
    gross_loss: float
    commissions: float
    profit_factor: float | None
    max_drawdown: float
    max_drawdown_pct: float | None
    sharpe_like: float | None
    avg_hold_minutes: float | None
    starting_capital: float | None
    return_pct: float | None
    exits: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def trade_return_pct(trade: ClosedPosition) -> float:
    """Return a round trip's P&L in % of what the position cost."""
    cost = trade.entry_price * trade.quantity
    return trade.pnl / cost * 100.0 if cost > 0 else 0.0


def in_close_order(trades: Sequence[ClosedPosition]) -> list[ClosedPosition]:
    return sorted(trades, key=lambda t: (t.closed_at, t.id))


def equity_curve(
    trades: Sequence[ClosedPosition], starting_capital: float, start: datetime
) -> list[tuple[datetime, float]]:
    """Return (time, equity) at ``start`` and after each close, in close order."""
    points = [(start, starting_capital)]
    equity = starting_capital
    for trade in in_close_order(trades):
        equity += trade.pnl
        points.append((trade.closed_at, equity))
    return points


def max_drawdown(equity: Sequence[float]) -> tuple[float, float | None]:
    """Return the largest peak-to-trough fall of ``equity``, in dollars and % of the peak."""
    peak = -math.inf
    worst, worst_pct = 0.0, None
    for value in equity:
        peak = max(peak, value)
        fall = peak - value
        if fall > worst:
            worst = fall
            worst_pct = fall / peak * 100.0 if peak > 0 else None
    return worst, (worst_pct if worst > 0 else (0.0 if peak > 0 else None))


def sharpe_like(returns: Sequence[float]) -> float | None:
    """Return mean / standard deviation * sqrt(n) of per-trade returns (None if undefined)."""
    if len(returns) < 2:
        return None
    spread = statistics.stdev(returns)
    if spread <= 0:
        return None
    return statistics.fmean(returns) / spread * math.sqrt(len(returns))


def compute(trades: Sequence[ClosedPosition], starting_capital: float | None) -> DayMetrics:
    """Return the day's metrics of ``trades`` (see the module docstring)."""
    pnls = [t.pnl for t in trades]
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_profit, gross_loss = sum(wins), sum(losses)
    capital = starting_capital if starting_capital and starting_capital > 0 else None
    base = capital if capital is not None else 0.0
    curve = [base]
    for trade in in_close_order(trades):
        curve.append(curve[-1] + trade.pnl)
    drawdown, drawdown_pct = max_drawdown(curve)
    holds = [(t.closed_at - t.opened_at).total_seconds() / 60.0 for t in trades]
    net = sum(pnls)
    return DayMetrics(
        trades=len(trades),
        wins=len(wins),
        losses=len(losses),
        win_rate_pct=len(wins) / len(trades) * 100.0 if trades else None,
        net_pnl=round(net, 2),
        gross_profit=round(gross_profit, 2),
        gross_loss=round(gross_loss, 2),
        commissions=round(sum(t.commissions for t in trades), 2),
        profit_factor=round(gross_profit / -gross_loss, 3) if losses else None,
        max_drawdown=round(drawdown, 2),
        max_drawdown_pct=(
            None if capital is None or drawdown_pct is None else round(drawdown_pct, 4)
        ),
        sharpe_like=_rounded(sharpe_like([trade_return_pct(t) for t in trades]), 3),
        avg_hold_minutes=_rounded(statistics.fmean(holds) if holds else None, 1),
        starting_capital=capital,
        return_pct=round(net / capital * 100.0, 4) if capital else None,
        exits=dict(Counter(str(t.exit_reason) for t in trades)),
    )


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
