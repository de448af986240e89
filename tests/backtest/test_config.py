"""Backtest parameters come from the same validated settings the live processes load."""

from __future__ import annotations

import pytest

from backtest.config import config_from_settings, with_overrides
from config.settings import SettingsError, load_settings


def test_settings_become_the_live_rules_parameter_objects() -> None:
    environ = {
        "PROFIT_TARGET_PCT": "2.4",
        "STOP_LOSS_PCT": "0.7",
        "EOD_FLATTEN_MINUTES": "10",
        "GAP_MIN_PCT": "3",
        "MAX_POSITIONS": "4",
        "SIM_STARTING_CASH": "50000",
    }
    config = config_from_settings(load_settings(environ=environ, env_file=None))

    assert (config.exit.profit_target_pct, config.exit.stop_loss_pct) == (2.4, 0.7)
    assert config.exit.eod_flatten_minutes == config.gate.entry_cutoff_minutes == 10
    assert config.entry.gap_min_pct == 3.0
    assert config.gate.max_positions == 4
    assert config.starting_capital == 50_000.0
    assert config.values["profit_target_pct"] == 2.4


def test_overrides_go_through_the_settings_validation() -> None:
    base = load_settings(environ={}, env_file=None)

    assert with_overrides(base, {"rsi_max": "70", "midday_filter": "true"}).rsi_max == 70.0
    with pytest.raises(SettingsError, match="STOP_LOSS_PCT='2.0' is not allowed"):
        with_overrides(base, {"stop_loss_pct": "2.0"})  # above the 1.8 target
    with pytest.raises(ValueError, match="unknown parameter.*ib_port"):
        with_overrides(base, {"ib_port": "4001"})  # not a strategy setting


def test_starting_capital_must_be_positive() -> None:
    with pytest.raises(ValueError, match="starting capital"):
        config_from_settings(load_settings(environ={}, env_file=None), starting_capital=0.0)
