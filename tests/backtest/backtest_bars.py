"""Constructed 1-min bars for the engine tests, and a config that trades on them.

A ``DayBars`` day oscillates: closes alternate ``base`` (odd minutes since 04:00) and
``base + 0.1`` (even minutes), each bar opening at the previous close, so RSI(14)
stays near 50 all day and the bar ending at 09:30 closes exactly at ``base``. With a
prior close of 94 and a base of 100 the gap is 6.4%: gap-and-go fires at the open
and the buy fills at the 09:30 bar's open, 100.00. Tests then put wicks, steps and
gaps where a rule must act.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, time

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig, config_from_settings
from backtest.data import SymbolDay, symbol_day_from_frame
from backtest.engine import BacktestResult, prepare_day, run_backtest
from backtest.fills import FillModel
from config.settings import load_settings
from market.calendar import Session, session
from market.clock import ET

MONDAY = session(date(2025, 6, 2))
EARLY_CLOSE = session(date(2025, 11, 28))  # closes 13:00 ET
GAPPER_PRIOR = 94.0  # 100 / 94 - 1 = 6.4% gap
FLAT_PRIOR = 99.5  # 0.5% gap: no gap-and-go
STEP = 0.1


def slot(s: Session, hh: int, mm: int) -> int:
    """Return the grid slot (minutes since 04:00 ET) of ``hh:mm`` on ``s``."""
    return (hh - 4) * 60 + mm


def at(s: Session, hh: int, mm: int) -> datetime:
    return datetime.combine(s.day, time(hh, mm), tzinfo=ET)


class DayBars:
    """One symbol's bars of one session, editable before ``symbol_day`` freezes them."""

    def __init__(self, s: Session, base: float = 100.0) -> None:
        self.session = s
        slots = round((s.close - s.premarket_start).total_seconds() / 60)
        k = np.arange(slots)
        self.close = base + STEP * ((k + 1) % 2)
        self.open = np.r_[base, self.close[:-1]]
        self.high = np.maximum(self.open, self.close)
        self.low = np.minimum(self.open, self.close)
        self.volume = np.full(slots, 1000.0)

    def wick(
        self, hh: int, mm: int, *, high: float | None = None, low: float | None = None
    ) -> DayBars:
        """Stretch the bar at ``hh:mm`` to ``high`` and/or ``low`` (closes unchanged)."""
        i = slot(self.session, hh, mm)
        if high is not None:
            self.high[i] = high
        if low is not None:
            self.low[i] = low
        return self

    def gap_open(self, hh: int, mm: int, price: float) -> DayBars:
        """Open the bar at ``hh:mm`` at ``price`` (a jump from the previous close)."""
        i = slot(self.session, hh, mm)
        self.open[i] = price
        self.high[i] = max(self.high[i], price)
        self.low[i] = min(self.low[i], price)
        return self

    def shift_from(self, hh: int, mm: int, delta: float) -> DayBars:
        """Move every close from ``hh:mm`` on by ``delta`` (the bar at ``hh:mm`` is the step).

        Call it before ``wick``: the bars after the step are rebuilt without wicks.
        """
        i = slot(self.session, hh, mm)
        self.close[i:] += delta
        self.open[i + 1 :] += delta
        self.high[i:] = np.maximum(self.open[i:], self.close[i:])
        self.low[i:] = np.minimum(self.open[i:], self.close[i:])
        return self

    def symbol_day(self, symbol: str, prior_close: float = GAPPER_PRIOR) -> SymbolDay:
        """Return the bars as a ``SymbolDay`` (no spread: prices are the fills)."""
        index = pd.date_range(self.session.premarket_start, periods=len(self.close), freq="1min")
        frame = pd.DataFrame(
            {
                "open": self.open,
                "high": self.high,
                "low": self.low,
                "close": self.close,
                "volume": self.volume,
            },
            index=index,
        )
        return symbol_day_from_frame(symbol, self.session, frame, prior_close, spread_bps=0.0)


def trading_config(**exit_changes: float) -> BacktestConfig:
    """Return the default settings' config with no spread; ``exit_changes`` edit ExitParams."""
    config = config_from_settings(
        load_settings(environ={}, env_file=None), fill=FillModel(spread_bps=0.0)
    )
    return replace(config, exit=replace(config.exit, **exit_changes)) if exit_changes else config


def run_days(days: list[tuple[Session, list[SymbolDay]]], config: BacktestConfig) -> BacktestResult:
    """Run the engine over constructed days."""
    return run_backtest([prepare_day(s, symbol_days) for s, symbol_days in days], config)


def run_one(bars: list[SymbolDay], config: BacktestConfig) -> BacktestResult:
    """Run the engine over one session of constructed bars (all of the same session)."""
    return run_days([(session(bars[0].day), bars)], config)
