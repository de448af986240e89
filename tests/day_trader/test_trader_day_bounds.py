"""The day trader's day: it waits for a watchlist, buys nothing after the EOD cutoff, and
exits 0 once the session is over with nothing pending."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from market.calendar import Phase, phase_times
from market.clock import ET

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dt_harness import (  # noqa: E402
    DAY,
    VWAP_PATTERN,
    ExitManagerStandIn,
    Market,
    PricePath,
    Traders,
    events_of,
    new_store,
    publish_watchlist,
    running_market,
    wait_for,
)

START = datetime(2025, 11, 26, 15, 52, tzinfo=ET)
SPEED = 30.0
LATE = PricePath("LATE", VWAP_PATTERN, gap_pct=1.0, start=(15, 0), end=(16, 0), start_price=30.0)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Market]:
    with running_market(tmp_path_factory.mktemp("late"), (LATE,), START, SPEED) as m:
        yield m


def test_waits_for_the_watchlist_buys_nothing_after_the_cutoff_and_exits_0_after_the_close(
    market: Market, tmp_path: Path
) -> None:
    db = tmp_path / "state.db"
    store = new_store(db)
    traders = Traders(market, tmp_path)
    try:
        with ExitManagerStandIn(store, market.clock):
            trader = traders.start(db)
            wait_for(
                lambda: events_of(store, "waiting_watchlist"), 60, "waiting", explain=trader.tail
            )
            assert trader.proc.poll() is None  # waiting is not a crash
            cutoff = phase_times(DAY, 5)[Phase.EOD_CUTOFF]
            wait_for(lambda: market.now() > cutoff, 60, "the EOD cutoff")
            publish_watchlist(store, ["LATE"])  # the path fires: only the cutoff stops it
            (blocked,) = wait_for(
                lambda: events_of(store, "entries_blocked"), 30, "blocked", explain=trader.tail
            )
            code = trader.proc.wait(timeout=60)
    finally:
        traders.stop_all()
    assert code == 0, trader.tail()
    assert blocked.detail["to"] == "after_eod_cutoff"
    assert events_of(store, "claim") == []
    assert "waiting for today's validated watchlist" in trader.text()
    assert "done for the day" in trader.text()
