"""Helpers for the phase tests: settings, a simulator, running a phase, seeding a day.

A plain module (imported by the test modules and by this folder's ``conftest.py``).
The simulator is the real ``python -m broker.simulator`` subprocess, started through
the adapter tests' ``SimProcess`` with a virtual clock on the day the tests need.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from config.settings import Settings, load_settings
from market.clock import ET, Clock
from phases.runner import PhaseContext, PhaseOutcome, body_of, open_context, run_phase
from shared_state import ExitReason, Store

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "broker"))

from adapter_fixtures import SimProcess  # noqa: E402

DAY = date(2025, 11, 26)  # a Wednesday; the next trading day is Friday 28 (Thanksgiving)
PREMARKET_START = "2025-11-26T07:00:00-05:00"
AFTER_CLOSE_START = "2025-11-26T16:15:00-05:00"


def start_simulator(tmp: Path, start: str, name: str = "sim") -> SimProcess:
    """Start a simulator with its own account database whose clock starts at ``start``."""
    sim = SimProcess(db=tmp / f"{name}.db", log_path=tmp / f"{name}.log", start=start)
    sim.launch()
    return sim


def settings_for(tmp: Path, port: int = 1, **overrides: Any) -> Settings:
    """Return settings for a test: files under ``tmp``, the simulator on ``port``."""
    environ = {
        "BROKER": "sim",
        "SIM_PORT": str(port),
        "DB_PATH": str(tmp / "state.db"),
        "LOG_DIR": str(tmp / "logs"),
        "REPORTS_DIR": str(tmp / "reports"),
        "SPANS_DB_PATH": str(tmp / "spans.db"),
        "UNIVERSE_SCAN_ROWS": "12",
        "PHASE_TIMEOUT_S": "120",
        "LLM_MAX_RETRIES": "0",
        "LLM_TIMEOUT_S": "1",
    }
    environ.update({k: str(v) for k, v in overrides.items()})
    return load_settings(environ=environ, env_file=None)


@dataclass
class Run:
    """One run of a phase: how it ended and how often it connected to the broker."""

    outcome: PhaseOutcome
    connections: int


def context(
    name: str, settings: Settings, clock: Clock, store: Store, day: date = DAY
) -> PhaseContext:
    return open_context(name, day, settings, clock, store)


def run(name: str, settings: Settings, clock: Clock, store: Store, day: date = DAY) -> Run:
    """Run phase ``name`` in this process the way ``python -m phases`` does."""
    ctx = context(name, settings, clock, store, day)
    try:
        outcome = asyncio.run(run_phase(ctx, body_of(name)))
    finally:
        ctx.data.close()
    return Run(outcome, ctx.broker.connections)


# --------------------------------------------------------------------------- a traded day


@dataclass(frozen=True)
class SeededTrade:
    symbol: str
    entry_at: str  # ET "HH:MM" of the 1-min bar whose close is the entry
    exit_at: str
    reason: ExitReason
    quantity: int = 100


def _bar_closes(market: Any, symbol: str, day: date) -> dict[str, tuple[datetime, float]]:
    return {
        b.time.astimezone(ET).strftime("%H:%M"): (b.time + timedelta(minutes=1), b.close)
        for b in market.intraday_bars(symbol, day)
    }


def seed_trades(store: Store, trades: list[SeededTrade], day: date = DAY) -> list[float]:
    """Record ``trades`` as the day trader and exit manager would; return each P&L.

    Prices are the synthetic market's (seed 7, the simulator's default) 1-min closes,
    so the report's price charts show the trades where they happened.
    """
    from broker.simulator.market_data import SyntheticMarket

    market = SyntheticMarket(seed=7, gap_share=0.1)
    store.ensure_daily_state(day, 100_000.0)
    pnls = []
    for n, t in enumerate(trades):
        closes = _bar_closes(market, t.symbol, day)
        (t_in, p_in), (t_out, p_out) = closes[t.entry_at], closes[t.exit_at]
        ref_in, ref_out = f"dt-{t.symbol}-{n}", f"em-{t.symbol}-{n}"
        claim = store.claim_for_entry(
            t.symbol, day, now=t_in, order_ref=ref_in, quantity=t.quantity, limit_price=p_in,
            max_recovery_entries=1, max_trades_per_day=20, max_positions=8, owner="day_trader",
        )  # fmt: skip
        assert claim.ok, claim
        store.record_fill(
            f"x{n}a", order_ref=ref_in, symbol=t.symbol, side="BUY", quantity=t.quantity,
            price=p_in, commission=1.0, time=t_in,
        )  # fmt: skip
        store.mark_filled(
            t.symbol, now=t_in, entry_price=p_in, quantity=t.quantity,
            target_price=round(p_in * 1.018, 2), stop_price=round(p_in * 0.991, 2),
        )  # fmt: skip
        assert store.begin_exit(
            t.symbol, now=t_out, order_ref=ref_out, quantity=t.quantity, limit_price=p_out,
            reason=t.reason,
        )  # fmt: skip
        store.record_fill(
            f"x{n}b", order_ref=ref_out, symbol=t.symbol, side="SELL", quantity=t.quantity,
            price=p_out, commission=1.0, time=t_out,
        )  # fmt: skip
        pnl = round((p_out - p_in) * t.quantity - 2.0, 2)
        closed = store.close_position(
            t.symbol, trading_date=day, now=t_out, exit_price=p_out, reason=t.reason, pnl=pnl,
            commissions=2.0,
        )  # fmt: skip
        assert closed is not None
        pnls.append(pnl)
    return pnls


def table_counts(db: Path) -> dict[str, int]:
    """Return the row count of each phase/contract table (through the stores, no SQL)."""
    from shared_state.phase_data import PhaseData

    store = Store(db, process="counter")
    data = PhaseData(db)
    try:
        counts = {
            "candidates": len(data.candidates(DAY)),
            "bars": sum(data.bar_counts(DAY).values()),
            "snapshots": len(data.snapshots(DAY)),
            "premarket": len(data.premarket(DAY)),
            "watchlist": len(store.watchlist(DAY)),
            "events": len(store.events(limit=100_000)),
            "llm_calls": len(data.llm_calls(DAY)),
        }
    finally:
        data.close()
        store.close()
    return counts
