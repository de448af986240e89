"""Every bar's indicator snapshot of one symbol-day at once, in O(n).

The live day trader calls ``market.indicators.snapshot`` on the bars so far at each
bar close. Doing that at every bar of a backtest costs O(n^2) per day. This module
computes the same values for all bars in one pass with the same formulas (see
``market/indicators.py``): Wilder smoothing is an exponential filter seeded with the
first value, so its value at bar ``i`` is the filter's running state; VWAP is a ratio
of running sums. ``tests/backtest/test_series.py`` holds the result equal to
``snapshot`` at every bar of sample days (1e-9 relative).

Values are laid on the day's minute grid (04:00 ET to the close, one slot per minute):
slot ``m`` holds what a snapshot taken at the close of minute ``m`` sees, i.e. the
values as of the latest bar that started at or before ``m``. A minute without a bar
(CSV gaps) repeats the latest bar's values and flat prices (the simulator's price
rests at the last close), and its ``last_bar`` points to that bar, so the live
staleness rule sees the bar's true age.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from backtest.data import SymbolDay
from market.calendar import Session
from market.indicators import ATR_LENGTH, RSI_LENGTH


@dataclass(frozen=True, eq=False)
class SymbolSeries:
    """One symbol-day on the minute grid: prices and indicators as of each minute's close."""

    symbol: str
    day: date
    prior_close: float
    spread_bps: float
    open_index: int  # grid slot of the regular session's first minute
    open: np.ndarray  # bar open (a bar-less minute: the latest close; NaN before any bar)
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    has_bar: np.ndarray  # bool
    vwap: np.ndarray
    rsi: np.ndarray
    prev_rsi: np.ndarray
    atr_pct: np.ndarray
    last_bar: np.ndarray  # int64: grid slot of the latest bar so far, -1 before the first
    gap_price: np.ndarray  # price the gap is measured to (fill rule F11)

    def __len__(self) -> int:
        return len(self.open)


def wilder(values: np.ndarray, length: int) -> np.ndarray:
    """Return Wilder's smoothing of ``values`` (EMA, alpha ``1/length``, seeded with values[0])."""
    if len(values) == 0:
        return np.empty(0)
    smoothed = pd.Series(values).ewm(alpha=1.0 / length, adjust=False).mean()
    return smoothed.to_numpy(dtype=np.float64)


def rsi_series(close: np.ndarray, length: int = RSI_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Return (RSI, previous bar's RSI) at every bar; NaN where ``snapshot`` gives NaN."""
    rsi = np.full(len(close), np.nan)
    if len(close) - 1 >= length:
        changes = np.diff(close)
        gain = wilder(np.maximum(changes, 0.0), length)
        loss = wilder(np.maximum(-changes, 0.0), length)
        total = gain + loss
        with np.errstate(invalid="ignore", divide="ignore"):
            rsi[1:] = np.where(total > 0, 100.0 * gain / total, np.nan)
        rsi[1:][np.cumsum(~np.isfinite(changes)) > 0] = np.nan
        rsi[:length] = np.nan  # warm-up: defined from bar ``length`` on
    prev = np.full(len(close), np.nan)
    prev[1:] = rsi[:-1]
    return rsi, prev


def atr_pct_series(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, length: int = ATR_LENGTH
) -> np.ndarray:
    """Return ATR(``length``) in percent of the close at every bar; NaN during warm-up."""
    out = np.full(len(close), np.nan)
    if len(close) < length + 1:
        return out
    prev_close = close[:-1]
    true_range = np.empty_like(close)
    true_range[0] = abs(high[0] - low[0])
    true_range[1:] = np.maximum(
        np.maximum(np.abs(high[1:] - low[1:]), np.abs(high[1:] - prev_close)),
        np.abs(prev_close - low[1:]),
    )
    seeded = true_range[length - 1 :].copy()
    seeded[0] = true_range[:length].mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        out[length - 1 :] = 100.0 * wilder(seeded, length) / close[length - 1 :]
    out[:length] = np.nan  # snapshot needs length + 1 bars
    bad = (np.cumsum(~np.isfinite(true_range)) > 0) | ~(close > 0)
    out[bad] = np.nan
    return out


def vwap_series(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, start: int
) -> np.ndarray:
    """Return the VWAP anchored at bar ``start`` at every bar; NaN before it or at zero volume."""
    out = np.full(len(close), np.nan)
    if start >= len(close):
        return out
    typical = (high[start:] + low[start:] + close[start:]) / 3.0
    volume = volume[start:]
    total = np.cumsum(volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[start:] = np.where(total > 0, np.cumsum(typical * volume) / total, np.nan)
    return out


def prepare(bars: SymbolDay, session: Session) -> SymbolSeries:
    """Return ``bars`` laid on the minute grid of ``session`` with every snapshot value."""
    slots = round((session.close - session.premarket_start).total_seconds() / 60)
    open_index = round((session.open - session.premarket_start).total_seconds() / 60)
    first_session_bar = int(np.searchsorted(bars.minutes, open_index))
    rsi, prev_rsi = rsi_series(bars.close)
    per_bar = {
        "vwap": vwap_series(bars.high, bars.low, bars.close, bars.volume, first_session_bar),
        "rsi": rsi,
        "prev_rsi": prev_rsi,
        "atr_pct": atr_pct_series(bars.high, bars.low, bars.close),
    }
    latest = np.searchsorted(bars.minutes, np.arange(slots), side="right") - 1
    has_bar = np.zeros(slots, dtype=bool)
    has_bar[bars.minutes] = True
    grid = {name: _on_grid(values, latest) for name, values in per_bar.items()}
    close = _on_grid(bars.close, latest)
    prices = {
        name: np.where(has_bar, _on_grid(values, latest), close)
        for name, values in (("open", bars.open), ("high", bars.high), ("low", bars.low))
    }
    last_bar = np.where(latest >= 0, bars.minutes[np.maximum(latest, 0)], -1)
    return SymbolSeries(
        symbol=bars.symbol,
        day=bars.day,
        prior_close=bars.prior_close,
        spread_bps=bars.spread_bps,
        open_index=open_index,
        close=close,
        has_bar=has_bar,
        last_bar=last_bar.astype(np.int64),
        gap_price=_gap_price(bars, first_session_bar, close),
        **prices,
        **grid,
    )


def _on_grid(values: np.ndarray, latest: np.ndarray) -> np.ndarray:
    """Return ``values`` of the latest bar at each grid slot (NaN before the first bar)."""
    if len(values) == 0:
        return np.full(len(latest), np.nan)
    return np.where(latest >= 0, values[np.maximum(latest, 0)], np.nan)


def _gap_price(bars: SymbolDay, first_session_bar: int, close: np.ndarray) -> np.ndarray:
    """Return the price the gap is measured to at each slot (fill rule F11)."""
    out = close.copy()
    if first_session_bar < len(bars.minutes):
        opened = int(bars.minutes[first_session_bar])
        out[opened:] = bars.open[first_session_bar]
    return out
