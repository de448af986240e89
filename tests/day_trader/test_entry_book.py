"""The entry book against a plain fake adapter and a real store: commissions, fill timeouts.

- A buy's commission report may come after its entry settled (the order FILLED, no longer
  pending): it is still written to the fill, so the exit manager closes the round trip
  net of both commissions.
- ENTRY_ORDER_TIMEOUT_S is market seconds, made real at the clock's speed, and an entry
  is never cancelled before the real-time floor, however fast the clock runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from broker.config import AdapterConfig
from broker.events import Signal
from broker.models import ExecutionView, OrderStatus, OrderView
from config.settings import load_settings
from day_trader.entries import EntryBook, PendingEntry, read_pending, ref_prefix
from day_trader.journal import Journal
from day_trader.params import trader_params
from exit_manager.params import ORDER_FILL_FLOOR_S
from market.clock import ET
from shared_state import Store

CLIENT_ID = 12
DAY = date(2025, 11, 26)
T0 = datetime(2025, 11, 26, 10, 30, tzinfo=ET)
REF = f"{ref_prefix(CLIENT_ID)}20251126-ABC-0000cafe"


@dataclass
class FakeClock:
    """Market time the test moves by hand, ``speed`` market seconds per real second."""

    instant: datetime
    speed: float = 1.0

    def now(self) -> datetime:
        return self.instant

    def to_real_seconds(self, market_seconds: float) -> float:
        return market_seconds / self.speed

    def spec(self) -> str:
        return "fake"


@dataclass
class FakeAdapter:
    """What the entry book uses of ``BrokerAdapter``: events, one order view, cancels."""

    client_id: int = CLIENT_ID
    config: AdapterConfig = field(default_factory=AdapterConfig)
    views: dict[str, OrderView] = field(default_factory=dict)
    cancels: list[str] = field(default_factory=list)
    order_status: Signal[OrderView] = field(default_factory=lambda: Signal("order_status"))
    commissions: Signal[ExecutionView] = field(default_factory=lambda: Signal("commissions"))

    def find_order_now(self, order_ref: str) -> OrderView | None:
        return self.views.get(order_ref)

    def executions(self, order_ref: str | None = None) -> list[ExecutionView]:
        return []

    async def cancel(self, order_ref: str) -> OrderView | None:
        self.cancels.append(order_ref)
        return self.views.get(order_ref)


def _book(store: Store, clock: FakeClock, adapter: FakeAdapter, **env: str) -> EntryBook:
    params = trader_params(load_settings(env, env_file=None))
    journal = Journal(store, clock, "day_trader")
    return EntryBook(store, adapter, clock, params, journal, owner="day_trader")  # type: ignore[arg-type]


def _claim(store: Store, ref: str = REF) -> None:
    claim = store.claim_for_entry(
        "ABC", DAY, now=T0, order_ref=ref, quantity=10, limit_price=50.0,
        max_recovery_entries=1, max_trades_per_day=20, max_positions=8, owner="day_trader",
    )  # fmt: skip
    assert claim.ok


def _execution(ref: str, commission: float | None, exec_id: str = "E1") -> ExecutionView:
    return ExecutionView(
        exec_id=exec_id, order_ref=ref, perm_id=900, order_id=7, client_id=CLIENT_ID,
        symbol="ABC", side="BOT", shares=10, price=50.0, time=T0, cum_qty=10, avg_price=50.0,
        commission=commission,
    )  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store(tmp_path / "state.db", process="day_trader")
    yield opened
    opened.close()


def test_commission_reported_after_the_entry_settled_is_written_to_its_fill(
    store: Store,
) -> None:
    adapter = FakeAdapter()
    book = _book(store, FakeClock(T0), adapter)
    _claim(store)
    fill = _execution(REF, None)
    store.record_fill(
        fill.exec_id, order_ref=REF, symbol="ABC", side="BUY", quantity=10, price=50.0,
        commission=None, time=T0,
    )  # fmt: skip
    store.update_order(REF, now=T0, status="FILLED", filled_quantity=10, avg_fill_price=50.0)
    store.mark_filled(
        "ABC", now=T0, entry_price=50.0, quantity=10, target_price=50.9, stop_price=49.55
    )
    assert read_pending(store, book.prefix) == []  # settled: no pass looks at it again

    adapter.commissions.emit(_execution(REF, 1.25))
    asyncio.run(book.write_commissions())

    (recorded,) = store.fills(order_ref=REF)
    assert recorded.commission == 1.25


def test_commission_of_a_fill_not_recorded_yet_records_the_fill_with_it(store: Store) -> None:
    adapter = FakeAdapter()
    book = _book(store, FakeClock(T0), adapter)
    _claim(store)

    adapter.commissions.emit(_execution(REF, 1.0))
    adapter.commissions.emit(_execution("dt99-20251126-ABC-00000001", 1.0, "E2"))  # not ours
    asyncio.run(book.write_commissions())

    (recorded,) = store.fills(order_ref=REF)
    assert (recorded.exec_id, recorded.quantity, recorded.commission) == ("E1", 10, 1.0)
    assert store.fills(symbol="ABC") == [recorded]


def test_entry_timeout_in_market_seconds_waits_for_the_real_time_floor_at_high_speed(
    store: Store,
) -> None:
    clock = FakeClock(T0, speed=1000.0)  # 30 market seconds are 0.03 real seconds
    adapter = FakeAdapter()
    book = _book(store, clock, adapter, ENTRY_ORDER_TIMEOUT_S="30")
    _claim(store)
    adapter.views[REF] = OrderView(
        order_ref=REF, order_id=7, perm_id=900, client_id=CLIENT_ID, symbol="ABC",
        action="BUY", quantity=10, limit_price=50.0, status=OrderStatus.SUBMITTED, filled=0,
        remaining=10, avg_price=0.0, source="live",
    )  # fmt: skip

    def sync_at(market_seconds: float) -> None:
        clock.instant = T0 + timedelta(seconds=market_seconds)
        pending: list[PendingEntry] = read_pending(store, book.prefix)
        asyncio.run(book.sync(pending, None))

    sync_at(0.9 * ORDER_FILL_FLOOR_S * 1000)  # 450 market s: 15 timeouts, 0.45 real s
    assert adapter.cancels == []
    sync_at(1.1 * ORDER_FILL_FLOOR_S * 1000)  # 0.55 real s
    assert adapter.cancels == [REF]
