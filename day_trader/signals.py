"""Entry signals: pure functions of an indicator snapshot, the gap, the time and parameters.

Three kinds of entry, evaluated in this order:

- ``gap_and_go``: the pre-market gap is at least ``gap_min_pct`` and RSI is below
  ``rsi_max`` (a gapper that is not yet overbought). VWAP is not needed, so it can
  fire at the open, before the first session bar.
- ``vwap`` (standard): the last close is above the session VWAP, ATR is at least
  ``atr_min_pct`` of the price (enough movement to reach the target) and RSI is below
  ``rsi_max``.
- ``recovery`` (only when the caller says the symbol's last exit today was a stop):
  momentum must have returned, which this module defines as all of

  1. the last close is above the session VWAP (buyers back in control),
  2. RSI is rising: ``rsi - prev_rsi >= recovery_rsi_rise`` and strictly positive,
  3. ``recovery_rsi_min <= rsi < rsi_max`` (momentum, not an oversold bounce, and not
     overbought).

  The fresh-entry kinds are *not* tried for a recovery: after a stop, only this rule
  may re-enter.

The optional midday filter blocks every kind from ``midday_start`` to ``midday_end``
ET (default 11:30-13:30, the lunchtime lull when volume thins out and breakouts fail).
Bars older than ``max_bar_age_s`` block entries too: a stale snapshot describes a
market that is gone.

Whether the symbol may be entered at all (re-entry rules, gates, quote checks) is
decided elsewhere; this module only answers "does the price action say buy?".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time
from types import MappingProxyType
from typing import Literal

from market.clock import ET
from market.indicators import IndicatorSnapshot

EntryKind = Literal["gap_and_go", "vwap", "recovery"]

# Codes of failed conditions, as they appear in ``EntrySignal.failed``.
MIDDAY = "midday"
BARS_STALE = "bars_stale"
NO_PRICE = "no_price"
GAP_UNAVAILABLE = "gap_unavailable"
GAP_BELOW_MIN = "gap_below_min"
RSI_UNAVAILABLE = "rsi_unavailable"
RSI_TOO_HIGH = "rsi_too_high"
VWAP_UNAVAILABLE = "vwap_unavailable"
BELOW_VWAP = "below_vwap"
ATR_UNAVAILABLE = "atr_unavailable"
ATR_TOO_LOW = "atr_too_low"
RSI_NOT_RISING = "rsi_not_rising"
RSI_TOO_LOW = "rsi_too_low"


@dataclass(frozen=True)
class EntryParams:
    """Thresholds of the entry rules (percentages are in percent, e.g. 5.0 for 5%)."""

    gap_min_pct: float = 5.0
    rsi_max: float = 60.0
    atr_min_pct: float = 1.0
    midday_filter: bool = False
    midday_start: time = time(11, 30)
    midday_end: time = time(13, 30)
    max_bar_age_s: float = 180.0  # bar_time is the bar's *start*: a 1-min bar is 60-120 s old
    recovery_rsi_min: float = 50.0
    recovery_rsi_rise: float = 0.0


@dataclass(frozen=True)
class EntrySignal:
    """The entry decision for one symbol: fire or not, which kind, and why."""

    symbol: str
    kind: EntryKind | None
    fire: bool
    reason: str
    failed: tuple[str, ...]  # codes of the conditions that failed; empty when fire is True
    metrics: Mapping[str, float]


def gap_pct(prior_close: float, price: float) -> float:
    """Return the gap from ``prior_close`` to ``price`` in percent (NaN if undefined)."""
    if not (math.isfinite(prior_close) and math.isfinite(price)) or prior_close <= 0:
        return math.nan
    return (price - prior_close) / prior_close * 100.0


def evaluate_entry(
    symbol: str,
    snapshot: IndicatorSnapshot,
    gap_pct: float,
    now: datetime,
    params: EntryParams,
    *,
    recovery: bool,
) -> EntrySignal:
    """Decide whether ``symbol`` is a buy at ``now``; see the module docstring for the rules."""
    metrics = _metrics(snapshot, gap_pct)
    blocked = _blocked(snapshot, now, params)
    if blocked:
        return _no_signal(symbol, blocked, metrics)
    if recovery:
        return _decide(symbol, "recovery", _recovery_failures(snapshot, params), metrics)
    gap_failures = _gap_and_go_failures(snapshot, gap_pct, params)
    if not gap_failures:
        return _decide(symbol, "gap_and_go", (), metrics)
    vwap_failures = _vwap_failures(snapshot, params)
    if not vwap_failures:
        return _decide(symbol, "vwap", (), metrics)
    # Report every distinct failed condition of both kinds, gap first.
    failed = tuple(dict.fromkeys(gap_failures + vwap_failures))
    return _no_signal(symbol, failed, metrics)


def _blocked(snapshot: IndicatorSnapshot, now: datetime, params: EntryParams) -> tuple[str, ...]:
    if not (math.isfinite(snapshot.close) and snapshot.close > 0):
        return (NO_PRICE,)
    if (
        snapshot.bar_time is None
        or (now - snapshot.bar_time).total_seconds() > params.max_bar_age_s
    ):
        return (BARS_STALE,)
    if (
        params.midday_filter
        and params.midday_start <= now.astimezone(ET).time() < params.midday_end
    ):
        return (MIDDAY,)
    return ()


def _rsi_failures(rsi: float, params: EntryParams) -> tuple[str, ...]:
    if math.isnan(rsi):
        return (RSI_UNAVAILABLE,)
    return () if rsi < params.rsi_max else (RSI_TOO_HIGH,)


def _above_vwap_failures(snapshot: IndicatorSnapshot) -> tuple[str, ...]:
    if math.isnan(snapshot.vwap):
        return (VWAP_UNAVAILABLE,)
    return () if snapshot.close > snapshot.vwap else (BELOW_VWAP,)


def _gap_and_go_failures(
    snapshot: IndicatorSnapshot, gap: float, params: EntryParams
) -> tuple[str, ...]:
    if math.isnan(gap):
        gap_failed: tuple[str, ...] = (GAP_UNAVAILABLE,)
    else:
        gap_failed = () if gap >= params.gap_min_pct else (GAP_BELOW_MIN,)
    return gap_failed + _rsi_failures(snapshot.rsi, params)


def _vwap_failures(snapshot: IndicatorSnapshot, params: EntryParams) -> tuple[str, ...]:
    if math.isnan(snapshot.atr_pct):
        atr_failed: tuple[str, ...] = (ATR_UNAVAILABLE,)
    else:
        atr_failed = () if snapshot.atr_pct >= params.atr_min_pct else (ATR_TOO_LOW,)
    return _above_vwap_failures(snapshot) + atr_failed + _rsi_failures(snapshot.rsi, params)


def _recovery_failures(snapshot: IndicatorSnapshot, params: EntryParams) -> tuple[str, ...]:
    failed = _above_vwap_failures(snapshot) + _rsi_failures(snapshot.rsi, params)
    if RSI_UNAVAILABLE in failed:
        return failed
    rise = snapshot.rsi - snapshot.prev_rsi
    # NaN prev_rsi makes ``rise`` NaN and every comparison False: not rising.
    if not (rise > 0 and rise >= params.recovery_rsi_rise):
        failed += (RSI_NOT_RISING,)
    if snapshot.rsi < params.recovery_rsi_min:
        failed += (RSI_TOO_LOW,)
    return failed


def _decide(
    symbol: str, kind: EntryKind, failed: tuple[str, ...], metrics: Mapping[str, float]
) -> EntrySignal:
    if failed:
        return _no_signal(symbol, failed, metrics)
    return EntrySignal(symbol, kind, True, f"{kind}: {_describe(metrics)}", (), metrics)


def _no_signal(symbol: str, failed: tuple[str, ...], metrics: Mapping[str, float]) -> EntrySignal:
    reason = f"no entry ({', '.join(failed)}): {_describe(metrics)}"
    return EntrySignal(symbol, None, False, reason, failed, metrics)


def _metrics(snapshot: IndicatorSnapshot, gap: float) -> Mapping[str, float]:
    return MappingProxyType(
        {
            "close": snapshot.close,
            "vwap": snapshot.vwap,
            "rsi": snapshot.rsi,
            "prev_rsi": snapshot.prev_rsi,
            "atr_pct": snapshot.atr_pct,
            "gap_pct": gap,
        }
    )


def _describe(metrics: Mapping[str, float]) -> str:
    return " ".join(f"{name}={value:.2f}" for name, value in metrics.items())
