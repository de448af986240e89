"""Benchmark: from the simulator's price crossing a stop or target to the sell arriving there.

Real processes, as in production: the simulator (``python -m broker.simulator``) and the
exit manager (``python -m exit_manager``) share one virtual clock; a third client (the
"desk") opens positions the way the day trader does (claim, buy, mark filled) and moves
prices with the simulator's control port (``set_price``).

Per crossing, three instants on this machine's wall clock:

- ``t_set``: just before the ``set_price`` control command is sent (the simulator streams
  the pinned price with its next quote step, at most ``--quote-interval`` later);
- ``t_tick``: the desk's own market-data subscription received the first quote beyond the
  stop/target: the moment the crossing reached the clients, i.e. the exit manager too;
- ``t_sell``: the simulator logged the exit manager's ``placeOrder`` for that symbol
  (its log time, millisecond resolution).

Reported: ``set -> sell``, a strict upper bound of the reaction (it also holds the control
round trip and the simulator's quote step); ``tick -> sell``, the same measured from the
desk's own receipt of the crossing quote (an estimate: the desk process may see the tick
late, even after the sell, on a busy machine); and ``decision -> send`` inside the exit
manager (from its ``order_placed`` events: rule decision, begin_exit transaction with
fsync, placeOrder). Crossings run one at a time; rounds of stops (re-entry allowed, as
recovery trades) end with a round of targets.

Run from the repository root::

    uv run python -m bench.exit_reaction_bench [--symbols 40] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "exit_manager"))

from em_harness import (  # noqa: E402  (the end-to-end tests' process helpers)
    Desk,
    Trader,
    clock_spec,
    launch_exit_manager,
    launch_simulator,
    processes,
    wait_for,
    wait_ready,
)

from broker.simulator.universe import UNIVERSE  # noqa: E402
from exit_manager.rules import ExitParams  # noqa: E402
from shared_state import Store  # noqa: E402

START = "2025-11-26T10:00:00-05:00"
NOTIONAL = 10_000.0
ENV = {
    "DAILY_TARGET_PCT": "50",
    "DAILY_LOSS_LIMIT_PCT": "50",
    "MAX_ORDER_NOTIONAL": "1000000",
    "LOOP_INTERVAL_S": "0.5",
}
_PLACE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*placeOrder .*symbol='([^']+)'.*"
    r"action=<Action\.SELL.*order_ref='(em-[^']+)'"
)


@dataclass
class Crossing:
    symbol: str
    kind: str  # "stop" or "target"
    threshold: float
    t_set: float
    t_tick: float | None = None
    t_sell: float | None = None
    order_ref: str = ""


class SellLog:
    """Follows the simulator's log for the exit manager's sell orders."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.sells: list[tuple[float, str, str]] = []  # (time, symbol, order_ref)

    def poll(self) -> None:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        for line in data[:cut].decode(errors="replace").splitlines():
            found = _PLACE.match(line)
            if found:
                stamp = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                self.sells.append((stamp, found.group(2), found.group(3)))

    def first_after(self, symbol: str, after: float) -> tuple[float, str] | None:
        for stamp, sym, ref in self.sells:
            if sym == symbol and stamp >= after - 0.002:  # log stamps are truncated to ms
                return stamp, ref
        return None


def pick_symbols(count: int) -> list[str]:
    """Return liquid symbols priced $10-$700 (one fill per order), most active first."""
    ranked = sorted(UNIVERSE, key=lambda e: -e.avg_volume)
    return [e.symbol for e in ranked if 10 <= e.anchor_price <= 700][:count]


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100.0
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "min_ms": round(min(ms), 1),
        "p50_ms": round(percentile(ms, 50), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
    }


class Bench:
    def __init__(self, desk: Desk, trader: Trader, sells: SellLog) -> None:
        self.desk = desk
        self.trader = trader
        self.sells = sells
        self.armed: dict[str, Crossing] = {}
        self.tickers: dict[str, Any] = {}
        trader.ib.pendingTickersEvent += self._on_tickers

    def watch(self, symbols: list[str]) -> None:
        for symbol in symbols:
            self.tickers[symbol] = self.trader.ib.reqMktData(self.trader.contract(symbol))

    def _on_tickers(self, tickers: Any) -> None:
        now = time.time()
        for ticker in tickers:
            crossing = self.armed.get(ticker.contract.symbol)
            if crossing is None or crossing.t_tick is not None:
                continue
            last = ticker.last
            if last != last:  # NaN
                continue
            crossed = (
                last <= crossing.threshold
                if crossing.kind == "stop"
                else (last >= crossing.threshold)
            )
            if crossed:
                crossing.t_tick = now

    def cross(self, symbol: str, kind: str) -> Crossing:
        row = self.desk.store.active_position(symbol)
        if kind == "stop":
            threshold, price = row.stop_price, round(row.stop_price - 0.02, 2)
        else:
            threshold, price = row.target_price, round(row.target_price + 0.02, 2)
        crossing = Crossing(symbol, kind, threshold, 0.0)
        self.armed[symbol] = crossing
        crossing.t_set = time.time()
        self.desk.sim.control.set_price(symbol, price)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            self.trader.pump(0.002)
            self.sells.poll()
            found = self.sells.first_after(symbol, crossing.t_set - 0.05)
            if found is not None and crossing.t_tick is not None:
                crossing.t_sell, crossing.order_ref = found
                break
        del self.armed[symbol]
        return crossing


def run(args: argparse.Namespace) -> dict[str, Any]:
    symbols = pick_symbols(args.symbols)
    results: list[Crossing] = []
    with tempfile.TemporaryDirectory(prefix="exit-bench-") as tmp_dir, processes() as running:
        tmp = Path(tmp_dir)
        sim = running.add(launch_simulator(tmp, clock_spec(START, 1.0), args.quote_interval))
        db = tmp / "state.db"
        store = running.add(Store(db, process="bench"))
        em = running.add(launch_exit_manager(tmp, sim, db, ENV))
        trader = running.add(Trader(sim.port))
        desk = Desk(store, trader, sim, ExitParams(), max_trades=10_000)
        wait_ready(store, em)
        bench = Bench(desk, trader, SellLog(sim.log))
        bench.watch(symbols)
        for round_no in range(args.rounds):
            kind = "target" if round_no == args.rounds - 1 else "stop"
            for symbol in symbols:
                price = desk.price(symbol)
                desk.open(symbol, max(1, int(NOTIONAL / price)), price)
            time.sleep(1.0)  # the exit manager's pass has the rows and their quotes
            for symbol in symbols:
                results.append(bench.cross(symbol, kind))
            for symbol in symbols:
                wait_for(lambda s=symbol: store.active_position(s) is None, 30, f"{symbol} closed")
            done = [c for c in results if c.t_sell is not None]
            print(f"round {round_no + 1}/{args.rounds} ({kind}): {len(done)} crossings measured",
                  flush=True)  # fmt: skip
        closed = store.closed_today(desk.today())
        reasons = {c.exit_reason.value for c in closed}
        placed = store.events(kind="order_placed", limit=100_000)
        internal = [e.detail["decision_to_send_ms"] / 1000.0 for e in placed if e.detail.get(
            "decision_to_send_ms") is not None]  # fmt: skip
    measured = [c for c in results if c.t_sell is not None and c.t_tick is not None]
    report = {
        "crossings": len(results),
        "measured": len(measured),
        "missed": [c.symbol for c in results if c.t_sell is None or c.t_tick is None],
        "quote_interval_s": args.quote_interval,
        "symbols": len(symbols),
        "closed_rows": len(closed),
        "exit_reasons": sorted(reasons),
        "tick_to_sell": summary([c.t_sell - c.t_tick for c in measured]),
        "set_to_sell": summary([c.t_sell - c.t_set for c in measured]),
        "decision_to_send": summary(internal),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=40, help="symbols per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (the last: targets)")
    parser.add_argument("--quote-interval", type=float, default=0.02, help="simulator step (s)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    p99 = report["set_to_sell"]["p99_ms"]
    verdict = "within" if p99 <= 100 else "ABOVE"
    print(f"set -> sell p99 {p99} ms (an upper bound): {verdict} the 100 ms target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
