"""Stand-in for ``python -m broker.simulator``: prints its ready line, waits for SIGTERM.

It does not use the child runtime or the store, like the real simulator.
Behaviour (``$STANDIN_DIR/simulator.json``): ``ready_after_s`` (0.1).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin_journal import behaviour, note  # noqa: E402

NAME = "simulator"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGBREAK", None)):
        if sig is not None:
            signal.signal(sig, lambda *_: stop.set())
    note(NAME, "start")
    stop.wait(float(behaviour(NAME).get("ready_after_s", 0.1)))
    print(f"listening on 127.0.0.1:{args.port}", flush=True)
    while not stop.wait(0.1):
        pass
    note(NAME, "stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
