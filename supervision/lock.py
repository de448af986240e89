"""The single-instance lock: one supervisor per database.

The lock is a file next to the database (``trading_state.supervisor.lock`` beside
``trading_state.db``) with two layers:

1. An OS lock held for the supervisor's lifetime (``flock`` on POSIX, ``msvcrt.locking``
   on a byte far past the content on Windows). The OS drops it when the process dies,
   however it dies, so acquiring it is atomic and a crashed run never blocks the next.
2. The owner's pid and psutil create time (plus start time and host) written inside,
   for the refusal message and for file systems where OS locks silently do nothing: a
   recorded owner whose pid is alive *with the same create time* still holds the lock;
   a dead pid, or a live pid with another create time (the pid was reused), is stale
   and taken over, with a message naming it.

A clean exit empties the file (the file itself stays: deleting a lock file races with
a second opener).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from supervision.identity import ProcessIdentity

WINDOWS = sys.platform == "win32"
# Windows locks are mandatory: lock a byte far from the JSON so others can still read it.
_WINDOWS_LOCK_OFFSET = 1 << 20
_MAX_CONTENT = 4096

if WINDOWS:
    import msvcrt
else:
    import fcntl


def lock_path_for(db_path: Path) -> Path:
    """Return the lock file of the database ``db_path``."""
    return db_path.with_name(f"{db_path.stem}.supervisor.lock")


@dataclass(frozen=True)
class LockOwner:
    """Who holds (or held) the lock."""

    identity: ProcessIdentity
    started_at: str  # ISO, wall clock
    host: str

    @property
    def pid(self) -> int:
        return self.identity.pid

    def to_json(self) -> str:
        return json.dumps(
            {
                "pid": self.identity.pid,
                "create_time": self.identity.create_time,
                "started_at": self.started_at,
                "host": self.host,
            }
        )

    @classmethod
    def from_text(cls, text: str) -> LockOwner | None:
        try:
            data = json.loads(text)
            identity = ProcessIdentity(int(data["pid"]), float(data["create_time"]))
            return cls(identity, str(data.get("started_at", "")), str(data.get("host", "")))
        except (ValueError, KeyError, TypeError):
            return None


class LockHeld(Exception):  # noqa: N818 - reads as a sentence: raise LockHeld(...)
    """Another supervisor holds the lock; the message says which and what to do."""

    def __init__(self, path: Path, owner: LockOwner | None) -> None:
        self.path = path
        self.owner = owner
        who = "another supervisor"
        if owner is not None:
            who += f" (pid {owner.pid}, started {owner.started_at})"
        super().__init__(
            f"Refusing to start: {who} is already running for this database "
            f"(lock file {path}). Only one supervisor may run at a time. Stop it with "
            "Ctrl+C in its window, or check it with: uv run scripts/status.py"
        )


class InstanceLock:
    """The held lock; ``release()`` (or the end of the process) gives it back."""

    def __init__(self, path: Path, fd: int, owner: LockOwner) -> None:
        self.path = path
        self.owner = owner
        self._fd: int | None = fd

    def release(self) -> None:
        """Empty the file and drop the OS lock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            _os_unlock(fd)
        os.close(fd)

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def acquire(
    path: Path, identity: ProcessIdentity | None = None
) -> tuple[InstanceLock, LockOwner | None]:
    """Take the lock at ``path``; return it and the stale owner taken over (or None).

    Raise ``LockHeld`` when a live supervisor holds it.
    """
    identity = identity or ProcessIdentity.current()
    # When the OS started the process (wall clock): for people reading the message.
    started = datetime.fromtimestamp(identity.create_time, UTC).astimezone()
    me = LockOwner(identity, started.isoformat(timespec="seconds"), socket.gethostname())
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        locked = _os_lock(fd)
        previous = LockOwner.from_text(_read(fd))
        if not locked or _still_held(previous, me):
            raise LockHeld(path, previous)
        _write(fd, me.to_json())
    except BaseException:
        os.close(fd)
        raise
    return InstanceLock(path, fd, me), previous


def read_owner(path: Path) -> LockOwner | None:
    """Return the owner recorded in the lock file at ``path`` (None: free or no file)."""
    try:
        return LockOwner.from_text(path.read_text(encoding="utf-8")[:_MAX_CONTENT])
    except OSError:
        return None


def holder(path: Path) -> LockOwner | None:
    """Return the live supervisor recorded in the lock file, or None (none, or stale)."""
    owner = read_owner(path)
    return owner if owner is not None and owner.identity.is_alive() else None


def _still_held(previous: LockOwner | None, me: LockOwner) -> bool:
    if previous is None or previous.identity.pid == me.identity.pid:
        return False
    return previous.identity.is_alive()


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, _MAX_CONTENT).decode("utf-8", errors="replace").strip("\x00 \r\n")


def _write(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, text.encode("utf-8"))
    os.fsync(fd)


def _os_lock(fd: int) -> bool:
    """Try the OS lock without waiting; return False when another process holds it."""
    try:
        if WINDOWS:
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _os_unlock(fd: int) -> None:
    if WINDOWS:
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
