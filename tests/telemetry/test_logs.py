"""Process logs: JSON lines per process per clock day, secrets never written."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pytest

from market.clock import ET, VirtualClock
from telemetry.logs import configure_logging, redact

SENTINEL = "sk-LOGSENTINEL-41c2-never-print"


@pytest.fixture(autouse=True)
def _restore_logging():
    yield
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
        handler.close()


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_go_to_a_json_file_named_by_process_and_clock_day(tmp_path: Path) -> None:
    clock = VirtualClock(start=datetime(2025, 11, 26, 9, 30, tzinfo=ET), speed=1)
    log = configure_logging("exit_manager", tmp_path, clock=clock, console=False)
    log.info("sold %s", "AAPL", extra={"order_ref": "em-1"})
    records = _lines(tmp_path / "exit_manager-2025-11-26.jsonl")
    assert records[0]["message"] == "sold AAPL"
    assert records[0]["extra"] == {"order_ref": "em-1"}
    assert records[0]["time"].startswith("2025-11-26T09:30")


def test_file_rolls_over_when_the_clock_day_changes(tmp_path: Path) -> None:
    clock = VirtualClock(start=datetime(2025, 11, 26, 23, 59, 59, 900000, tzinfo=ET), speed=10)
    log = configure_logging("day_trader", tmp_path, clock=clock, console=False)
    log.info("before midnight")
    import time

    time.sleep(0.1)
    log.info("after midnight")
    assert (tmp_path / "day_trader-2025-11-26.jsonl").exists()
    assert _lines(tmp_path / "day_trader-2025-11-27.jsonl")[0]["message"] == "after midnight"


def test_registered_secret_is_redacted_everywhere(tmp_path: Path, capsys) -> None:
    redact(SENTINEL)
    log = configure_logging("phases", tmp_path, console=True)
    log.info("calling with key %s", SENTINEL, extra={"headers": {"auth": SENTINEL}})
    try:
        raise RuntimeError(f"bad key {SENTINEL}")
    except RuntimeError:
        log.exception("llm failed")
    written = "".join(p.read_text() for p in tmp_path.glob("*.jsonl"))
    assert SENTINEL not in written
    assert SENTINEL not in capsys.readouterr().err
    assert "[redacted]" in written
