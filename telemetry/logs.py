"""Logging for every process: a readable console line and a JSON-lines file per day.

Files are ``<log_dir>/<process>-<YYYY-MM-DD>.jsonl``, one per process per trading-clock
day (the file rolls over when the clock's date changes, so a simulated day writes to
its own simulated date). Old files are deleted after ``keep_days``.

Secrets: ``redact()`` registers values that must never be written; every record is
scrubbed before it reaches any handler, whatever logger produced it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from market.clock import ET, Clock, LiveClock

_SECRETS: set[str] = set()
_REDACTED = "[redacted]"
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "clock_time"}


def redact(*values: str) -> None:
    """Never let these values appear in any log record from now on (empty values ignored)."""
    _SECRETS.update(v for v in values if v and len(v) >= 4)


def scrub(text: str) -> str:
    """Return ``text`` with every registered secret replaced."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


class _RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = scrub(record.getMessage())
            record.args = None
        return True


class _ConsoleFormatter(logging.Formatter):
    """One readable line stamped with the trading clock (ET), scrubbed of secrets."""

    def __init__(self, process: str, clock: Clock) -> None:
        super().__init__(f"%(clock_time)s {process} %(levelname)s %(message)s")
        self.clock = clock

    def format(self, record: logging.LogRecord) -> str:
        record.clock_time = self.clock.now().astimezone(ET).strftime("%Y-%m-%d %H:%M:%S")
        return scrub(super().format(record))


class JsonLinesHandler(logging.Handler):
    """Write one JSON object per record to a per-process, per-day file."""

    def __init__(self, log_dir: Path, process: str, clock: Clock, keep_days: int = 30) -> None:
        super().__init__()
        self.log_dir = log_dir
        self.process = process
        self.clock = clock
        self.keep_days = keep_days
        self._day = ""
        self._stream: Any = None
        log_dir.mkdir(parents=True, exist_ok=True)

    def _file_for(self, day: str) -> Path:
        return self.log_dir / f"{self.process}-{day}.jsonl"

    def _roll_if_needed(self, day: str) -> None:
        if day == self._day and self._stream is not None:
            return
        if self._stream is not None:
            self._stream.close()
        self._day = day
        self._stream = self._file_for(day).open("a", encoding="utf-8")
        self._delete_old()

    def _delete_old(self) -> None:
        files = sorted(self.log_dir.glob(f"{self.process}-*.jsonl"))
        for old in files[: max(0, len(files) - self.keep_days)]:
            old.unlink(missing_ok=True)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            now = self.clock.now().astimezone(ET)
            self._roll_if_needed(now.date().isoformat())
            self._stream.write(json.dumps(_record_dict(record, now, self.process)) + "\n")
            self._stream.flush()
        except Exception:  # noqa: BLE001 - logging must never take the process down
            self.handleError(record)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()


def _record_dict(record: logging.LogRecord, now: datetime, process: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "time": now.isoformat(timespec="milliseconds"),
        "level": record.levelname,
        "process": process,
        "logger": record.name,
        "message": scrub(record.getMessage()),
    }
    extra = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}
    if extra:
        data["extra"] = json.loads(scrub(json.dumps(extra, default=str)))
    if record.exc_info:
        data["exception"] = scrub(logging.Formatter().formatException(record.exc_info))
    return data


def configure_logging(
    process: str,
    log_dir: Path | None,
    level: str = "INFO",
    clock: Clock | None = None,
    console: bool = True,
) -> logging.Logger:
    """Set up the root logger for ``process``; return the process's own logger."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level.upper())
    clock = clock or LiveClock()
    redacting = _RedactingFilter()
    if console:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(_ConsoleFormatter(process, clock))
        stream.addFilter(redacting)
        root.addHandler(stream)
    if log_dir is not None:
        handler = JsonLinesHandler(log_dir, process, clock)
        handler.addFilter(redacting)
        root.addHandler(handler)
    # The client library logs every message at INFO/DEBUG; keep its warnings only.
    for noisy in ("ib_async", "ib_insync"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
    return logging.getLogger(process)
