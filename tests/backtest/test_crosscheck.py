"""Cross-check: the engine and backtesting.py, given the same rules and bars, agree.

``reference_strategy.RulesStrategy`` writes the entry and exit rules again as a
backtesting.py Strategy, with its own indicators (pandas-ta), its own bracket orders
and its own accounting (see that module's docstring). Both run per symbol on the same
synthetic 1-min bars (04:00 to the close) of 15 sessions, configured alike: one symbol
per run, no spread, the stop-first intrabar rule, commission IBKR Pro fixed on each
order, fills at the next bar's open. The daily target and loss limit are cross-symbol
rules; they are off in one scenario and on, per symbol's own capital, in the other.

Tolerances, and why:

- trade count: equal, and every trade's entry and exit minute equal. The engines
  share no decision code, so any rule difference shows as a different trade. The only
  numerical gap is indicator rounding (pandas-ta vs the numpy series, ~1e-12 here),
  which could flip a decision only on an exact threshold tie; none occurs on these
  bars, so none is tolerated.
- net P&L: within $0.01 over all symbols. Prices, sizes and commissions are the same
  numbers; only the order of floating-point additions differs (~1e-10 dollars).

backtesting.py is AGPL-licensed and a dev dependency: this test skips if it is absent.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from datetime import date, datetime

import pandas as pd
import pytest

backtesting = pytest.importorskip("backtesting")

from reference_strategy import (  # noqa: E402
    Rules,
    RulesStrategy,
    ibkr_fixed_commission,
    net_pnl,
    strategy_frame,
    trades_table,
)

from backtest.config import BacktestConfig, config_from_settings  # noqa: E402
from backtest.data import MarketSource, SymbolDay  # noqa: E402
from backtest.engine import BacktestResult, prepare_day, run_backtest  # noqa: E402
from backtest.fills import FillModel  # noqa: E402
from broker.simulator.market_data import SyntheticMarket  # noqa: E402
from config.settings import load_settings  # noqa: E402
from market.calendar import Session, session, trading_days_back  # noqa: E402

SYMBOLS = ("ACHR", "AMC", "AFRM", "ABNB")
ENV = {"ATR_MIN_PCT": "0.1", "RSI_MAX": "65", "ALLOCATION": "0.5"}
RULES = Rules(rsi_max=65.0, atr_min_pct=0.1, allocation=0.5)
DAILY_PCT = 0.3  # low, so that both daily limits fire on these bars


@pytest.fixture(scope="module")
def bars() -> dict[str, list[tuple[Session, SymbolDay]]]:
    source = MarketSource(SyntheticMarket(seed=7, gap_share=0.3))
    sessions = [session(d) for d in trading_days_back(date(2025, 11, 26), 15)]
    out = {}
    for symbol in SYMBOLS:
        days = [(s, source.symbol_day(symbol, s)) for s in sessions]
        out[symbol] = [(s, d) for s, d in days if d is not None]
    return out


def engine_config(daily: bool) -> BacktestConfig:
    """Return the engine's configuration comparable to ``RulesStrategy`` (module docstring)."""
    config = config_from_settings(
        load_settings(environ=ENV, env_file=None),
        fill=FillModel(intrabar="stop_first", spread_bps=0.0),
    )
    pct = DAILY_PCT if daily else 1e9
    limits = replace(config.exit, daily_target_pct=pct, daily_loss_limit_pct=pct)
    return replace(config, exit=limits)


def run_engine(days: list[tuple[Session, SymbolDay]], config: BacktestConfig) -> BacktestResult:
    return run_backtest([prepare_day(s, [d]) for s, d in days], config)


def trade_minutes(result: BacktestResult) -> list[tuple[datetime, datetime]]:
    """Return each trade's entry and exit minute as naive ET times (backtesting.py's)."""
    naive = [(t.entry_time, t.exit_time) for t in result.trades]
    return [(a.replace(tzinfo=None), b.replace(tzinfo=None)) for a, b in naive]


def reference_minutes(trades: pd.DataFrame) -> list[tuple[datetime, datetime]]:
    pairs = zip(trades.EntryTime, trades.ExitTime, strict=True)
    return [(a.to_pydatetime(), b.to_pydatetime()) for a, b in pairs]


def run_reference(days: list[tuple[Session, SymbolDay]], rules: Rules, cash: float) -> pd.Series:
    RulesStrategy.rules = rules
    backtest = backtesting.Backtest(
        strategy_frame(days, rules),
        RulesStrategy,
        cash=cash,
        commission=ibkr_fixed_commission,
        finalize_trades=True,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes on order sizes are not ours to act on
        return backtest.run()


@pytest.mark.parametrize("daily", [False, True], ids=["daily-limits-off", "daily-limits-on"])
def test_engine_and_backtesting_py_agree_on_trades_and_net_pnl(
    bars: dict[str, list[tuple[Session, SymbolDay]]], daily: bool
) -> None:
    config = engine_config(daily)
    limits = DAILY_PCT if daily else None
    rules = replace(RULES, daily_target_pct=limits, daily_loss_limit_pct=limits)
    ours_pnl = theirs_pnl = 0.0
    reasons, kinds, halts = set(), set(), set()
    for symbol, days in bars.items():
        ours = run_engine(days, config)
        stats = run_reference(days, rules, config.starting_capital)
        theirs = trades_table(stats)
        assert len(ours.trades) == len(theirs), symbol
        assert trade_minutes(ours) == reference_minutes(theirs), symbol
        ours_pnl += sum(t.pnl for t in ours.trades)
        theirs_pnl += net_pnl(stats, config.starting_capital)
        reasons |= {t.exit_reason for t in ours.trades}
        kinds |= {t.entry_kind for t in ours.trades}
        halts |= {d.halt_reason for d in ours.days if d.halt_reason}
    assert ours_pnl == pytest.approx(theirs_pnl, abs=0.01)
    # The comparison means something only if the scenario exercised the rules.
    daily_reasons = {"daily_target", "loss_limit"} if daily else set()
    assert reasons == {"stop", "target", "eod"} | daily_reasons
    assert kinds == {"gap_and_go", "vwap", "recovery"}
    assert halts == daily_reasons
