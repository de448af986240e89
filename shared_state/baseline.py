"""Raw sqlite3 and fsync timings, so a benchmark can show the disk's share of latency.

Kept in this package because it is SQL (design 3: no SQL anywhere else).
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path


def raw_commit_ms(directory: Path, count: int) -> list[float]:
    """Time ``count`` one-row BEGIN IMMEDIATE/INSERT/COMMIT units in plain sqlite3 (ms).

    Same pragmas as the store (WAL, synchronous=FULL), in a scratch file of ``directory``.
    """
    conn = sqlite3.connect(directory / "raw_baseline.db", isolation_level=None)
    try:
        for pragma in ("busy_timeout = 5000", "journal_mode = WAL", "synchronous = FULL"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")
        timings = []
        for number in range(count):
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES (?)", (str(number),))
            conn.execute("COMMIT")
            timings.append((time.perf_counter() - start) * 1000.0)
        return timings
    finally:
        conn.close()


def fsync_ms(directory: Path, count: int) -> list[float]:
    """Time ``count`` appends of 4 KiB each followed by ``fsync`` (ms)."""
    fd = os.open(directory / "fsync_baseline.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        timings = []
        for _ in range(count):
            os.write(fd, b"x" * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            timings.append((time.perf_counter() - start) * 1000.0)
        return timings
    finally:
        os.close(fd)
