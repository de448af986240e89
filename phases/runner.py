"""The frame every phase runs in: once per trading date, a timeout, progress, a record.

``run_phase`` is the whole contract with the supervisor:

1. Not a trading day: ``phase_runs`` says SKIPPED, exit 0.
2. ``Store.start_phase`` says the phase is already DONE for the date: nothing is done
   (no broker connection, no request, no write), exit 0. A RUNNING row left by a run
   that died is started again.
3. The phase runs inside span ``phase.<name>`` and ``PHASE_TIMEOUT_S`` real seconds.
   It returns a ``PhaseResult``: ``phase_runs`` DONE with its summary, and an event
   ``phase_result`` with the summary and the decision's detail; exit 0.
4. It fails (``PhaseError``, any exception, the timeout, a stop request): ``phase_runs``
   FAILED with the reason, exit 1. The supervisor alerts and moves on to the next phase.

Outside services (the LLM, FMP) never fail a phase: the phase falls back and records why.
The broker is not optional for the phases that ask it for data; they fail when it
cannot be reached.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from broker.adapter import BrokerAdapter
from broker.config import AdapterConfig
from broker.guards import Role
from config.settings import Settings
from market.calendar import is_trading_day
from market.clock import Clock
from shared_state import PhaseStatus, Store
from shared_state.phase_data import PhaseData
from telemetry.logs import scrub
from telemetry.tracing import set_attributes, span

EXIT_OK = 0
EXIT_FAILED = 1

#: Real seconds to connect to IB Gateway/TWS/the simulator before the phase fails.
BROKER_CONNECT_TIMEOUT_S = 30.0
#: Connection attempts before the adapter gives up (FATAL) instead of backing off forever.
BROKER_CONNECT_ATTEMPTS = 3


class PhaseError(Exception):
    """The phase cannot do its job; the message says why (recorded as FAILED)."""


@dataclass(frozen=True)
class PhaseResult:
    """What a phase decided: one line for ``phase_runs``, the detail for the events."""

    summary: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PhaseOutcome:
    """How a run ended: 'done', 'already_done', 'skipped' or 'failed', and the exit code."""

    status: str
    detail: str
    exit_code: int


class BrokerLink:
    """The phase's broker connection: opened on first use, closed by the runner."""

    def __init__(
        self, settings: Settings, clock: Clock, config: AdapterConfig | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.config = config or AdapterConfig.from_settings(
            settings,
            connect_timeout_s=10.0,
            max_connect_attempts=BROKER_CONNECT_ATTEMPTS,
            backoff_cap_s=5.0,
        )
        self._adapter: BrokerAdapter | None = None
        self.connections = 0  # connection attempts this run (a rerun of a DONE phase: 0)

    async def get(self) -> BrokerAdapter:
        """Return the connected adapter; raise PhaseError when the broker cannot be reached."""
        if self._adapter is not None and self._adapter.is_connected:
            return self._adapter
        adapter = self._adapter or BrokerAdapter(
            self.config, self.clock, self.settings.ib_client_id_phases, role=Role.PHASES
        )
        self._adapter = adapter
        self.connections += 1
        try:
            await adapter.start(timeout=BROKER_CONNECT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - any failure to connect means the same here
            raise PhaseError(
                f"broker unreachable at {self.config.host}:{self.config.port}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return adapter

    async def close(self) -> None:
        """Disconnect (if connected)."""
        if self._adapter is not None:
            await self._adapter.close()
            self._adapter = None


@dataclass
class PhaseContext:
    """Everything a phase may use; built once at the edge (``__main__`` or a test)."""

    name: str
    trading_date: date
    settings: Settings
    clock: Clock
    store: Store
    data: PhaseData
    broker: BrokerLink
    process: str
    log: logging.Logger

    def event(self, kind: str, symbol: str | None = None, **detail: Any) -> None:
        """Record an event of this phase in the audit trail."""
        self.store.record_event(
            self.process,
            kind,
            now=self.clock.now(),
            symbol=symbol,
            detail=jsonable(
                {"phase": self.name, "trading_date": self.trading_date.isoformat(), **detail}
            ),
        )


PhaseBody = Callable[[PhaseContext], Awaitable[PhaseResult]]


class Progress:
    """Progress of a loop over symbols: a tqdm bar on a terminal, log lines otherwise."""

    def __init__(self, log: logging.Logger, label: str, total: int) -> None:
        self.log = log
        self.label = label
        self.total = total
        self.done = 0
        self._next_log = 0.0
        self._bar: Any = None
        if sys.stderr.isatty() and total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="sym", leave=False)

    def step(self, what: str = "") -> None:
        """Count one item done."""
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
        # About every 10 %, and the last one, so a log file shows the pace too.
        if self.done >= self._next_log or self.done == self.total:
            self.log.info("%s: %d/%d %s", self.label, self.done, self.total, what)
            self._next_log = self.done + max(1, math.ceil(self.total / 10))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def jsonable(value: Any) -> Any:
    """Return ``value`` with NaN/inf replaced by None and tuples by lists (for events)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


async def run_phase(
    ctx: PhaseContext,
    body: PhaseBody,
    *,
    stop: Callable[[], Awaitable[str]] | None = None,
) -> PhaseOutcome:
    """Run ``body`` for ``ctx.trading_date`` once (see the module docstring).

    ``stop`` returns an awaitable that completes when the process is asked to stop.
    """
    if not is_trading_day(ctx.trading_date):
        detail = f"{ctx.trading_date} is not a trading day"
        _finish(ctx, PhaseStatus.SKIPPED, detail)
        return PhaseOutcome("skipped", detail, EXIT_OK)
    if not ctx.store.start_phase(ctx.trading_date, ctx.name, ctx.clock.now()):
        detail = f"already DONE for {ctx.trading_date}: nothing to do"
        ctx.log.info("%s: %s", ctx.name, detail)
        return PhaseOutcome("already_done", detail, EXIT_OK)
    started = time.monotonic()
    ctx.log.info("%s for %s: started", ctx.name, ctx.trading_date)
    try:
        result = await _bounded(ctx, body, stop)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded, then reported
        detail = _failure_text(ctx, exc)
        _finish(ctx, PhaseStatus.FAILED, detail)
        return PhaseOutcome("failed", detail, EXIT_FAILED)
    finally:
        await ctx.broker.close()
    took = time.monotonic() - started
    summary = f"{result.summary} ({took:.1f} s)"
    ctx.event("phase_result", summary=result.summary, seconds=round(took, 2), **result.detail)
    _finish(ctx, PhaseStatus.DONE, summary)
    ctx.log.info("%s for %s: DONE: %s", ctx.name, ctx.trading_date, summary)
    return PhaseOutcome("done", summary, EXIT_OK)


class _Stopped(Exception):
    """A stop was requested (SIGTERM from the supervisor) before the phase finished."""


async def _bounded(
    ctx: PhaseContext, body: PhaseBody, stop: Callable[[], Awaitable[str]] | None
) -> PhaseResult:
    timeout = ctx.settings.phase_timeout_s
    with span(f"phase.{ctx.name}", trading_date=ctx.trading_date.isoformat()) as current:
        work = asyncio.ensure_future(asyncio.wait_for(body(ctx), timeout))
        waiters: set[asyncio.Future[Any]] = {work}
        stopper = asyncio.ensure_future(stop()) if stop is not None else None
        if stopper is not None:
            waiters.add(stopper)
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stopper is not None:
                stopper.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            raise _Stopped(f"interrupted: {stopper.result() if stopper else 'stop'}")
        result = work.result()
        set_attributes(current, summary=result.summary)
        return result


def _failure_text(ctx: PhaseContext, exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        text = f"timed out after {ctx.settings.phase_timeout_s:g} s (PHASE_TIMEOUT_S)"
    elif isinstance(exc, PhaseError | _Stopped):
        text = str(exc)
    else:
        ctx.log.exception("%s failed", ctx.name)
        text = f"{type(exc).__name__}: {exc}"
    text = scrub(text)
    ctx.log.error("%s for %s: FAILED: %s", ctx.name, ctx.trading_date, text)
    return text


def _finish(ctx: PhaseContext, status: PhaseStatus, detail: str) -> None:
    ctx.store.finish_phase(
        ctx.trading_date, ctx.name, status, now=ctx.clock.now(), detail=detail[:10_000]
    )


def open_context(
    name: str,
    trading_date: date,
    settings: Settings,
    clock: Clock,
    store: Store,
    *,
    process: str | None = None,
    broker_config: AdapterConfig | None = None,
) -> PhaseContext:
    """Return the context of phase ``name`` (opens the phase tables; close ``ctx.data``)."""
    process = process or f"phase_{name}"
    return PhaseContext(
        name=name,
        trading_date=trading_date,
        settings=settings,
        clock=clock,
        store=store,
        data=PhaseData(settings.db_path),
        broker=BrokerLink(settings, clock, broker_config),
        process=process,
        log=logging.getLogger(process),
    )


def body_of(name: str) -> PhaseBody:
    """Return the ``run`` coroutine function of phase module ``phases.<name>``."""
    module = importlib.import_module(f"phases.{name}")
    return module.run
