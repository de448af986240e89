"""Worker of the concurrency test: sample ``active_positions()`` while others write.

    python worker_reader.py DB_PATH SECONDS

Prints ``ready``, waits for ``go <epoch>`` on stdin, samples until ``epoch + SECONDS``,
then prints one JSON line: samples taken, samples with a symbol twice, most rows seen.
"""

from __future__ import annotations

import json
import sys
import time

from shared_state import Store, StoreBusyError


def main() -> None:
    store = Store(sys.argv[1], process="reader", create=False)
    print("ready", flush=True)
    epoch = float(sys.stdin.readline().split()[1])
    time.sleep(max(0.0, epoch - time.time()))
    end = epoch + float(sys.argv[2])
    samples = duplicates = most = busy = 0
    while time.time() < end:
        try:
            rows = store.active_positions()
        except StoreBusyError:
            busy += 1
            continue
        symbols = [row.symbol for row in rows]
        samples += 1
        duplicates += len(symbols) != len(set(symbols))
        most = max(most, len(rows))
        time.sleep(0.001)
    print(
        json.dumps(
            {
                "samples": samples,
                "duplicates": duplicates,
                "most": most,
                "busy_errors": busy + store.busy_stats().busy_errors,
                "retries": store.busy_stats().retries,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
