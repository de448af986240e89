"""Runs the day's phases at their ET times, one at a time, in calendar order.

A phase with a job in the table runs as a one-shot child (``python -m phases <name>
--date D``). The job records its own outcome in ``phase_runs`` (``start_phase`` /
``finish_phase``, with its summary); the supervisor records one only when the job could
not: exit 0 without a DONE row is recorded DONE, a non-zero exit without a FAILED row
(a crash) and a job killed at its deadline are recorded FAILED. Whatever detail the job
wrote stays; the supervisor's note (exit code, time taken, why) is appended to it. A
failure raises an alert and the day moves on to the next phase. A phase without a job
(open, eod_cutoff, close) is recorded DONE when its time comes. A phase already DONE for
the date is not run again, so a restarted supervisor runs only what is missing.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from market.calendar import Phase
from shared_state import PhaseRun, PhaseStatus, Store
from supervision.children import ChildTable, LaunchContext, PhaseJob, command
from supervision.process import ChildProcess, Launcher
from supervision.schedule import DayPlan, next_phase, skip_reason

#: How long a phase job gets to stop when the supervisor stops.
JOB_STOP_DEADLINE_S = 5.0
#: A job's deadline when neither the table nor PHASE_TIMEOUT_S gives one.
DEFAULT_JOB_DEADLINE_S = 600.0
#: Added to PHASE_TIMEOUT_S: time for a timed-out phase to record its own failure.
JOB_GRACE_S = 60.0

log = logging.getLogger("supervisor")


@dataclass
class RunningJob:
    phase: Phase
    job: PhaseJob
    proc: ChildProcess
    started_at: float  # monotonic
    deadline_s: float


class PhaseRunner:
    """The day's phases: what is finished, what runs, what is next."""

    def __init__(
        self,
        plan: DayPlan,
        table: ChildTable,
        store: Store,
        launcher: Launcher,
        context: LaunchContext,
        env_for: Callable[[str], Mapping[str, str]],
        alert: Callable[[str, str | None, str], None],
    ) -> None:
        self.plan = plan
        self.table = table
        self.store = store
        self.launcher = launcher
        self.context = context
        self.env_for = env_for
        self.alert = alert
        self.finished: set[Phase] = set()
        self.running: RunningJob | None = None
        self.last_finished: Phase | None = None

    def load_done(self) -> None:
        """Count phases DONE in ``phase_runs`` (by an earlier run today) as finished."""
        runs = self.store.phase_runs(self.plan.trading_date)
        done = {r.phase for r in runs if r.status is PhaseStatus.DONE}
        self.finished |= {p for p in self.plan.times if p.value in done}

    @property
    def day_complete(self) -> bool:
        return Phase.POST_CLOSE in self.finished

    def step(self, now: float) -> Phase | None:
        """Advance the phases; return the phase that just finished, if one did."""
        if self.running is not None:
            return self._poll(now)
        clock_now = self.plan.clock.now()
        phase = next_phase(self.plan.times, self.finished, clock_now)
        if phase is None:
            return None
        if (reason := skip_reason(phase, self.plan.times, clock_now)) is not None:
            return self._finish(phase, PhaseStatus.SKIPPED, reason)
        if self._recorded(phase) is PhaseStatus.DONE:
            self.finished.add(phase)  # DONE by another run meanwhile
            return None
        job = self.table.job_for(phase)
        if job is None:
            self.store.start_phase(self.plan.trading_date, phase.value, clock_now)
            late = (clock_now - self.plan.times[phase]).total_seconds() > 60
            return self._finish(phase, PhaseStatus.DONE, "reached late" if late else "reached")
        self._spawn(phase, job, now)
        return None

    def _recorded(self, phase: Phase) -> PhaseStatus | None:
        """Return the status ``phase_runs`` holds for the phase today (None: no row)."""
        run = self._run(phase)
        return None if run is None else run.status

    def _run(self, phase: Phase) -> PhaseRun | None:
        runs = self.store.phase_runs(self.plan.trading_date)
        return next((r for r in runs if r.phase == phase.value), None)

    def _detail(self, phase: Phase, note: str) -> str:
        """Return the job's own detail, if it wrote one, with the supervisor's ``note``."""
        run = self._run(phase)
        own = run.detail if run is not None else None
        return f"{own} ({note})" if own and note not in own else note

    def _deadline(self, job: PhaseJob) -> float:
        if job.deadline_s is not None:
            return job.deadline_s
        # The phases time themselves out after PHASE_TIMEOUT_S and record why; the
        # supervisor's deadline is the backstop for a job that cannot even do that.
        own = getattr(self.context.settings, "phase_timeout_s", DEFAULT_JOB_DEADLINE_S)
        return float(own) + JOB_GRACE_S

    def _spawn(self, phase: Phase, job: PhaseJob, now: float) -> None:
        name = f"phase_{phase.value}"
        argv = command(sys.executable, job.target, job.args(self.context, phase))
        path = self.context.settings.log_dir / f"{name}-{self.plan.trading_date}.console.log"
        proc = self.launcher.spawn(argv, self.env_for(name), path)
        log.info("phase %s: started (pid %s)", phase.value, proc.pid)
        self.running = RunningJob(phase, job, proc, now, self._deadline(job))

    def _poll(self, now: float) -> Phase | None:
        assert self.running is not None
        run = self.running
        code = run.proc.poll()
        elapsed = now - run.started_at
        if code is None and elapsed <= run.deadline_s:
            return None
        self.running = None
        if code is None:
            run.proc.kill_tree()
            return self._failed(run.phase, f"killed after its deadline of {run.deadline_s:g} s")
        detail = f"exit code {code} after {elapsed:.1f} s"
        recorded = self._recorded(run.phase)
        if code == 0:
            if recorded in (PhaseStatus.DONE, PhaseStatus.SKIPPED):
                return self._note_finished(run.phase, recorded, detail)
            return self._finish(run.phase, PhaseStatus.DONE, detail)
        if recorded is PhaseStatus.FAILED:
            self._alert_failed(run.phase, detail)
            return self._note_finished(run.phase, recorded, detail)
        return self._failed(run.phase, detail)

    def _failed(self, phase: Phase, detail: str) -> Phase:
        self._alert_failed(phase, detail)
        return self._finish(phase, PhaseStatus.FAILED, detail)

    def _alert_failed(self, phase: Phase, detail: str) -> None:
        runs = self.store.phase_runs(self.plan.trading_date)
        why = next((r.detail for r in runs if r.phase == phase.value and r.detail), None)
        reason = f"{why} ({detail})" if why and why != detail else detail
        self.alert(f"phase:{phase.value}", None, f"phase {phase.value} failed: {reason}")

    def _note_finished(self, phase: Phase, status: PhaseStatus, detail: str) -> Phase:
        """Count a phase the job recorded itself as finished (its row stays as written)."""
        self.finished.add(phase)
        self.last_finished = phase
        log.info("phase %s: %s, recorded by the job (%s)", phase.value, status.value, detail)
        return phase

    def _finish(self, phase: Phase, status: PhaseStatus, note: str) -> Phase:
        detail = self._detail(phase, note)
        self.store.finish_phase(
            self.plan.trading_date, phase.value, status, now=self.plan.clock.now(), detail=detail
        )
        self.finished.add(phase)
        self.last_finished = phase
        log.info("phase %s: %s (%s)", phase.value, status.value, detail)
        return phase

    def stop(self, hurry: Callable[[], bool]) -> None:
        """Stop a running job (it is recorded FAILED, so the next start runs it again)."""
        if self.running is None:
            return
        run, self.running = self.running, None
        run.proc.request_stop()
        deadline = time.monotonic() + JOB_STOP_DEADLINE_S
        while run.proc.poll() is None and time.monotonic() < deadline and not hurry():
            time.sleep(0.05)
        if run.proc.poll() is None:
            run.proc.kill_tree()
        if self._recorded(run.phase) in (PhaseStatus.DONE, PhaseStatus.SKIPPED):
            return
        self.store.finish_phase(
            self.plan.trading_date,
            run.phase.value,
            PhaseStatus.FAILED,
            now=self.plan.clock.now(),
            detail=self._detail(run.phase, "interrupted: the supervisor stopped"),
        )
        log.info("phase %s: interrupted by the stop", run.phase.value)
