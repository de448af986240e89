"""Parameter sweep: grid parsing and checks, skipped combinations, worker processes, ranking."""

from __future__ import annotations

from datetime import date

import pytest

from backtest.config import config_from_settings, with_overrides
from backtest.data import MarketSource
from backtest.engine import TradingDay, prepare_day, run_backtest
from backtest.report import summarize
from backtest.sweep import SweepError, combinations, parse_grid, plan, rank, run_sweep
from broker.simulator.market_data import SyntheticMarket
from config.settings import load_settings
from market.calendar import session, trading_days_back

BASE = load_settings(environ={"ATR_MIN_PCT": "0.1", "RSI_MAX": "65"}, env_file=None)


@pytest.fixture(scope="module")
def days() -> list[TradingDay]:
    source = MarketSource(SyntheticMarket(seed=7, gap_share=0.3))
    sessions = [session(d) for d in trading_days_back(date(2025, 11, 26), 8)]
    return [prepare_day(s, source.day(s, ("ACHR", "AMC", "AFRM", "ABNB"))) for s in sessions]


def test_grid_parses_into_values_per_setting_and_every_combination() -> None:
    grid = parse_grid("profit_target_pct=1.2,1.8,2.4; stop_loss_pct=0.6,0.9")

    assert grid == {"profit_target_pct": ("1.2", "1.8", "2.4"), "stop_loss_pct": ("0.6", "0.9")}
    combos = combinations(grid)
    assert len(combos) == 6
    assert combos[0] == {"profit_target_pct": "1.2", "stop_loss_pct": "0.6"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("take_profit=1.2", "unknown; allowed: allocation"),
        ("stop_loss_pct=0.5,abc", "'abc' is not allowed: a number from 0.01 to 50.0"),
        ("stop_loss_pct=0.5,99", "'99' is not allowed"),
        ("stop_loss_pct", "is not name=value"),
        ("stop_loss_pct=0.5;stop_loss_pct=0.6", "given twice"),
        (" ; ", "is empty"),
    ],
)
def test_bad_grid_is_refused_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(SweepError, match=message):
        parse_grid(text)


def test_combination_the_settings_refuse_together_is_skipped_with_the_reason() -> None:
    runnable, skipped = plan(BASE, parse_grid("profit_target_pct=1.0,2.0;stop_loss_pct=1.5"))

    ((kept, _),) = runnable
    assert kept == {"profit_target_pct": "2.0", "stop_loss_pct": "1.5"}
    ((combo, why),) = skipped
    assert combo == {"profit_target_pct": "1.0", "stop_loss_pct": "1.5"}
    assert "must be below PROFIT_TARGET_PCT" in why


def test_sweep_runs_on_several_processes_and_ranks_by_net_pnl(days: list[TradingDay]) -> None:
    grid = parse_grid("profit_target_pct=1.2,2.4;stop_loss_pct=0.6,0.9")
    jobs, _ = plan(BASE, grid)

    result = run_sweep(days, jobs, workers=2, rank_by="net_pnl")

    assert result.workers == 2
    assert len(result.rows) == 4
    pnls = [row.summary.net_pnl for row in result.rows]
    assert pnls == sorted(pnls, reverse=True)
    assert len(set(pnls)) > 1  # the parameters changed the outcome
    # Each worker ran its own combination: the same figures as a run in this process.
    for row in result.rows:
        config = config_from_settings(with_overrides(BASE, row.params))
        assert row.summary == summarize(run_backtest(days, config))


def test_ranking_by_drawdown_puts_the_smallest_first_and_missing_metrics_last(
    days: list[TradingDay],
) -> None:
    jobs, _ = plan(BASE, parse_grid("stop_loss_pct=0.3,0.9"))
    rows = run_sweep(days[:2], jobs, workers=1, rank_by="max_drawdown").rows
    drawdowns = [row.summary.max_drawdown for row in rows]
    assert drawdowns == sorted(drawdowns)
    no_trades = days[:0]
    empty = run_sweep(no_trades, jobs[:1], workers=1).rows
    assert rank([*rows, *empty], "profit_factor")[-1].summary.profit_factor is None


def test_unknown_ranking_metric_is_refused(days: list[TradingDay]) -> None:
    with pytest.raises(SweepError, match="allowed: net_pnl"):
        run_sweep(days, [], workers=1, rank_by="sharpe")
