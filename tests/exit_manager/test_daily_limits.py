"""The day's P&L limits end to end: daily target and daily loss limit liquidate and halt.

One simulator (2025-11-26 from 10:00 ET); each test runs its own exit manager on its own
database (so each has its own day record and starting capital = NetLiquidation at its
start). Per-position targets and stops are set wide so that only the day's P&L decides.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exit_manager.rules import ExitParams
from shared_state import CommandStatus, Store

sys.path.insert(0, str(Path(__file__).resolve().parent))

from em_harness import (  # noqa: E402
    Desk,
    Processes,
    Simulator,
    Trader,
    World,
    clock_spec,
    launch_exit_manager,
    launch_simulator,
    processes,
    wait_for,
    wait_ready,
)

START = "2025-11-26T10:00:00-05:00"
WIDE = {"PROFIT_TARGET_PCT": "20", "RECOVERY_TARGET_PCT": "10", "STOP_LOSS_PCT": "10"}
PARAMS = ExitParams(profit_target_pct=20, recovery_target_pct=10, stop_loss_pct=10)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Processes, Simulator]]:
    with processes() as running:
        tmp = tmp_path_factory.mktemp("daily-sim")
        yield running, running.add(launch_simulator(tmp, clock_spec(START, 2.0)))


def _world(shared: tuple[Processes, Simulator], tmp: Path, env: dict[str, str]) -> World:
    running, sim = shared
    db = tmp / "state.db"
    store = running.add(Store(db, process="test"))
    em = running.add(launch_exit_manager(tmp, sim, db, {**WIDE, **env}))
    trader = running.add(Trader(sim.port))
    world = World(tmp, sim, db, store, em, trader, Desk(store, trader, sim, PARAMS), running)
    wait_ready(store, em)
    return world


def _claim(world: World, symbol: str) -> str | None:
    result = world.store.claim_for_entry(
        symbol, world.desk.today(), now=world.sim.now(), order_ref=f"dt-{symbol}-after",
        quantity=1, limit_price=None, max_recovery_entries=1, max_trades_per_day=100,
        max_positions=50, owner="day_trader",
    )  # fmt: skip
    return None if result.ok else str(result.refusal)


def test_daily_target_liquidates_everything_and_halts_entries(
    shared: tuple[Processes, Simulator], tmp_path: Path
) -> None:
    world = _world(shared, tmp_path, {"DAILY_TARGET_PCT": "0.05", "DAILY_LOSS_LIMIT_PCT": "5"})
    capital = world.store.daily_state(world.desk.today()).starting_capital
    assert capital and capital > 0
    winner = world.desk.open("CSCO", 2000)
    world.desk.open("KO", 300)  # flat: sold because the day is done, not for itself
    gain = capital * 0.0006 / winner.quantity  # 0.06 % of the capital: above the 0.05 % target
    world.sim.control.set_price("CSCO", round(winner.entry + gain + 0.02, 2))

    for symbol in ("CSCO", "KO"):
        assert world.desk.wait_closed(symbol).exit_reason == "daily_target"
    state = world.store.daily_state(world.desk.today())
    assert state.daily_target_reached
    assert state.halted and state.halt_reason == "daily_target"
    [limit] = world.desk.events("daily_limit")
    assert limit.detail["reason"] == "daily_target" and limit.detail["pnl_pct"] >= 0.05
    assert _claim(world, "PEP") == "HALTED"
    assert world.trader.sold("CSCO") == 2000 and world.trader.sold("KO") == 300
    world.em.stop()


def test_daily_loss_limit_liquidates_everything_and_halts_for_the_day(
    shared: tuple[Processes, Simulator], tmp_path: Path
) -> None:
    world = _world(shared, tmp_path, {"DAILY_TARGET_PCT": "5", "DAILY_LOSS_LIMIT_PCT": "0.05"})
    capital = world.store.daily_state(world.desk.today()).starting_capital
    loser = world.desk.open("PFE", 4000)
    world.desk.open("T", 500)
    loss = capital * 0.0006 / loser.quantity
    world.sim.control.set_price("PFE", round(loser.entry - loss - 0.02, 2))

    for symbol in ("PFE", "T"):
        closed = world.desk.wait_closed(symbol)
        assert closed.exit_reason == "loss_limit" and closed.reentry_allowed is False
    state = world.store.daily_state(world.desk.today())
    assert state.halted and state.halt_reason == "loss_limit"
    assert not state.daily_target_reached
    assert _claim(world, "MRK") == "HALTED"
    # A manual resume cannot lift the loss-limit halt.
    resume = world.store.enqueue_command("resume_entries", now=world.sim.now())
    command = wait_for(
        lambda: (
            (c := world.store.command(resume)).status is not CommandStatus.PENDING
            and c.status is not CommandStatus.TAKEN
            and c
        ),
        5,
        "the resume command to finish",
    )
    assert command.status is CommandStatus.FAILED and "loss_limit" in (command.result or "")
    assert world.store.daily_state(world.desk.today()).halted
    world.em.stop()
