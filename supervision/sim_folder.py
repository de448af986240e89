"""Where a simulated day keeps its databases: one folder per simulated date.

With ``BROKER=sim`` and no explicit ``DB_PATH`` (neither in the environment nor in the
settings file), the bot's database and the simulator's account live in
``data/sim/<date>/`` (``trading_state.db``, ``simulator.db``, the supervisor's lock). A
simulated day then never touches the live database, and every date starts with a new
simulator account holding ``SIM_STARTING_CASH``. Its reports, logs and spans go there
too (``reports/``, ``logs/``, ``spans.db``; each unless REPORTS_DIR, LOG_DIR or
SPANS_DB_PATH is set): a simulation of a date the bot also traded live must never
overwrite that day's report or mix into its logs.

A date whose post-close phase is DONE is *complete*. Simulating it again starts it
fresh: the old folder is moved aside to ``data/sim/<date>.<n>`` (n = 1, 2, ...; nothing
is deleted) unless ``--resume`` asks to keep it (the supervisor then says the day is
complete and exits). A folder another supervisor is using is never moved.

Scripts (status, liquidation) find the database of the current or last simulated day
with ``current_db_path``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from dotenv import dotenv_values

from config.settings import Settings
from shared_state import PhaseStatus, Store, StoreError
from supervision.lock import holder, lock_path_for

#: The folder of the per-date folders, beside the default ``data/trading_state.db``.
SIM_ROOT = Path("data") / "sim"
DB_NAME = "trading_state.db"
_DAY_FOLDER = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def is_explicit(name: str, environ: Mapping[str, str], env_file: Path | str | None) -> bool:
    """Return True when setting ``name`` is set (non-empty) in ``environ`` or ``env_file``."""
    if (environ.get(name) or "").strip():
        return True
    if env_file is None or not Path(env_file).is_file():
        return False
    return bool((dotenv_values(env_file).get(name) or "").strip())


def db_path_is_explicit(environ: Mapping[str, str], env_file: Path | str | None) -> bool:
    """Return True when DB_PATH is set (non-empty) in ``environ`` or in ``env_file``."""
    return is_explicit("DB_PATH", environ, env_file)


def uses_day_folders(
    settings: Settings, environ: Mapping[str, str], env_file: Path | str | None
) -> bool:
    """Return True when the databases go to a per-date folder (sim, DB_PATH not set)."""
    return settings.broker == "sim" and not db_path_is_explicit(environ, env_file)


def day_folder(day: date, root: Path = SIM_ROOT) -> Path:
    """Return the folder of the simulated date ``day``."""
    return root / day.isoformat()


def in_day_folder(
    settings: Settings,
    day: date,
    root: Path = SIM_ROOT,
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = None,
) -> Settings:
    """Return ``settings`` with DB_PATH, and the outputs not set explicitly, in ``day``'s folder.

    The outputs: REPORTS_DIR (``reports/``), LOG_DIR (``logs/``) and SPANS_DB_PATH
    (``spans.db``). An empty value in the environment or the file counts as not set,
    as it does for every setting.
    """
    folder = day_folder(day, root)
    environ = {} if environ is None else environ
    moved: dict[str, object] = {"db_path": folder / DB_NAME}
    if not is_explicit("REPORTS_DIR", environ, env_file):
        moved["reports_dir"] = folder / "reports"
    if not is_explicit("LOG_DIR", environ, env_file):
        moved["log_dir"] = folder / "logs"
    if settings.spans_db_path is not None and not is_explicit("SPANS_DB_PATH", environ, env_file):
        moved["spans_db_path"] = folder / "spans.db"
    return dataclasses.replace(settings, **moved)


def day_complete(db_path: Path, day: date) -> bool:
    """Return True when ``db_path`` records the post-close phase of ``day`` as DONE."""
    if not db_path.exists():
        return False
    try:
        store = Store(db_path, create=False, process="supervisor")
    except StoreError:
        return False
    try:
        return any(
            r.phase == "post_close" and r.status is PhaseStatus.DONE for r in store.phase_runs(day)
        )
    finally:
        store.close()


def move_aside(folder: Path) -> Path:
    """Rename ``folder`` to the first free ``<folder>.<n>``; return the new path."""
    n = 1
    while (target := folder.with_name(f"{folder.name}.{n}")).exists():
        n += 1
    folder.rename(target)
    return target


def fresh_start(db_path: Path, day: date) -> Path | None:
    """Move a completed day's folder aside so the day runs again; return where it went.

    Nothing moves (None) when the day is not complete, or when a live supervisor holds
    the folder's lock (the single-instance check then refuses the start).
    """
    if not day_complete(db_path, day) or holder(lock_path_for(db_path)) is not None:
        return None
    return move_aside(db_path.parent)


def current_db_path(
    settings: Settings,
    environ: Mapping[str, str],
    env_file: Path | str | None,
    root: Path = SIM_ROOT,
) -> Path:
    """Return the database the system uses: DB_PATH, or the current simulated day's.

    For per-date folders: SIM_DATE's folder when it is set; else the folder a running
    supervisor holds; else the one written last; else DB_PATH (no simulated day yet).
    """
    if not uses_day_folders(settings, environ, env_file):
        return settings.db_path
    if settings.sim_date:
        return day_folder(date.fromisoformat(settings.sim_date), root) / DB_NAME
    candidates = [
        folder / DB_NAME
        for folder in (root.iterdir() if root.is_dir() else ())
        if _DAY_FOLDER.match(folder.name) and (folder / DB_NAME).exists()
    ]
    running = [db for db in candidates if holder(lock_path_for(db)) is not None]
    if running:
        return running[0]
    if candidates:
        return max(candidates, key=lambda db: db.stat().st_mtime)
    return settings.db_path
