"""The O(n) indicator series equal ``market.indicators.snapshot`` at every minute of a day.

The live day trader calls ``snapshot`` on the bars so far; the backtest reads
``series.prepare``'s arrays instead. If the two disagree anywhere, the backtest is not
running the live rules, so every minute of each sample day is compared (1e-9 relative;
NaN where snapshot gives NaN).
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from backtest.data import MarketSource, SymbolDay, symbol_day_from_frame
from backtest.series import prepare
from broker.simulator.market_data import SyntheticMarket
from day_trader.decision import opening_gap
from day_trader.signals import gap_pct
from market.calendar import Session, session
from market.indicators import snapshot

DAY = session(date(2025, 6, 2))
FIELDS = ("close", "vwap", "rsi", "prev_rsi", "atr_pct")


def assert_equal_to_snapshot_at_every_minute(bars: SymbolDay, s: Session) -> int:
    """Compare every grid minute; return how many minutes had bars to compare."""
    series = prepare(bars, s)
    frame = bars.frame(s)
    compared = 0
    for m in range(len(series)):
        so_far = frame.iloc[: int(np.searchsorted(bars.minutes, m, side="right"))]
        expected = snapshot(so_far, s.open)
        for name in FIELDS:
            got, want = float(getattr(series, name)[m]), getattr(expected, name)
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(
                want, rel=1e-9, abs=1e-9
            ), f"{name} at minute {m}: {got} != {want}"
        want_time = expected.bar_time
        got_slot = int(series.last_bar[m])
        got_time = s.premarket_start + timedelta(minutes=got_slot) if got_slot >= 0 else None
        assert got_time == want_time, f"bar time at minute {m}"
        compared += len(so_far) > 0
    return compared


@pytest.mark.parametrize("symbol", ["AAPL", "ACHR"])
def test_synthetic_day_matches_snapshot_at_every_minute(symbol: str) -> None:
    bars = MarketSource(SyntheticMarket(seed=7, gap_share=0.5)).symbol_day(symbol, DAY)
    assert bars is not None and len(bars) == 720
    assert assert_equal_to_snapshot_at_every_minute(bars, DAY) == 720


def test_day_with_missing_minutes_and_zero_volume_matches_snapshot() -> None:
    full = MarketSource(SyntheticMarket(seed=3)).symbol_day("NVDA", DAY)
    assert full is not None
    rng = np.random.default_rng(11)
    keep = np.sort(rng.choice(len(full), size=400, replace=False))
    frame = full.frame(DAY).iloc[keep].copy()
    # Zero volume right at the open: VWAP is undefined until volume trades.
    opening = frame.index >= pd.Timestamp(DAY.open)
    frame.loc[frame.index[opening][:3], "volume"] = 0.0
    bars = symbol_day_from_frame("NVDA", DAY, frame, full.prior_close)
    series = prepare(bars, DAY)
    assert not series.has_bar.all()
    assert assert_equal_to_snapshot_at_every_minute(bars, DAY) > 0


def test_short_day_without_warm_up_gives_nan_like_snapshot() -> None:
    full = MarketSource(SyntheticMarket(seed=7)).symbol_day("AAPL", DAY)
    assert full is not None
    frame = full.frame(DAY)
    late = frame[frame.index >= pd.Timestamp(DAY.open) + pd.Timedelta(minutes=380)]
    bars = symbol_day_from_frame("AAPL", DAY, late, full.prior_close)
    series = prepare(bars, DAY)
    assert np.isnan(series.rsi).all() and np.isnan(series.atr_pct).all()
    assert assert_equal_to_snapshot_at_every_minute(bars, DAY) == 10


def test_gap_equals_the_day_traders_opening_gap_at_every_minute() -> None:
    bars = MarketSource(SyntheticMarket(seed=7, gap_share=0.5)).symbol_day("ACHR", DAY)
    assert bars is not None
    series = prepare(bars, DAY)
    frame = bars.frame(DAY)
    for m in range(len(series)):
        so_far = frame.iloc[: m + 1]  # every minute has a bar on the synthetic market
        want = opening_gap(bars.prior_close, so_far, DAY.open)
        assert gap_pct(bars.prior_close, float(series.gap_price[m])) == want, f"minute {m}"
