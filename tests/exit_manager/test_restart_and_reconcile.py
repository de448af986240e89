"""Start-up reconciliation and crashes: the exit manager killed at the worst moments.

One simulator and one database for the module (2025-11-26 from 10:00 ET); the exit
manager is killed with SIGKILL (by the test, or by itself at a failpoint) and started
again on the same database. Whatever happens, a position's sell reaches the simulator
exactly once and its row closes exactly once.
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from exit_manager.failpoints import AFTER_BEGIN_EXIT, AFTER_PLACE, ENV
from exit_manager.rules import ExitParams, stop_price, target_price
from shared_state import OrderStatus, PositionState, Store

sys.path.insert(0, str(Path(__file__).resolve().parent))

from em_harness import (  # noqa: E402
    Desk,
    World,
    launch_exit_manager,
    processes,
    start_world,
    wait_for,
    wait_ready,
)

START = "2025-11-26T10:00:00-05:00"
PARAMS = ExitParams()


def _prepare(desk: Desk) -> None:
    """Leave what a crash or a person could leave behind, before the exit manager starts."""
    desk.open("KO", 200, with_row=False)  # bought elsewhere: no row
    today, now = desk.today(), desk.sim.now()
    for symbol, fill in (("PEP", True), ("BAC", False)):
        claim = desk.store.claim_for_entry(
            symbol, today, now=now, order_ref=f"dt-{symbol}-gone", quantity=10,
            limit_price=None, max_recovery_entries=1, max_trades_per_day=100,
            max_positions=50, owner="day_trader",
        )  # fmt: skip
        assert claim.ok
        if fill:  # a row the broker holds nothing of
            desk.store.mark_filled(
                symbol, now=now, entry_price=150.0, quantity=10,
                target_price=target_price(150.0, False, PARAMS),
                stop_price=stop_price(150.0, PARAMS),
            )  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with processes() as running:
        tmp = tmp_path_factory.mktemp("restart")
        yield start_world(running, tmp, START, 2.0, PARAMS, before=_prepare)


def _restart(world: World, env: dict[str, str] | None = None) -> None:
    world.restart_exit_manager(env)
    wait_ready(world.store, world.em)


def _stop(world: World) -> None:
    world.em.kill(signal.SIGTERM)
    assert world.em.wait(30) == 0


def test_start_up_adopts_unknown_positions_and_closes_vanished_rows_before_ready(
    world: World,
) -> None:
    adopted = world.store.active_position("KO")
    assert adopted.source == "adopted" and adopted.quantity == 200
    assert adopted.state is PositionState.OPEN
    [vanished] = world.desk.closed("PEP")
    assert vanished.exit_reason == "reconciled"
    assert world.store.active_position("BAC").state is PositionState.ENTRY_PENDING  # not ours
    kinds = [e.kind for e in world.store.events(limit=10_000)]
    assert kinds.index("adopted") < kinds.index("reconcile_done") < kinds.index("ready")


def test_killed_while_exit_pending_restarts_adopts_the_sell_and_closes_once(
    world: World,
) -> None:
    row = world.store.active_position("KO")
    world.sim.control.halt("KO", True)  # the sell will rest at the simulator
    world.sim.control.set_price("KO", round(row.stop_price - 0.05, 2))

    def resting() -> bool:
        orders = world.exit_orders("KO")
        return bool(orders) and orders[-1].status is OrderStatus.SUBMITTED

    wait_for(resting, 15, "the KO sell to be acknowledged")
    [sent] = world.exit_orders("KO")
    world.em.kill(signal.SIGKILL)
    assert world.em.wait(10) == -signal.SIGKILL
    assert world.store.active_position("KO").state is PositionState.EXIT_PENDING

    _restart(world)
    [found] = world.desk.events("reconcile_done")[-1:]
    assert found.detail["exits_found"] == ["KO"]
    world.sim.control.halt("KO", False)

    closed = world.desk.wait_closed("KO")
    assert closed.exit_reason == "stop"
    assert [o.order_ref for o in world.exit_orders("KO")] == [sent.order_ref]
    assert world.trader.sell_orders("KO") == {sent.order_ref}
    assert world.trader.sold("KO") == 200
    assert len(world.desk.closed("KO")) == 1


def test_crash_after_the_intent_before_the_send_sends_it_once_after_restart(
    world: World,
) -> None:
    _stop(world)
    _restart(world, {ENV: AFTER_BEGIN_EXIT})
    opened = world.desk.open("F", 500)
    world.sim.control.set_price("F", round(opened.row.stop_price - 0.02, 2))

    assert world.em.wait(20) == -signal.SIGKILL  # died at the failpoint
    [intent] = world.exit_orders("F")
    assert intent.status is OrderStatus.INTENT
    assert world.store.active_position("F").state is PositionState.EXIT_PENDING
    assert world.trader.sold("F") == 0

    _restart(world)
    closed = world.desk.wait_closed("F")

    assert closed.exit_reason == "stop"
    first, resent = world.exit_orders("F")
    assert first.order_ref == intent.order_ref and first.status is OrderStatus.CANCELLED
    assert world.desk.events("exit_order_absent", "F")
    assert world.trader.sell_orders("F") == {resent.order_ref}
    assert world.trader.sold("F") == 500


def test_crash_right_after_the_send_adopts_the_sent_order_and_never_resends(
    world: World,
) -> None:
    _stop(world)
    _restart(world, {ENV: AFTER_PLACE})
    opened = world.desk.open("WMT", 100)
    world.sim.control.set_price("WMT", round(opened.row.target_price + 0.05, 2))

    assert world.em.wait(20) == -signal.SIGKILL
    [sent] = world.exit_orders("WMT")
    wait_for(lambda: world.trader.sold("WMT") == 100, 10, "the sell to fill at the simulator")

    _restart(world)
    closed = world.desk.wait_closed("WMT")

    assert closed.exit_reason == "target"
    assert closed.pnl == pytest.approx(
        (closed.exit_price - opened.entry) * 100 - closed.commissions, abs=0.01
    )
    assert [o.order_ref for o in world.exit_orders("WMT")] == [sent.order_ref]
    assert world.store.order(sent.order_ref).status is OrderStatus.FILLED
    assert world.trader.sell_orders("WMT") == {sent.order_ref}


def test_unreachable_broker_exits_non_zero_and_never_reports_ready(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port, closed again: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = SimpleNamespace(port=port, clock="live")
    with processes() as running:
        db = tmp_path / "state.db"
        store = running.add(Store(db, process="test"))
        em = running.add(
            launch_exit_manager(tmp_path, nowhere, db, args=("--connect-deadline", "2"))
        )

        assert em.wait(30) == 1
        info = store.process("exit_manager")
        assert info is None or not info.ready
        assert "cannot connect to the broker" in em.log_text()
        assert store.events(kind="connect_failed")
