"""The single-instance lock: refused while held, taken over when stale."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from supervision.identity import ProcessIdentity
from supervision.lock import LockHeld, acquire, holder, lock_path_for, read_owner

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from supervision.lock import acquire
lock, _ = acquire(Path({path!r}))
print("held", flush=True)
time.sleep(60)
"""


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write(path: Path, pid: int, create_time: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "create_time": create_time, "started_at": "earlier", "host": "h"}
    path.write_text(json.dumps(record))


def test_lock_file_sits_next_to_the_database() -> None:
    assert lock_path_for(Path("data/trading_state.db")) == Path(
        "data/trading_state.supervisor.lock"
    )


def test_second_acquire_is_refused_naming_the_holder_pid(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    path = tmp_path / "x.lock"
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=root, path=str(path))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld) as info:
            acquire(path)
        assert f"pid {other.pid}" in str(info.value)
        assert "already running" in str(info.value)
        owner = holder(path)
        assert owner is not None and owner.pid == other.pid
    finally:
        other.kill()
        other.wait()


def test_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    dead = _dead_pid()
    _write(path, dead, 12345.0)
    assert holder(path) is None  # status sees no live supervisor

    lock, stale = acquire(path)
    with lock:
        assert stale is not None and stale.pid == dead
        owner = read_owner(path)
        assert owner is not None and owner.identity == ProcessIdentity.current()


def test_lock_of_a_live_pid_with_another_create_time_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    me = ProcessIdentity.current()
    parent = psutil.Process().parent()
    assert parent is not None
    # A live pid (our parent) but a create time that is not its own: the pid was reused.
    _write(path, parent.pid, parent.create_time() - 1000.0)

    lock, stale = acquire(path, me)
    with lock:
        assert stale is not None and stale.pid == parent.pid


def test_recorded_live_owner_is_respected_even_when_the_os_lock_is_free(tmp_path: Path) -> None:
    # File systems where OS locks do nothing: the pid + create time check still refuses.
    path = tmp_path / "x.lock"
    parent = psutil.Process().parent()
    assert parent is not None
    _write(path, parent.pid, parent.create_time())
    with pytest.raises(LockHeld, match=f"pid {parent.pid}"):
        acquire(path)


def test_release_empties_the_file_so_the_next_start_sees_no_owner(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    lock, stale = acquire(path)
    assert stale is None
    lock.release()
    assert read_owner(path) is None
    again, stale = acquire(path)
    again.release()
    assert stale is None
