"""Price helpers: tick rounding edge cases, sub-dollar ticks, buy and sell limits."""

from __future__ import annotations

import math

import pytest

from market.pricing import (
    PENNY_TICK,
    SUB_DOLLAR_TICK,
    buy_limit,
    min_tick_for,
    round_to_tick,
    sell_limit,
)


def test_half_cent_price_rounds_up_for_a_buy_and_down_for_a_sell() -> None:
    assert round_to_tick(10.005, 0.01, "up") == 10.01
    assert round_to_tick(10.005, 0.01, "down") == 10.00


def test_float_noise_above_the_grid_does_not_round_up_a_whole_tick() -> None:
    noisy = 0.1 + 0.2  # 0.30000000000000004
    assert noisy != 0.3
    assert round_to_tick(noisy, 0.01, "up") == 0.30
    assert round_to_tick(noisy, 0.01, "down") == 0.30


def test_float_noise_below_the_grid_does_not_round_down_a_whole_tick() -> None:
    below = 0.3 - 0.1  # 0.19999999999999998
    assert below < 0.2
    assert round_to_tick(below, 0.01, "down") == 0.2
    assert round_to_tick(below, 0.01, "up") == 0.2


def test_rounded_price_is_exactly_the_decimal_grid_value() -> None:
    # 35 * 0.01 in floats is 0.35000000000000003; the helper must give the float 0.35.
    assert 35 * 0.01 != 0.35
    assert round_to_tick(0.3451, 0.01, "up") == 0.35
    assert repr(round_to_tick(0.3451, 0.01, "up")) == "0.35"


def test_price_on_the_grid_is_unchanged_in_every_direction() -> None:
    for direction in ("up", "down", "nearest"):
        assert round_to_tick(25.37, 0.01, direction) == 25.37


def test_sub_dollar_price_rounds_to_hundredths_of_a_cent() -> None:
    assert round_to_tick(0.123456, SUB_DOLLAR_TICK, "up") == 0.1235
    assert round_to_tick(0.123456, SUB_DOLLAR_TICK, "down") == 0.1234


def test_min_tick_is_sub_penny_only_below_one_dollar() -> None:
    assert min_tick_for(0.9999) == SUB_DOLLAR_TICK
    assert min_tick_for(1.00) == PENNY_TICK
    assert min_tick_for(250.0) == PENNY_TICK


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_rounding_a_non_finite_price_raises(bad: float) -> None:
    with pytest.raises(ValueError):
        round_to_tick(bad, 0.01, "up")


def test_rounding_with_unknown_direction_raises() -> None:
    with pytest.raises(ValueError):
        round_to_tick(10.005, 0.01, "sideways")  # type: ignore[arg-type]


def test_buy_limit_is_ask_plus_aggression_rounded_up() -> None:
    # 20.00 * 1.005 = 20.10 exactly on the grid; 20.01 * 1.005 = 20.11005 -> 20.12.
    assert buy_limit(20.00, 0.5) == 20.10
    assert buy_limit(20.01, 0.5) == 20.12


def test_buy_limit_below_one_dollar_uses_sub_penny_tick() -> None:
    # 0.5 * 1.005 = 0.5025 exactly; 0.50003 * 1.005 = 0.50253015 -> 0.5026.
    assert buy_limit(0.5, 0.5) == 0.5025
    assert buy_limit(0.50003, 0.5) == 0.5026


def test_sell_limit_is_bid_minus_aggression_rounded_down() -> None:
    # 20.01 * 0.995 = 19.90995 -> 19.90.
    assert sell_limit(20.01, 0.5) == 19.90


def test_each_replacement_step_sells_more_aggressively() -> None:
    limits = [sell_limit(50.0, 0.5, step=s, step_pct=0.5) for s in range(4)]
    assert limits == [49.75, 49.50, 49.25, 49.00]


def test_sell_limit_never_goes_below_one_tick() -> None:
    assert sell_limit(0.0001, 50.0) == SUB_DOLLAR_TICK


def test_explicit_tick_overrides_the_price_based_tick() -> None:
    assert sell_limit(20.01, 0.5, tick=0.05) == 19.90
    assert buy_limit(20.01, 0.5, tick=0.05) == 20.15


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan])
def test_limits_refuse_a_bad_quote(bad: float) -> None:
    with pytest.raises(ValueError):
        buy_limit(bad, 0.5)
    with pytest.raises(ValueError):
        sell_limit(bad, 0.5)


def test_negative_replacement_step_raises() -> None:
    with pytest.raises(ValueError):
        sell_limit(10.0, 0.5, step=-1)
