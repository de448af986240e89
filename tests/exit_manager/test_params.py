"""Settings + today's parameter set -> the parameters in force; fill timeouts made real."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest

from config.settings import load_settings
from exit_manager.params import (
    FROM_SETTINGS,
    ORDER_FILL_FLOOR_S,
    exit_params,
    fill_timeout_real_s,
    in_force,
    load_param_set,
)
from market.clock import ET, VirtualClock
from shared_state import Store
from shared_state.phase_data import ParameterSet, PhaseData

SETTINGS = load_settings({"EXIT_ORDER_TIMEOUT_S": "10"}, env_file=None)
DAY = date(2025, 11, 26)
SET = ParameterSet(
    effective_date=DAY,
    profit_target_pct=2.5,
    stop_loss_pct=1.2,
    size_pct=4.0,
    recovery_target_pct=1.5,
    decided_on=date(2025, 11, 25),
    created_at=datetime(2025, 11, 25, 21, tzinfo=ET),
    reason="replay: +0.4 %",
)


def test_without_a_parameter_set_the_settings_are_in_force() -> None:
    chosen = in_force(SETTINGS, None)

    assert chosen.source == FROM_SETTINGS and chosen.reason == ""
    assert (chosen.profit_target_pct, chosen.stop_loss_pct) == (1.8, 0.9)
    assert (chosen.recovery_target_pct, chosen.allocation) == (1.1, 0.10)


def test_a_parameter_set_replaces_target_stop_recovery_and_allocation() -> None:
    chosen = in_force(SETTINGS, SET)

    assert chosen.source == "param_sets of 2025-11-26 (decided 2025-11-25)"
    assert (chosen.profit_target_pct, chosen.stop_loss_pct) == (2.5, 1.2)
    assert chosen.recovery_target_pct == 1.5
    assert chosen.allocation == pytest.approx(0.04)
    assert chosen.detail()["reason"] == "replay: +0.4 %"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"stop_loss_pct": 2.5}, "stop must be below the target"),
        ({"recovery_target_pct": 3.0}, "recovery target must not exceed"),
        ({"profit_target_pct": float("nan")}, "profit_target_pct=nan"),
        ({"size_pct": 0.0}, "size_pct=0.0"),
    ],
)
def test_a_set_that_breaks_the_settings_rules_is_not_used(
    changes: dict[str, float], problem: str
) -> None:
    chosen = in_force(SETTINGS, replace(SET, **changes))

    assert chosen.source == FROM_SETTINGS and problem in chosen.reason
    assert chosen.profit_target_pct == SETTINGS.profit_target_pct


def test_exit_params_take_levels_from_the_set_and_everything_else_from_the_settings() -> None:
    params = exit_params(SETTINGS, VirtualClock(datetime(2025, 11, 26, 10, tzinfo=ET), 1.0), SET)

    assert (params.profit_target_pct, params.stop_loss_pct, params.recovery_target_pct) == (
        2.5, 1.2, 1.5,
    )  # fmt: skip
    assert params.daily_target_pct == SETTINGS.daily_target_pct
    assert params.replace_steps == SETTINGS.exit_replace_steps
    assert params.replace_timeout_s == 10.0


def test_a_fill_timeout_is_market_seconds_at_the_clocks_speed_never_below_the_floor() -> None:
    start = datetime(2025, 11, 26, 10, tzinfo=ET)

    assert fill_timeout_real_s(30.0, None) == 30.0
    assert fill_timeout_real_s(30.0, VirtualClock(start, 10.0)) == pytest.approx(3.0)
    assert fill_timeout_real_s(30.0, VirtualClock(start, 1000.0)) == ORDER_FILL_FLOOR_S


def test_the_set_in_force_is_the_latest_on_or_before_the_day(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    Store(db).close()
    data = PhaseData(db)
    data.set_parameters(SET)
    data.set_parameters(replace(SET, effective_date=date(2025, 11, 28), profit_target_pct=2.0))
    data.close()

    assert load_param_set(db, date(2025, 11, 25)) is None
    assert load_param_set(db, DAY) == SET
    assert load_param_set(db, date(2025, 11, 27)) == SET
    assert load_param_set(db, date(2025, 12, 1)).profit_target_pct == 2.0


def test_an_unreadable_parameter_store_means_the_settings_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_database = tmp_path / "state.db"
    not_a_database.write_text("this is not SQLite")

    with caplog.at_level(logging.WARNING, logger="exit_manager.params"):
        found = load_param_set(not_a_database, DAY)

    assert found is None
    assert "the settings apply" in caplog.text
