"""The journal the stand-in children append to, so tests can see what happened in order.

One line per event: ``<name> <event> <pid> <wall time> [<extra>]`` in
``$STANDIN_DIR/journal.log`` (appends of one short line are atomic, so several
processes can share the file). Behaviour of each stand-in is read from
``$STANDIN_DIR/<name>.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

DIR_ENV = "STANDIN_DIR"


def folder() -> Path:
    return Path(os.environ[DIR_ENV])


def note(name: str, event: str, extra: str = "") -> None:
    """Append one journal line."""
    line = f"{name} {event} {os.getpid()} {time.time():.6f} {extra}".rstrip() + "\n"
    fd = os.open(folder() / "journal.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def behaviour(name: str) -> dict[str, Any]:
    """Return the stand-in's configured behaviour ({} when none)."""
    path = folder() / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def read(directory: Path) -> list[tuple[str, str, int, float, str]]:
    """Return the journal's lines as (name, event, pid, time, extra)."""
    path = directory / "journal.log"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        name, event, pid, at, *extra = line.split(" ", 4)
        rows.append((name, event, int(pid), float(at), extra[0] if extra else ""))
    return rows
