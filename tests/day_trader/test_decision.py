"""One symbol's entry decision: re-entry rules, bad quotes, sizing, collar, each alone."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from broker.models import Quote
from config.settings import load_settings
from day_trader.decision import (
    NO_EXCESS_LIQUIDITY,
    NO_QUOTE,
    PRICE_COLLAR,
    RECOVERY_LIMIT,
    REENTRY_FORBIDDEN,
    SIZE_ZERO,
    EntryPlan,
    EntrySkip,
    Funds,
    SymbolView,
    decide_entry,
    opening_gap,
)
from day_trader.params import trader_params
from day_trader.sizing import CROSSED_QUOTE, HALTED, NAN_QUOTE, STALE_QUOTE, ZERO_QUOTE
from market.clock import ET
from market.indicators import IndicatorSnapshot

NOW = datetime(2025, 11, 26, 10, 30, 5, tzinfo=ET)
BAR = NOW - timedelta(seconds=65)
PARAMS = trader_params(load_settings({}, env_file=None))
FUNDS = Funds(excess_liquidity=100_000.0, watchlist_size=8)

#: Fires the standard (VWAP) entry; RSI rising, so it fires the recovery rule too.
FIRING = IndicatorSnapshot(
    close=50.0, vwap=49.0, rsi=55.0, prev_rsi=53.0, atr_pct=1.5, bar_time=BAR
)
QUIET = replace(FIRING, close=48.0)  # below VWAP, no gap: nothing fires


def quote(**changes: object) -> Quote:
    base = Quote("ABC", bid=49.99, ask=50.01, last=50.0, time=NOW - timedelta(seconds=1))
    return replace(base, **changes)


def view(snap: IndicatorSnapshot = FIRING, q: Quote | None = None, **changes: object) -> SymbolView:
    return replace(SymbolView("ABC", snap, 1.0, q if q is not None else quote()), **changes)


def test_firing_signal_with_a_good_quote_plans_a_buy_limit_above_the_ask() -> None:
    decision = decide_entry(view(), FUNDS, NOW, PARAMS)
    assert isinstance(decision, EntryPlan)
    assert decision.kind == "vwap" and not decision.is_recovery
    assert decision.limit == pytest.approx(50.27)  # 50.01 * 1.005 = 50.26005, rounded up
    # 10% of 100k over 8 symbols = 1250 USD: 24 whole shares at 50.27.
    assert decision.quantity == 24
    assert decision.reference == 50.0


def test_no_signal_means_no_decision_whatever_the_quote() -> None:
    assert decide_entry(view(QUIET, quote(halted=True)), FUNDS, NOW, PARAMS) is None


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (quote(halted=True), HALTED),
        (quote(bid=None, ask=None, last=None), NAN_QUOTE),
        (quote(ask=math.nan), NAN_QUOTE),
        (quote(bid=0.0), ZERO_QUOTE),
        (quote(last=0.0), ZERO_QUOTE),
        (quote(bid=50.2, ask=50.1), CROSSED_QUOTE),
        (quote(time=NOW - timedelta(seconds=PARAMS.quote_max_age_s + 1)), STALE_QUOTE),
    ],
    ids=["halted", "none", "nan", "zero-bid", "zero-last", "crossed", "stale"],
)
def test_bad_quote_skips_the_entry_and_says_why(bad: Quote, reason: str) -> None:
    decision = decide_entry(view(q=bad), FUNDS, NOW, PARAMS)
    assert isinstance(decision, EntrySkip)
    assert decision.reason == reason
    assert decision.detail["signal"] == "vwap"


def test_missing_quote_skips_with_no_quote() -> None:
    decision = decide_entry(replace(view(), quote=None), FUNDS, NOW, PARAMS)
    assert isinstance(decision, EntrySkip) and decision.reason == NO_QUOTE


def test_after_a_target_exit_a_firing_signal_is_refused_as_reentry_forbidden() -> None:
    decision = decide_entry(view(exits_today=("target",)), FUNDS, NOW, PARAMS)
    assert isinstance(decision, EntrySkip) and decision.reason == REENTRY_FORBIDDEN


def test_after_a_stop_exit_only_the_recovery_rule_may_enter() -> None:
    recovered = decide_entry(view(exits_today=("stop",)), FUNDS, NOW, PARAMS)
    assert isinstance(recovered, EntryPlan)
    assert recovered.kind == "recovery" and recovered.is_recovery
    # Momentum has not returned (RSI falling): the fresh VWAP rule would fire, recovery not.
    falling = replace(FIRING, prev_rsi=57.0)
    assert decide_entry(view(falling, exits_today=("stop",)), FUNDS, NOW, PARAMS) is None


def test_recoveries_used_up_refuse_with_recovery_limit() -> None:
    exits = ("stop",) * (PARAMS.max_recovery_entries + 1)
    decision = decide_entry(view(exits_today=exits), FUNDS, NOW, PARAMS)
    assert isinstance(decision, EntrySkip) and decision.reason == RECOVERY_LIMIT


def test_unknown_excess_liquidity_refuses_rather_than_guess() -> None:
    decision = decide_entry(view(), Funds(None, 8), NOW, PARAMS)
    assert isinstance(decision, EntrySkip) and decision.reason == NO_EXCESS_LIQUIDITY


def test_small_budget_still_buys_one_share_and_the_notional_cap_can_refuse() -> None:
    one = decide_entry(view(), Funds(100.0, 8), NOW, PARAMS)
    assert isinstance(one, EntryPlan) and one.quantity == 1
    capped = replace(PARAMS, max_order_notional=40.0)  # one share costs 50.27
    refused = decide_entry(view(), FUNDS, NOW, capped)
    assert isinstance(refused, EntrySkip) and refused.reason == SIZE_ZERO


def test_limit_outside_the_collar_is_refused() -> None:
    # Ask 2% above the last price plus 0.5% aggression: outside a 2% collar.
    wide = quote(bid=49.9, ask=51.0)
    decision = decide_entry(view(q=wide), FUNDS, NOW, replace(PARAMS, price_collar_pct=2.0))
    assert isinstance(decision, EntrySkip) and decision.reason == PRICE_COLLAR


def _bars(start: str, closes: list[float]) -> pd.DataFrame:
    index = pd.date_range(pd.Timestamp(start, tz=ET), periods=len(closes), freq="1min")
    c = np.asarray(closes)
    return pd.DataFrame(
        {"open": c - 0.1, "high": c, "low": c - 0.2, "close": c, "volume": 1.0}, index=index
    )


def test_opening_gap_uses_the_first_session_open_then_the_last_close_before_it() -> None:
    session_open = datetime(2025, 11, 26, 9, 30, tzinfo=ET)
    premarket = _bars("2025-11-26 09:00", [105.0] * 5)
    assert opening_gap(100.0, premarket, session_open) == pytest.approx(5.0)
    day = pd.concat([premarket, _bars("2025-11-26 09:30", [108.1, 120.0])])
    assert opening_gap(100.0, day, session_open) == pytest.approx(8.0)  # open 108.0


def test_opening_gap_falls_back_to_the_watchlist_gap_without_a_prior_close() -> None:
    session_open = datetime(2025, 11, 26, 9, 30, tzinfo=ET)
    bars = _bars("2025-11-26 09:30", [10.0])
    assert opening_gap(None, bars, session_open, fallback=6.5) == 6.5
    assert math.isnan(opening_gap(None, bars, session_open))
