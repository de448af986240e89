"""Run the exit manager: ``python -m exit_manager [--connect-deadline SECONDS]``.

Settings come from the environment and ``.env`` (``config.settings``), market time from
``TRADING_CLOCK`` (``market.clock``); the supervisor provides both. Exit codes: 0 done for
the day (after the close, flat, nothing pending) or stopped on request; 1 could not
connect or reconcile (never reported ready), or crashed; 2 bad settings.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial

from exit_manager.manager import main
from exit_manager.params import manager_config
from supervision.child import ChildRuntime, run_child


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0 seconds")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Return the command-line options."""
    parser = argparse.ArgumentParser(prog="python -m exit_manager", description=__doc__)
    parser.add_argument(
        "--connect-deadline",
        type=_seconds,
        default=60.0,
        help="give up (exit 1, never ready) when the broker is unreachable this long (s)",
    )
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace, rt: ChildRuntime) -> int:
    return await main(rt, manager_config(rt.settings, args.connect_deadline))


if __name__ == "__main__":
    sys.exit(run_child("exit_manager", partial(_main, parse_args())))
