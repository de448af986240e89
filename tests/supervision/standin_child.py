"""Stand-in for the exit manager / day trader, on the real child runtime and real Store.

Behaviour (``$STANDIN_DIR/<name>.json``, all optional):

- ``ready_after_s`` (0.1): wait before ``report_ready``.
- ``crash_first`` (0): exit 3 before becoming ready in the first N starts.
- ``always_crash`` (false): exit 3 before becoming ready in every start.
- ``crash_after_ready_s`` (none): exit 3 this long after becoming ready, every start.
- ``ignore_sigterm`` (false): ignore SIGTERM (the supervisor must kill it).
- ``marks`` ({}): publish these last prices (the exit manager does this for real).

A file ``$STANDIN_DIR/<name>.hang`` makes the running child block its event loop (no
more heartbeats); the child deletes the file first, so its restart runs normally.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin_journal import behaviour, folder, note, read  # noqa: E402

from supervision.child import ChildRuntime, run_child  # noqa: E402

CRASH = 3


def _starts_so_far(name: str) -> int:
    return sum(1 for row in read(folder()) if row[0] == name and row[1] == "start")


async def main(rt: ChildRuntime) -> int:
    name = rt.name
    plan = behaviour(name)
    starts = _starts_so_far(name)
    note(name, "start")
    if plan.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    await asyncio.sleep(float(plan.get("ready_after_s", 0.1)))
    if plan.get("always_crash") or starts < int(plan.get("crash_first", 0)):
        note(name, "crash")
        return CRASH
    rt.report_ready({"standin": True})
    if plan.get("marks"):
        rt.publish({"marks": plan["marks"]})
    note(name, "ready")
    return await _run(rt, plan)


async def _run(rt: ChildRuntime, plan: dict) -> int:
    hang = folder() / f"{rt.name}.hang"
    crash_at = plan.get("crash_after_ready_s")
    ready_at = time.monotonic()
    while not rt.stopping:
        if hang.exists():
            hang.unlink()
            note(rt.name, "hang")
            while True:  # block the event loop: the heartbeat task never runs again
                time.sleep(1)
        if crash_at is not None and time.monotonic() - ready_at >= float(crash_at):
            note(rt.name, "crash")
            return CRASH
        await rt.sleep(0.05)
    note(rt.name, "stop", rt.stop_reason or "")
    return 0


if __name__ == "__main__":
    sys.exit(run_child(os.environ.get("SUPERVISOR_CHILD", "standin"), main))
