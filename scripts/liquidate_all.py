"""Sell every position at the broker: a preview by default, --yes to sell.

    uv run scripts/liquidate_all.py                     # preview: what would be sold
    uv run scripts/liquidate_all.py --yes               # sell everything now
    uv run scripts/liquidate_all.py --yes --no-wait     # queue it and return
    uv run scripts/liquidate_all.py --yes --queue-for-open   # market closed: sell at the open

Every position the broker holds is sold, whether or not the database has its row (a
position without one is adopted first, as the exit manager does). With the exit manager
running, the command goes to its queue and this script waits until it is done and the
positions are gone; without it, this script sells in its place (client id
IB_CLIENT_ID_SCRIPTS, aggressive limits, closes recorded with reason 'manual'). Entries
are not halted: the day trader may still buy new positions.

Exit codes: 0 preview shown, sold, queued (--no-wait, --queue-for-open) or nothing to
sell; 1 not done (the command FAILED, the timeout passed with positions left, or
stopped); 2 bad settings or arguments, or no database yet; 3 the market is closed
(refused; --queue-for-open queues it for the open); 4 the broker cannot be reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from scripts.liquidation import main  # noqa: E402
from shared_state import CommandKind  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(CommandKind.LIQUIDATE_ALL, __doc__))
