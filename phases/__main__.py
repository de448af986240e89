"""``python -m phases <name> [--date YYYY-MM-DD]``: run one phase for one trading date.

Exit codes (the supervisor's contract): 0 done, or already DONE for the date (nothing
was repeated), or not a trading day; 1 failed (``phase_runs`` says why); 2 a usage or
settings error. The default date is today on the trading clock (``TRADING_CLOCK``).
"""

from __future__ import annotations

import argparse
import sys
from datetime import date

from phases import PHASE_NAMES

_TIMES = {
    "universe": "06:55 ET",
    "data": "07:00 ET",
    "watchlist": "07:30 ET",
    "validate": "08:15 ET",
    "premarket": "09:00 ET",
    "post_close": "10 min after the close (16:10 ET, 13:10 on early closes)",
}


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date as YYYY-MM-DD") from None


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser (its error lists the valid phase names)."""
    listing = "\n".join(f"  {name:<11} {_TIMES[name]}" for name in PHASE_NAMES)
    parser = argparse.ArgumentParser(
        prog="python -m phases",
        description="Run one scheduled phase of the trading day, once per trading date.",
        epilog="phases, in the day's order:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=PHASE_NAMES, metavar="name", help=", ".join(PHASE_NAMES))
    parser.add_argument("--date", type=_date, help="trading date (default: today, ET)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the phase as a one-shot child; return the exit code."""
    args = build_parser().parse_args(argv)
    # Imported after parsing: a usage error answers at once, without pandas and IBKR.
    from phases.entry import phase_main
    from supervision.child import run_child

    return run_child(f"phase_{args.name}", phase_main(args.name, args.date), one_shot=True)


if __name__ == "__main__":
    sys.exit(main())
