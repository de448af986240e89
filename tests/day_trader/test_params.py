"""The day trader's parameters: settings, with today's accepted parameter set in force."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from broker.models import Quote
from config.settings import load_settings
from day_trader.decision import EntryPlan, Funds, SymbolView, decide_entry, judge_entry
from day_trader.params import trader_params
from exit_manager.rules import target_price
from market.clock import ET, VirtualClock
from market.indicators import IndicatorSnapshot
from shared_state.phase_data import ParameterSet

SETTINGS = load_settings({}, env_file=None)
NOW = datetime(2025, 11, 26, 10, 30, 5, tzinfo=ET)
SET = ParameterSet(
    effective_date=date(2025, 11, 26),
    profit_target_pct=2.4,
    stop_loss_pct=1.1,
    size_pct=5.0,
    recovery_target_pct=1.3,
    decided_on=date(2025, 11, 25),
    created_at=datetime(2025, 11, 25, 21, tzinfo=ET),
    reason="test",
)
FIRING = IndicatorSnapshot(
    close=50.0, vwap=49.0, rsi=55.0, prev_rsi=53.0, atr_pct=1.5,
    bar_time=NOW - timedelta(seconds=65),
)  # fmt: skip
QUOTE = Quote("ABC", bid=49.99, ask=50.01, last=50.0, time=NOW - timedelta(seconds=1))


def test_the_set_decides_the_new_positions_target_stop_and_the_allocation() -> None:
    params = trader_params(SETTINGS, VirtualClock(NOW, 1.0), SET)

    assert (params.exit.profit_target_pct, params.exit.stop_loss_pct) == (2.4, 1.1)
    assert params.exit.recovery_target_pct == 1.3
    assert params.allocation == pytest.approx(0.05)
    assert target_price(100.0, False, params.exit) == pytest.approx(102.4)
    assert params.entry == trader_params(SETTINGS).entry  # the signal thresholds stay


def test_without_a_set_the_settings_decide() -> None:
    params = trader_params(SETTINGS)

    assert (params.exit.profit_target_pct, params.exit.stop_loss_pct) == (1.8, 0.9)
    assert params.allocation == SETTINGS.allocation


def test_the_sets_allocation_sizes_the_buy() -> None:
    view = SymbolView("ABC", FIRING, 1.0, QUOTE)
    funds = Funds(excess_liquidity=100_000.0, watchlist_size=8)

    with_set = decide_entry(view, funds, NOW, trader_params(SETTINGS, None, SET))
    with_settings = decide_entry(view, funds, NOW, trader_params(SETTINGS))

    assert isinstance(with_set, EntryPlan) and isinstance(with_settings, EntryPlan)
    # 5 % of 100k over 8 = 625 USD at 50.27: 12 shares; the settings' 10 %: 24.
    assert (with_set.quantity, with_settings.quantity) == (12, 24)


def test_judge_entry_gives_the_signal_with_the_same_decision_even_when_nothing_fires() -> None:
    params = trader_params(SETTINGS)
    funds = Funds(excess_liquidity=100_000.0, watchlist_size=8)
    quiet = SymbolView(
        "ABC", IndicatorSnapshot(48.0, 49.0, 55.0, 53.0, 1.5, FIRING.bar_time), 1.0, QUOTE
    )

    signal, decision = judge_entry(quiet, funds, NOW, params)

    assert decision is None and decide_entry(quiet, funds, NOW, params) is None
    assert not signal.fire and "below_vwap" in signal.reason
