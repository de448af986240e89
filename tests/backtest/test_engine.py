"""The engine on constructed bars: each live rule and each fill rule acts where it must.

Bars come from ``backtest_bars.DayBars`` (see its docstring): a gapper that buys
99 shares at 100.00 at the 09:30 open with the default settings (10% of $100,000 over
a watchlist of one: floor(10,000 / buy limit 100.50) = 99), target 101.80, stop 99.10,
$1 commission per order. Expected figures are worked out by hand in each test.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import time

import pytest
from backtest_bars import (
    EARLY_CLOSE,
    FLAT_PRIOR,
    MONDAY,
    DayBars,
    at,
    run_days,
    run_one,
    trading_config,
)

from backtest.config import BacktestConfig
from backtest.fills import FillModel


def whole_book(config: BacktestConfig) -> BacktestConfig:
    """Return ``config`` spending all of ExcessLiquidity: 497 shares of each of two symbols
    at 100 (floor(50,000 / 100.50)), no notional cap; commission 497 x $0.005 = $2.485."""
    return replace(config, allocation=1.0, max_order_notional=1_000_000.0)


def test_gapper_is_bought_at_the_open_with_the_allocation_split_over_the_watchlist() -> None:
    result = run_one([DayBars(MONDAY).symbol_day("GAP")], trading_config())

    (trade,) = result.trades
    assert trade.entry_kind == "gap_and_go"
    assert trade.entry_time == at(MONDAY, 9, 30)
    assert trade.entry_price == 100.0
    assert trade.quantity == 99


def test_target_in_a_wick_sells_at_the_target_and_forbids_reentry() -> None:
    bars = DayBars(MONDAY).wick(10, 0, high=102.0)
    result = run_one([bars.symbol_day("GAP")], trading_config())

    (trade,) = result.trades  # the gap-and-go signal still fires after 10:00: no re-entry
    assert (trade.exit_reason, trade.exit_price) == ("target", 101.8)
    assert trade.exit_time == at(MONDAY, 10, 0)
    assert trade.pnl == pytest.approx(99 * 1.8 - 2.0)


def test_stop_in_a_wick_sells_at_the_stop_then_a_recovery_trade_uses_the_lower_target() -> None:
    bars = DayBars(MONDAY).wick(10, 0, low=99.0)  # 10:00 is an up bar: 100.0 -> 100.1
    result = run_one([bars.symbol_day("GAP")], trading_config())

    stop, recovery = result.trades
    assert (stop.exit_reason, stop.exit_time, stop.exit_price) == ("stop", at(MONDAY, 10, 0), 99.1)
    assert stop.pnl == pytest.approx(99 * -0.9 - 2.0)
    # Decided at the 10:00 bar's close (RSI rising, close above VWAP), filled at 10:01's open.
    assert (recovery.entry_kind, recovery.is_recovery) == ("recovery", True)
    assert (recovery.entry_time, recovery.entry_price) == (at(MONDAY, 10, 1), 100.1)
    assert recovery.exit_reason == "eod"


def test_recovery_target_is_recovery_target_pct_above_the_recovery_entry() -> None:
    bars = DayBars(MONDAY).wick(10, 0, low=99.0).wick(10, 30, high=101.5)
    result = run_one([bars.symbol_day("GAP")], trading_config())

    recovery = result.trades[1]
    assert recovery.exit_reason == "target"
    assert recovery.exit_price == pytest.approx(round(100.1 * 1.011, 6))  # not 100.1 * 1.018


@pytest.mark.parametrize(("max_recovery_entries", "trades"), [(0, 1), (1, 2), (2, 3)])
def test_recovery_entries_per_day_are_capped_by_max_recovery_entries(
    max_recovery_entries: int, trades: int
) -> None:
    # Every trade is stopped out by the next wick; without a cap there would be three.
    bars = DayBars(MONDAY).wick(10, 0, low=99.0).wick(11, 0, low=98.0).wick(12, 0, low=98.0)
    config = replace(trading_config(), max_recovery_entries=max_recovery_entries)
    result = run_one([bars.symbol_day("GAP")], config)

    assert len(result.trades) == trades
    assert all(t.exit_reason == "stop" for t in result.trades)


def test_open_below_the_stop_fills_at_the_open_not_at_the_stop() -> None:
    bars = DayBars(MONDAY).gap_open(10, 0, 98.0)
    result = run_one([bars.symbol_day("GAP")], replace(trading_config(), max_recovery_entries=0))

    (trade,) = result.trades
    assert (trade.exit_reason, trade.exit_price) == ("stop", 98.0)
    assert trade.exit_time == at(MONDAY, 10, 0)


def test_open_above_the_target_fills_at_the_open() -> None:
    bars = DayBars(MONDAY).gap_open(10, 0, 103.0)
    result = run_one([bars.symbol_day("GAP")], trading_config())

    (trade,) = result.trades
    assert (trade.exit_reason, trade.exit_price) == ("target", 103.0)


@pytest.mark.parametrize(
    ("minute", "intrabar", "reason"),
    [
        (0, "path", "stop"),  # up bar: open -> low -> high
        (1, "path", "target"),  # down bar: open -> high -> low
        (1, "stop_first", "stop"),  # the conservative rule ignores the bar's direction
    ],
)
def test_bar_through_both_levels_exits_by_the_intrabar_rule(
    minute: int, intrabar: str, reason: str
) -> None:
    bars = DayBars(MONDAY).wick(10, minute, high=102.0, low=99.0)
    config = replace(trading_config(), fill=FillModel(intrabar=intrabar, spread_bps=0.0))
    result = run_one([bars.symbol_day("GAP")], replace(config, max_recovery_entries=0))

    assert result.trades[0].exit_reason == reason


def test_position_is_flattened_at_the_open_eod_flatten_minutes_before_the_close() -> None:
    result = run_one([DayBars(MONDAY).symbol_day("GAP")], trading_config())

    (trade,) = result.trades
    assert (trade.exit_reason, trade.exit_time) == ("eod", at(MONDAY, 15, 55))


def test_early_close_moves_the_flatten_to_1255() -> None:
    result = run_one([DayBars(EARLY_CLOSE).symbol_day("GAP")], trading_config())

    (trade,) = result.trades
    assert (trade.exit_reason, trade.exit_time) == ("eod", at(EARLY_CLOSE, 12, 55))


def test_realized_gain_over_the_daily_target_liquidates_the_book_at_the_next_open() -> None:
    a = DayBars(MONDAY).wick(10, 0, high=102.0).symbol_day("AAA")
    b = DayBars(MONDAY).symbol_day("BBB")
    result = run_one([a, b], whole_book(trading_config(daily_target_pct=0.5)))

    first, second = result.trades
    assert (first.symbol, first.exit_reason) == ("AAA", "target")
    assert first.exit_time == at(MONDAY, 10, 0)
    # 497 x 1.8 - 2 x 2.485 = 889.6 realized: 0.89% >= 0.5% at the 10:00 close; B sells at 10:01.
    assert (second.symbol, second.exit_reason) == ("BBB", "daily_target")
    assert second.exit_time == at(MONDAY, 10, 1)
    assert result.days[0].halt_reason == "daily_target"


def test_unrealized_gain_counts_towards_the_daily_target() -> None:
    # AAA steps up 1.2% at 10:30 (below its 1.8% target): 497 x 1.2 = 596.4 unrealized.
    a = DayBars(MONDAY).shift_from(10, 30, 1.2).symbol_day("AAA")
    b = DayBars(MONDAY).symbol_day("BBB")
    result = run_one([a, b], whole_book(trading_config(daily_target_pct=0.5)))

    assert [t.exit_reason for t in result.trades] == ["daily_target", "daily_target"]
    assert {t.exit_time for t in result.trades} == {at(MONDAY, 10, 31)}


def test_loss_limit_liquidates_and_halts_entries_for_the_day() -> None:
    # A wide stop (5%) so the 1.2% drop is only a loss-limit matter: -0.6% of capital.
    a = DayBars(MONDAY).shift_from(10, 30, -1.2).symbol_day("AAA")
    b = DayBars(MONDAY).symbol_day("BBB")
    config = trading_config(daily_loss_limit_pct=0.5, stop_loss_pct=5.0, profit_target_pct=10.0)
    result = run_one([a, b], whole_book(config))

    assert [t.exit_reason for t in result.trades] == ["loss_limit", "loss_limit"]
    assert result.days[0].halt_reason == "loss_limit"
    # BBB's re-entry would be allowed by its exit reason only if entries were not halted.
    assert all(t.entry_time == at(MONDAY, 9, 30) for t in result.trades)


def test_max_positions_admits_the_first_symbols_of_the_watchlist() -> None:
    bars = [DayBars(MONDAY).symbol_day(s) for s in ("AAA", "BBB", "CCC")]
    config = replace(trading_config(), gate=replace(trading_config().gate, max_positions=2))
    result = run_one(bars, config)

    assert sorted(t.symbol for t in result.trades) == ["AAA", "BBB"]


def test_max_trades_per_day_stops_the_recovery_entry() -> None:
    bars = DayBars(MONDAY).wick(10, 0, low=99.0)
    config = replace(trading_config(), gate=replace(trading_config().gate, max_trades_per_day=1))
    result = run_one([bars.symbol_day("GAP")], config)

    assert [t.exit_reason for t in result.trades] == ["stop"]


def test_midday_filter_defers_the_entry_to_the_end_of_the_window() -> None:
    config = trading_config()
    window = replace(
        config.entry, midday_filter=True, midday_start=time(9, 0), midday_end=time(10, 0)
    )
    result = run_one([DayBars(MONDAY).symbol_day("GAP")], replace(config, entry=window))

    (trade,) = result.trades
    assert trade.entry_time == at(MONDAY, 10, 0)  # decided at 10:00, the 09:59 bar's close


def test_second_entry_is_sized_on_excess_liquidity_after_the_first_position() -> None:
    # AAA gaps (buys at 09:30); BBB has no gap and buys on VWAP at 09:31 (ATR 0.1% >= 0.05%).
    a = DayBars(MONDAY).symbol_day("AAA")
    b = DayBars(MONDAY).symbol_day("BBB", prior_close=FLAT_PRIOR)
    config = replace(trading_config(), allocation=0.5)
    config = replace(config, entry=replace(config.entry, atr_min_pct=0.05))
    result = run_one([a, b], config)

    first, second = sorted(result.trades, key=lambda t: t.entry_time)
    assert (first.symbol, first.quantity) == ("AAA", 248)  # floor(25,000 / 100.50)
    assert (second.symbol, second.entry_kind) == ("BBB", "vwap")
    assert second.entry_time == at(MONDAY, 9, 31)
    # Cash 100,000 - 248 x 100 - 1 = 75,199 plus 75% of 248 x 100.1 = 93,817.6 excess;
    # half of it over two symbols = 23,454.4; buy limit of 100.1 is 100.61: 233 shares.
    assert second.quantity == 233


def test_spread_buys_at_the_ask_and_sells_at_the_bid_of_the_simulator_quote() -> None:
    bars = DayBars(MONDAY).wick(10, 0, high=102.0)
    config = replace(trading_config(), fill=FillModel(spread_bps=10.0))
    result = run_one([bars.symbol_day("GAP")], config)

    (trade,) = result.trades
    # 10 bps of 100.00 is 10 ticks: bid 99.95, ask 100.05. Target 100.05 x 1.018 = 101.8509,
    # whose bid is 5 ticks below, rounded to the cent: 101.80.
    assert (trade.entry_price, trade.exit_price) == (100.05, 101.8)


def test_account_equity_changes_by_the_sum_of_trade_pnl_over_days() -> None:
    first = DayBars(MONDAY).wick(10, 0, high=102.0).symbol_day("GAP")
    second = DayBars(EARLY_CLOSE).wick(10, 0, low=99.0).symbol_day("GAP")
    config = trading_config()
    result = run_days([(MONDAY, [first]), (EARLY_CLOSE, [second])], config)

    assert len(result.days) == 2 and len(result.trades) == 3
    end = result.days[-1].end_equity
    assert end - config.starting_capital == pytest.approx(sum(t.pnl for t in result.trades))
    assert result.days[1].start_equity == result.days[0].end_equity
    assert result.equity[-1] == pytest.approx(end)
    assert result.bars == 720 + 540
