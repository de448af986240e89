"""Benchmark one pure decision pass of the day trader over 8 and 50 symbols.

A pass is what the day trader computes per symbol once the data is in memory:
indicator snapshot, entry signal, entry gate, and for a firing signal the quote
check, position size, buy limit and price collar. No I/O is timed.

Bars come from the simulator's ``SyntheticMarket`` (1-min bars of one day) when it can
be imported, else from a numpy random walk. The decision instant is 15:50:05 ET, so a
symbol has 380 session bars; ``--premarket`` also keeps the bars from 04:00 (710).

Run from the repository root: ``uv run python -m bench.decision_bench [--passes N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd

from day_trader.signals import EntryParams, evaluate_entry, gap_pct
from day_trader.sizing import (
    GateParams,
    GateState,
    check_quote,
    entry_gate,
    position_size,
    price_collar_ok,
)
from market.calendar import Session, previous_trading_day, session
from market.clock import ET
from market.indicators import snapshot
from market.pricing import buy_limit

DAY = date(2025, 6, 2)
DECISION = datetime(2025, 6, 2, 15, 50, 5, tzinfo=ET)


@dataclass(frozen=True)
class SymbolData:
    """What the day trader holds in memory per symbol when a pass starts."""

    symbol: str
    bars: pd.DataFrame
    gap_pct: float  # fixed for the day once the session opens


def synthetic_universe(count: int, premarket: bool) -> tuple[str, list[SymbolData]]:
    """Return bars of ``count`` symbols from the simulator market, or a random walk."""
    try:
        from broker.simulator.market_data import SyntheticMarket
    except ImportError:
        return "numpy random walk", [_random_walk(i, premarket) for i in range(count)]
    market = SyntheticMarket(seed=7)
    prior_day = previous_trading_day(DAY)
    data = []
    for symbol in market.symbols()[:count]:
        rows = [
            (b.time, b.open, b.high, b.low, b.close, b.volume)
            for b in market.intraday_bars(symbol, DAY)
        ]
        frame = pd.DataFrame(rows, columns=["time", "open", "high", "low", "close", "volume"])
        bars = _window(frame.set_index("time"), premarket)
        prior = market.daily_bars(symbol, prior_day, 1)
        prior_close = prior[-1].close if prior else float("nan")
        data.append(SymbolData(symbol, bars, _opening_gap(prior_close, bars)))
    return "broker.simulator SyntheticMarket(seed=7)", data


def _random_walk(seed: int, premarket: bool) -> SymbolData:
    rng = np.random.default_rng(seed)
    index = pd.date_range(f"{DAY} 04:00", f"{DAY} 15:59", freq="1min", tz=ET)
    close = 30.0 * np.exp(np.cumsum(rng.normal(0, 0.002, len(index))))
    spread = np.abs(rng.normal(0, 0.002, len(index))) * close
    bars = pd.DataFrame(
        {
            "open": close,
            "high": close + spread,
            "low": close - spread,
            "close": close,
            "volume": rng.integers(100, 10_000, len(index)).astype("float64"),
        },
        index=index,
    )
    bars = _window(bars, premarket)
    return SymbolData(f"SYM{seed:02d}", bars, _opening_gap(30.0 * (1 + rng.normal(0, 0.03)), bars))


def _opening_gap(prior_close: float, bars: pd.DataFrame) -> float:
    at_open = bars.loc[bars.index >= pd.Timestamp(f"{DAY} 09:30", tz=ET), "open"]
    return gap_pct(prior_close, float(at_open.iloc[0])) if len(at_open) else float("nan")


def _window(bars: pd.DataFrame, premarket: bool) -> pd.DataFrame:
    start = pd.Timestamp(f"{DAY} 04:00" if premarket else f"{DAY} 09:30", tz=ET)
    return bars.loc[
        (bars.index >= start) & (bars.index < pd.Timestamp(DECISION) - pd.Timedelta("60s"))
    ]


def decision_pass(universe: list[SymbolData], today: Session, now: datetime) -> int:
    """Run one decision pass over ``universe``; return how many buy orders it would place."""
    params, gate_params = EntryParams(), GateParams(max_trades_per_day=20)
    state = GateState(False, False, 3, 1.5, False, open_positions=2)
    orders = 0
    for data in universe:
        snap = snapshot(data.bars, today.open)
        signal = evaluate_entry(data.symbol, snap, data.gap_pct, now, params, recovery=False)
        if entry_gate(state, now, today, gate_params) is not None or not signal.fire:
            continue
        bid, ask = snap.close * 0.9995, snap.close * 1.0005
        if check_quote(bid, ask, snap.close, now - timedelta(seconds=1), now, False, 5.0):
            continue
        limit = buy_limit(ask, 0.5)
        shares = position_size(250_000.0, 0.10, len(universe), limit, 25_000.0)
        orders += int(shares > 0 and price_collar_ok(limit, snap.close, 2.0))
    return orders


def measure(run: Callable[[], int], passes: int) -> tuple[list[float], int]:
    """Return the wall time of each of ``passes`` runs in ms (after warm-up) and the last result."""
    for _ in range(5):
        result = run()
    samples = []
    for _ in range(passes):
        started = time.perf_counter_ns()
        result = run()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return samples, result


def percentile(samples: list[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``samples``."""
    return float(np.percentile(samples, q))


def main() -> None:
    """Print p50/p99 of one decision pass over 8 and over 50 symbols."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument("--premarket", action="store_true", help="keep bars from 04:00")
    args = parser.parse_args()
    source, universe = synthetic_universe(50, args.premarket)
    today = session(DAY)
    bars_each = statistics.median(len(d.bars) for d in universe)
    print(f"bars: {source}, {bars_each:.0f} 1-min bars per symbol, decision at {DECISION}")
    for count in (8, 50):
        samples, orders = measure(
            lambda c=count: decision_pass(universe[:c], today, DECISION), args.passes
        )
        print(
            f"{count:>3} symbols: p50 {percentile(samples, 50):6.2f} ms  "
            f"p99 {percentile(samples, 99):6.2f} ms  max {max(samples):6.2f} ms  "
            f"({args.passes} passes, {orders} entries fire)"
        )


if __name__ == "__main__":
    main()
