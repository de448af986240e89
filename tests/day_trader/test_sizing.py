"""Quote checks, position size, price collar and the entry gate."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from day_trader.sizing import (
    AFTER_EOD_CUTOFF,
    BROKER_DISCONNECTED,
    CROSSED_QUOTE,
    DAILY_TARGET_REACHED,
    ENTRIES_HALTED,
    EXIT_MANAGER_HEARTBEAT_STALE,
    HALTED,
    MAX_POSITIONS,
    MAX_TRADES,
    NAN_QUOTE,
    NEGATIVE_QUOTE,
    OUTSIDE_SESSION,
    STALE_QUOTE,
    ZERO_QUOTE,
    GateParams,
    GateState,
    check_quote,
    entry_gate,
    position_size,
    price_collar_ok,
)
from market.calendar import Session, session
from market.clock import ET

NOW = datetime(2025, 6, 2, 10, 30, tzinfo=ET)

# --------------------------------------------------------------------------- quotes


def quote_reason(
    bid: float = 10.00,
    ask: float = 10.02,
    last: float = 10.01,
    age_s: float | None = 1.0,
    halted: bool = False,
) -> str | None:
    quote_time = None if age_s is None else NOW - timedelta(seconds=age_s)
    return check_quote(bid, ask, last, quote_time, NOW, halted, max_age_s=5.0)


def test_fresh_sane_quote_passes() -> None:
    assert quote_reason() is None


def test_locked_quote_passes() -> None:
    assert quote_reason(bid=10.01, ask=10.01) is None


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"halted": True}, HALTED),
        ({"bid": math.nan}, NAN_QUOTE),
        ({"ask": math.nan}, NAN_QUOTE),
        ({"last": math.nan}, NAN_QUOTE),
        ({"ask": math.inf}, NAN_QUOTE),
        ({"bid": 0.0}, ZERO_QUOTE),
        ({"last": 0.0}, ZERO_QUOTE),
        ({"bid": -1.0}, NEGATIVE_QUOTE),
        ({"bid": 10.05, "ask": 10.02}, CROSSED_QUOTE),
        ({"age_s": 5.5}, STALE_QUOTE),
        ({"age_s": None}, STALE_QUOTE),
    ],
)
def test_bad_quote_gives_its_reason(kwargs: dict, reason: str) -> None:
    assert quote_reason(**kwargs) == reason


def test_quote_exactly_at_max_age_is_still_fresh() -> None:
    assert quote_reason(age_s=5.0) is None


def test_halted_wins_over_a_nan_quote() -> None:
    # A halted symbol often also has no quote; the halt is the reason worth logging.
    assert quote_reason(bid=math.nan, halted=True) == HALTED


# --------------------------------------------------------------------------- size


def test_size_splits_allocation_equally_over_the_watchlist() -> None:
    # 100,000 * 0.10 / 8 = 1,250 budget; at 12.00 that is 104 whole shares.
    assert position_size(100_000, 0.10, 8, 12.00, 50_000) == 104


def test_size_is_capped_by_max_order_notional() -> None:
    # Budget 1,250 would buy 125 at 10.00; the 1,000 cap allows 100.
    assert position_size(100_000, 0.10, 8, 10.00, 1_000) == 100


def test_size_is_at_least_one_share_when_affordable() -> None:
    # Budget 1,250 is below one 2,000 share, but liquidity covers it.
    assert position_size(100_000, 0.10, 8, 2_000.0, 50_000) == 1


def test_size_is_zero_when_one_share_breaks_the_cap() -> None:
    assert position_size(100_000, 0.10, 8, 2_000.0, 1_500) == 0


def test_size_is_zero_when_one_share_exceeds_excess_liquidity() -> None:
    assert position_size(500, 0.10, 8, 600.0, 50_000) == 0


def test_float_noise_does_not_lose_a_share() -> None:
    # 0.3 / 0.1 is 2.9999999999999996 in floats; the budget buys exactly 3 shares.
    assert 0.3 / 0.1 < 3
    assert position_size(0.3, 1.0, 1, 0.1, 1_000) == 3


def test_size_never_exceeds_the_cap_in_notional() -> None:
    for price in (0.37, 1.01, 3.33, 9.99, 17.03, 123.45):
        shares = position_size(1_000_000, 0.5, 2, price, 2_500)
        assert 0 < shares * price <= 2_500
        assert (shares + 1) * price > 2_500


@pytest.mark.parametrize(
    "args",
    [
        (math.nan, 0.1, 8, 10.0, 1000),
        (100_000, 0.1, 0, 10.0, 1000),
        (100_000, 0.1, 8, 0.0, 1000),
        (100_000, 0.1, 8, math.nan, 1000),
        (-5.0, 0.1, 8, 10.0, 1000),
    ],
)
def test_invalid_sizing_inputs_give_zero(args: tuple) -> None:
    assert position_size(*args) == 0


# --------------------------------------------------------------------------- collar


def test_limit_inside_collar_is_ok() -> None:
    assert price_collar_ok(10.05, 10.00, 1.0)


def test_limit_exactly_on_collar_is_ok() -> None:
    assert price_collar_ok(10.10, 10.00, 1.0)


def test_limit_outside_collar_is_refused_on_either_side() -> None:
    assert not price_collar_ok(10.11, 10.00, 1.0)
    assert not price_collar_ok(9.89, 10.00, 1.0)


@pytest.mark.parametrize(("limit", "reference"), [(math.nan, 10.0), (10.0, 0.0), (0.0, 10.0)])
def test_collar_refuses_bad_prices(limit: float, reference: float) -> None:
    assert not price_collar_ok(limit, reference, 5.0)


# --------------------------------------------------------------------------- gate

OPEN_STATE = GateState(
    entries_halted=False,
    daily_target_reached=False,
    trades_today=3,
    exit_manager_heartbeat_age_s=2.0,
    broker_connection_lost=False,
    open_positions=2,
)
GATE = GateParams(max_trades_per_day=10, max_positions=8, heartbeat_max_age_s=30.0)
NORMAL_DAY = session("2025-06-02")
EARLY_CLOSE_DAY = session("2025-11-28")


def test_gate_is_open_mid_session() -> None:
    assert entry_gate(OPEN_STATE, NOW, NORMAL_DAY, GATE) is None


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"entries_halted": True}, ENTRIES_HALTED),
        ({"daily_target_reached": True}, DAILY_TARGET_REACHED),
        ({"trades_today": 10}, MAX_TRADES),
        ({"open_positions": 8}, MAX_POSITIONS),
        ({"exit_manager_heartbeat_age_s": 31.0}, EXIT_MANAGER_HEARTBEAT_STALE),
        ({"exit_manager_heartbeat_age_s": None}, EXIT_MANAGER_HEARTBEAT_STALE),
        ({"broker_connection_lost": True}, BROKER_DISCONNECTED),
    ],
)
def test_gate_refuses_for_each_state_reason(change: dict, reason: str) -> None:
    assert entry_gate(replace(OPEN_STATE, **change), NOW, NORMAL_DAY, GATE) == reason


def test_gate_reports_the_first_reason_in_order() -> None:
    state = replace(OPEN_STATE, daily_target_reached=True, broker_connection_lost=True)
    assert entry_gate(state, NOW, NORMAL_DAY, GATE) == DAILY_TARGET_REACHED


@pytest.mark.parametrize(
    ("day", "hour", "minute", "reason"),
    [
        (NORMAL_DAY, 9, 29, OUTSIDE_SESSION),
        (NORMAL_DAY, 9, 30, None),
        (NORMAL_DAY, 15, 54, None),
        (NORMAL_DAY, 15, 55, AFTER_EOD_CUTOFF),
        (NORMAL_DAY, 16, 30, AFTER_EOD_CUTOFF),
        (EARLY_CLOSE_DAY, 12, 54, None),
        (EARLY_CLOSE_DAY, 12, 55, AFTER_EOD_CUTOFF),
    ],
)
def test_gate_follows_the_session_and_the_eod_cutoff(
    day: Session, hour: int, minute: int, reason: str | None
) -> None:
    now = datetime.combine(day.day, datetime.min.time(), tzinfo=ET).replace(
        hour=hour, minute=minute
    )
    assert entry_gate(OPEN_STATE, now, day, GATE) == reason


def test_gate_is_closed_on_a_non_trading_day() -> None:
    saturday = datetime(2025, 6, 7, 10, 30, tzinfo=ET)
    assert entry_gate(OPEN_STATE, saturday, None, GATE) == OUTSIDE_SESSION


def test_gate_refuses_with_yesterdays_session() -> None:
    next_morning = NOW + timedelta(days=1)
    assert entry_gate(OPEN_STATE, next_morning, NORMAL_DAY, GATE) == OUTSIDE_SESSION
