"""Constants and helpers shared by the shared-state tests and their worker scripts.

(A plain module, not ``conftest``: worker subprocesses import it too.)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DAY = date(2025, 3, 3)
T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)
#: The helper fixtures of conftest: claim(symbol, **overrides) -> ClaimResult,
#: open_position(symbol, ...) -> ActivePosition, round_trip(symbol, reason, ...) -> ClosedPosition.
Claim = Callable[..., Any]
OpenPosition = Callable[..., Any]
RoundTrip = Callable[..., Any]

LIMITS = {"max_recovery_entries": 1, "max_trades_per_day": 20, "max_positions": 8}


def worker_env() -> dict[str, str]:
    """Return the environment of a worker subprocess: the project importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), str(HERE), env.get("PYTHONPATH")]))
    return env


def worker_command(script: str, *args: str) -> list[str]:
    """Return the command line running a worker script of this directory."""
    return [sys.executable, str(HERE / script), *args]
