"""Entry signals on constructed 1-min price paths: each kind fires, each condition fails alone."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from day_trader.signals import (
    ATR_TOO_LOW,
    BARS_STALE,
    BELOW_VWAP,
    GAP_BELOW_MIN,
    GAP_UNAVAILABLE,
    MIDDAY,
    NO_PRICE,
    RSI_NOT_RISING,
    RSI_TOO_HIGH,
    RSI_TOO_LOW,
    RSI_UNAVAILABLE,
    VWAP_UNAVAILABLE,
    EntryParams,
    EntrySignal,
    evaluate_entry,
    gap_pct,
)
from market.clock import ET
from market.indicators import IndicatorSnapshot, snapshot

DAY = (2025, 6, 2)
SESSION_OPEN = datetime(*DAY, 9, 30, tzinfo=ET)
LAST_BAR = datetime(*DAY, 10, 29, tzinfo=ET)
NOW = LAST_BAR + timedelta(seconds=65)  # the 10:29 bar just completed
PARAMS = EntryParams()  # gap 5%, RSI < 60, ATR >= 1%, no midday filter

WIDE, NARROW = 2.0, 0.1  # bar range in percent of the close: ATR% about 2.4 vs 0.6


def bars_ending(closes: np.ndarray, last_start: datetime, range_pct: float) -> pd.DataFrame:
    """Build 1-min bars whose closes are ``closes``, the last one starting at ``last_start``."""
    index = pd.date_range(end=pd.Timestamp(last_start), periods=len(closes), freq="1min")
    close = np.asarray(closes, dtype="float64")
    open_ = np.r_[close[0], close[:-1]]
    half_range = close * range_pct / 200.0
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) + half_range,
            "low": np.minimum(open_, close) - half_range,
            "close": close,
            "volume": 1000.0,
        },
        index=index,
    )


def zigzag(n: int, amplitude: float) -> np.ndarray:
    """Alternate +amplitude / -amplitude, ending on +amplitude when n is odd."""
    return amplitude * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


RALLY = np.linspace(20.0, 22.0, 40)
# Rally, then a mild pullback that stays above VWAP: RSI cools below 60.
PULLBACK = np.r_[RALLY, np.linspace(22.0, 21.7, 20)] + zigzag(60, 0.05)
# Rally, then a slide below the session VWAP.
SLIDE = np.r_[RALLY, np.linspace(22.0, 20.6, 20)] + zigzag(60, 0.05)
# A straight climb into the last bar: far above VWAP, RSI far above 60.
CLIMB = np.linspace(20.0, 22.0, 60) + zigzag(60, 0.02)
# Rally, a drop that stopped the position out, then a rebound (odd length: last bar is up).
DROP = np.r_[RALLY, np.linspace(22.0, 20.8, 15)]
REBOUND = np.r_[DROP, np.linspace(20.8, 21.3, 9)[1:]] + zigzag(63, 0.05)
REBOUND_LAST_BAR_DOWN = np.r_[DROP, np.linspace(20.8, 21.4, 10)[1:]] + zigzag(64, 0.05)
REBOUND_BELOW_VWAP = np.r_[DROP, np.linspace(20.8, 21.0, 9)[1:]] + zigzag(63, 0.05)


def snap_of(
    closes: np.ndarray, range_pct: float = WIDE, last: datetime = LAST_BAR
) -> IndicatorSnapshot:
    return snapshot(bars_ending(closes, last, range_pct), SESSION_OPEN)


def entry(
    snap: IndicatorSnapshot,
    gap: float = 0.5,
    *,
    now: datetime = NOW,
    params: EntryParams = PARAMS,
    recovery: bool = False,
) -> EntrySignal:
    return evaluate_entry("ABC", snap, gap, now, params, recovery=recovery)


# --------------------------------------------------------------------------- VWAP (standard)


def test_pullback_above_vwap_with_range_fires_a_vwap_entry() -> None:
    signal = entry(snap_of(PULLBACK))
    assert (signal.fire, signal.kind, signal.failed) == (True, "vwap", ())
    assert signal.symbol == "ABC"
    assert signal.metrics["close"] > signal.metrics["vwap"]


def test_narrow_bars_fail_only_the_atr_condition() -> None:
    signal = entry(snap_of(PULLBACK, NARROW))
    assert not signal.fire and signal.kind is None
    assert signal.failed == (GAP_BELOW_MIN, ATR_TOO_LOW)


def test_slide_below_vwap_fails_only_the_vwap_condition() -> None:
    signal = entry(snap_of(SLIDE))
    assert not signal.fire
    assert signal.failed == (GAP_BELOW_MIN, BELOW_VWAP)


def test_straight_climb_fails_only_the_rsi_condition() -> None:
    signal = entry(snap_of(CLIMB))
    assert not signal.fire
    assert signal.failed == (GAP_BELOW_MIN, RSI_TOO_HIGH)
    assert signal.metrics["rsi"] >= PARAMS.rsi_max


def test_lower_atr_minimum_lets_narrow_bars_fire() -> None:
    signal = entry(snap_of(PULLBACK, NARROW), params=replace(PARAMS, atr_min_pct=0.5))
    assert signal.fire and signal.kind == "vwap"


# --------------------------------------------------------------------------- gap-and-go

# Pre-market from 08:00 oscillating around 10.60 (6% over a 10.00 prior close), then the
# 09:30 bar: RSI is warm from the pre-market bars and near 50.
PRIOR_CLOSE = 10.0
GAPPER = np.r_[10.6 + zigzag(90, 0.02), 10.62]
GAPPER_RUNNING = np.r_[np.linspace(10.0, 10.6, 90), 10.62]
OPEN_BAR = datetime(*DAY, 9, 30, tzinfo=ET)
AT_OPEN = OPEN_BAR + timedelta(seconds=70)


def test_gap_with_moderate_rsi_fires_gap_and_go_at_the_open() -> None:
    snap = snap_of(GAPPER, 0.2, last=OPEN_BAR)
    signal = entry(snap, gap_pct(PRIOR_CLOSE, 10.6), now=AT_OPEN)
    assert (signal.fire, signal.kind) == (True, "gap_and_go")
    assert signal.metrics["gap_pct"] == pytest.approx(6.0)


def test_gap_and_go_fires_before_the_first_session_bar_without_vwap() -> None:
    snap = snap_of(GAPPER[:-1], 0.2, last=OPEN_BAR - timedelta(minutes=1))
    assert math.isnan(snap.vwap)
    signal = entry(snap, 6.0, now=OPEN_BAR + timedelta(seconds=5))
    assert (signal.fire, signal.kind) == (True, "gap_and_go")


def test_gap_below_minimum_does_not_fire() -> None:
    snap = snap_of(GAPPER, 0.2, last=OPEN_BAR)
    signal = entry(snap, gap_pct(PRIOR_CLOSE, 10.3), now=AT_OPEN)
    assert not signal.fire
    assert GAP_BELOW_MIN in signal.failed and RSI_TOO_HIGH not in signal.failed


def test_gap_with_overbought_rsi_does_not_fire() -> None:
    snap = snap_of(GAPPER_RUNNING, 0.2, last=OPEN_BAR)
    signal = entry(snap, gap_pct(PRIOR_CLOSE, 10.6), now=AT_OPEN)
    assert not signal.fire
    assert RSI_TOO_HIGH in signal.failed and GAP_BELOW_MIN not in signal.failed


def test_unknown_gap_is_reported_not_treated_as_zero() -> None:
    signal = entry(snap_of(SLIDE), math.nan)
    assert GAP_UNAVAILABLE in signal.failed


def test_gap_pct_is_percent_change_from_prior_close() -> None:
    assert gap_pct(10.0, 10.6) == pytest.approx(6.0)
    assert gap_pct(10.0, 9.5) == pytest.approx(-5.0)
    assert math.isnan(gap_pct(0.0, 10.0))
    assert math.isnan(gap_pct(math.nan, 10.0))


# --------------------------------------------------------------------------- midday, staleness


def test_midday_filter_blocks_an_otherwise_firing_entry() -> None:
    last = datetime(*DAY, 12, 0, tzinfo=ET)
    snap = snap_of(PULLBACK, last=last)
    now = last + timedelta(seconds=65)
    assert entry(snap, now=now).fire
    blocked = entry(snap, now=now, params=replace(PARAMS, midday_filter=True))
    assert (blocked.fire, blocked.failed) == (False, (MIDDAY,))


@pytest.mark.parametrize(
    ("hour", "minute", "blocked"),
    [(11, 29, False), (11, 30, True), (13, 29, True), (13, 30, False)],
)
def test_midday_window_is_1130_inclusive_to_1330_exclusive(
    hour: int, minute: int, blocked: bool
) -> None:
    now = datetime(*DAY, hour, minute, tzinfo=ET)
    snap = snap_of(PULLBACK, last=now - timedelta(minutes=1))
    signal = entry(snap, now=now, params=replace(PARAMS, midday_filter=True))
    assert (MIDDAY in signal.failed) is blocked


def test_stale_bars_do_not_fire() -> None:
    signal = entry(snap_of(PULLBACK), now=LAST_BAR + timedelta(minutes=10))
    assert (signal.fire, signal.failed) == (False, (BARS_STALE,))


def test_snapshot_without_a_price_does_not_fire() -> None:
    empty = IndicatorSnapshot(math.nan, math.nan, math.nan, math.nan, math.nan, None)
    assert entry(empty).failed == (NO_PRICE,)


# --------------------------------------------------------------------------- recovery


def test_rebound_above_vwap_with_rising_rsi_fires_a_recovery() -> None:
    signal = entry(snap_of(REBOUND), recovery=True)
    assert (signal.fire, signal.kind) == (True, "recovery")
    assert signal.metrics["rsi"] > signal.metrics["prev_rsi"]


def test_rebound_with_falling_rsi_is_not_a_recovery_yet() -> None:
    signal = entry(snap_of(REBOUND_LAST_BAR_DOWN), recovery=True)
    assert (signal.fire, signal.failed) == (False, (RSI_NOT_RISING,))


def test_rebound_still_below_vwap_is_not_a_recovery() -> None:
    signal = entry(snap_of(REBOUND_BELOW_VWAP), recovery=True)
    assert not signal.fire and BELOW_VWAP in signal.failed


def test_recovery_uses_only_the_recovery_rule() -> None:
    # The pullback fires a fresh VWAP entry, but its RSI is falling: no recovery.
    assert entry(snap_of(PULLBACK)).fire
    signal = entry(snap_of(PULLBACK), gap=8.0, recovery=True)
    assert not signal.fire and RSI_NOT_RISING in signal.failed


def rule_snapshot(**values: float) -> IndicatorSnapshot:
    base = {"close": 21.0, "vwap": 20.8, "rsi": 55.0, "prev_rsi": 52.0, "atr_pct": 2.0}
    base.update(values)
    return IndicatorSnapshot(**base, bar_time=LAST_BAR)


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"rsi": 61.0, "prev_rsi": 58.0}, RSI_TOO_HIGH),
        ({"rsi": 48.0, "prev_rsi": 45.0}, RSI_TOO_LOW),
        ({"prev_rsi": math.nan}, RSI_NOT_RISING),
        ({"prev_rsi": 55.0}, RSI_NOT_RISING),
        ({"rsi": math.nan}, RSI_UNAVAILABLE),
        ({"vwap": math.nan}, VWAP_UNAVAILABLE),
    ],
)
def test_recovery_rule_fails_on_each_condition(values: dict[str, float], code: str) -> None:
    assert entry(rule_snapshot(), recovery=True).fire
    signal = entry(rule_snapshot(**values), recovery=True)
    assert not signal.fire and code in signal.failed


def test_recovery_rise_threshold_demands_a_minimum_rsi_gain() -> None:
    params = replace(PARAMS, recovery_rsi_rise=5.0)
    assert not entry(rule_snapshot(), recovery=True, params=params).fire
    assert entry(rule_snapshot(prev_rsi=49.0), recovery=True, params=params).fire


@pytest.mark.parametrize(
    ("values", "gap", "kind"),
    [
        ({"rsi": 59.99}, 5.0, "gap_and_go"),  # gap exactly at the minimum counts
        ({"rsi": 60.0}, 0.0, None),  # RSI must be strictly below the maximum
        ({"atr_pct": 1.0}, 0.0, "vwap"),  # ATR exactly at the minimum counts
        ({"atr_pct": 0.99}, 0.0, None),
        ({"close": 20.8}, 0.0, None),  # at VWAP is not above it
    ],
)
def test_threshold_boundaries(values: dict[str, float], gap: float, kind: str | None) -> None:
    signal = entry(rule_snapshot(**values), gap)
    assert (signal.fire, signal.kind) == (kind is not None, kind)


def test_signal_reason_names_the_failed_conditions() -> None:
    signal = entry(snap_of(SLIDE))
    assert BELOW_VWAP in signal.reason and "rsi=" in signal.reason
