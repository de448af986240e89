"""Design 3: no package but shared_state issues SQL."""

from __future__ import annotations

import re
from pathlib import Path

from state_fixtures import ROOT

SQL = re.compile(r"SELECT |INSERT INTO|CREATE TABLE|PRAGMA ")
DB_DRIVER = re.compile(r"^\s*(import|from)\s+(sqlite3|sqlalchemy)\b")
SKIPPED_DIRS = {"shared_state", "tests", ".venv", ".git"}
# The simulator is a separate exchange with its own private database (design 8):
# it never opens the bot's file, so its SQL is not the bot's shared state.
ALLOWED = {Path("broker/simulator/account.py")}


def _project_sources() -> list[Path]:
    tops = [p for p in ROOT.iterdir() if p.name not in SKIPPED_DIRS and not p.name.startswith(".")]
    found = []
    for top in tops:
        paths = top.rglob("*.py") if top.is_dir() else [top] if top.suffix == ".py" else []
        for path in paths:
            relative = path.relative_to(ROOT)
            if relative not in ALLOWED and "__pycache__" not in relative.parts:
                found.append(relative)
    return found


def test_no_sql_outside_shared_state() -> None:
    offenders = [
        f"{path}:{number}: {line.strip()}"
        for path in _project_sources()
        for number, line in enumerate((ROOT / path).read_text(encoding="utf-8").splitlines(), 1)
        if SQL.search(line)
    ]

    assert offenders == [], "SQL outside shared_state/:\n" + "\n".join(offenders)


def test_no_database_driver_is_imported_outside_shared_state() -> None:
    offenders = [
        f"{path}:{number}: {line.strip()}"
        for path in _project_sources()
        for number, line in enumerate((ROOT / path).read_text(encoding="utf-8").splitlines(), 1)
        if DB_DRIVER.match(line)
    ]

    assert offenders == [], "sqlite3/sqlalchemy outside shared_state/:\n" + "\n".join(offenders)


def test_the_scan_sees_the_project_packages() -> None:
    scanned = {path.parts[0] for path in _project_sources()}

    assert {"config", "market", "bench"} <= scanned  # the scan would notice SQL in them
