"""Indicators: hand-computed values, an independent loop reference, and numpy == pandas-ta."""

from __future__ import annotations

import math
import time
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from market.clock import ET
from market.indicators import atr_pct, rsi, session_vwap, snapshot

SESSION_OPEN = datetime(2025, 6, 2, 9, 30, tzinfo=ET)


def make_bars(rows: list[tuple[float, float, float, float]], start: str) -> pd.DataFrame:
    """Build 1-min bars from (high, low, close, volume) rows; open is the previous close."""
    index = pd.date_range(start, periods=len(rows), freq="1min", tz=ET)
    frame = pd.DataFrame(rows, columns=["high", "low", "close", "volume"], index=index, dtype=float)
    frame.insert(0, "open", frame["close"].shift(1).fillna(frame["close"]))
    return frame


def random_walk(seed: int, n: int = 390, start: str = "2025-06-02 09:30") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 40.0 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[close[0], close[:-1]]
    spread = np.abs(rng.normal(0, 0.002, n)) * close
    index = pd.date_range(start, periods=n, freq="1min", tz=ET)
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.integers(0, 5000, n).astype("float64"),
        },
        index=index,
    )


def loop_rsi(close: list[float], length: int) -> list[float]:
    """Wilder RSI written as the textbook recursion, one bar at a time."""
    out = [math.nan] * len(close)
    gain = loss = math.nan
    for i in range(1, len(close)):
        change = close[i] - close[i - 1]
        up, down = max(change, 0.0), max(-change, 0.0)
        if i == 1:
            gain, loss = up, down
        else:
            gain = gain + (up - gain) / length
            loss = loss + (down - loss) / length
        if i >= length and gain + loss > 0:
            out[i] = 100.0 * gain / (gain + loss)
    return out


# --------------------------------------------------------------------------- VWAP


def vwap_example() -> pd.DataFrame:
    premarket = [(51.0, 49.0, 50.0, 10_000.0), (51.0, 49.0, 50.0, 10_000.0)]
    session = [(11.0, 9.0, 10.0, 100.0), (12.0, 10.0, 11.0, 300.0), (13.0, 11.0, 12.0, 100.0)]
    return make_bars(premarket + session, "2025-06-02 09:28")


def test_session_vwap_matches_hand_computation_and_ignores_premarket() -> None:
    # Typical prices 10, 11, 12 with volumes 100, 300, 100:
    # 1000/100 = 10; (1000 + 3300)/400 = 10.75; (1000 + 3300 + 1200)/500 = 11.
    vwap = session_vwap(vwap_example(), SESSION_OPEN)
    assert math.isnan(vwap.iloc[0]) and math.isnan(vwap.iloc[1])
    assert vwap.iloc[2:].tolist() == pytest.approx([10.0, 10.75, 11.0], abs=1e-12)


def test_snapshot_vwap_matches_hand_computation() -> None:
    assert snapshot(vwap_example(), SESSION_OPEN).vwap == pytest.approx(11.0, abs=1e-12)


def test_vwap_before_the_open_is_nan() -> None:
    premarket_only = vwap_example().iloc[:2]
    assert session_vwap(premarket_only, SESSION_OPEN).isna().all()
    assert math.isnan(snapshot(premarket_only, SESSION_OPEN).vwap)


def test_vwap_without_session_volume_is_nan() -> None:
    bars = make_bars([(11.0, 9.0, 10.0, 0.0), (12.0, 10.0, 11.0, 0.0)], "2025-06-02 09:30")
    assert math.isnan(snapshot(bars, SESSION_OPEN).vwap)


# --------------------------------------------------------------------------- RSI


RSI2_CLOSES = [10.0, 11.0, 10.5, 11.5, 11.0]
# Changes +1, -0.5, +1, -0.5; Wilder(2) seeded with the first change:
# gains 1, 0.5, 0.75, 0.375; losses 0, 0.25, 0.125, 0.3125.
RSI2_EXPECTED = [100 * 0.5 / 0.75, 100 * 0.75 / 0.875, 100 * 0.375 / 0.6875]


def test_rsi_matches_hand_computation() -> None:
    values = rsi(pd.Series(RSI2_CLOSES), length=2)
    assert values.iloc[:2].isna().all()
    assert values.iloc[2:].tolist() == pytest.approx(RSI2_EXPECTED, abs=1e-9)


def test_snapshot_rsi_and_previous_rsi_match_hand_computation() -> None:
    rows = [(c + 0.1, c - 0.1, c, 100.0) for c in RSI2_CLOSES]
    snap = snapshot(make_bars(rows, "2025-06-02 09:30"), SESSION_OPEN, rsi_length=2)
    assert snap.rsi == pytest.approx(RSI2_EXPECTED[-1], abs=1e-9)
    assert snap.prev_rsi == pytest.approx(RSI2_EXPECTED[-2], abs=1e-9)


def test_rsi14_matches_a_textbook_loop_on_a_random_walk() -> None:
    close = random_walk(seed=7)["close"]
    expected = loop_rsi(close.tolist(), 14)
    got = rsi(close, 14).tolist()
    assert np.allclose(got, expected, atol=1e-9, equal_nan=True)
    snap = snapshot(random_walk(seed=7), SESSION_OPEN)
    assert snap.rsi == pytest.approx(expected[-1], abs=1e-9)
    assert snap.prev_rsi == pytest.approx(expected[-2], abs=1e-9)


def test_steadily_rising_closes_give_rsi_100() -> None:
    rows = [(c + 0.1, c - 0.1, c, 100.0) for c in np.linspace(10, 12, 30)]
    assert snapshot(make_bars(rows, "2025-06-02 09:30"), SESSION_OPEN).rsi == pytest.approx(100.0)


def test_flat_closes_have_no_rsi() -> None:
    rows = [(10.1, 9.9, 10.0, 100.0)] * 30
    assert math.isnan(snapshot(make_bars(rows, "2025-06-02 09:30"), SESSION_OPEN).rsi)


def test_rsi_is_nan_until_warm() -> None:
    rows = [(c + 0.1, c - 0.1, c, 100.0) for c in np.linspace(10, 11, 15)]
    snap = snapshot(make_bars(rows, "2025-06-02 09:30"), SESSION_OPEN)
    assert not math.isnan(snap.rsi)  # 15 bars: bar 14 is the first RSI(14)
    assert math.isnan(snap.prev_rsi)
    assert rsi(pd.Series(np.linspace(10, 11, 10)), 14).isna().all()


# --------------------------------------------------------------------------- ATR


ATR2_ROWS = [
    (11.0, 9.0, 10.0, 100.0),  # TR 2 (high - low; no previous close)
    (12.0, 10.0, 11.0, 100.0),  # TR max(2, 2, 0) = 2
    (14.0, 11.0, 13.0, 100.0),  # TR max(3, 3, 0) = 3
    (10.0, 9.0, 9.5, 100.0),  # gap down: TR max(1, |10 - 13|, |13 - 9|) = 4
]
# Seed at bar 1: mean(2, 2) = 2; then Wilder(2): 2.5, 3.25.
ATR2_EXPECTED_PCT = [2 / 11 * 100, 2.5 / 13 * 100, 3.25 / 9.5 * 100]


def test_atr_pct_matches_hand_computation_including_a_gap() -> None:
    values = atr_pct(make_bars(ATR2_ROWS, "2025-06-02 09:30"), length=2)
    assert math.isnan(values.iloc[0])
    assert values.iloc[1:].tolist() == pytest.approx(ATR2_EXPECTED_PCT, abs=1e-9)


def test_snapshot_atr_pct_matches_hand_computation() -> None:
    snap = snapshot(make_bars(ATR2_ROWS, "2025-06-02 09:30"), SESSION_OPEN, atr_length=2)
    assert snap.atr_pct == pytest.approx(ATR2_EXPECTED_PCT[-1], abs=1e-9)


def test_atr_is_nan_with_too_few_bars() -> None:
    bars = make_bars(ATR2_ROWS[:2], "2025-06-02 09:30")
    assert math.isnan(snapshot(bars, SESSION_OPEN, atr_length=2).atr_pct)
    assert atr_pct(bars, length=2).isna().all()


# --------------------------------------------------------------------------- snapshot


def test_snapshot_of_no_bars_is_all_nan() -> None:
    snap = snapshot(make_bars([], "2025-06-02 09:30"), SESSION_OPEN)
    assert snap.bar_time is None
    assert all(math.isnan(v) for v in (snap.close, snap.vwap, snap.rsi, snap.atr_pct))


def test_snapshot_reports_last_close_and_bar_start() -> None:
    bars = random_walk(seed=3, n=20)
    snap = snapshot(bars, SESSION_OPEN)
    assert snap.close == bars["close"].iloc[-1]
    assert snap.bar_time == datetime(2025, 6, 2, 9, 49, tzinfo=ET)


@pytest.mark.parametrize("seed", range(6))
def test_numpy_snapshot_equals_pandas_ta_series(seed: int) -> None:
    # Pre-market bars from 08:00, a flat stretch (zero changes, zero-range bars) and
    # zero-volume bars exercise the edge cases both implementations must agree on.
    bars = random_walk(seed, n=400, start="2025-06-02 08:00")
    bars.iloc[100:120, bars.columns.get_indexer(["open", "high", "low", "close"])] = 41.0
    snap = snapshot(bars, SESSION_OPEN)
    reference = (
        session_vwap(bars, SESSION_OPEN).iloc[-1],
        rsi(bars["close"]).iloc[-1],
        rsi(bars["close"]).iloc[-2],
        atr_pct(bars).iloc[-1],
    )
    got = (snap.vwap, snap.rsi, snap.prev_rsi, snap.atr_pct)
    assert np.allclose(got, reference, rtol=0, atol=1e-6)
    assert not np.isnan(got).any()


def test_fifty_snapshots_of_400_bars_take_well_under_50_ms() -> None:
    universe = [random_walk(seed, n=400, start="2025-06-02 08:00") for seed in range(50)]
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        for bars in universe:
            snapshot(bars, SESSION_OPEN)
        best = min(best, time.perf_counter() - started)
    # About 5 ms on an idle machine; the slack absorbs a busy CI box, not a regression
    # back to pandas-ta per call (about 200 ms).
    assert best < 0.040, f"50 snapshots took {best * 1000:.1f} ms"
