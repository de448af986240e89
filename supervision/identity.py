"""A process named by pid *and* create time, so a reused pid is not mistaken for it."""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

# psutil reports create_time rounded to the OS clock tick (10 ms on Linux); two reads of
# the same process agree exactly, but a value written as text and parsed back may differ
# in the last digits.
_TOLERANCE_S = 0.05


@dataclass(frozen=True)
class ProcessIdentity:
    pid: int
    create_time: float

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """Return the identity of the live process ``pid``, or None if there is none."""
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ValueError):
            return None

    @classmethod
    def current(cls) -> ProcessIdentity:
        """Return this process's identity."""
        me = cls.of(os.getpid())
        assert me is not None
        return me

    @classmethod
    def parse(cls, text: str) -> ProcessIdentity | None:
        """Return the identity written by ``str()`` (``pid:create_time``), or None."""
        pid, _, created = text.strip().partition(":")
        try:
            return cls(int(pid), float(created))
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.pid}:{self.create_time!r}"

    def is_alive(self) -> bool:
        """Return True if this very process still runs (same pid, same create time)."""
        now = ProcessIdentity.of(self.pid)
        if now is None:
            return False
        try:
            if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                return False
        except psutil.Error:
            return False
        return abs(now.create_time - self.create_time) <= _TOLERANCE_S
