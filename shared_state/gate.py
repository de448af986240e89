"""A cross-process queue in front of ``BEGIN IMMEDIATE``, to keep lock waits short.

SQLite's own busy handler waits for the write lock by sleeping 1, 2, 5, 10, 15, 20,
25 ... ms between tries, so a writer that meets another writer's transaction (about
half a millisecond long) waits milliseconds, and one that keeps losing the race waits
hundreds. Writers of this store first take an advisory ``flock`` on ``<db>-gate`` and
poll it at sub-millisecond intervals, so they queue behind each other and start as soon
as the previous transaction commits.

The gate only shortens waits; correctness stays with ``BEGIN IMMEDIATE`` and
``busy_timeout``. After ``timeout_s`` without the gate a writer goes ahead without it
(SQLite then waits and, at worst, reports "database is locked" as before). A killed
holder's flock is released by the kernel. Where ``fcntl`` is missing (Windows) the gate
does nothing.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; SQLite's busy handler alone does the waiting
    fcntl = None  # type: ignore[assignment]

#: Poll interval while another process holds the gate: fine for the first milliseconds
#: (a transaction takes about one), coarser when the wait is long anyway.
_FINE_POLL_S = 0.00005
_FINE_FOR_S = 0.005
_COARSE_POLL_S = 0.0005


class WriteGate:
    """An advisory, per-file writer queue shared by every process using the store."""

    def __init__(self, db_path: Path, timeout_s: float, *, enabled: bool = True) -> None:
        self.path = db_path.with_name(db_path.name + "-gate")
        self.timeout_s = timeout_s
        self.enabled = enabled and fcntl is not None
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None

    def _descriptor(self) -> int:
        pid = os.getpid()
        if self._fd is None or self._pid != pid:
            # A forked child must not share the parent's open file description (flock
            # locks belong to it: parent and child would both "hold" the gate), nor a
            # thread lock some parent thread may have held at fork time.
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._pid = pid
            self._thread_lock = threading.Lock()
        return self._fd

    def acquire(self) -> bool:
        """Wait for the gate (at most ``timeout_s``); return whether it was taken."""
        if fcntl is None or not self.enabled:
            return False
        fd = self._descriptor()
        if not self._thread_lock.acquire(timeout=self.timeout_s):
            return False
        start = time.monotonic()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                waited = time.monotonic() - start
                if waited >= self.timeout_s:
                    self._thread_lock.release()
                    return False
                time.sleep(_FINE_POLL_S if waited < _FINE_FOR_S else _COARSE_POLL_S)

    def release(self) -> None:
        """Open the gate for the next writer."""
        if not self.enabled or self._fd is None:
            return
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def close(self) -> None:
        """Close this process's descriptor (releasing the gate if held)."""
        if self._fd is not None and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = None
        self._pid = None
