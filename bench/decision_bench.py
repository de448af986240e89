"""Benchmark the day trader's decisions: one pure pass over 8 and 50 symbols, and bar-to-order.

1. A pass is what the day trader computes per symbol once the data is in memory:
   indicator snapshot, entry signal, entry gate, and for a firing signal the quote
   check, position size, buy limit and price collar. No I/O is timed.

   Bars come from the simulator's ``SyntheticMarket`` (1-min bars of one day) when it can
   be imported, else from a numpy random walk. The decision instant is 15:50:05 ET, so a
   symbol has 380 session bars; ``--premarket`` also keeps the bars from 04:00 (710).

2. Bar close to buy order, end to end (``bar_to_order``): the simulator replays 8
   constructed symbols, ``python -m day_trader`` trades them (watchlist of 8), and a
   stand-in for the exit manager closes every filled position at once with reason
   ``stop``, so each later bar close on which momentum returns brings a *recovery* buy
   (up to MAX_RECOVERY_ENTRIES=5 per symbol). The day trader records, per order it sent
   because a bar closed, ``entry_acked`` with: ``trigger_to_ack_ms`` (it learned of the
   bar close -> the simulator's acknowledgement of the buy arrived: the buy was at the
   simulator) and ``bar_end_to_ack_ms`` (the bar's end on the shared clock -> the same
   acknowledgement; this adds the simulator's own delay in pushing the new bar, one quote
   step at most). Every order of a pass counts, so with 8 symbols firing together the
   last one waits for the 7 claims and sends before it: that is the p99.

Run from the repository root: ``uv run python -m bench.decision_bench [--passes N]
[--bars N] [--speed X] [--skip-bar-to-order]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

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


def trader_pass(universe: list[SymbolData], today: Session, now: datetime) -> int:
    """Run the day trader's own per-symbol decision (``decision.decide_entry``) over ``universe``.

    Same inputs as ``decision_pass``; the gate is asked once per pass, as the trader does.
    """
    from broker.models import Quote
    from day_trader.decision import EntryPlan, Funds, SymbolView, decide_entry
    from day_trader.params import TraderParams
    from exit_manager.rules import ExitParams

    params = TraderParams(
        entry=EntryParams(),
        gate=GateParams(max_trades_per_day=20),
        exit=ExitParams(),
        allocation=0.10,
        max_order_notional=25_000.0,
        price_collar_pct=2.0,
        limit_aggression_pct=0.5,
        quote_max_age_s=5.0,
        max_recovery_entries=1,
        max_trades_per_day=20,
        max_positions=8,
        entry_order_timeout_market_s=30.0,
        loop_interval_s=1.0,
        eod_flatten_minutes=5,
    )
    state = GateState(False, False, 3, 1.5, False, open_positions=2)
    if entry_gate(state, now, today, params.gate) is not None:
        return 0
    funds = Funds(250_000.0, len(universe))
    orders = 0
    for data in universe:
        snap = snapshot(data.bars, today.open)
        bid, ask = snap.close * 0.9995, snap.close * 1.0005
        quote = Quote(data.symbol, bid, ask, snap.close, now - timedelta(seconds=1))
        view = SymbolView(data.symbol, snap, data.gap_pct, quote)
        orders += isinstance(decide_entry(view, funds, now, params), EntryPlan)
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
    """Print p50/p99 of one decision pass over 8 and 50 symbols, then bar-to-order figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=300)
    parser.add_argument("--premarket", action="store_true", help="keep bars from 04:00")
    parser.add_argument("--bars", type=int, default=9, help="bar closes to trade through")
    parser.add_argument("--speed", type=float, default=10.0, help="virtual clock speed")
    parser.add_argument("--skip-bar-to-order", action="store_true", help="pure passes only")
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
    for count in (8, 50):
        samples, orders = measure(
            lambda c=count: trader_pass(universe[:c], today, DECISION), args.passes
        )
        print(
            f"{count:>3} symbols, trader's decide_entry: p50 {percentile(samples, 50):6.2f} ms  "
            f"p99 {percentile(samples, 99):6.2f} ms  max {max(samples):6.2f} ms  "
            f"({args.passes} passes, {orders} entries fire)"
        )
    if not args.skip_bar_to_order:
        print_bar_to_order(bar_to_order(args.bars, args.speed))


# --------------------------------------------------------------------------- bar to order

BAR_TO_ORDER_SYMBOLS = 8


@dataclass(frozen=True)
class BarToOrder:
    """The ``entry_acked`` figures of the orders a bar close triggered, in real ms."""

    trigger_to_ack_ms: list[float]
    bar_end_to_ack_ms: list[float]
    trigger_to_sent_ms: list[float]
    orders: int  # every buy the day trader sent (the first, start-up ones included)
    speed: float


def bar_to_order(bars: int, speed: float) -> BarToOrder:
    """Run the simulator and ``python -m day_trader`` through ``bars`` bar closes."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "day_trader"))
    import dt_harness as h

    symbols = [f"BENCH{i}" for i in range(1, BAR_TO_ORDER_SYMBOLS + 1)]
    paths = [h.PricePath(s, h.VWAP_PATTERN, 1.0, 20.0 + 5 * i) for i, s in enumerate(symbols)]
    start = datetime(2025, 11, 26, 10, 0, tzinfo=ET)
    with tempfile.TemporaryDirectory(prefix="bar-to-order-") as tmp:
        with h.running_market(Path(tmp), paths, start, speed) as market:
            store = h.new_store(Path(tmp) / "state.db")
            h.publish_watchlist(store, symbols)
            traders = h.Traders(market, Path(tmp))
            try:
                with h.ExitManagerStandIn(store, market.clock) as exit_manager:
                    traders.start(
                        Path(tmp) / "state.db",
                        MAX_RECOVERY_ENTRIES=5,
                        MAX_TRADES_PER_DAY=100,
                        QUOTE_MAX_AGE_S=120,
                    )
                    _stop_out_until(store, exit_manager, market, bars)
            finally:
                traders.stop_all()
            acked = [e.detail for e in h.events_of(store, "entry_acked")]
            orders = len(h.events_of(store, "entry_order"))
    closes = [d for d in acked if d.get("trigger") == "bar_close"]
    return BarToOrder(
        [d["trigger_to_ack_ms"] for d in closes],
        [d["bar_end_to_ack_ms"] for d in closes],
        [d["trigger_to_sent_ms"] for d in closes],
        orders,
        speed,
    )


def _stop_out_until(store: Any, exit_manager: Any, market: Any, bars: int) -> None:
    """Close every fully bought position as a stop until ``bars`` minutes have passed."""
    end = market.now() + timedelta(minutes=bars, seconds=30)
    while market.now() < end:
        for position in store.active_positions():
            order = store.order(position.entry_order_ref) if position.entry_order_ref else None
            if order is not None and order.status.value == "FILLED":
                if position.state.value == "OPEN":
                    exit_manager.close(position, "stop", -0.9)
        time.sleep(0.05)


def print_bar_to_order(result: BarToOrder) -> None:
    """Print the bar-to-order percentiles."""
    n = len(result.trigger_to_ack_ms)
    print(
        f"bar close -> buy order acknowledged by the simulator, {BAR_TO_ORDER_SYMBOLS} symbols "
        f"(python -m day_trader, speed {result.speed:g}, {n} bar-close orders of "
        f"{result.orders} sent):"
    )
    if not n:
        print("  no order was triggered by a bar close")
        return
    rows = (
        ("trader saw the close -> sent", result.trigger_to_sent_ms),
        ("trader saw the close -> ack", result.trigger_to_ack_ms),
        ("bar end (clock) -> ack", result.bar_end_to_ack_ms),
    )
    for label, samples in rows:
        print(
            f"  {label:<30} p50 {percentile(samples, 50):7.2f} ms  "
            f"p99 {percentile(samples, 99):7.2f} ms  max {max(samples):7.2f} ms"
        )


if __name__ == "__main__":
    main()
