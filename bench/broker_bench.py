"""Benchmark the broker adapter over loopback: order round trip and tick latency, p50/p99.

Run:  uv run python bench/broker_bench.py [--lib ib_async|ib_insync|both] [--orders 200]
      [--ticks 200] [--quote-interval 0.01]

It starts the exchange simulator as a subprocess (its own temporary account database),
connects a ``BrokerAdapter`` and measures, with ``time.perf_counter``:

- **order round trip**: from just before ``place_limit`` (which calls the library's
  ``placeOrder``) to the adapter's ``fills`` event for that order (the library's
  ``execDetailsEvent``, relayed). Marketable 1-share limit orders, alternating buy and
  sell. The bench waits 40 ms between orders so the adapter's pacing bucket (40 msgs/s
  sustained) never holds an order back: the figure is transport and processing only.
- **tick latency**: from just before a ``set_price`` control command (pinning a new
  last/bid/ask, a distinct price each time) is sent to the simulator, to the adapter's
  ``quotes_changed`` event showing that price. The simulator publishes quotes once per
  quote step, so this includes the wait for its next step (at most ``--quote-interval``,
  0.01 s by default) plus the control command's own trip: an *upper bound* of the
  "simulator timestamp -> client ticker update" latency. The control round trip alone is
  measured and printed too, for reference. (The simulator's tick timestamps, tick type
  45, have 1-second resolution; RTVolume is not sent; hence this method.)

Target: p99 <= 20 ms for both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broker.adapter import BrokerAdapter  # noqa: E402
from broker.config import AdapterConfig  # noqa: E402
from broker.guards import Role  # noqa: E402
from broker.models import ExecutionView, Quote  # noqa: E402
from market.clock import VirtualClock  # noqa: E402

START = "2025-11-26T10:00:00-05:00"
SYMBOL = "AAPL"
TARGET_MS = 20.0
ORDER_GAP_S = 0.04


@dataclass(frozen=True)
class Summary:
    """Latency percentiles of one measurement, in milliseconds."""

    name: str
    count: int
    p50: float
    p99: float
    max: float

    def line(self) -> str:
        verdict = "ok" if self.p99 <= TARGET_MS else "ABOVE TARGET"
        return (
            f"{self.name:<28} n={self.count:<4} p50={self.p50:7.2f} ms  p99={self.p99:7.2f} ms"
            f"  max={self.max:7.2f} ms  ({verdict}: p99 <= {TARGET_MS:g} ms)"
        )


def summarize(name: str, seconds: list[float]) -> Summary:
    """Return p50/p99/max of ``seconds`` in milliseconds."""
    ms = sorted(s * 1000.0 for s in seconds)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return Summary(name, len(ms), statistics.median(ms), cuts[98], ms[-1])


# --------------------------------------------------------------------------- simulator


class Simulator:
    """The simulator subprocess and an asyncio client of its control port."""

    def __init__(self, workdir: Path, quote_interval: float) -> None:
        args = [
            sys.executable, "-m", "broker.simulator", "--port", "0", "--control-port", "0",
            "--start", START, "--speed", "1", "--db", str(workdir / "bench.db"),
            "--quote-interval", str(quote_interval), "--log-level", "WARNING",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "TRADING_CLOCK"}
        with (workdir / "sim.log").open("w") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        self.port = self._port("listening on")
        self.control_port = self._port("control on")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _port(self, prefix: str) -> int:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(prefix):
            self.stop()
            raise RuntimeError(f"simulator did not start (got {line!r}); see sim.log")
        return int(line.rsplit(":", 1)[1])

    async def control(self, cmd: str, **params: object) -> dict[str, object]:
        """Send one control command and return its reply (one connection, kept open)."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                "127.0.0.1", self.control_port
            )
        assert self._reader is not None
        self._writer.write(json.dumps({"cmd": cmd, **params}).encode() + b"\n")
        reply = json.loads(await self._reader.readline())
        if not reply.get("ok"):
            raise RuntimeError(f"control {cmd} failed: {reply}")
        return reply

    async def close_control(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
            self._writer = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


# --------------------------------------------------------------------------- measurements


async def order_round_trips(adapter: BrokerAdapter, count: int, tag: str) -> list[float]:
    """Return placeOrder -> fill event times of ``count`` marketable 1-share orders."""
    arrived: dict[str, float] = {}
    waiting: dict[str, asyncio.Event] = {}

    def on_fill(fill: ExecutionView) -> None:
        if fill.order_ref in waiting and fill.order_ref not in arrived:
            arrived[fill.order_ref] = time.perf_counter()
            waiting[fill.order_ref].set()

    adapter.fills.subscribe(on_fill)
    times = []
    for i in range(count):
        quote = adapter.quote(SYMBOL)
        assert quote is not None and quote.bid and quote.ask and quote.last
        action = "BUY" if i % 2 == 0 else "SELL"
        limit = quote.ask * 1.01 if action == "BUY" else quote.bid * 0.99
        ref = f"bench-{tag}-{i}"
        waiting[ref] = asyncio.Event()
        sent = time.perf_counter()
        await adapter.place_limit(SYMBOL, action, 1, limit, ref, wait_ack=False)
        await asyncio.wait_for(waiting[ref].wait(), 5.0)
        times.append(arrived[ref] - sent)
        await asyncio.sleep(ORDER_GAP_S)
    adapter.fills.unsubscribe(on_fill)
    return times


async def tick_latencies(
    adapter: BrokerAdapter, sim: Simulator, count: int
) -> tuple[list[float], list[float]]:
    """Return (set_price -> quotes_changed times, control round trips) for ``count`` prices."""
    target: dict[str, float] = {}
    seen = asyncio.Event()
    arrived = [0.0]

    def on_quotes(quotes: tuple[Quote, ...]) -> None:
        for q in quotes:
            if q.symbol == SYMBOL and q.last is not None and abs(q.last - target["p"]) < 1e-6:
                if not seen.is_set():
                    arrived[0] = time.perf_counter()
                    seen.set()

    adapter.quotes_changed.subscribe(on_quotes)
    base = adapter.quote(SYMBOL).last or 100.0
    latencies, control = [], []
    try:
        for i in range(count):
            # Consecutive prices always differ: an unchanged pin would send no tick at all.
            target["p"] = round(base + 0.01 * (1 + i % 50), 2)
            seen.clear()
            sent = time.perf_counter()
            await sim.control("set_price", symbol=SYMBOL, price=target["p"])
            control.append(time.perf_counter() - sent)
            await asyncio.wait_for(seen.wait(), 5.0)
            latencies.append(arrived[0] - sent)
            # Start the next change at a random phase of the simulator's quote step.
            await asyncio.sleep(0.003 + (i % 5) * 0.0017)
    finally:
        adapter.quotes_changed.unsubscribe(on_quotes)
        await sim.control("set_price", symbol=SYMBOL, price=None)
    return latencies, control


async def bench_library(
    lib: str, sim: Simulator, orders: int, ticks: int, client_id: int
) -> list[Summary]:
    """Connect with ``lib`` and run both measurements."""
    status = await sim.control("status")
    clock = VirtualClock(start=datetime.fromisoformat(str(status["now"])), speed=1.0)
    config = AdapterConfig(port=sim.port, max_order_notional=1e7, price_collar_pct=5.0)
    adapter = BrokerAdapter(config, clock, client_id, role=Role.TOOL, library=lib)
    await adapter.start(timeout=20)
    try:
        await adapter.subscribe_quotes([SYMBOL])
        deadline = time.monotonic() + 10
        while not (q := adapter.quote(SYMBOL)) or not (q.bid and q.ask and q.last):
            if time.monotonic() > deadline:
                raise RuntimeError("no quote")
            await asyncio.sleep(0.02)
        # Warm up (first-use costs: imports, contract cache, socket buffers).
        await order_round_trips(adapter, 4, f"{lib}-warm")
        round_trips = await order_round_trips(adapter, orders, lib)
        latencies, control = await tick_latencies(adapter, sim, ticks)
    finally:
        await adapter.close()
    return [
        summarize(f"{lib} order round trip", round_trips),
        summarize(f"{lib} tick latency", latencies),
        summarize(f"{lib} (control command alone)", control),
    ]


async def main_async(args: argparse.Namespace) -> int:
    libs = ["ib_async", "ib_insync"] if args.lib == "both" else [args.lib]
    with tempfile.TemporaryDirectory(prefix="broker-bench-") as tmp:
        sim = Simulator(Path(tmp), args.quote_interval)
        try:
            results = []
            for n, lib in enumerate(libs):
                results += await bench_library(lib, sim, args.orders, args.ticks, 900 + n)
        finally:
            await sim.close_control()
            sim.stop()
    print(f"broker bench: loopback, simulator quote step {args.quote_interval * 1000:g} ms")
    for summary in results:
        print(summary.line())
    measured = [s for s in results if "control" not in s.name]
    return 0 if all(s.p99 <= TARGET_MS for s in measured) else 1


def main() -> int:
    """Parse arguments and run the benchmark; exit 1 when a p99 misses the target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lib", default="both", choices=["ib_async", "ib_insync", "both"])
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--quote-interval", type=float, default=0.01)
    args = parser.parse_args()
    if args.orders < 2 or args.ticks < 2:
        parser.error("--orders and --ticks must be at least 2")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
