"""The monitor loop: start the children in order, keep them healthy, run the phases,
show the status, and stop everything in reverse order.

One pass of ``step()`` reads like its table of contents:

1. ``poll_exits``: sort every exit into supervisord's three cases (we asked it to stop;
   it died before RUNNING: BACKOFF; it died after RUNNING: the restart policy decides).
2. ``poll_starting``: STARTING -> RUNNING once ready and up ``startsecs``; kill the
   ones not ready in time.
3. ``check_heartbeats``: a RUNNING child whose heartbeat stopped changing is hung:
   killed and restarted.
4. ``start_due``: first starts in table order (each after the critical one before it
   is RUNNING) and restarts whose backoff has expired.
5. ``phases.step``: the day's phases at their ET times.
6. ``beat`` and ``show_status_if_due``.

Every state change goes through ``change_state``, which writes the store (the row and
its "from X to Y" event) and logs ``name: X -> Y``. Intervals are monotonic real
seconds; the trading clock only stamps rows and decides phase times.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from config.settings import Settings
from market.clock import ET
from shared_state import ProcessState, Store, StoreError, TransitionError
from supervision import policy
from supervision.children import ChildSpec, ChildTable, LaunchContext, ReadyBy, command
from supervision.environment import child_environment
from supervision.identity import ProcessIdentity
from supervision.phase_runner import PhaseRunner
from supervision.process import ChildProcess, Launcher, command_line, kill_descendants, kill_tree
from supervision.schedule import DayPlan, countdown, port_open
from supervision.states import allowed
from supervision.status import SUPERVISOR_ROW, LiveView, SupervisorRow, build_snapshot, render
from telemetry.tracing import set_attributes, span

log = logging.getLogger("supervisor")

TICK_S = 0.1
BROKER_PROBE_EVERY_S = 2.0
COUNTDOWN_EVERY_S = 10.0
#: How long a simulator port held by a just-killed orphan may take to be released.
PORT_FREE_WAIT_S = 1.0

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)
)


class StartRefused(Exception):  # noqa: N818 - "raise StartRefused(why)" reads as the event
    """The day cannot begin; the message says why and what to do."""


@dataclass
class Slot:
    """The supervisor's record of one child; only the supervisor changes it."""

    spec: ChildSpec
    state: ProcessState = ProcessState.STOPPED
    proc: ChildProcess | None = None
    spawned_at: float = 0.0
    ready_at: float | None = None
    restart_at: float | None = None  # BACKOFF / EXITED: when the next start is due
    crashes: tuple[float, ...] = ()
    heartbeat: policy.HeartbeatSeen | None = None
    stop_deadline: float | None = None  # STOPPING: when to kill
    stop_then: ProcessState = ProcessState.STOPPED  # STOPPING ends in this state
    stop_error: str | None = None
    started_once: bool = False

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Alert:
    process: str | None
    message: str
    since: datetime


class Supervisor:
    """Starts, watches and stops the children of one trading day."""

    def __init__(
        self,
        settings: Settings,
        table: ChildTable,
        plan: DayPlan,
        store: Store,
        launcher: Launcher,
        *,
        base_env: Mapping[str, str],
        out: TextIO = sys.stdout,
        tick_s: float = TICK_S,
    ) -> None:
        self.settings = settings
        self.plan = plan
        self.clock = plan.clock
        self.store = store
        self.launcher = launcher
        self.base_env = dict(base_env)
        self.out = out
        self.tick_s = tick_s
        self.identity = ProcessIdentity.current()
        self.slots = [Slot(spec) for spec in table.active(settings)]
        self.alerts: dict[str, Alert] = {}
        self.context = LaunchContext(settings, plan.trading_date)
        self.phases = PhaseRunner(
            plan, table, store, launcher, self.context, self.env_for, self.alert
        )
        self.stop_reason: str | None = None
        self.hurry = False
        self.broker_ready = plan.mode != "ibkr"
        self._next_probe = 0.0
        self._next_countdown = 0.0
        self._next_beat = 0.0
        self._next_status = 0.0
        self._status_now = False
        # The OS's record of when this process started (wall clock), not market time.
        created = datetime.fromtimestamp(self.identity.create_time).astimezone()
        self.started_at = created.isoformat(timespec="seconds")

    # ==================================================================== lifecycle

    def run(self) -> int:
        """Run the day until the post-close phase or a stop signal; return the exit code.

        Raise ``StartRefused`` (before anything starts) when the day cannot begin.
        """
        self.preflight()
        restore = self._install_signal_handlers()
        try:
            self.begin()
            while self.stop_reason is None and not self.phases.day_complete:
                self.step()
                time.sleep(self.tick_s)
        finally:
            try:
                self.shutdown(self.stop_reason or "the trading day is complete")
            finally:
                restore()
        return 0

    def preflight(self) -> None:
        """Kill orphans of a crashed run; refuse a simulator port another program holds."""
        self._reap_orphans()
        if self.plan.mode != "sim" or not any(s.name == "simulator" for s in self.slots):
            return
        port = self.settings.sim_port
        deadline = time.monotonic() + PORT_FREE_WAIT_S
        while port_open("127.0.0.1", port, timeout=0.2):
            if time.monotonic() >= deadline:
                raise StartRefused(
                    f"SIM_PORT {port} is already in use on 127.0.0.1 (another simulator or "
                    "program). Stop it, or set SIM_PORT to a free port."
                )
            time.sleep(0.2)

    def begin(self) -> None:
        """Repair rows left by an earlier run, count finished phases, announce the day."""
        now = self.clock.now()
        self.store.set_process_state(
            SUPERVISOR_ROW, ProcessState.STARTING, now=now, pid=self.identity.pid, force=True
        )
        self.store.set_process_state(SUPERVISOR_ROW, ProcessState.RUNNING, now=now, force=True)
        for slot in self.slots:
            row = self.store.process(slot.name)
            if row is not None and row.state is not ProcessState.STOPPED:
                self.store.set_process_state(slot.name, ProcessState.STOPPED, now=now, force=True)
        self.phases.load_done()
        self._publish_detail()
        self.say(self.plan.summary())
        if self.phases.day_complete:
            self.say(
                f"Trading day {self.plan.trading_date} is already complete in "
                f"{self.settings.db_path} (its post-close phase is DONE): nothing to do."
                + (
                    " To simulate it again from scratch, run without --resume (with DB_PATH "
                    "unset, the date's folder data/sim/<date> is then moved aside), use "
                    "another DB_PATH, or pick a day with --date."
                    if self.plan.mode == "sim"
                    else ""
                )
            )
        self._status_now = True

    def step(self) -> None:
        """One pass of the monitor loop."""
        now = time.monotonic()
        try:
            if self._waiting_for_day_start(now):
                return
            self.poll_exits(now)
            self.poll_starting(now)
            self.check_heartbeats(now)
            self.wait_for_broker(now)
            self.start_due(now)
            if (finished := self.phases.step(now)) is not None:
                self._status_now = True
                self.say(f"--- phase {finished.value} finished ---")
            self.beat(now)
            self.show_status_if_due(now)
        except StoreError as exc:
            # The DB is the mirror, the loop is the truth: a busy DB must not stop it.
            log.warning("store unavailable this pass (%s); retrying", exc)

    def request_stop(self, reason: str) -> None:
        """Ask the loop to stop (first call), or to hurry the stop (second call)."""
        if self.stop_reason is None:
            self.stop_reason = reason
        else:
            self.hurry = True

    def shutdown(self, reason: str) -> None:
        """Stop phases, then children in reverse start order, then kill any leftover."""
        running = [s.spec.title for s in reversed(self.slots) if s.proc is not None]
        order = f": {', then '.join(running)}" if running else ""
        self.say(f"Stopping ({reason}){order}.")
        self.phases.stop(lambda: self.hurry)
        for slot in reversed(self.slots):
            self.stop_and_wait(slot)
        leftovers = kill_descendants()
        if leftovers:
            log.warning("killed leftover processes: %s", leftovers)
        self._end_of_day_warning()
        self.alerts.clear()
        with contextlib.suppress(StoreError):
            self._publish_detail()
            now = self.clock.now()
            self.store.set_process_state(SUPERVISOR_ROW, ProcessState.STOPPING, now=now, force=True)
            self.store.set_process_state(SUPERVISOR_ROW, ProcessState.STOPPED, now=now)
        with contextlib.suppress(StoreError):
            self.show_status(final=True)
        self.say_where_the_outputs_are()
        self.say("Supervisor stopped.")

    def say_where_the_outputs_are(self) -> None:
        """Name the day's report (when written), logs and database: where to look next."""
        day = self.plan.trading_date
        report = self.settings.reports_dir / f"{day}.md"
        if report.is_file():
            self.say(f"Report: {report}")
        self.say(f"Logs: {self.settings.log_dir}; database: {self.settings.db_path}")

    # ================================================================ state changes

    def change_state(self, slot: Slot, new: ProcessState, error: str | None = None) -> None:
        """Move ``slot`` to ``new``: write the row and its event, log ``name: X -> Y``."""
        old = slot.state
        if old == new:
            return
        if not allowed(old, new):
            raise RuntimeError(f"{slot.name}: {old} -> {new} is not a supervisor transition")
        pid = slot.proc.pid if slot.proc is not None else None
        try:
            self._write_state(slot.name, old, new, pid, error)
        except StoreError as exc:
            log.error("%s: state %s not recorded in the store: %s", slot.name, new, exc)
        slot.state = new
        suffix = f" ({error})" if error else ""
        log.info("%s: %s -> %s%s", slot.name, old.value, new.value, suffix)

    def _write_state(
        self, name: str, old: ProcessState, new: ProcessState, pid: int | None, error: str | None
    ) -> None:
        now = self.clock.now()
        try:
            self.store.set_process_state(name, new, now=now, pid=pid, error=error)
        except TransitionError:
            # The row was changed behind our back (an earlier run): ours is the truth.
            log.warning("%s: row out of step with the supervisor; forcing %s", name, new)
            self.store.set_process_state(name, new, now=now, pid=pid, error=error, force=True)

    def alert(self, key: str, process: str | None, message: str) -> None:
        """Raise an alert once per key: log it, record an event, show it in the status."""
        if key in self.alerts:
            return
        self.alerts[key] = Alert(process, message, self.clock.now())
        log.error("ALERT: %s", message)
        with contextlib.suppress(StoreError):
            self.store.record_event(
                "supervisor",
                "alert",
                now=self.clock.now(),
                detail={"key": key, "process": process, "message": message},
            )
            self._publish_detail()
        self._status_now = True

    def clear_alert(self, key: str) -> None:
        """Drop the alert ``key`` once its cause is gone."""
        if self.alerts.pop(key, None) is not None:
            with contextlib.suppress(StoreError):
                self._publish_detail()

    # ================================================================ the loop steps

    def poll_exits(self, now: float) -> None:
        """Handle every child whose process has exited."""
        for slot in self.slots:
            if slot.proc is None or (code := slot.proc.poll()) is None:
                continue
            if slot.state is ProcessState.STOPPING:
                self._finish_stop(slot, code)
            elif slot.state is ProcessState.STARTING:
                self._on_exit(slot, now, code, early=True, error=f"exited {code} while starting")
            else:
                self._on_exit(slot, now, code, early=False, error=f"exited {code}")

    def poll_starting(self, now: float) -> None:
        """Promote ready children to RUNNING after startsecs; fail the ones too slow."""
        for slot in self.slots:
            if slot.state is not ProcessState.STARTING or slot.proc is None:
                continue
            if slot.ready_at is None and self._is_ready(slot):
                slot.ready_at = now
                log.info("%s: ready", slot.name)
            verdict = policy.start_verdict(
                slot.spec.start, spawned_at=slot.spawned_at, ready_at=slot.ready_at, now=now
            )
            if verdict is policy.StartVerdict.RUNNING:
                self.change_state(slot, ProcessState.RUNNING)
                row = self.store.process(slot.name)
                slot.heartbeat = policy.HeartbeatSeen(row.last_heartbeat if row else None, now)
                self.clear_alert(f"crashloop:{slot.name}")
            elif verdict is policy.StartVerdict.TIMED_OUT:
                timeout = slot.spec.start.ready_timeout_s
                slot.proc.kill_tree()
                self._on_exit(slot, now, None, early=True, error=f"not ready within {timeout:g} s")

    def check_heartbeats(self, now: float) -> None:
        """Kill and restart RUNNING children whose heartbeat stopped changing."""
        watched = [s for s in self.slots if s.state is ProcessState.RUNNING and s.spec.heartbeat]
        if not watched:
            return
        rows = {p.name: p for p in self.store.processes()}
        timeout = self.settings.heartbeat_timeout_s
        # While the warm-up holds the virtual clock, every heartbeat carries the same
        # stamp: an unchanged value then says nothing about the child.
        held = self.plan.warmup_left > 0
        for slot in watched:
            row = rows.get(slot.name)
            value = row.last_heartbeat if row else None
            if held:
                slot.heartbeat = policy.HeartbeatSeen(value, now)
                continue
            seen = slot.heartbeat or policy.HeartbeatSeen(None, now)
            slot.heartbeat = policy.observe_heartbeat(seen, value, now)
            if policy.heartbeat_stale(slot.heartbeat, now, timeout):
                silent = now - slot.heartbeat.changed_at
                self._kill_hung(slot, f"hung: no heartbeat for {silent:.1f} s")

    def wait_for_broker(self, now: float) -> None:
        """BROKER=ibkr: wait for the gateway's API port, with a countdown and a 9:00 alert."""
        if self.broker_ready or now < self._next_probe:
            return
        self._next_probe = now + BROKER_PROBE_EVERY_S
        host, port = self.settings.ib_host, self.settings.ib_port
        if port_open(host, port):
            self.broker_ready = True
            self.clear_alert("gateway")
            self.say(f"IB Gateway / TWS is up at {host}:{port}.")
            return
        market_now = self.clock.now()
        alert_at = self.plan.gateway_alert_at
        if market_now >= alert_at:
            self.alert(
                "gateway",
                None,
                f"IB Gateway / TWS not reachable at {host}:{port} by "
                f"{alert_at.strftime('%H:%M')} ET: start it and log in",
            )
        if now >= self._next_countdown:
            self._next_countdown = now + COUNTDOWN_EVERY_S
            left = countdown(alert_at, market_now)
            self.say(
                f"Waiting for IB Gateway / TWS at {host}:{port} "
                f"(alert at {alert_at.strftime('%H:%M')} ET, in {left}). Ctrl+C to stop."
            )

    def start_due(self, now: float) -> None:
        """Start children in table order and restart those whose backoff has expired.

        Nothing starts behind a critical child that is not RUNNING (no buying without
        the seller, nothing at all without the broker).
        """
        gate_open = self.broker_ready
        for slot in self.slots:
            first = slot.state is ProcessState.STOPPED and not slot.started_once
            due = slot.restart_at is not None and now >= slot.restart_at
            waiting = slot.state in (ProcessState.BACKOFF, ProcessState.EXITED) and due
            if gate_open and (first or waiting):
                self.spawn(slot, now)
            if slot.spec.critical and slot.state is not ProcessState.RUNNING:
                gate_open = False

    def beat(self, now: float) -> None:
        """Heartbeat the supervisor's own row (scripts/status.py reads it)."""
        if now < self._next_beat:
            return
        self._next_beat = now + self.settings.heartbeat_interval_s
        self.store.heartbeat(SUPERVISOR_ROW, self.clock.now(), pid=self.identity.pid)

    def show_status_if_due(self, now: float) -> None:
        """Show the status every STATUS_INTERVAL_MIN and at every phase change."""
        if not self._status_now and now < self._next_status:
            return
        self._status_now = False
        self._next_status = now + self.settings.status_interval_min * 60.0
        self.show_status()

    # ================================================================ start and stop

    def spawn(self, slot: Slot, now: float) -> None:
        """Start the child's process: -> STARTING (the row exists before the child runs)."""
        slot.proc = None
        slot.ready_at = None
        slot.restart_at = None
        slot.heartbeat = None
        self.change_state(slot, ProcessState.STARTING)
        spec = slot.spec
        argv = command(sys.executable, spec.target, spec.args(self.context))
        log_path = self.settings.log_dir / f"{spec.name}-{self.plan.trading_date}.console.log"
        with span("child.start", process=slot.name, restart=slot.started_once) as starting:
            try:
                slot.proc = self.launcher.spawn(argv, self.env_for(spec.name), log_path)
            except OSError as exc:
                set_attributes(starting, error=str(exc))
                self._on_exit(slot, now, None, early=True, error=f"could not start: {exc}")
                return
            set_attributes(starting, pid=slot.proc.pid)
        slot.spawned_at = now
        slot.started_once = True
        self._write_state(slot.name, slot.state, slot.state, slot.proc.pid, None)  # the pid
        log.info("%s: started pid %s: %s", slot.name, slot.proc.pid, " ".join(argv[1:]))

    def stop_and_wait(self, slot: Slot) -> None:
        """Stop one child within its deadline (kill its tree after it); -> STOPPED."""
        if slot.proc is not None and slot.proc.poll() is None:
            if slot.state is not ProcessState.STOPPING:
                self._begin_stop(slot, ProcessState.STOPPED, None)
            while slot.proc.poll() is None and time.monotonic() < (slot.stop_deadline or 0):
                if self.hurry:
                    break
                time.sleep(0.05)
            if slot.proc.poll() is None:
                slot.proc.kill_tree()
                log.warning("%s: did not stop within its deadline: killed", slot.name)
            self._finish_stop(slot, slot.proc.poll())
        elif slot.state in (ProcessState.STOPPING, ProcessState.STARTING, ProcessState.RUNNING):
            self._finish_stop(slot, slot.proc.poll() if slot.proc else None)
        if slot.state in (ProcessState.BACKOFF, ProcessState.EXITED, ProcessState.STOPPING):
            self.change_state(slot, ProcessState.STOPPED)
        slot.restart_at = None

    def _begin_stop(self, slot: Slot, then: ProcessState, error: str | None) -> None:
        assert slot.proc is not None
        slot.stop_then = then
        slot.stop_error = error
        slot.stop_deadline = time.monotonic() + (0.0 if self.hurry else slot.spec.stop_deadline_s)
        self.change_state(slot, ProcessState.STOPPING, error)
        if not slot.proc.request_stop():
            log.warning("%s: stop request could not be sent; will kill at the deadline", slot.name)

    def _finish_stop(self, slot: Slot, code: int | None) -> None:
        """A child we stopped has exited: -> STOPPED, or EXITED for a hung one (restart)."""
        then = slot.stop_then
        if slot.state is not ProcessState.STOPPING:
            then = ProcessState.STOPPED
            self.change_state(slot, ProcessState.STOPPING)
        slot.proc = None
        slot.stop_deadline = None
        if then is ProcessState.EXITED:
            self._after_crash(slot, time.monotonic(), early=False, error=slot.stop_error)
            return
        self.change_state(slot, ProcessState.STOPPED, None if code in (0, None) else f"exit {code}")

    def _kill_hung(self, slot: Slot, error: str) -> None:
        """A hung child gets no grace period: kill its tree now, then restart it."""
        self._begin_stop(slot, ProcessState.EXITED, error)
        assert slot.proc is not None
        slot.proc.kill_tree()
        self._finish_stop(slot, slot.proc.poll())

    def _stop_dependents(self, slot: Slot, why: str) -> None:
        """Stop the children after a critical one that will not come back."""
        index = self.slots.index(slot)
        for later in reversed(self.slots[index + 1 :]):
            if later.state in (ProcessState.STOPPED, ProcessState.FATAL):
                continue
            log.info("%s: stopping it too, because the %s", later.name, why)
            self.stop_and_wait(later)
            later.started_once = True  # not started again by start_due

    # ============================================================ exits and restarts

    def _on_exit(
        self, slot: Slot, now: float, code: int | None, *, early: bool, error: str
    ) -> None:
        """Sort an exit we did not ask for and apply the restart policy."""
        slot.proc = None
        if early:
            self.change_state(slot, ProcessState.BACKOFF, error)
        else:
            self.change_state(slot, ProcessState.EXITED, None if code == 0 else error)
        if code == 0 and not early:
            self._after_clean_exit(slot, now)
        else:
            self._after_crash(slot, now, early=early, error=error)

    def _after_clean_exit(self, slot: Slot, now: float) -> None:
        decision = policy.decide(
            slot.spec.restart,
            crash_times=slot.crashes,
            now=now,
            clean_exit=True,
            positions_open=self._positions_open(slot),
        )
        self._apply(slot, now, decision, "exited cleanly")

    def _after_crash(self, slot: Slot, now: float, *, early: bool, error: str | None) -> None:
        if slot.state is ProcessState.STOPPING:
            self.change_state(slot, ProcessState.EXITED, error)
        rule = slot.spec.restart
        slot.crashes = policy.recent_crashes((*slot.crashes, now), now, rule.flap_window_s)
        decision = policy.decide(
            rule,
            crash_times=slot.crashes,
            now=now,
            clean_exit=False,
            positions_open=self._positions_open(slot),
        )
        self._apply(slot, now, decision, error or "crashed")

    def _apply(self, slot: Slot, now: float, decision: policy.Decision, what: str) -> None:
        """Carry out a restart decision: schedule the restart, go FATAL, or leave it."""
        self._record_exit(slot, decision, what)
        if decision.alert:
            self.alert(f"crashloop:{slot.name}", slot.name, f"{slot.spec.title}: {decision.alert}")
        if decision.verdict is policy.Verdict.RESTART:
            slot.restart_at = now + decision.delay_s
            log.info(
                "%s: %s; restart in %.2f s (crash %d in the window)",
                slot.name, what, decision.delay_s, decision.crashes,
            )  # fmt: skip
            return
        slot.restart_at = None
        if decision.verdict is policy.Verdict.FATAL:
            self.change_state(slot, ProcessState.FATAL, decision.alert)
        else:
            log.info("%s: %s; not restarted", slot.name, what)
        if slot.spec.critical:
            self._stop_dependents(slot, f"{slot.spec.title} is {slot.state.value}")

    def _record_exit(self, slot: Slot, decision: policy.Decision, what: str) -> None:
        with span(
            "child.exit", process=slot.name, what=what, verdict=decision.verdict.value,
            delay_s=decision.delay_s, crashes_in_window=decision.crashes,
        ):  # fmt: skip
            pass  # a point in time on the trace, next to the children's own spans
        with contextlib.suppress(StoreError):
            self.store.record_event(
                "supervisor",
                "child_exit",
                now=self.clock.now(),
                detail={
                    "process": slot.name,
                    "what": what,
                    "verdict": decision.verdict.value,
                    "delay_s": decision.delay_s,
                    "crashes_in_window": decision.crashes,
                },
            )

    def _positions_open(self, slot: Slot) -> bool:
        if not slot.spec.restart.keep_alive_while_positions:
            return False
        try:
            return bool(self.store.active_positions())
        except StoreError:
            return True  # when in doubt, keep protecting

    # ================================================================= helpers

    def env_for(self, name: str) -> dict[str, str]:
        """Return the environment of the child ``name``."""
        return child_environment(self.base_env, self.settings, self.clock, name, self.identity)

    def _is_ready(self, slot: Slot) -> bool:
        assert slot.proc is not None
        if slot.spec.ready_by is ReadyBy.STDOUT_LINE:
            return slot.proc.saw_line(slot.spec.ready_line)
        row = self.store.process(slot.name)
        return row is not None and row.ready

    def _waiting_for_day_start(self, now: float) -> bool:
        market_now = self.clock.now()
        if market_now >= self.plan.day_start:
            return False
        if now >= self._next_countdown:
            self._next_countdown = now + COUNTDOWN_EVERY_S
            start = self.plan.day_start.strftime("%H:%M")
            left = countdown(self.plan.day_start, market_now)
            self.say(f"Waiting for the day to start at {start} ET (in {left}). Ctrl+C to stop.")
        self.beat(now)
        return True

    def _reap_orphans(self) -> None:
        """Kill children an earlier, crashed supervisor left running (pid + command line)."""
        targets = {slot.name: slot.spec.target for slot in self.slots}
        for row in self.store.processes():
            target = targets.get(row.name)
            if target is None or row.pid is None or row.pid == self.identity.pid:
                continue
            cmd = command_line(row.pid)
            if any(part == target or part.endswith(target) for part in cmd):
                log.warning("%s: killing pid %s left by an earlier run", row.name, row.pid)
                kill_tree(row.pid)

    def _end_of_day_warning(self) -> None:
        with contextlib.suppress(StoreError):
            left = self.store.active_positions()
            if left and self.phases.day_complete:
                symbols = ", ".join(p.symbol for p in left)
                log.warning(
                    "%d positions still open at the end of the day (%s); they stay at the "
                    "broker and the exit manager adopts them at the next start",
                    len(left),
                    symbols,
                )

    def _publish_detail(self) -> None:
        """Write what scripts/status.py needs to know into the supervisor's row."""
        detail: dict[str, Any] = {
            "mode": self.plan.mode,
            "clock": self.clock.spec(),
            "trading_date": self.plan.trading_date.isoformat(),
            "heartbeat_timeout_s": self.settings.heartbeat_timeout_s,
            "alerts": [
                {"key": k, "process": a.process, "message": a.message, "since": a.since.isoformat()}
                for k, a in self.alerts.items()
            ],
            "phase_times": {p.value: at.isoformat() for p, at in self.plan.times.items()},
        }
        self.store.set_process_ready(SUPERVISOR_ROW, True, now=self.clock.now(), detail=detail)

    def show_status(self, final: bool = False) -> None:
        """Print the status table (``final``: the last one, after everything stopped)."""
        now = time.monotonic()
        ages = {
            s.name: now - s.heartbeat.changed_at
            for s in self.slots
            if s.spec.heartbeat and s.heartbeat is not None and s.state is ProcessState.RUNNING
        }
        notes = {s.name: self._note(s, now) for s in self.slots}
        view = LiveView(
            heartbeat_ages=ages,
            notes={k: v for k, v in notes.items() if v},
            phase_times={p.value: at for p, at in self.plan.times.items()},
            now=self.clock.now(),
        )
        me = SupervisorRow(running=not final, pid=self.identity.pid, started_at=self.started_at)
        snapshot = build_snapshot(
            self.store,
            self.settings,
            trading_date=self.plan.trading_date,
            supervisor=me,
            view=view,
        )
        self.say(render(snapshot))

    def _note(self, slot: Slot, now: float) -> str:
        if slot.restart_at is not None:
            return f"restart in {max(0.0, slot.restart_at - now):.1f}s"
        if slot.state is ProcessState.STARTING:
            return "waiting for ready" if slot.ready_at is None else "ready, in startsecs"
        return ""

    def say(self, text: str) -> None:
        """Print to the supervisor's console (never fails: it may have no console)."""
        stamp = self.clock.now().astimezone(ET).strftime("%H:%M:%S")
        with contextlib.suppress(OSError, ValueError):
            print(f"[{stamp} ET] {text}" if "\n" not in text else text, file=self.out, flush=True)

    def _install_signal_handlers(self) -> Callable[[], None]:
        previous = {}

        def handler(signum: int, _frame: object) -> None:
            name = signal.Signals(signum).name
            first = self.stop_reason is None
            self.request_stop(f"{name} received")
            if not first:
                log.warning("%s again: stopping at once (killing what is left)", name)

        for sig in STOP_SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, old in previous.items():
                with contextlib.suppress(ValueError, OSError, TypeError):
                    signal.signal(sig, old)

        return restore
