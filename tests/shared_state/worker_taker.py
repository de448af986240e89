"""Worker: take commands until none is left; print the ids taken as JSON.

python worker_taker.py DB_PATH TAKER_NAME
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

from shared_state import Store


def main() -> None:
    store = Store(sys.argv[1], process=sys.argv[2], create=False)
    now = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)
    taken: list[int] = []
    while (command := store.take_next_command(sys.argv[2], now)) is not None:
        taken.append(command.id)
        store.finish_command(command.id, True, sys.argv[2], now)
    print(json.dumps(taken))


if __name__ == "__main__":
    main()
