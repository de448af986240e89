"""``python -m day_trader`` against the simulator: which price paths enter, and the re-entry rules.

One simulator replays constructed 1-min paths (CSV) for the whole module; each test runs
its own day-trader process on its own database and symbols. The exit manager is stood in
for by the test: it heart-beats the ``exit_manager`` row and closes positions through the
Store API with reason ``target`` or ``stop``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from day_trader.signals import (
    ATR_TOO_LOW,
    BELOW_VWAP,
    RSI_TOO_HIGH,
    EntryParams,
    evaluate_entry,
    gap_pct,
)
from exit_manager.rules import ExitParams, target_price
from market.calendar import session
from market.clock import ET
from market.indicators import snapshot
from shared_state import Event, OrderStatus, Store

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dt_harness import (  # noqa: E402
    CLIMB_PATTERN,
    DAY,
    QUIET_PATTERN,
    SLIDE_PATTERN,
    STEEP_CLIMB_PATTERN,
    VWAP_PATTERN,
    ExitManagerStandIn,
    Market,
    PricePath,
    Traders,
    broker_executions,
    buys_by_symbol,
    events_of,
    new_store,
    open_position,
    publish_watchlist,
    running_market,
    wait_for,
)

START = datetime(2025, 11, 26, 10, 0, tzinfo=ET)
SPEED = 20.0
MINUTE_REAL_S = 60.0 / SPEED

#: Built to fire: the standard (VWAP) entry, and gap-and-go (7% gap, ATR too low for VWAP).
FIRING = (
    PricePath("PVWAP", VWAP_PATTERN, gap_pct=1.0),
    PricePath("PGAPGO", QUIET_PATTERN, gap_pct=7.0),
)
#: Built to fail one condition each, with what every minute's evaluation must report.
FAILING = {
    PricePath("XGAPRSI", CLIMB_PATTERN, gap_pct=7.0): RSI_TOO_HIGH,  # gapped, overbought
    PricePath("XBELOW", SLIDE_PATTERN, gap_pct=1.0): BELOW_VWAP,  # ATR, RSI fine
    PricePath("XATR", QUIET_PATTERN, gap_pct=1.0): ATR_TOO_LOW,  # above VWAP, RSI fine
    PricePath("XRSI", STEEP_CLIMB_PATTERN, gap_pct=1.0): RSI_TOO_HIGH,  # no gap, overbought
}
HALTED = PricePath("HHALT", VWAP_PATTERN, gap_pct=1.0)
REENTRY = (PricePath("RTGT", VWAP_PATTERN, gap_pct=1.0), PricePath("RSTOP", VWAP_PATTERN, 1.0))
#: 4 shares a minute: the simulator fills a quarter of a bar's volume per step, 1 share.
SLOW = PricePath("SLOW", VWAP_PATTERN, gap_pct=1.0, volume=4)
PATHS = (*FIRING, *FAILING, HALTED, *REENTRY, SLOW)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    with running_market(tmp_path_factory.mktemp("entries"), PATHS, START, SPEED) as m:
        yield m


@pytest.fixture
def traders(market: Market, tmp_path: Path) -> Iterator[Traders]:
    started = Traders(market, tmp_path)
    yield started
    started.stop_all()


def _evaluations(path: PricePath, minutes: range) -> list[tuple[str | None, tuple[str, ...]]]:
    """Return (kind, failed) of the path's signal at each minute after 10:00 (pure)."""
    today = session(DAY)
    rows = path.rows()
    bars = pd.DataFrame(
        [r[1:] for r in rows],
        columns=["open", "high", "low", "close", "volume"],
        index=pd.DatetimeIndex([r[0] for r in rows]),
    )
    gap = gap_pct(path.prior_close(), float(bars.loc[bars.index >= today.open, "open"].iloc[0]))
    out = []
    for minute in minutes:
        now = START + timedelta(minutes=minute, seconds=5)
        done = bars.loc[bars.index <= pd.Timestamp(now) - pd.Timedelta(seconds=65)]
        signal = evaluate_entry(
            path.symbol, snapshot(done, today.open), gap, now, EntryParams(), recovery=False
        )
        out.append((signal.kind, signal.failed))
    return out


def test_constructed_paths_fire_or_fail_their_condition_every_minute_of_the_test() -> None:
    minutes = range(0, 60)
    assert {k for k, _ in _evaluations(FIRING[0], minutes)} == {"vwap"}
    assert {k for k, _ in _evaluations(FIRING[1], minutes)} == {"gap_and_go"}
    for path, condition in FAILING.items():
        results = _evaluations(path, minutes)
        assert all(kind is None and condition in failed for kind, failed in results), path.symbol


def test_gap_and_go_and_vwap_paths_enter_and_paths_built_to_fail_never_do(
    market: Market, traders: Traders, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    symbols = [p.symbol for p in (*FIRING, *FAILING, HALTED)]
    publish_watchlist(store, symbols)
    market.control.halt(HALTED.symbol, True)
    try:
        with ExitManagerStandIn(store, market.clock):
            trader = traders.start(db, QUOTE_MAX_AGE_S=120)
            explain = trader.tail
            vwap = wait_for(
                lambda: open_position(store, "PVWAP"), 60, "PVWAP open", explain=explain
            )
            gap = wait_for(
                lambda: open_position(store, "PGAPGO"), 30, "PGAPGO open", explain=explain
            )
            halted_skips = wait_for(
                lambda: [
                    e for e in events_of(store, "entry_skipped", "HHALT")
                    if e.detail["reason"] == "halted"
                ],
                30,
                "the halted symbol's skip event",
                explain=explain,
            )  # fmt: skip
            # Two more bar closes, every symbol evaluated again on each.
            seen = market.now()
            wait_for(
                lambda: market.now() >= seen + timedelta(minutes=2),
                4 * MINUTE_REAL_S + 20,
                "2 bars",
            )
            claims = [e.symbol for e in events_of(store, "claim")]
            # Read the exchange while the halt holds: once lifted, the still-running trader
            # may rightly buy HHALT (its path says buy), which is not what this test checks.
            buys = buys_by_symbol(broker_executions(market.sim.port))
    finally:
        market.control.halt(HALTED.symbol, False)
    assert sorted(claims) == ["PGAPGO", "PVWAP"], trader.tail()
    kinds = {e.symbol: e.detail["kind"] for e in events_of(store, "entry_order")}
    assert kinds == {"PVWAP": "vwap", "PGAPGO": "gap_and_go"}
    assert halted_skips[0].detail["signal"] == "vwap"  # the price action said buy
    for position in (vwap, gap):
        assert position.entry_price is not None and position.quantity >= 1
        assert position.target_price == target_price(position.entry_price, False, ExitParams())
    ours = {s: refs for s, refs in buys.items() if s in symbols}
    assert ours == {"PVWAP": {vwap.entry_order_ref}, "PGAPGO": {gap.entry_order_ref}}


def test_reentry_refused_after_a_target_exit_and_recovery_after_a_stop_up_to_the_limit(
    market: Market, traders: Traders, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    publish_watchlist(store, ["RTGT", "RSTOP"])
    with ExitManagerStandIn(store, market.clock) as exit_manager:
        trader = traders.start(db, QUOTE_MAX_AGE_S=120, MAX_RECOVERY_ENTRIES=1)
        explain = trader.tail
        first_tgt = wait_for(lambda: open_position(store, "RTGT"), 60, "RTGT open", explain=explain)
        first_stop = wait_for(
            lambda: open_position(store, "RSTOP"), 30, "RSTOP open", explain=explain
        )
        exit_manager.close(first_tgt, "target", 1.8)
        exit_manager.close(first_stop, "stop", -0.9)

        recovery = wait_for(
            lambda: (p := open_position(store, "RSTOP")) is not None and p.is_recovery and p,
            8 * MINUTE_REAL_S + 20,
            "a recovery entry in RSTOP",
            explain=explain,
        )
        refused = wait_for(
            lambda: _skips(store, "RTGT", "reentry_forbidden"), 30, "RTGT refused", explain=explain
        )
        exit_manager.close(recovery, "stop", -0.9)
        limited = wait_for(
            lambda: _skips(store, "RSTOP", "recovery_limit"),
            4 * MINUTE_REAL_S + 20,
            "RSTOP refused after its recovery",
            explain=explain,
        )
        seen = market.now()
        wait_for(
            lambda: market.now() >= seen + timedelta(minutes=2), 4 * MINUTE_REAL_S + 20, "2 bars"
        )
        claims = [(e.symbol, e.detail["is_recovery"]) for e in events_of(store, "claim")]

    assert sorted(claims) == [("RSTOP", False), ("RSTOP", True), ("RTGT", False)], trader.tail()
    assert recovery.entry_order_ref != first_stop.entry_order_ref
    assert recovery.entry_price is not None
    settings_like = ExitParams()  # the defaults the trader runs with
    assert recovery.target_price == target_price(recovery.entry_price, True, settings_like)
    assert refused[0].detail["signal"] in ("vwap", "gap_and_go")
    assert limited[0].detail["signal"] is not None
    kinds = sorted((e.symbol, e.detail["kind"]) for e in events_of(store, "entry_order"))
    assert kinds == [("RSTOP", "recovery"), ("RSTOP", "vwap"), ("RTGT", "vwap")]
    buys = buys_by_symbol(broker_executions(market.sim.port))
    assert buys["RTGT"] == {first_tgt.entry_order_ref}
    assert buys["RSTOP"] == {first_stop.entry_order_ref, recovery.entry_order_ref}


def _skips(store: Store, symbol: str, reason: str) -> list[Event]:
    return [e for e in events_of(store, "entry_skipped", symbol) if e.detail["reason"] == reason]


def test_an_entry_not_filled_in_time_is_cancelled_and_the_filled_part_is_the_position(
    market: Market, traders: Traders, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    publish_watchlist(store, ["SLOW"])
    timeout_s = 20.0  # market seconds: one real second at this speed
    with ExitManagerStandIn(store, market.clock):
        trader = traders.start(db, QUOTE_MAX_AGE_S=120, ENTRY_ORDER_TIMEOUT_S=timeout_s)
        (ordered,) = wait_for(
            lambda: events_of(store, "entry_order"), 60, "the buy", explain=trader.tail
        )
        ref = ordered.detail["order_ref"]
        order = wait_for(
            lambda: (o := store.order(ref)) is not None and o.status is OrderStatus.CANCELLED and o,
            30,
            "the timed-out buy cancelled",
            explain=trader.tail,
        )
        position = open_position(store, "SLOW")
        timeouts = events_of(store, "entry_timeout", "SLOW")
    traders.stop_all()
    assert 0 < order.filled_quantity < order.quantity, order
    assert position is not None and position.entry_order_ref == ref
    assert position.quantity == order.filled_quantity  # the position is what was bought
    assert position.stop_price is not None and position.target_price is not None
    assert len(timeouts) == 1 and timeouts[0].detail["order_ref"] == ref
    phases = [e.detail["to"] for e in events_of(store, "entry_state", "SLOW")]
    assert phases[-2:] == ["cancelling", "partly_filled"], phases
    executions = [e for e in broker_executions(market.sim.port) if e.symbol == "SLOW"]
    assert {e.order_ref for e in executions} == {ref}
    assert sum(e.shares for e in executions) == order.filled_quantity
