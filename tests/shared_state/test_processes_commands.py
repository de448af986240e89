"""Process rows (supervisord states, heartbeats, readiness) and the command queue."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from state_fixtures import T0, worker_command, worker_env

from shared_state import (
    CommandKind,
    CommandStatus,
    NotFoundError,
    ProcessState,
    Store,
    TransitionError,
)


def test_process_state_change_records_a_from_to_event(store: Store) -> None:
    store.set_process_state("exit_manager", "STARTING", now=T0, pid=4242)
    info = store.set_process_state("exit_manager", "RUNNING", now=T0 + timedelta(seconds=3))

    assert (info.state, info.pid, info.since, info.restarts) == (
        ProcessState.RUNNING,
        4242,
        T0 + timedelta(seconds=3),
        0,
    )
    changes = [
        (e.process, e.detail["from"], e.detail["to"]) for e in store.events(kind="process_state")
    ]
    assert changes == [("exit_manager", None, "STARTING"), ("exit_manager", "STARTING", "RUNNING")]


def test_a_transition_outside_supervisord_table_is_refused_unless_forced(store: Store) -> None:
    store.set_process_state("day_trader", "STARTING", now=T0)
    store.set_process_state("day_trader", "RUNNING", now=T0)

    with pytest.raises(TransitionError, match="RUNNING -> STARTING"):
        store.set_process_state("day_trader", "STARTING", now=T0)
    forced = store.set_process_state("day_trader", "STOPPED", now=T0, force=True)
    assert forced.state is ProcessState.STOPPED


def test_restart_from_backoff_or_exit_is_counted(store: Store) -> None:
    for state in ("STARTING", "BACKOFF", "STARTING", "RUNNING", "EXITED", "STARTING"):
        info = store.set_process_state(
            "day_trader", state, now=T0, error="boom" if state == "BACKOFF" else None
        )

    assert info.restarts == 2 and info.last_error == "boom"


def test_ready_flag_belongs_to_one_run(store: Store) -> None:
    store.set_process_state("exit_manager", "STARTING", now=T0)
    ready = store.set_process_ready("exit_manager", True, now=T0, detail={"positions": 2})
    running = store.set_process_state("exit_manager", "RUNNING", now=T0)
    exited = store.set_process_state("exit_manager", "EXITED", now=T0)

    assert ready.ready and ready.detail == {"positions": 2}
    assert running.ready and not exited.ready


def test_ready_without_a_row_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.set_process_ready("ghost", True, now=T0)


def test_heartbeat_stamps_the_row_and_creates_one_for_a_hand_started_process(store: Store) -> None:
    store.set_process_state("exit_manager", "STARTING", now=T0, pid=1)
    store.heartbeat("exit_manager", T0 + timedelta(seconds=5))
    store.heartbeat("script", T0, pid=99)

    rows = {p.name: p for p in store.processes()}
    assert rows["exit_manager"].last_heartbeat == T0 + timedelta(seconds=5)
    assert rows["exit_manager"].state is ProcessState.STARTING
    assert (rows["script"].state, rows["script"].pid) == (ProcessState.RUNNING, 99)
    assert store.process("nobody") is None


def test_unknown_process_state_is_a_value_error(store: Store) -> None:
    with pytest.raises(ValueError, match="state.*'FATAL'"):
        store.set_process_state("x", "CRASHED", now=T0)


def test_commands_are_taken_oldest_first_and_finished(store: Store) -> None:
    first = store.enqueue_command("halt_entries", now=T0)
    second = store.enqueue_command("liquidate_symbol", now=T0, symbol="aapl")

    taken = store.take_next_command("exit_manager", T0)
    assert taken is not None and (taken.id, taken.kind, taken.status, taken.taken_by) == (
        first,
        CommandKind.HALT_ENTRIES,
        CommandStatus.TAKEN,
        "exit_manager",
    )
    done = store.finish_command(first, True, "halted", T0)
    nxt = store.take_next_command("exit_manager", T0)

    assert (done.status, done.result) == (CommandStatus.DONE, "halted")
    assert nxt is not None and (nxt.id, nxt.symbol) == (second, "AAPL")
    assert store.take_next_command("exit_manager", T0) is None
    failed = store.finish_command(second, False, "no position", T0)
    assert failed.status is CommandStatus.FAILED
    with pytest.raises(TransitionError):
        store.finish_command(second, True, "again", T0)


def test_take_next_command_filters_by_kind(store: Store) -> None:
    store.enqueue_command("halt_entries", now=T0)
    liquidate = store.enqueue_command("liquidate_all", now=T0)

    taken = store.take_next_command("exit_manager", T0, kinds=["liquidate_all", "liquidate_symbol"])

    assert taken is not None and taken.id == liquidate
    assert [c.status for c in store.commands(statuses=["PENDING"])] == [CommandStatus.PENDING]


def test_liquidate_symbol_needs_a_symbol_and_others_take_none(store: Store) -> None:
    with pytest.raises(ValueError, match="symbol"):
        store.enqueue_command("liquidate_symbol", now=T0)
    with pytest.raises(ValueError, match="symbol"):
        store.enqueue_command("liquidate_all", now=T0, symbol="AAPL")
    with pytest.raises(ValueError, match="kind"):
        store.enqueue_command("sell_everything", now=T0)
    assert store.commands() == []


def test_released_commands_go_back_to_pending(store: Store) -> None:
    command_id = store.enqueue_command("liquidate_today", now=T0)
    store.take_next_command("exit_manager", T0)

    assert store.release_commands("exit_manager", T0) == 1
    command = store.command(command_id)
    assert command is not None and (command.status, command.taken_by) == (
        CommandStatus.PENDING,
        None,
    )


def test_two_taker_processes_never_take_the_same_command(store: Store, db_path: Path) -> None:
    ids = {store.enqueue_command("liquidate_all", now=T0) for _ in range(60)}
    store.close()

    takers = [
        subprocess.Popen(
            worker_command("worker_taker.py", str(db_path), f"taker-{n}"),
            stdout=subprocess.PIPE,
            text=True,
            env=worker_env(),
        )
        for n in range(3)
    ]
    taken = [json.loads(proc.communicate(timeout=60)[0]) for proc in takers]

    assert all(proc.returncode == 0 for proc in takers)
    sets = [set(t) for t in taken]
    assert sum(len(s) for s in sets) == len(ids)  # nobody took one twice
    assert set().union(*sets) == ids
    assert all(c.status is CommandStatus.DONE for c in Store(db_path).commands(limit=1000))
