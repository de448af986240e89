"""Daily bars of the day's candidates: fetched once per trading date, stored, shared.

The universe phase needs each candidate's last close and average volume to filter,
and the data phase needs the same bars for ATR % and trend, so both go through
``ensure_daily_bars``: bars already stored for the date are read back, only the
missing symbols are requested. A rerun after a crash therefore re-asks only what it
did not get, and the data phase normally sends no request at all.

Pacing: at most ``HISTORY_CONCURRENCY`` historical requests are in flight at once (IBKR
allows 50 open ones; a handful keeps TWS responsive for the trading processes), and
the adapter's token bucket and repeat guard hold the message-rate rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import pandas as pd

from broker.errors import BrokerError, SymbolError
from market.calendar import previous_trading_day
from phases.runner import PhaseContext, Progress
from shared_state.phase_data import DailyBar

#: Requested length. The adapter asks IBKR for "<count> D", which IBKR counts in
#: calendar days for daily bars: 45 gives about 31 sessions there (45 on the simulator),
#: enough for ATR(14), 20-session averages and a 5-session trend slope.
HISTORY_COUNT = 45
#: Sessions a snapshot needs to be trusted (the issue: at least 20).
MIN_SESSIONS = 20
HISTORY_CONCURRENCY = 4


@dataclass(frozen=True)
class BarsResult:
    """Stored bars per symbol, why a symbol has none, and how many requests were sent."""

    bars: dict[str, list[DailyBar]]
    errors: dict[str, str]
    requests: int


def to_daily_bars(frame: pd.DataFrame, trading_date: date) -> list[DailyBar]:
    """Return the adapter's daily bars strictly before ``trading_date`` (no partial today)."""
    bars = []
    for stamp, row in frame.iterrows():
        day = pd.Timestamp(stamp).date()
        if day < trading_date:
            bars.append(
                DailyBar(
                    day,
                    float(row["open"]),
                    float(row["high"]),
                    float(row["low"]),
                    float(row["close"]),
                    float(row["volume"]),
                )
            )
    return bars


async def ensure_daily_bars(ctx: PhaseContext, symbols: Sequence[str], label: str) -> BarsResult:
    """Return the daily bars of ``symbols`` for the date, requesting only the missing ones."""
    stored = ctx.data.bar_counts(ctx.trading_date)
    missing = [s for s in symbols if stored.get(s, 0) == 0]
    errors: dict[str, str] = {}
    if missing:
        ctx.log.info("%s: daily bars of %d symbols to fetch", label, len(missing))
        errors = await _fetch(ctx, missing, label)
    bars = {s: ctx.data.daily_bars(ctx.trading_date, s) for s in symbols if s not in errors}
    return BarsResult(bars, errors, len(missing))


async def _fetch(ctx: PhaseContext, symbols: Sequence[str], label: str) -> dict[str, str]:
    adapter = await ctx.broker.get()
    end_day = previous_trading_day(ctx.trading_date)
    gate = asyncio.Semaphore(HISTORY_CONCURRENCY)
    progress = Progress(ctx.log, f"{label}: daily bars", len(symbols))
    errors: dict[str, str] = {}

    async def one(symbol: str) -> None:
        async with gate:
            try:
                frame = await adapter.daily_bars(symbol, HISTORY_COUNT, end_day=end_day)
            except SymbolError as exc:
                errors[symbol] = f"unknown at the broker ({exc})"
            except (BrokerError, TimeoutError) as exc:
                errors[symbol] = f"no daily bars ({type(exc).__name__}: {exc})"
            else:
                ctx.data.put_daily_bars(
                    ctx.trading_date, symbol, to_daily_bars(frame, ctx.trading_date)
                )
            progress.step(symbol)

    try:
        await asyncio.gather(*(one(s) for s in symbols))
    finally:
        progress.close()
    return errors
