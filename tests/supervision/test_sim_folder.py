"""Simulated days keep their databases in data/sim/<date>/; a completed day starts fresh."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

from supervision_harness import SIM_DATE, Harness

from config.settings import load_settings
from shared_state import PhaseStatus, Store
from supervision.sim_folder import (
    current_db_path,
    db_path_is_explicit,
    fresh_start,
    in_day_folder,
    uses_day_folders,
)

DAY = date.fromisoformat(SIM_DATE)


def _complete(db: Path, day: date = DAY) -> None:
    store = Store(db, process="test")
    try:
        now = datetime(2025, 11, 26, 21, 10, tzinfo=UTC)
        store.start_phase(day, "post_close", now)
        store.finish_phase(day, "post_close", PhaseStatus.DONE, now=now)
    finally:
        store.close()


def test_db_path_counts_as_set_in_the_environment_or_the_settings_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    assert not db_path_is_explicit({}, env_file)
    assert not db_path_is_explicit({"DB_PATH": " "}, None)
    assert db_path_is_explicit({"DB_PATH": "x.db"}, None)
    env_file.write_text("DB_PATH=state/mine.db\n")
    assert db_path_is_explicit({}, env_file)


def test_only_sim_without_db_path_uses_a_folder_per_date() -> None:
    sim = load_settings(environ={}, env_file=None)
    assert uses_day_folders(sim, {}, None)
    assert not uses_day_folders(sim, {"DB_PATH": "x.db"}, None)
    live = load_settings(environ={"BROKER": "ibkr"}, env_file=None)
    assert not uses_day_folders(live, {}, None)
    moved = in_day_folder(sim, DAY, Path("data/sim"))
    folder = Path("data/sim/2025-11-26")
    assert moved.db_path == folder / "trading_state.db"
    # A simulated date's outputs never land beside a live day's of the same date.
    assert (moved.reports_dir, moved.log_dir, moved.spans_db_path) == (
        folder / "reports",
        folder / "logs",
        folder / "spans.db",
    )


def test_outputs_set_explicitly_stay_where_they_were_set(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("LOG_DIR=mylogs\n")
    environ = {"REPORTS_DIR": "myreports", "SPANS_DB_PATH": " "}  # empty: the default
    sim = load_settings(environ=environ, env_file=env_file)
    moved = in_day_folder(sim, DAY, Path("data/sim"), environ=environ, env_file=env_file)
    folder = Path("data/sim/2025-11-26")
    assert moved.db_path == folder / "trading_state.db"
    assert (moved.reports_dir, moved.log_dir) == (Path("myreports"), Path("mylogs"))
    assert moved.spans_db_path == folder / "spans.db"


def test_completed_day_moves_aside_to_the_next_free_number_and_an_unfinished_one_stays(
    tmp_path: Path,
) -> None:
    db = tmp_path / "sim" / SIM_DATE / "trading_state.db"
    Store(db, process="test").close()
    assert fresh_start(db, DAY) is None  # not complete: kept for a resume
    _complete(db)
    (tmp_path / "sim" / f"{SIM_DATE}.1").mkdir()

    moved = fresh_start(db, DAY)

    assert moved == tmp_path / "sim" / f"{SIM_DATE}.2"
    assert (moved / "trading_state.db").exists() and not db.parent.exists()


def test_scripts_find_sim_date_folder_else_the_latest_written(tmp_path: Path) -> None:
    root = tmp_path / "sim"
    for day in ("2025-11-25", "2025-11-26"):
        Store(root / day / "trading_state.db", process="test").close()
    older = root / "2025-11-26" / "trading_state.db"
    os.utime(older, (1, 1))
    settings = load_settings(environ={}, env_file=None)
    assert current_db_path(settings, {}, None, root) == root / "2025-11-25" / "trading_state.db"
    pinned = load_settings(environ={"SIM_DATE": "2025-11-26"}, env_file=None)
    assert current_db_path(pinned, {}, None, root) == older


def test_supervisor_reruns_a_completed_sim_day_fresh_and_resume_keeps_it(
    harness: Harness,
) -> None:
    folder = harness.tmp / "data" / "sim" / SIM_DATE
    quick = ("--speed", "5000", "--start-at", "15:30", "--warm-up", "0")
    first = harness.start(*quick, DB_PATH="", SPANS_DB_PATH="")
    assert harness.wait_exit(first, 45) == 0, harness.output()
    assert (folder / "trading_state.db").exists()
    assert f"database: {Path('data/sim') / SIM_DATE / 'trading_state.db'}" in harness.output()

    again = harness.start(*quick, DB_PATH="")
    assert harness.wait_exit(again, 45) == 0, harness.output()
    aside = harness.tmp / "data" / "sim" / f"{SIM_DATE}.1"
    assert f"already completed in {Path('data/sim') / SIM_DATE}" in harness.output()
    assert f"moved it aside to {Path('data/sim') / (SIM_DATE + '.1')}" in harness.output()
    assert (aside / "trading_state.db").exists() and (folder / "trading_state.db").exists()
    assert (aside / "spans.db").exists()  # the first run's spans went with its folder

    resumed = harness.start(*quick, "--resume", DB_PATH="")
    assert harness.wait_exit(resumed, 45) == 0
    assert "is already complete" in harness.output() and "moved it aside" not in harness.output()
    assert not (harness.tmp / "data" / "sim" / f"{SIM_DATE}.2").exists()
