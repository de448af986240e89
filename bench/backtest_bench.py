"""Benchmark the backtest engine against backtesting.py on the same bars, in the same run.

Data: one year (``--days`` sessions, default 252, ending ``--end``) of 1-min bars for
8 symbols from the simulator's ``SyntheticMarket`` (seed 7), 04:00 ET to the close:
pre-market included, because the live rules' RSI and ATR use it (about 181,000 bars
per symbol, 1.45 million in all). Generating the bars is not timed.

Both engines run the same rules per symbol (the cross-check configuration of
``tests/backtest/reference_strategy.py``: one symbol per run, no spread, stop-first
intrabar rule, daily target and loss limit off):

- ours: ``backtest.series.prepare`` (the indicator snapshot of every bar) plus
  ``backtest.engine.run_backtest``, both timed;
- backtesting.py: ``Backtest.run`` of ``RulesStrategy``, timed; its indicator columns
  (pandas-ta) are computed beforehand and timed separately, not counted in its figure.

The speed ratio is backtesting.py's run time over ours (higher is faster for us). It
also prints whether the two agree on trade count and net P&L, and the time of our
engine on the 8 symbols as one book (the real configuration: cross-symbol rules on).

backtesting.py is a dev dependency (AGPL, never imported by the product). Run from the
repository root: ``uv run python bench/backtest_bench.py [--days N]``
(``uv run --with backtesting ...`` until it is in the dev group).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

# A script's sys.path starts at its own folder; the packages live at the repository root,
# and the backtesting.py strategy (test-only code, AGPL dependency) in tests/backtest.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "backtest"))

from backtest.config import BacktestConfig, config_from_settings  # noqa: E402
from backtest.data import MarketSource, SymbolDay  # noqa: E402
from backtest.engine import TradingDay, prepare_day, run_backtest  # noqa: E402
from backtest.fills import FillModel  # noqa: E402
from broker.simulator.market_data import SyntheticMarket  # noqa: E402
from config.settings import load_settings  # noqa: E402
from market.calendar import Session, session, trading_days_back  # noqa: E402

SYMBOLS = ("AAPL", "NVDA", "TSLA", "AMD", "META", "AMZN", "MSFT", "GOOGL")
# Looser than the defaults so that both engines trade (defaults rarely fire on 1-min ATR).
ENV = {"ATR_MIN_PCT": "0.1", "RSI_MAX": "65", "ALLOCATION": "0.5"}


@dataclass(frozen=True)
class Timing:
    """One engine's figures over all symbols."""

    seconds: float
    trades: int
    net_pnl: float


def load(days: int, end: date) -> tuple[list[Session], dict[str, list[SymbolDay]]]:
    """Return the sessions and every symbol's symbol-days (not timed)."""
    sessions = [session(d) for d in trading_days_back(end, days)]
    source = MarketSource(SyntheticMarket(seed=7, gap_share=0.1))
    bars = {
        symbol: [_present(source.symbol_day(symbol, s), symbol, s) for s in sessions]
        for symbol in SYMBOLS
    }
    return sessions, bars


def _present(symbol_day: SymbolDay | None, symbol: str, s: Session) -> SymbolDay:
    if symbol_day is None:
        raise SystemExit(f"no bars for {symbol} on {s.day}")
    return symbol_day


def crosscheck_config() -> BacktestConfig:
    """Return the engine configuration comparable to ``RulesStrategy`` (module docstring)."""
    config = config_from_settings(
        load_settings(environ=ENV, env_file=None),
        fill=FillModel(intrabar="stop_first", spread_bps=0.0),
    )
    off = replace(config.exit, daily_target_pct=1e9, daily_loss_limit_pct=1e9)
    return replace(config, exit=off)


def time_ours(sessions: list[Session], bars: dict[str, list[SymbolDay]]) -> Timing:
    """Time our engine per symbol: indicator preparation plus the event loop."""
    config = crosscheck_config()
    started = time.perf_counter()
    trades, pnl = 0, 0.0
    for symbol_days in bars.values():
        days = [prepare_day(s, [d]) for s, d in zip(sessions, symbol_days, strict=True)]
        result = run_backtest(days, config)
        trades += len(result.trades)
        pnl += sum(t.pnl for t in result.trades)
    return Timing(time.perf_counter() - started, trades, pnl)


def time_ours_as_book(sessions: list[Session], bars: dict[str, list[SymbolDay]]) -> float:
    """Time our engine on all symbols as one watchlist with every rule on (default fills)."""
    config = config_from_settings(load_settings(environ=ENV, env_file=None))
    started = time.perf_counter()
    per_day = zip(*bars.values(), strict=True)
    days: list[TradingDay] = [
        prepare_day(s, list(d)) for s, d in zip(sessions, per_day, strict=True)
    ]
    run_backtest(days, config)
    return time.perf_counter() - started


def time_backtesting_py(
    sessions: list[Session], bars: dict[str, list[SymbolDay]]
) -> tuple[float, Timing]:
    """Return (indicator-frame seconds, run timing) of backtesting.py over every symbol."""
    from backtesting import Backtest
    from reference_strategy import (
        Rules,
        RulesStrategy,
        ibkr_fixed_commission,
        net_pnl,
        strategy_frame,
    )

    _silence_backtesting_progress()
    rules = Rules(rsi_max=65.0, atr_min_pct=0.1, allocation=0.5)
    cash = crosscheck_config().starting_capital
    started = time.perf_counter()
    frames = [strategy_frame(list(zip(sessions, d, strict=True)), rules) for d in bars.values()]
    frame_seconds = time.perf_counter() - started
    RulesStrategy.rules = rules
    started = time.perf_counter()
    trades, pnl = 0, 0.0
    for frame in frames:
        stats = _quiet(
            lambda f=frame: Backtest(
                f, RulesStrategy, cash=cash, commission=ibkr_fixed_commission,
                finalize_trades=True,
            ).run()
        )  # fmt: skip
        trades += int(stats["# Trades"])
        pnl += net_pnl(stats, cash)
    return frame_seconds, Timing(time.perf_counter() - started, trades, pnl)


def _silence_backtesting_progress() -> None:
    # backtesting.py draws its own tqdm bar per run; it would garble the figures.
    import backtesting.backtesting as engine

    engine._tqdm = lambda seq, **_: seq


def _quiet(run: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its warnings about order sizes are not ours
        return run()


def main() -> int:
    """Print wall time, bars per second and the speed ratio of both engines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=252, help="sessions (default 252)")
    parser.add_argument("--end", type=date.fromisoformat, default=date(2025, 12, 31))
    parser.add_argument("--repeat", type=int, default=1, help="runs of each, best kept")
    args = parser.parse_args()
    try:
        import backtesting  # noqa: F401
    except ImportError:
        print("backtesting.py is not installed: uv run --with backtesting python bench/...")
        return 2
    started = time.perf_counter()
    sessions, bars = load(args.days, args.end)
    total = sum(len(d) for days in bars.values() for d in days)
    print(
        f"data: {len(sessions)} sessions {sessions[0].day}..{sessions[-1].day}, "
        f"{len(SYMBOLS)} symbols, {total:,} 1-min bars (04:00 ET to the close, "
        f"{total / len(SYMBOLS):,.0f} per symbol), generated in "
        f"{time.perf_counter() - started:.1f} s"
    )
    # Interleaved repeats, best of each: other processes on the machine slow either one.
    runs = [(time_ours(sessions, bars), time_backtesting_py(sessions, bars))
            for _ in range(args.repeat)]  # fmt: skip
    ours = min((r[0] for r in runs), key=lambda t: t.seconds)
    frame_seconds, theirs = min((r[1] for r in runs), key=lambda t: t[1].seconds)
    book_seconds = min(time_ours_as_book(sessions, bars) for _ in range(args.repeat))
    _print("ours (prepare + run)", ours, total)
    _print("backtesting.py (run)", theirs, total)
    print(f"backtesting.py indicator columns (pandas-ta, not counted above): {frame_seconds:.2f} s")
    print(f"speed ratio: {theirs.seconds / ours.seconds:.2f}x backtesting.py (target >= 1.0x)")
    agree = ours.trades == theirs.trades and abs(ours.net_pnl - theirs.net_pnl) < 0.01
    print(f"same trades and net P&L: {'yes' if agree else 'NO'}")
    print(f"ours, 8 symbols as one book, every rule on: {book_seconds:.2f} s, "
          f"{total / book_seconds:,.0f} bars/s")  # fmt: skip
    return 0


def _print(name: str, timing: Timing, bars: int) -> None:
    print(
        f"{name:<22} {timing.seconds:7.2f} s  {bars / timing.seconds:>10,.0f} bars/s  "
        f"{timing.trades} trades, net P&L {timing.net_pnl:,.2f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
