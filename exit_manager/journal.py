"""The exit manager's audit trail: every decision becomes an ``events`` row and a log line.

Event kinds this process writes (detail is JSON): ``exit_decided``, ``order_placed``,
``order_replaced``, ``exit_refused``, ``exit_rejected``, ``exit_failed``,
``exit_unfilled_alert``, ``exit_resting_halted``, ``eod_unfilled``, ``exit_unsent``,
``exit_order_unknown``, ``exit_resent``, ``closed``, ``reduced``, ``reconciled``,
``reconcile_done``, ``reconcile_failed``, ``quantity_mismatch``, ``command_done``,
``daily_limit``, ``broker_disconnected``, ``broker_reconnected``, ``price_source``,
``after_close_holding``, ``started``, ``params_in_force``, ``order_forgotten``,
``exit_order_not_forgotten``, ``stopped``. The store adds its own transition
events (``begin_exit``, ``close``, ``adopted``, ``order_status``, ``fill``, ...).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from exit_manager.db_lane import DbLane
from market.clock import Clock
from shared_state import Store

PROCESS = "exit_manager"

log = logging.getLogger("exit_manager")


class Journal:
    """Record events through the database lane, in order with the writes they explain."""

    def __init__(self, store: Store, lane: DbLane, clock: Clock) -> None:
        self.store = store
        self.lane = lane
        self.clock = clock

    def record(
        self, kind: str, symbol: str | None = None, *, level: int = logging.INFO, **detail: Any
    ) -> None:
        """Queue the event ``kind`` with ``detail``; log it at ``level``."""
        clean = {key: _jsonable(value) for key, value in detail.items()}
        log.log(level, "%s %s %s", kind, symbol or "-", clean)
        self.lane.post(
            f"event {kind}",
            self.store.record_event,
            PROCESS,
            kind,
            now=self.clock.now(),
            symbol=symbol,
            detail=clean,
        )


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, str):
        return str(value)  # a StrEnum becomes its plain value
    if isinstance(value, int | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
