"""Exit rules: target, recovery target, stop, EOD flatten (normal and early close), daily P&L."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from exit_manager.rules import (
    DAILY_TARGET,
    EOD,
    EXIT_REASONS,
    LOSS_LIMIT,
    STOP,
    TARGET,
    ExitParams,
    PositionView,
    evaluate_daily,
    evaluate_exit,
    exit_limit,
    next_entry_kind,
    reentry_allowed,
    should_replace,
    stop_price,
    target_price,
)
from market.calendar import session
from market.clock import ET

PARAMS = ExitParams()  # target 1.8%, recovery 1.1%, stop 0.9%, flatten 5 min before close
NORMAL = session("2025-06-02")
EARLY = session("2025-11-28")  # day after Thanksgiving: closes 13:00
MID_MORNING = datetime(2025, 6, 2, 10, 30, tzinfo=ET)


def position(entry: float = 50.0, is_recovery: bool = False, quantity: int = 100) -> PositionView:
    return PositionView(
        symbol="ABC",
        quantity=quantity,
        entry_price=entry,
        is_recovery=is_recovery,
        target_price=target_price(entry, is_recovery, PARAMS),
        stop_price=stop_price(entry, PARAMS),
    )


def exit_reason(
    price: float,
    now: datetime = MID_MORNING,
    *,
    is_recovery: bool = False,
    quantity: int = 100,
) -> str | None:
    held = position(is_recovery=is_recovery, quantity=quantity)
    decision = evaluate_exit(held, price, now, NORMAL.close, PARAMS)
    return None if decision is None else decision.reason


# --------------------------------------------------------------------------- levels


def test_target_and_stop_levels_follow_the_percentages() -> None:
    assert target_price(50.0, False, PARAMS) == pytest.approx(50.90)
    assert target_price(50.0, True, PARAMS) == pytest.approx(50.55)
    assert stop_price(50.0, PARAMS) == pytest.approx(49.55)


def test_recovery_target_is_below_the_normal_target() -> None:
    assert target_price(20.0, True, PARAMS) < target_price(20.0, False, PARAMS)


# --------------------------------------------------------------------------- target / stop


def test_price_between_stop_and_target_holds() -> None:
    assert exit_reason(50.50) is None


def test_price_at_target_exits_for_target() -> None:
    assert exit_reason(50.90) == TARGET


def test_price_just_below_target_holds() -> None:
    assert exit_reason(50.89) is None


def test_recovery_trade_exits_at_the_lower_recovery_target() -> None:
    assert exit_reason(50.55, is_recovery=True) == TARGET
    assert exit_reason(50.55, is_recovery=False) is None


def test_price_at_stop_exits_for_stop() -> None:
    assert exit_reason(49.55) == STOP
    assert exit_reason(49.56) is None


def test_decision_carries_symbol_quantity_and_price() -> None:
    decision = evaluate_exit(position(quantity=37), 48.0, MID_MORNING, NORMAL.close, PARAMS)
    assert decision is not None
    assert (decision.symbol, decision.reason, decision.quantity, decision.price) == (
        "ABC",
        STOP,
        37,
        48.0,
    )


def test_position_uses_its_own_levels_not_recomputed_ones() -> None:
    # An adopted position may carry levels set elsewhere; the rules obey the row.
    adopted = replace(position(), target_price=50.20)
    decision = evaluate_exit(adopted, 50.25, MID_MORNING, NORMAL.close, PARAMS)
    assert decision is not None and decision.reason == TARGET


@pytest.mark.parametrize("bad", [math.nan, 0.0, -1.0])
def test_bad_price_triggers_neither_stop_nor_target(bad: float) -> None:
    assert exit_reason(bad) is None


def test_empty_position_needs_no_exit() -> None:
    assert exit_reason(10.0, quantity=0) is None


# --------------------------------------------------------------------------- end of day


@pytest.mark.parametrize(
    ("minute", "flatten"), [(54, False), (55, True), (59, True)], ids=["15:54", "15:55", "15:59"]
)
def test_normal_day_flattens_from_1555(minute: int, flatten: bool) -> None:
    now = datetime(2025, 6, 2, 15, minute, tzinfo=ET)
    assert exit_reason(50.5, now) == (EOD if flatten else None)


@pytest.mark.parametrize(("minute", "flatten"), [(54, False), (55, True)], ids=["12:54", "12:55"])
def test_early_close_day_flattens_from_1255(minute: int, flatten: bool) -> None:
    assert EARLY.is_early_close
    now = datetime(2025, 11, 28, 12, minute, tzinfo=ET)
    decision = evaluate_exit(position(), 50.5, now, EARLY.close, PARAMS)
    assert (decision is not None and decision.reason == EOD) is flatten


def test_stop_wins_over_eod() -> None:
    now = datetime(2025, 6, 2, 15, 57, tzinfo=ET)
    assert exit_reason(49.0, now) == STOP


def test_target_wins_over_eod() -> None:
    now = datetime(2025, 6, 2, 15, 57, tzinfo=ET)
    assert exit_reason(51.0, now) == TARGET


def test_eod_flattens_even_without_a_usable_price() -> None:
    now = datetime(2025, 6, 2, 15, 56, tzinfo=ET)
    assert exit_reason(math.nan, now) == EOD


def test_flatten_minutes_parameter_moves_the_flatten_time() -> None:
    params = replace(PARAMS, eod_flatten_minutes=15)
    now = datetime(2025, 6, 2, 15, 46, tzinfo=ET)
    assert evaluate_exit(position(), 50.5, now, NORMAL.close, PARAMS) is None
    decision = evaluate_exit(position(), 50.5, now, NORMAL.close, params)
    assert decision is not None and decision.reason == EOD


# --------------------------------------------------------------------------- daily P&L


def test_daily_target_counts_realized_plus_unrealized() -> None:
    # 100,000 start: 1,200 realized + 600 unrealized = 1.8%.
    decision = evaluate_daily(1_200.0, 600.0, 100_000.0, PARAMS)
    assert decision is not None
    assert decision.reason == DAILY_TARGET
    assert decision.pnl == pytest.approx(1_800.0)
    assert decision.pnl_pct == pytest.approx(1.8)


def test_realized_alone_below_target_does_not_trigger() -> None:
    assert evaluate_daily(1_200.0, 0.0, 100_000.0, PARAMS) is None


def test_unrealized_loss_can_hold_back_the_daily_target() -> None:
    assert evaluate_daily(2_000.0, -300.0, 100_000.0, PARAMS) is None


def test_loss_limit_counts_realized_plus_unrealized() -> None:
    # Default limit 2%: -1,500 realized - 500 unrealized = -2.0%.
    decision = evaluate_daily(-1_500.0, -500.0, 100_000.0, PARAMS)
    assert decision is not None and decision.reason == LOSS_LIMIT
    assert evaluate_daily(-1_500.0, -400.0, 100_000.0, PARAMS) is None


@pytest.mark.parametrize(
    ("realized", "unrealized", "capital"),
    [(math.nan, 0.0, 100_000.0), (0.0, math.nan, 100_000.0), (5_000.0, 0.0, 0.0)],
)
def test_daily_rule_makes_no_decision_on_missing_figures(
    realized: float, unrealized: float, capital: float
) -> None:
    assert evaluate_daily(realized, unrealized, capital, PARAMS) is None


# --------------------------------------------------------------------------- re-entry


def test_only_a_stop_allows_reentry() -> None:
    allowed = {reason for reason in EXIT_REASONS if reentry_allowed(reason)}
    assert allowed == {STOP}
    assert EXIT_REASONS == {
        "target",
        "stop",
        "eod",
        "daily_target",
        "loss_limit",
        "manual",
        "reconciled",
    }


def test_unknown_exit_reason_raises() -> None:
    with pytest.raises(ValueError):
        reentry_allowed("profit")


@pytest.mark.parametrize(
    ("reasons", "expected"),
    [
        ((), "fresh"),
        (("stop",), "recovery"),
        (("stop", "stop"), "recovery"),
        (("stop", "stop", "stop"), None),  # two recoveries used up
        (("target",), None),
        (("stop", "target"), None),
        (("eod",), None),
    ],
)
def test_next_entry_kind_follows_todays_exits(reasons: tuple[str, ...], expected: str) -> None:
    assert next_entry_kind(reasons, max_recovery_entries=2) == expected


# --------------------------------------------------------------------------- sell orders


def test_first_sell_limit_is_bid_minus_aggression() -> None:
    assert exit_limit(50.0, 0, PARAMS) == 49.75


def test_replacements_get_more_aggressive_up_to_the_bound() -> None:
    limits = [exit_limit(50.0, step, PARAMS) for step in range(PARAMS.replace_steps + 1)]
    assert limits == sorted(limits, reverse=True) and len(set(limits)) == len(limits)
    with pytest.raises(ValueError):
        exit_limit(50.0, PARAMS.replace_steps + 1, PARAMS)


def test_replace_only_after_timeout_and_while_steps_remain() -> None:
    timeout = PARAMS.replace_timeout_s
    assert not should_replace(timeout - 0.1, 0, PARAMS)
    assert should_replace(timeout, 0, PARAMS)
    assert not should_replace(timeout * 10, PARAMS.replace_steps, PARAMS)


def test_flatten_instant_is_close_minus_minutes() -> None:
    # Guard the fixture: the calendar's early close is what the EOD tests rely on.
    assert EARLY.close - timedelta(minutes=5) == datetime(2025, 11, 28, 12, 55, tzinfo=ET)
    assert NORMAL.close - timedelta(minutes=5) == datetime(2025, 6, 2, 15, 55, tzinfo=ET)
