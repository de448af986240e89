"""A replay of past days with the live rules: how would these parameters have done?

Used by the post-close evaluation to judge a parameter suggestion (kept in one module
so the backtest can reuse or replace it). Inputs are 1-minute bars (pre-market
included) of each symbol on each day, with the prior session's close.

Per symbol and day, from the first regular-session bar:

- flat: the entry rules (``day_trader.signals.evaluate_entry``) on the indicator
  snapshot of the bars so far (``market.indicators.snapshot``) at the bar's end; the
  gap is the last pre-market price against the prior close. ``next_entry_kind`` of the
  exit rules decides whether a fresh entry, a recovery entry (after a stop) or none is
  allowed. An entry fills at the bar's close; no entry at or after the EOD cutoff.
- holding: ``exit_manager.rules.evaluate_exit`` on the bar's low (a stop fills at the
  stop, or at the open when the bar opened below it), then its high (a target fills
  at the target, or at the open above it), then its close (end of day).
- size: ``day_trader.sizing.position_size`` with the capital, the size %, and the
  number of symbols that day; commissions of ``COMMISSION_PER_SHARE`` (at least
  ``COMMISSION_MIN``) on each side.

Simplifications, on purpose: one position per symbol at a time, no limit across
symbols, no daily target or loss limit, fills at bar prices without slippage. Entry
signals do not depend on the judged parameters (target, stop, size), so they are
computed once per symbol and day and every parameter set replays over them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Literal

import pandas as pd

from day_trader.signals import EntryParams, evaluate_entry, gap_pct
from day_trader.sizing import position_size
from exit_manager.rules import (
    EOD,
    STOP,
    TARGET,
    ExitParams,
    PositionView,
    evaluate_exit,
    next_entry_kind,
    stop_price,
    target_price,
)
from market.calendar import session
from market.indicators import snapshot
from phases.metrics import max_drawdown

COMMISSION_PER_SHARE = 0.005
COMMISSION_MIN = 1.0
_MINUTE = timedelta(minutes=1)

Parameter = Literal["profit_target_pct", "stop_loss_pct", "size_pct"]


@dataclass(frozen=True)
class ParamValues:
    """The parameters a suggestion may change (percentages in percent)."""

    profit_target_pct: float
    stop_loss_pct: float
    size_pct: float  # ALLOCATION in percent of ExcessLiquidity
    recovery_target_pct: float

    def changed(self, parameter: Parameter, value: float) -> ParamValues:
        """Return a copy with ``parameter`` set; a recovery target never exceeds the target."""
        updated = replace(self, **{parameter: value})
        if updated.recovery_target_pct > updated.profit_target_pct:
            updated = replace(updated, recovery_target_pct=updated.profit_target_pct)
        return updated


@dataclass(frozen=True)
class DayBars:
    """One symbol's 1-minute bars of one day (tz-aware ET index) and the prior close."""

    day: date
    symbol: str
    bars: pd.DataFrame
    prior_close: float


@dataclass(frozen=True)
class ReplayTrade:
    day: date
    symbol: str
    entry_time: datetime
    entry_price: float
    exit_time: datetime
    exit_price: float
    reason: str
    quantity: int
    pnl: float
    is_recovery: bool


@dataclass(frozen=True)
class ReplayResult:
    """What a parameter set did over the replayed days."""

    trades: tuple[ReplayTrade, ...]
    days: int
    symbol_days: int

    @property
    def net_pnl(self) -> float:
        return round(sum(t.pnl for t in self.trades), 2)

    @property
    def wins(self) -> int:
        return sum(1 for t in self.trades if t.pnl > 0)

    @property
    def max_drawdown(self) -> float:
        curve = [0.0]
        for trade in sorted(self.trades, key=lambda t: t.exit_time):
            curve.append(curve[-1] + trade.pnl)
        return round(max_drawdown(curve)[0], 2)

    def summary(self) -> dict[str, float | int]:
        return {
            "net_pnl": self.net_pnl,
            "trades": len(self.trades),
            "wins": self.wins,
            "max_drawdown": self.max_drawdown,
            "days": self.days,
            "symbol_days": self.symbol_days,
        }


@dataclass(frozen=True)
class _Step:
    """One regular-session bar with the entry signals at its end."""

    end: datetime
    open: float
    high: float
    low: float
    close: float
    fresh: bool
    recovery: bool


@dataclass(frozen=True)
class _Prepared:
    day: date
    symbol: str
    steps: tuple[_Step, ...]
    session_close: datetime
    symbols_that_day: int


def premarket_gap(day: DayBars) -> float:
    """Return the gap of the last pre-market price (or the first bar) over the prior close."""
    opening = session(day.day).open
    before = day.bars.loc[day.bars.index < pd.Timestamp(opening)]
    price = float(before["close"].iloc[-1]) if not before.empty else float(day.bars["open"].iloc[0])
    return gap_pct(day.prior_close, price)


def _steps(day: DayBars, entry: EntryParams) -> tuple[_Step, ...]:
    s = session(day.day)
    bars = day.bars.loc[day.bars.index < pd.Timestamp(s.close)]
    first = int((bars.index < pd.Timestamp(s.open)).sum())
    gap = premarket_gap(day)
    steps = []
    for k in range(first, len(bars)):
        seen = bars.iloc[: k + 1]
        snap = snapshot(seen, s.open)
        end = bars.index[k].to_pydatetime() + _MINUTE
        fresh = evaluate_entry(day.symbol, snap, gap, end, entry, recovery=False).fire
        again = evaluate_entry(day.symbol, snap, gap, end, entry, recovery=True).fire
        row = bars.iloc[k]
        prices = (float(row["open"]), float(row["high"]), float(row["low"]), float(row["close"]))
        steps.append(_Step(end, *prices, fresh, again))
    return tuple(steps)


class Replay:
    """Replays of a fixed set of symbol-days under different parameter sets."""

    def __init__(
        self,
        days: Sequence[DayBars],
        *,
        capital: float,
        entry: EntryParams,
        exits: ExitParams,
        max_recovery_entries: int,
        max_order_notional: float,
    ) -> None:
        self.capital = capital
        self.exits = exits
        self.max_recovery_entries = max_recovery_entries
        self.max_order_notional = max_order_notional
        per_day: dict[date, int] = {}
        for d in days:
            per_day[d.day] = per_day.get(d.day, 0) + 1
        self._prepared = [
            _Prepared(d.day, d.symbol, _steps(d, entry), session(d.day).close, per_day[d.day])
            for d in days
            if not d.bars.empty and d.prior_close > 0
        ]
        self.days = len({p.day for p in self._prepared})

    @property
    def symbol_days(self) -> int:
        return len(self._prepared)

    def run(self, params: ParamValues) -> ReplayResult:
        """Return the trades ``params`` would have made over the prepared days."""
        exits = replace(
            self.exits,
            profit_target_pct=params.profit_target_pct,
            stop_loss_pct=params.stop_loss_pct,
            recovery_target_pct=params.recovery_target_pct,
        )
        trades: list[ReplayTrade] = []
        for prepared in self._prepared:
            trades.extend(self._symbol_day(prepared, exits, params.size_pct))
        return ReplayResult(tuple(trades), self.days, self.symbol_days)

    def _symbol_day(self, p: _Prepared, exits: ExitParams, size_pct: float) -> list[ReplayTrade]:
        trades: list[ReplayTrade] = []
        reasons: list[str] = []
        cutoff = p.session_close - timedelta(minutes=exits.eod_flatten_minutes)
        k = 0
        while k < len(p.steps):
            kind = next_entry_kind(reasons, self.max_recovery_entries)
            if kind is None:
                break
            k = self._next_entry(p.steps, k, kind == "recovery", cutoff)
            if k is None:
                break
            trade = self._hold(p, k, exits, size_pct, kind == "recovery")
            if trade is None:
                break
            trades.append(trade)
            reasons.append(trade.reason)
            k = next(i for i, s in enumerate(p.steps) if s.end >= trade.exit_time) + 1
        return trades

    @staticmethod
    def _next_entry(
        steps: Sequence[_Step], start: int, recovery: bool, cutoff: datetime
    ) -> int | None:
        for k in range(start, len(steps)):
            if steps[k].end >= cutoff:
                return None
            if steps[k].recovery if recovery else steps[k].fresh:
                return k
        return None

    def _hold(
        self, p: _Prepared, k: int, exits: ExitParams, size_pct: float, recovery: bool
    ) -> ReplayTrade | None:
        entry = p.steps[k]
        quantity = position_size(
            self.capital, size_pct / 100.0, p.symbols_that_day, entry.close,
            self.max_order_notional,
        )  # fmt: skip
        if quantity <= 0:
            return None
        position = PositionView(
            p.symbol,
            quantity,
            entry.close,
            recovery,
            target_price(entry.close, recovery, exits),
            stop_price(entry.close, exits),
        )
        for step in p.steps[k + 1 :]:
            fill = _exit_fill(position, step, p.session_close, exits)
            if fill is not None:
                reason, price = fill
                return _trade(p, position, entry, step.end, price, reason)
        last = p.steps[-1]
        return _trade(p, position, entry, last.end, last.close, EOD)


def _exit_fill(
    position: PositionView, step: _Step, session_close: datetime, exits: ExitParams
) -> tuple[str, float] | None:
    """Return (reason, fill price) when the rules exit ``position`` during ``step``."""
    low = evaluate_exit(position, step.low, step.end, session_close, exits)
    if low is not None and low.reason == STOP:
        return STOP, min(step.open, position.stop_price)
    high = evaluate_exit(position, step.high, step.end, session_close, exits)
    if high is not None and high.reason == TARGET:
        return TARGET, max(step.open, position.target_price)
    close = evaluate_exit(position, step.close, step.end, session_close, exits)
    if close is not None:
        return close.reason, step.close
    return None


def commission(quantity: int) -> float:
    """Return the commission of one side of a trade."""
    return max(COMMISSION_MIN, COMMISSION_PER_SHARE * quantity)


def _trade(
    p: _Prepared, position: PositionView, entry: _Step, at: datetime, price: float, reason: str
) -> ReplayTrade:
    gross = (price - position.entry_price) * position.quantity
    pnl = gross - 2 * commission(position.quantity)
    return ReplayTrade(
        p.day, p.symbol, entry.end, position.entry_price, at, price, reason,
        position.quantity, round(pnl, 2) if math.isfinite(pnl) else 0.0, position.is_recovery,
    )  # fmt: skip
