"""A reconciliation that cannot complete says why and never reports ready (in process).

The exit manager is built as ``python -m exit_manager`` builds it (real settings, store,
runtime and adapter) but its adapter is never connected, so every broker request of the
reconciliation fails the way a dropped connection makes it fail.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from config.settings import load_settings
from exit_manager.manager import ExitManager, build_adapter
from exit_manager.params import exit_params, manager_config
from market.clock import ET, VirtualClock
from shared_state import Store
from supervision.child import ChildRuntime


def test_failed_reconciliation_is_logged_recorded_and_never_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings({"DB_PATH": str(tmp_path / "state.db")}, env_file=None)
    clock = VirtualClock(datetime(2025, 11, 26, 10, tzinfo=ET), 1.0)
    store = Store(settings.db_path, process="exit_manager")
    rt = ChildRuntime("exit_manager", settings, clock, store)
    config = replace(manager_config(settings), reconcile_attempts=2)
    manager = ExitManager(rt, build_adapter(rt), exit_params(settings, clock), config)

    async def attempt() -> bool:
        try:
            return await manager.reconcile()
        finally:
            await manager.shutdown()

    with caplog.at_level(logging.WARNING):
        assert asyncio.run(attempt()) is False

    [failed] = store.events(kind="reconcile_failed")
    assert "broker snapshot failed" in failed.detail["why"]
    assert "NotConnectedError" in failed.detail["why"]
    assert any("reconciliation failed" in r.getMessage() for r in caplog.records)
    info = store.process("exit_manager")
    assert info is None or not info.ready
    store.close()
