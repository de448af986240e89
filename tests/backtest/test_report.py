"""Report: metrics worked out by hand, the per-day table, JSON and the PNG chart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from backtest_bars import EARLY_CLOSE, MONDAY, DayBars, run_days, trading_config

from backtest.engine import BacktestResult
from backtest.report import max_drawdown, render_text, summarize, to_json, write_png


@pytest.fixture(scope="module")
def two_days() -> BacktestResult:
    # Monday: a target (+99 x 1.8 - 2 = 176.2). Friday: a stop (-99 x 0.9 - 2 = -91.1), then
    # a recovery bought at 100.1 and flattened at the 12:55 open, also 100.1 (-2 commission).
    monday = DayBars(MONDAY).wick(10, 0, high=102.0).symbol_day("GAP")
    friday = DayBars(EARLY_CLOSE).wick(10, 0, low=99.0).symbol_day("GAP")
    return run_days([(MONDAY, [monday]), (EARLY_CLOSE, [friday])], trading_config())


def test_max_drawdown_is_the_largest_fall_from_a_previous_peak() -> None:
    assert max_drawdown(np.array([100.0, 110.0, 99.0, 120.0, 90.0, 95.0])) == (30.0, 25.0)
    assert max_drawdown(np.array([100.0, 101.0, 102.0])) == (0.0, 0.0)


def test_summary_counts_wins_and_computes_profit_factor_and_return(
    two_days: BacktestResult,
) -> None:
    s = summarize(two_days)

    assert (s.days, s.trades, s.wins) == (2, 3, 1)
    assert s.win_rate == pytest.approx(1 / 3)
    assert s.net_pnl == pytest.approx(176.2 - 91.1 - 2.0)
    assert s.profit_factor == pytest.approx(176.2 / (91.1 + 2.0))
    assert s.commissions == pytest.approx(6.0)
    assert s.return_pct == pytest.approx(s.net_pnl / 100_000 * 100)
    assert s.exit_reasons == {"target": 1, "stop": 1, "eod": 1}
    assert s.max_drawdown >= 91.1 + 2.0 - 1e-6  # both losses came after the Monday peak


def test_profit_factor_is_undefined_without_a_losing_trade() -> None:
    winner = DayBars(MONDAY).wick(10, 0, high=102.0).symbol_day("GAP")
    s = summarize(run_days([(MONDAY, [winner])], trading_config()))
    assert (s.trades, s.profit_factor, s.win_rate) == (1, None, 1.0)


def test_json_has_parameters_summary_days_and_trades(two_days: BacktestResult) -> None:
    data = json.loads(json.dumps(to_json(two_days)))

    assert data["parameters"]["profit_target_pct"] == 1.8
    assert data["summary"]["trades"] == len(data["trades"]) == 3
    assert [d["day"] for d in data["days"]] == ["2025-06-02", "2025-11-28"]
    assert data["trades"][0]["entry_time"] == "2025-06-02T09:30:00-04:00"


def test_text_report_has_the_summary_and_one_row_per_day(two_days: BacktestResult) -> None:
    text = render_text(two_days, "Backtest test")

    assert text.startswith("# Backtest test")
    assert "## Per day" in text
    assert "| 2025-06-02 | 1 " in text and "| 2025-11-28 | 2 " in text
    assert "176.20" in text


def test_png_equity_curve_is_written(two_days: BacktestResult, tmp_path: Path) -> None:
    path = write_png(two_days, tmp_path / "charts" / "equity.png", "Backtest test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000
