"""The fill model's pieces: quotes as the simulator makes them, path order, levels, commission."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from backtest.data import MarketSource
from backtest.fills import FillModel, trigger_level
from broker.simulator.market_data import SyntheticMarket
from exit_manager.rules import EOD, STOP, TARGET, PositionView
from market.calendar import session, trading_days_back

POSITION = PositionView("ABC", 100, 50.0, False, target_price=50.9, stop_price=49.55)


def test_modelled_quote_at_a_bar_open_is_the_simulator_quote_at_that_instant() -> None:
    market = SyntheticMarket(seed=7, gap_share=0.3)
    source, model = MarketSource(market), FillModel()
    compared = 0
    for day in trading_days_back(date(2025, 11, 26), 2):
        s = session(day)
        for symbol in market.symbols()[:25]:
            bars = source.symbol_day(symbol, s)
            assert bars is not None
            for k in range(330, 720, 13):  # regular-session bars
                quote = market.quote_at(symbol, s.premarket_start + timedelta(minutes=k))
                assert quote is not None and quote.last == bars.open[k]
                assert model.quote(bars.open[k], bars.spread_bps) == (quote.bid, quote.ask)
                compared += 1
    assert compared == 2 * 25 * 30


def test_spread_override_replaces_the_market_spread_and_zero_means_no_spread() -> None:
    assert FillModel().spread_of(7.0) == 7.0
    assert FillModel(spread_bps=2.0).spread_of(7.0) == 2.0
    assert FillModel().quote(123.45, 0.0) == (123.45, 123.45)


def test_narrow_spread_is_still_one_tick_with_the_odd_tick_on_the_ask() -> None:
    assert FillModel().quote(20.0, 0.1) == (20.0, 20.01)
    assert FillModel().quote(100.0, 30.0) == (99.85, 100.15)  # 30 ticks: 15 each side


@pytest.mark.parametrize(
    ("bar", "intrabar", "order"),
    [
        ((10.0, 10.5, 9.5, 10.2), "path", (9.5, 10.5)),  # up bar: low first
        ((10.0, 10.5, 9.5, 10.0), "path", (9.5, 10.5)),  # flat counts as up
        ((10.0, 10.5, 9.5, 9.8), "path", (10.5, 9.5)),  # down bar: high first
        ((10.0, 10.5, 9.5, 9.8), "stop_first", (9.5, 10.5)),
    ],
)
def test_waypoints_follow_the_simulator_path_or_the_stop_first_rule(
    bar: tuple[float, float, float, float], intrabar: str, order: tuple[float, float]
) -> None:
    assert FillModel(intrabar=intrabar).waypoints(*bar) == order


def test_trigger_level_is_the_level_crossed_not_the_extreme_seen() -> None:
    assert trigger_level(STOP, POSITION, 48.0) == 49.55
    assert trigger_level(TARGET, POSITION, 52.0) == 50.9
    assert trigger_level(EOD, POSITION, 50.1) == 50.1


@pytest.mark.parametrize(
    ("shares", "price", "commission"),
    [(100, 50.0, 1.0), (1000, 50.0, 5.0), (10, 5.0, 0.5)],  # minimum, per share, 1% cap
)
def test_commission_is_ibkr_pro_fixed_per_order(
    shares: int, price: float, commission: float
) -> None:
    assert FillModel().commission(shares, price) == pytest.approx(commission)


def test_fill_model_refuses_unknown_intrabar_rule_and_negative_spread() -> None:
    with pytest.raises(ValueError, match="intrabar"):
        FillModel(intrabar="high_first")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="spread_bps"):
        FillModel(spread_bps=-1.0)
