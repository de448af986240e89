"""Intraday indicators on 1-min bars: the one module that imports pandas-ta.

Bars are a DataFrame with a tz-aware DatetimeIndex (bar start, America/New_York) and
columns ``open, high, low, close, volume``, oldest first.

Two faces, same formulas:

- ``session_vwap``, ``rsi``, ``atr_pct`` return whole Series computed by pandas-ta.
  They are the reference and serve analysis and the backtest's reports.
- ``snapshot`` returns only the latest values the entry rules read, computed with
  numpy. pandas-ta costs about 4 ms per symbol per pass (three indicators), which
  alone would spend a 50-symbol pass's 50 ms budget several times over; the numpy
  path costs tens of microseconds. ``tests/market/test_indicators.py`` holds the two
  faces equal to 1e-6, so swapping the library means touching only this module.

Formulas (pandas-ta 0.4 defaults):

- VWAP: cumulative sum of typical price ``(h + l + c) / 3`` times volume over the
  cumulative volume, anchored at the session open. Pre-market bars are excluded; the
  value is NaN before the first session bar and while session volume is zero.
- RSI(n): Wilder smoothing (an EMA with ``alpha = 1/n``, seeded with the first
  change) of gains and losses; ``100 * gain / (gain + loss)``. The first ``n`` values
  are NaN here (warm-up; pandas-ta emits unreliable values from the second bar), and
  a perfectly flat series has no RSI (0/0, NaN).
- ATR(n): true range ``max(h - l, |h - prev c|, |prev c - l|)`` (the first bar's is
  ``h - l``), seeded with the simple mean of the first ``n`` ranges at bar ``n - 1``,
  then Wilder smoothing. ``atr_pct`` is ATR as a percentage of the bar's close.

RSI and ATR use every bar given, pre-market included, so they are warm at the open.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from market.clock import ET

with warnings.catch_warnings():
    # pandas-ta 0.4.71b0 trips pandas 3 deprecation warnings at import time; they are
    # the library's business, not something an operator of this product can act on.
    warnings.simplefilter("ignore")
    import pandas_ta as ta

RSI_LENGTH = 14
ATR_LENGTH = 14


@dataclass(frozen=True)
class IndicatorSnapshot:
    """The latest indicator values of one symbol; NaN where a value is not yet defined."""

    close: float
    vwap: float
    rsi: float
    prev_rsi: float
    atr_pct: float
    bar_time: datetime | None  # start of the last bar, ET; None when there are no bars


# --------------------------------------------------------------------------- pandas-ta


def session_vwap(bars: pd.DataFrame, session_open: datetime) -> pd.Series:
    """Return the VWAP anchored at ``session_open``; NaN on earlier (pre-market) bars."""
    out = pd.Series(np.nan, index=bars.index, dtype="float64", name="vwap")
    session = bars.loc[bars.index >= pd.Timestamp(session_open)]
    if session.empty:
        return out
    # anchor="D" restarts the sums each calendar day; session bars share one day.
    # pandas-ta's vwap switches UserWarnings off process-wide; catch_warnings undoes that.
    with warnings.catch_warnings():
        vwap = ta.vwap(
            session["high"], session["low"], session["close"], session["volume"], anchor="D"
        )
    out.loc[session.index] = vwap.to_numpy(dtype="float64")
    return out


def rsi(close: pd.Series, length: int = RSI_LENGTH) -> pd.Series:
    """Return RSI(``length``) of ``close``; NaN for the first ``length`` bars."""
    out = ta.rsi(close.astype("float64"), length=length)
    if out is None:  # pandas-ta returns None when the series is too short
        return pd.Series(np.nan, index=close.index, dtype="float64", name=f"RSI_{length}")
    out = out.copy()
    out.iloc[:length] = np.nan
    return out


def atr_pct(bars: pd.DataFrame, length: int = ATR_LENGTH) -> pd.Series:
    """Return ATR(``length``) as a percentage of each bar's close; NaN during warm-up."""
    high, low, close = (bars[c].astype("float64") for c in ("high", "low", "close"))
    out = ta.atr(high, low, close, length=length, percent=True)
    if out is None:
        return pd.Series(np.nan, index=bars.index, dtype="float64", name=f"ATRp_{length}")
    return out


# --------------------------------------------------------------------------- hot path


def snapshot(
    bars: pd.DataFrame,
    session_open: datetime,
    rsi_length: int = RSI_LENGTH,
    atr_length: int = ATR_LENGTH,
) -> IndicatorSnapshot:
    """Return the latest close, session VWAP, RSI, previous RSI and ATR% of ``bars``."""
    if bars.empty:
        return IndicatorSnapshot(math.nan, math.nan, math.nan, math.nan, math.nan, None)
    high, low, close, volume = _columns(bars)
    times, unit = _epoch_times(bars.index)
    first_session_bar = int(np.searchsorted(times, _to_epoch(session_open, unit)))
    rsi_last, rsi_prev = _rsi_last_two(close, rsi_length)
    return IndicatorSnapshot(
        close=float(close[-1]),
        vwap=_vwap_last(high, low, close, volume, first_session_bar),
        rsi=rsi_last,
        prev_rsi=rsi_prev,
        atr_pct=_atr_pct_last(high, low, close, atr_length),
        bar_time=_from_epoch(int(times[-1]), unit),
    )


# Reading four columns one by one costs about as much as all the arithmetic below
# (each builds a Series); one conversion of the whole frame is several times cheaper.
_NEEDED = ("high", "low", "close", "volume")


def _columns(bars: pd.DataFrame) -> tuple[np.ndarray, ...]:
    try:
        values = bars.to_numpy(dtype="float64")
    except (TypeError, ValueError):  # a non-numeric extra column: convert only ours
        return tuple(bars[name].to_numpy(dtype="float64") for name in _NEEDED)
    columns = bars.columns
    return tuple(values[:, columns.get_loc(name)] for name in _NEEDED)


# Bar times as integers since the Unix epoch, in the index's own unit; boxing pandas
# Timestamps costs ~10 us each, integer arithmetic well under one.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _epoch_times(index: pd.Index) -> tuple[np.ndarray, str]:
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ValueError("bars need a tz-aware DatetimeIndex")
    return index.asi8, index.unit


def _to_epoch(instant: datetime, unit: str) -> int:
    micros = (instant - _EPOCH) // timedelta(microseconds=1)
    return micros * _PER_SECOND[unit] // 1_000_000


def _from_epoch(value: int, unit: str) -> datetime:
    micros = value * 1_000_000 // _PER_SECOND[unit]
    return (_EPOCH + timedelta(microseconds=micros)).astimezone(ET)


def _vwap_last(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, start: int
) -> float:
    volume = volume[start:]
    total = volume.sum()
    if total <= 0 or not np.isfinite(total):
        return math.nan
    typical = (high[start:] + low[start:] + close[start:]) / 3.0
    return float(np.dot(typical, volume) / total)


def _wilder_weights(count: int, length: int) -> np.ndarray:
    """Return w with ``w @ x == x.ewm(alpha=1/length, adjust=False).mean().iloc[-1]``.

    Unrolled, ``y_T = (1-a)^T * x_0 + sum_k a * (1-a)^(T-k) * x_k``: one dot product
    instead of a Python loop over the bars.
    """
    weights = (1.0 - 1.0 / length) ** np.arange(count - 1, -1, -1, dtype="float64")
    weights[1:] *= 1.0 / length
    return weights


def _rsi_last_two(close: np.ndarray, length: int) -> tuple[float, float]:
    changes = np.diff(close)
    count = len(changes)
    # RSI at bar i uses changes[:i] and is defined from i = length (module docstring).
    if count < length or not np.isfinite(changes).all():
        return math.nan, math.nan
    gains, losses = np.maximum(changes, 0.0), np.maximum(-changes, 0.0)
    last = _wilder_weights(count, length)
    rsi_last = _rsi_ratio(gains @ last, losses @ last)
    if count - 1 < length:
        return rsi_last, math.nan
    # The previous bar's weights are the last bar's shifted by one (same decay powers).
    prev = _wilder_weights(count - 1, length)
    return rsi_last, _rsi_ratio(gains[:-1] @ prev, losses[:-1] @ prev)


def _rsi_ratio(gain: float, loss: float) -> float:
    total = gain + loss
    return float(100.0 * gain / total) if total > 0 else math.nan


def _atr_pct_last(high: np.ndarray, low: np.ndarray, close: np.ndarray, length: int) -> float:
    # pandas-ta needs length + 1 bars before it returns any ATR.
    if len(close) < length + 1:
        return math.nan
    prev_close = close[:-1]
    true_range = np.empty_like(close)
    true_range[0] = abs(high[0] - low[0])
    true_range[1:] = np.maximum(
        np.maximum(np.abs(high[1:] - low[1:]), np.abs(high[1:] - prev_close)),
        np.abs(prev_close - low[1:]),
    )
    if not np.isfinite(true_range).all() or not close[-1] > 0:
        return math.nan
    seeded = true_range[length - 1 :].copy()
    seeded[0] = true_range[:length].mean()
    return float(100.0 * (seeded @ _wilder_weights(len(seeded), length)) / close[-1])
