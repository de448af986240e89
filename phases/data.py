"""Phase ``data`` (07:00 ET): the figures of each candidate, from its daily bars.

For every candidate that passed the universe filters: at least ``MIN_SESSIONS`` daily
bars before the trading date (fetched only if the universe phase did not store them),
then

- prior close: the last session's close;
- average volume: the mean of the last 20 sessions;
- ATR %: ATR(14) of the daily bars as a percentage of the prior close;
- trend: ``up`` when the close is above its 20-session mean and that mean rose over
  the last 5 sessions, ``down`` for the mirror image, ``flat`` otherwise;
- 20-session return %.

A symbol with too few sessions is kept with ``ok = False`` and the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from market.indicators import ATR_LENGTH, atr_pct
from phases.daily_bars import MIN_SESSIONS, ensure_daily_bars
from phases.runner import PhaseContext, PhaseError, PhaseResult
from shared_state.phase_data import DailyBar, SymbolSnapshot

AVERAGE_SESSIONS = 20
SLOPE_SESSIONS = 5


def trend_of(closes: Sequence[float]) -> str:
    """Return 'up', 'down' or 'flat' from the close against its rising/falling 20-day mean."""
    if len(closes) < AVERAGE_SESSIONS + SLOPE_SESSIONS:
        return "flat"
    mean_now = sum(closes[-AVERAGE_SESSIONS:]) / AVERAGE_SESSIONS
    earlier = closes[-AVERAGE_SESSIONS - SLOPE_SESSIONS : -SLOPE_SESSIONS]
    mean_before = sum(earlier) / AVERAGE_SESSIONS
    if closes[-1] > mean_now and mean_now > mean_before:
        return "up"
    if closes[-1] < mean_now and mean_now < mean_before:
        return "down"
    return "flat"


def daily_atr_pct(bars: Sequence[DailyBar]) -> float | None:
    """Return ATR(14) of daily bars in % of the last close (None when too short)."""
    if len(bars) <= ATR_LENGTH:
        return None
    frame = pd.DataFrame(
        {
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
        }
    )
    value = float(atr_pct(frame).iloc[-1])
    return value if math.isfinite(value) else None


def symbol_snapshot(symbol: str, bars: Sequence[DailyBar], error: str | None) -> SymbolSnapshot:
    """Return the data phase's figures of one symbol (``ok`` only with enough sessions)."""
    if error is not None or not bars:
        reason = error or "no daily bars"
        return SymbolSnapshot(symbol, False, 0, None, None, None, None, None, reason)
    closes = [b.close for b in bars]
    recent = bars[-AVERAGE_SESSIONS:]
    avg_volume = sum(b.volume for b in recent) / len(recent)
    ret = (
        closes[-1] / closes[-AVERAGE_SESSIONS - 1] * 100 - 100
        if len(bars) > AVERAGE_SESSIONS
        else None
    )
    atr = daily_atr_pct(bars)
    trend = trend_of(closes)
    ok = len(bars) >= MIN_SESSIONS and atr is not None
    figures = (
        f"prior close {closes[-1]:.2f}, avg volume {avg_volume:,.0f}, "
        f"ATR {'-' if atr is None else f'{atr:.2f}%'}, trend {trend}, {len(bars)} sessions"
    )
    reason = figures if ok else f"fewer than {MIN_SESSIONS} sessions: {figures}"
    return SymbolSnapshot(symbol, ok, len(bars), closes[-1], avg_volume, atr, trend, ret, reason)


async def run(ctx: PhaseContext) -> PhaseResult:
    """Fetch what is missing, compute and store each candidate's snapshot."""
    candidates = ctx.data.candidates(ctx.trading_date, passed_only=True)
    if not candidates:
        raise PhaseError(
            f"no candidate for {ctx.trading_date}: the universe phase has not run or kept none"
        )
    symbols = [c.symbol for c in candidates]
    fetched = await ensure_daily_bars(ctx, symbols, "data")
    snapshots = [
        symbol_snapshot(s, fetched.bars.get(s, []), fetched.errors.get(s)) for s in symbols
    ]
    ctx.data.replace_snapshots(ctx.trading_date, snapshots)
    usable = [s.symbol for s in snapshots if s.ok]
    summary = (
        f"{len(usable)} of {len(symbols)} candidates have {MIN_SESSIONS}+ sessions of data "
        f"({fetched.requests} bar requests)"
    )
    if not usable:
        raise PhaseError(summary)
    return PhaseResult(
        summary,
        {
            "usable": usable,
            "unusable": {s.symbol: s.reason for s in snapshots if not s.ok},
            "bar_requests": fetched.requests,
            "trends": {
                t: sum(1 for s in snapshots if s.trend == t) for t in ("up", "flat", "down")
            },
        },
    )
