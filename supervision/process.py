"""The one object over OS process calls: spawn, poll, ask to stop, kill the tree.

Each child runs in its own process group (POSIX: a new session; Windows:
CREATE_NEW_PROCESS_GROUP), so a Ctrl+C typed in the supervisor's console reaches only
the supervisor, which then stops the children in order. The graceful stop request is
SIGTERM on POSIX and CTRL_BREAK_EVENT on Windows (the only console event that can be
sent to one process group); the child runtime treats both like SIGINT.

A child's stdout and stderr go to its own console log file, so the supervisor's console
stays readable; the supervisor reads new output from that file when it waits for a
ready line (no pipe, so a slow reader can never block a child).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

WINDOWS = sys.platform == "win32"
KILL_WAIT_S = 5.0


class ChildProcess:
    """One spawned OS process and its console log."""

    def __init__(self, popen: subprocess.Popen[bytes], log_path: Path, log_offset: int) -> None:
        self.popen = popen
        self.log_path = log_path
        self._offset = log_offset
        self._tail = ""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        """Return the exit code, or None while it runs."""
        return self.popen.poll()

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds; return the exit code or None if still running."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def request_stop(self) -> bool:
        """Ask the child to stop (SIGTERM / CTRL_BREAK); False if the request failed."""
        if self.poll() is not None:
            return True
        try:
            self.popen.send_signal(signal.CTRL_BREAK_EVENT if WINDOWS else signal.SIGTERM)
        except OSError:
            # Windows without a console (e.g. a service): no console event can be sent;
            # the caller's deadline then ends in kill_tree.
            return False
        return True

    def kill_tree(self) -> list[int]:
        """Kill the child and everything it started; return the pids killed."""
        killed = kill_tree(self.pid)
        if not WINDOWS:
            # Grandchildren that were re-parented are still in the child's process group.
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
        self.wait(KILL_WAIT_S)
        return killed

    def new_output(self) -> str:
        """Return the console output written since the last call (or since the spawn)."""
        try:
            with self.log_path.open("rb") as stream:
                stream.seek(self._offset)
                data = stream.read()
        except OSError:
            return ""
        self._offset += len(data)
        return data.decode("utf-8", errors="replace")

    def saw_line(self, text: str) -> bool:
        """Return True once ``text`` has appeared in the child's output since the spawn."""
        chunk = self._tail + self.new_output()
        if text in chunk:
            return True
        # Keep enough of the end to match a line split across two reads.
        self._tail = chunk[-len(text) :] if text else ""
        return False


class Launcher:
    """Spawns children; the only place that creates OS processes."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def spawn(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> ChildProcess:
        """Start ``argv`` in its own process group, output appended to ``log_path``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            offset = log.tell()
            popen = subprocess.Popen(
                list(argv),
                cwd=self.cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                **_group_options(),
            )
        return ChildProcess(popen, log_path, offset)


def _group_options() -> dict[str, object]:
    if WINDOWS:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def kill_tree(pid: int, timeout: float = KILL_WAIT_S) -> list[int]:
    """Kill ``pid`` and all its descendants (children first found, then the root)."""
    try:
        root = psutil.Process(pid)
        family = [*root.children(recursive=True), root]
    except psutil.Error:
        return []
    for proc in family:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(family, timeout=timeout)
    return [p.pid for p in family]


def kill_descendants(timeout: float = KILL_WAIT_S) -> list[int]:
    """Kill every process this process started, directly or not; return their pids."""
    try:
        family = psutil.Process().children(recursive=True)
    except psutil.Error:
        return []
    for proc in family:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(family, timeout=timeout)
    return [p.pid for p in family]


def command_line(pid: int) -> list[str]:
    """Return the command line of ``pid`` ([] if it is gone or hidden)."""
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []
