"""Stand-in for ``python -m phases <name> --date D``: a one-shot job on the child runtime.

Like the real phases it records its own outcome in ``phase_runs`` and exits 0 without
doing anything when the phase is already DONE. Journals ``phases run <pid> <time>
<phase>@<ET clock time>@<date>``. ``$STANDIN_DIR/phases.json``: phases under ``fail``
record FAILED and exit 1; phases under ``crash`` exit 4 without recording anything;
phases under ``crash_after_done`` record DONE and then exit 4 (a crash on the way out).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin_journal import behaviour, note  # noqa: E402

from market.clock import ET  # noqa: E402
from shared_state import PhaseStatus  # noqa: E402
from supervision.child import ChildRuntime, run_child  # noqa: E402


def _args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase")
    parser.add_argument("--date", required=True)
    return parser.parse_args()


ARGS = _args()


async def main(rt: ChildRuntime) -> int:
    day = date.fromisoformat(ARGS.date)
    if not rt.store.start_phase(day, ARGS.phase, rt.clock.now()):
        return 0  # already DONE today: nothing repeated
    at = rt.clock.now().astimezone(ET).strftime("%H:%M:%S")
    note("phases", "run", f"{ARGS.phase}@{at}@{ARGS.date}")
    await rt.sleep(0.05)
    plan = behaviour("phases")
    if ARGS.phase in plan.get("crash", []):
        return 4
    if ARGS.phase in plan.get("fail", []):
        rt.store.finish_phase(day, ARGS.phase, PhaseStatus.FAILED, now=rt.clock.now(),
                              detail="stand-in failure")  # fmt: skip
        return 1
    rt.store.finish_phase(
        day, ARGS.phase, PhaseStatus.DONE, now=rt.clock.now(), detail="stand-in summary"
    )
    return 4 if ARGS.phase in plan.get("crash_after_done", []) else 0


if __name__ == "__main__":
    sys.exit(run_child(f"phase_{ARGS.phase}", main, one_shot=True))
