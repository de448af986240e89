"""THE child runtime: how exit_manager, day_trader and the phases live under the supervisor.

Contract (the supervisor owns the lifecycle; the child only reports on itself):

- **Start.** The supervisor runs ``python -m <module> [args]`` in the repository root
  with the environment of ``supervision.environment``: every setting as an environment
  variable, ``TRADING_CLOCK`` (the one clock: read it with ``clock_from_env()``; this
  runtime's ``clock`` already is it), ``SUPERVISOR_CHILD`` (the child's name, i.e. its
  ``processes`` row) and ``SUPERVISOR_PARENT`` (the supervisor's pid and create time).
  The supervisor has written the row as STARTING before the child runs.
- **Ready.** Once connected and synced, call ``report_ready(detail)``. The supervisor
  moves the child to RUNNING when it has stayed up ``startsecs`` after that; a child
  that is not ready within the table's ready timeout is killed and restarted with
  backoff. A child never writes its own state.
- **Heartbeat.** This runtime stamps ``processes.last_heartbeat`` every
  HEARTBEAT_INTERVAL_S *real* seconds from an asyncio task, so a blocked event loop
  stops the heartbeat, and a RUNNING child silent for HEARTBEAT_TIMEOUT_S is killed and
  restarted. Never block the loop (run blocking work with ``asyncio.to_thread``).
- **Publish.** ``publish(detail)`` merges JSON-able facts into the row's ``detail``
  for the status display. The exit manager publishes ``{"marks": {SYMBOL: last_price},
  "broker_connected": bool}``; the status shows unrealized P&L from the marks.
- **Stop.** SIGTERM, SIGINT and on Windows CTRL_BREAK (``signal.SIGBREAK``) set the stop
  event: ``stopping`` becomes True, ``sleep()`` and ``wait_stop()`` return at once.
  Finish the current unit of work, disconnect, and return from ``main``. The
  supervisor kills the whole process tree after the child's stop deadline. If the
  supervisor itself disappears, the stop event is set too (no orphans).
- **Exit codes.** ``main`` returns 0 for "done, do not restart me" (the exit manager
  is restarted anyway while positions are open); any other code, or an uncaught
  exception (logged, exit 1), is a crash and the restart policy applies. A settings
  error exits 2.
- **One-shot jobs** (the phases) pass ``one_shot=True``: no heartbeat, no readiness;
  the supervisor records the phase's outcome in ``phase_runs`` from the exit code.

Entry point of a child::

    from supervision.child import ChildRuntime, run_child

    async def main(rt: ChildRuntime) -> int:
        await connect(rt.settings)
        rt.report_ready({"account": "DU123"})
        while not rt.stopping:
            do_one_pass(rt.clock.now())
            await rt.sleep(rt.settings.loop_interval_s)
        return 0

    if __name__ == "__main__":
        raise SystemExit(run_child("exit_manager", main))
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from config.settings import Settings, SettingsError, load_settings
from market.clock import Clock, clock_from_env
from shared_state import Store, StoreError
from supervision.environment import CHILD_NAME_ENV
from supervision.identity import ProcessIdentity
from supervision.parent import parent_from_env, wait_parent_gone
from telemetry.logs import configure_logging

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_BAD_SETTINGS = 2

#: The signals that ask a child to stop.
STOP_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGBREAK") if hasattr(signal, name)
)

Main = Callable[["ChildRuntime"], Awaitable[int]]


class ChildRuntime:
    """Heartbeat, readiness, published detail and the stop event of one child process."""

    def __init__(
        self,
        name: str,
        settings: Settings,
        clock: Clock,
        store: Store,
        *,
        one_shot: bool = False,
        parent: ProcessIdentity | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.store = store
        self.one_shot = one_shot
        self.parent = parent
        self.log = logging.getLogger(name)
        self.stop_reason: str | None = None
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = False
        self._detail: dict[str, Any] = {}

    # ----------------------------------------------------------------- lifecycle

    async def run(self, main: Main) -> int:
        """Run ``main(self)`` with the heartbeat task and signal handlers; return its code."""
        self._loop = asyncio.get_running_loop()
        restore = self._install_signal_handlers()
        tasks = [asyncio.create_task(self._housekeeping(), name=f"{self.name}-heartbeat")]
        if self.parent is not None:
            tasks.append(asyncio.create_task(self._watch_parent(self.parent), name="parent"))
        try:
            return int(await main(self))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            restore()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    def request_stop(self, reason: str) -> None:
        """Set the stop event (safe from signal handlers and other threads)."""
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._set_stop, reason)
        else:
            self._set_stop(reason)

    def _set_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self.stop_reason = reason
            self.log.info("stop requested: %s", reason)
            self._stop.set()

    async def wait_stop(self) -> str:
        """Wait until a stop is requested; return why."""
        await self._stop.wait()
        return self.stop_reason or "stop"

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` real seconds or until a stop request; return ``stopping``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=max(0.0, seconds))
        return self.stopping

    # ------------------------------------------------------------- reporting

    def report_ready(self, detail: Mapping[str, Any] | None = None) -> None:
        """Tell the supervisor this child is ready (connected, synced). A short DB write."""
        if self.one_shot:
            return
        self._ready = True
        self._detail.update(detail or {})
        self._beat()  # creates the row when the child runs without a supervisor
        self.store.set_process_ready(self.name, True, now=self.clock.now(), detail=self._detail)
        self.log.info("ready")

    def publish(self, detail: Mapping[str, Any]) -> None:
        """Merge ``detail`` into this child's row for the status display. A short DB write."""
        if self.one_shot:
            return
        self._detail.update(detail)
        try:
            self.store.set_process_ready(
                self.name, self._ready, now=self.clock.now(), detail=self._detail
            )
        except StoreError as exc:
            self.log.warning("could not publish detail: %s", exc)

    # ------------------------------------------------------------- internals

    def _beat(self) -> None:
        self.store.heartbeat(self.name, self.clock.now(), pid=os.getpid())

    async def _housekeeping(self) -> None:
        """Heartbeat every interval (real seconds)."""
        if self.one_shot:
            return
        while True:
            try:
                await asyncio.to_thread(self._beat)
            except StoreError as exc:
                self.log.warning("heartbeat not written: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_interval_s)

    async def _watch_parent(self, parent: ProcessIdentity) -> None:
        """Stop when the supervisor is gone (no orphan outlives a crashed run)."""
        self.request_stop(await wait_parent_gone(parent, self.settings.heartbeat_interval_s))

    def _install_signal_handlers(self) -> Callable[[], None]:
        """Route the stop signals to ``request_stop``; return a function that undoes it."""
        previous = {}
        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):  # not the main thread
                previous[sig] = signal.signal(sig, self._on_signal)

        def restore() -> None:
            for sig, handler in previous.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, handler)

        return restore

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.request_stop(signal.Signals(signum).name)


def run_child(name: str, main: Main, *, one_shot: bool = False) -> int:
    """Run a child process's ``main`` under the runtime; return the process exit code.

    Loads the settings, the clock (``TRADING_CLOCK``), logging (``telemetry.logs``) and
    the store; ``SUPERVISOR_CHILD`` overrides ``name`` when the supervisor sets it.
    """
    name = os.environ.get(CHILD_NAME_ENV) or name
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"{name}: settings error: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    clock = clock_from_env()
    log = configure_logging(name, settings.log_dir, settings.log_level, clock)
    parent = parent_from_env()
    store = Store(settings.db_path, process=name)
    runtime = ChildRuntime(name, settings, clock, store, one_shot=one_shot, parent=parent)
    try:
        return asyncio.run(runtime.run(main))
    except Exception:  # noqa: BLE001 - a crash is reported by the exit code, with its trace
        log.exception("%s crashed", name)
        return EXIT_CRASH
    finally:
        store.close()
