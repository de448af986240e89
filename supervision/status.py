"""The status snapshot: built from the store (plus the running supervisor's own view),
rendered as a readable table or as JSON. Used by the supervisor's periodic display and
by ``scripts/status.py``; ``docs/status.md`` documents the JSON schema.

Where the facts come from:

- ``processes``, ``active_positions``, ``closed_today``, ``daily_state``, ``watchlist``,
  ``phase_runs``: the store.
- The supervisor's own row (``processes`` name ``supervisor``) carries in its
  ``detail`` the mode, the trading date, the clock spec, the active alerts and the last
  broker probe, so a status taken from another process (or after the supervisor
  stopped) sees them too.
- Unrealized P&L uses the ``marks`` (last prices) a child publishes in its row's detail
  (the exit manager does); without a mark it is unknown, not zero.
- Heartbeat age: the supervisor passes its own measurement (real seconds since it saw
  the value change). Another process computes it from the timestamp on the recorded
  clock; a virtual clock shares its wall-clock anchor, so market seconds divided by the
  speed are real seconds there too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from config.settings import Settings
from market.clock import ET, Clock, ClockSpecError, LiveClock, clock_from_spec
from shared_state import ProcessInfo, ProcessState, Store

SCHEMA_VERSION = 1
SUPERVISOR_ROW = "supervisor"

#: Rows in these states are expected to heartbeat.
LIVE_STATES = frozenset({ProcessState.STARTING, ProcessState.RUNNING})
#: Rows in these states mean "the supervisor is looking after it".
MANAGED_STATES = frozenset(
    {ProcessState.STARTING, ProcessState.RUNNING, ProcessState.BACKOFF, ProcessState.STOPPING}
)


# ------------------------------------------------------------------ snapshot types


@dataclass(frozen=True)
class ProcessRow:
    name: str
    state: str
    pid: int | None
    since: datetime
    restarts: int
    ready: bool
    last_heartbeat: datetime | None
    heartbeat_age_s: float | None
    heartbeat_stale: bool
    last_error: str | None
    note: str


@dataclass(frozen=True)
class BrokerRow:
    mode: str
    host: str
    port: int
    reachable: bool | None  # None: not probed
    detail: str


@dataclass(frozen=True)
class DailyRow:
    trading_date: date
    starting_capital: float | None
    realized_pnl: float
    unrealized_pnl: float | None
    total_pnl: float | None
    pnl_pct: float | None
    target_pct: float
    target_progress_pct: float | None
    trades_count: int
    daily_target_reached: bool
    halted: bool
    halt_reason: str | None


@dataclass(frozen=True)
class PositionRow:
    symbol: str
    state: str
    quantity: int
    entry_price: float | None
    last_price: float | None
    unrealized_pnl: float | None
    target_price: float | None
    stop_price: float | None
    is_recovery: bool
    source: str
    opened_at: datetime


@dataclass(frozen=True)
class ClosedRow:
    symbol: str
    quantity: int
    entry_price: float
    exit_price: float
    pnl: float
    exit_reason: str
    reentry_allowed: bool
    is_recovery: bool
    closed_at: datetime


@dataclass(frozen=True)
class WatchRow:
    rank: int
    symbol: str
    score: float
    source: str
    gap_pct: float | None
    validated: bool
    reason: str


@dataclass(frozen=True)
class PhaseRow:
    phase: str
    time: datetime | None
    status: str | None
    started_at: datetime | None
    ended_at: datetime | None
    detail: str | None


@dataclass(frozen=True)
class ErrorRow:
    kind: str  # process_fatal | heartbeat_stale | supervisor_gone | phase_failed | alert
    process: str | None
    message: str


@dataclass(frozen=True)
class SupervisorRow:
    running: bool
    pid: int | None
    started_at: str | None


@dataclass(frozen=True)
class Snapshot:
    schema: int
    generated_at: datetime
    trading_date: date
    mode: str
    supervisor: SupervisorRow
    processes: tuple[ProcessRow, ...]
    broker: BrokerRow
    daily_state: DailyRow
    active_positions: tuple[PositionRow, ...]
    closed_today: tuple[ClosedRow, ...]
    watchlist: tuple[WatchRow, ...]
    phases: tuple[PhaseRow, ...]
    errors: tuple[ErrorRow, ...]

    @property
    def needs_attention(self) -> bool:
        return bool(self.errors)


@dataclass(frozen=True)
class LiveView:
    """What only the running supervisor knows; ``None`` fields fall back to the store."""

    heartbeat_ages: Mapping[str, float] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    broker: BrokerRow | None = None
    phase_times: Mapping[str, datetime] = field(default_factory=dict)
    now: datetime | None = None  # the supervisor's trading-clock instant


# ------------------------------------------------------------------------ building


def build_snapshot(
    store: Store,
    settings: Settings,
    *,
    trading_date: date | None = None,
    supervisor: SupervisorRow,
    view: LiveView | None = None,
    probe_broker: bool = True,
) -> Snapshot:
    """Return the status of the system as the store (and ``view``) show it now."""
    view = view or LiveView()
    rows = store.processes()
    info = _supervisor_detail(rows)
    clock = _clock(info)
    # A virtual clock keeps running after its supervisor stopped: then say the real time.
    now = view.now or (clock.now() if supervisor.running else LiveClock().now())
    day = trading_date or _date(info.get("trading_date")) or now.astimezone(ET).date()
    mode = str(info.get("mode") or settings.broker)
    processes = tuple(_process_row(p, clock, settings, view) for p in rows)
    marks = _marks(rows)
    positions = tuple(_position_row(p, marks) for p in store.active_positions())
    broker = view.broker or _broker_row(settings, mode, info, probe_broker)
    phases = _phase_rows(store, day, view.phase_times or info.get("phase_times") or {})
    return Snapshot(
        schema=SCHEMA_VERSION,
        generated_at=now,
        trading_date=day,
        mode=mode,
        supervisor=supervisor,
        processes=processes,
        broker=broker,
        daily_state=_daily_row(store, day, settings, positions),
        active_positions=positions,
        closed_today=tuple(_closed_row(c) for c in store.closed_today(day)),
        watchlist=tuple(_watch_row(w) for w in store.watchlist(day)),
        phases=phases,
        errors=tuple(_errors(processes, phases, supervisor, info.get("alerts") or [])),
    )


def process_rows(
    store: Store, settings: Settings, clock: Clock | None = None
) -> tuple[ProcessRow, ...]:
    """Return every process as the status shows it (state, heartbeat age, staleness).

    Heartbeat ages are read on ``clock``, by default the one the supervisor published.
    """
    rows = store.processes()
    clock = clock or published_clock(rows)
    return tuple(_process_row(p, clock, settings, LiveView()) for p in rows)


def published_clock(rows: Sequence[ProcessInfo]) -> Clock:
    """Return the trading clock the supervisor published in its row (else the wall clock)."""
    return _clock(_supervisor_detail(rows))


def published_marks(rows: Iterable[ProcessInfo]) -> dict[str, float]:
    """Return the last prices the children published (the exit manager's ``marks``)."""
    return _marks(rows)


def _supervisor_detail(rows: Sequence[ProcessInfo]) -> dict[str, Any]:
    row = next((p for p in rows if p.name == SUPERVISOR_ROW), None)
    return dict(row.detail) if row is not None else {}


def _clock(info: Mapping[str, Any]) -> Clock:
    try:
        return clock_from_spec(str(info.get("clock") or "live"))
    except ClockSpecError:
        return LiveClock()


def _date(text: object) -> date | None:
    try:
        return date.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def _heartbeat_age(p: ProcessInfo, clock: Clock, view: LiveView) -> float | None:
    if p.name in view.heartbeat_ages:
        return view.heartbeat_ages[p.name]
    if p.last_heartbeat is None:
        return None
    market_seconds = (clock.now() - p.last_heartbeat).total_seconds()
    return max(0.0, clock.to_real_seconds(market_seconds))


def _process_row(p: ProcessInfo, clock: Clock, settings: Settings, view: LiveView) -> ProcessRow:
    age = _heartbeat_age(p, clock, view)
    stale = p.state in LIVE_STATES and age is not None and age > settings.heartbeat_timeout_s
    return ProcessRow(
        name=p.name,
        state=p.state.value,
        pid=p.pid,
        since=p.since,
        restarts=p.restarts,
        ready=p.ready,
        last_heartbeat=p.last_heartbeat,
        heartbeat_age_s=None if age is None else round(age, 2),
        heartbeat_stale=stale,
        last_error=p.last_error,
        note=view.notes.get(p.name, ""),
    )


def _marks(rows: Iterable[ProcessInfo]) -> dict[str, float]:
    marks: dict[str, float] = {}
    for p in rows:
        published = p.detail.get("marks")
        if isinstance(published, Mapping):
            for symbol, price in published.items():
                if isinstance(price, int | float):
                    marks[str(symbol)] = float(price)
    return marks


def _position_row(p: Any, marks: Mapping[str, float]) -> PositionRow:
    last = marks.get(p.symbol)
    unrealized = None
    if last is not None and p.entry_price is not None:
        unrealized = round((last - p.entry_price) * p.quantity, 2)
    return PositionRow(
        symbol=p.symbol,
        state=p.state.value,
        quantity=p.quantity,
        entry_price=p.entry_price,
        last_price=last,
        unrealized_pnl=unrealized,
        target_price=p.target_price,
        stop_price=p.stop_price,
        is_recovery=p.is_recovery,
        source=p.source,
        opened_at=p.opened_at,
    )


def _daily_row(
    store: Store, day: date, settings: Settings, positions: Sequence[PositionRow]
) -> DailyRow:
    state = store.daily_state(day)
    realized = state.realized_pnl if state else 0.0
    capital = state.starting_capital if state else None
    open_rows = [p for p in positions if p.state != "ENTRY_PENDING"]
    known = [p.unrealized_pnl for p in open_rows]
    unrealized = None if any(u is None for u in known) else round(sum(u or 0.0 for u in known), 2)
    total = None if unrealized is None else round(realized + unrealized, 2)
    pct = None if total is None or not capital else round(total / capital * 100.0, 3)
    progress = None if pct is None else round(pct / settings.daily_target_pct * 100.0, 1)
    return DailyRow(
        trading_date=day,
        starting_capital=capital,
        realized_pnl=round(realized, 2),
        unrealized_pnl=unrealized,
        total_pnl=total,
        pnl_pct=pct,
        target_pct=settings.daily_target_pct,
        target_progress_pct=progress,
        trades_count=state.trades_count if state else 0,
        daily_target_reached=bool(state and state.daily_target_reached),
        halted=bool(state and state.halted),
        halt_reason=state.halt_reason if state else None,
    )


def _closed_row(c: Any) -> ClosedRow:
    return ClosedRow(
        symbol=c.symbol,
        quantity=c.quantity,
        entry_price=c.entry_price,
        exit_price=c.exit_price,
        pnl=round(c.pnl, 2),
        exit_reason=c.exit_reason.value,
        reentry_allowed=c.reentry_allowed,
        is_recovery=c.is_recovery,
        closed_at=c.closed_at,
    )


def _watch_row(w: Any) -> WatchRow:
    return WatchRow(
        rank=w.rank,
        symbol=w.symbol,
        score=w.score,
        source=w.source.value,
        gap_pct=w.gap_pct,
        validated=w.validated,
        reason=w.reason,
    )


def _phase_rows(store: Store, day: date, times: Mapping[str, Any]) -> tuple[PhaseRow, ...]:
    runs = {r.phase: r for r in store.phase_runs(day)}
    when = {name: at if isinstance(at, datetime) else _instant(at) for name, at in times.items()}
    names = sorted(when, key=lambda n: (when[n] is None, when[n] or datetime.min, n))
    names += [name for name in runs if name not in when]
    rows = []
    for name in names:
        run = runs.get(name)
        rows.append(
            PhaseRow(
                phase=name,
                time=when.get(name),
                status=None if run is None else run.status.value,
                started_at=None if run is None else run.started_at,
                ended_at=None if run is None else run.ended_at,
                detail=None if run is None else run.detail,
            )
        )
    return tuple(rows)


def _instant(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


def _broker_row(settings: Settings, mode: str, info: Mapping[str, Any], probe: bool) -> BrokerRow:
    from supervision.schedule import port_open  # the socket probe; kept out of the import path

    host = settings.ib_host if mode == "ibkr" else "127.0.0.1"
    port = settings.ib_port if mode == "ibkr" else settings.sim_port
    if probe:
        reachable: bool | None = port_open(host, port, timeout=0.3)
        detail = "API port accepts connections" if reachable else "API port not reachable"
    else:
        recorded = info.get("broker") if isinstance(info.get("broker"), Mapping) else {}
        reachable = recorded.get("reachable") if recorded else None
        detail = str(recorded.get("detail", "not probed")) if recorded else "not probed"
    return BrokerRow(mode=mode, host=host, port=port, reachable=reachable, detail=detail)


def _errors(
    processes: Sequence[ProcessRow],
    phases: Sequence[PhaseRow],
    supervisor: SupervisorRow,
    alerts: Iterable[Any],
) -> list[ErrorRow]:
    errors = _process_errors(processes, supervisor)
    for r in phases:
        if r.status == "FAILED":
            why = f": {r.detail}" if r.detail else ""
            errors.append(ErrorRow("phase_failed", None, f"phase {r.phase} failed{why}"))
    for alert in alerts:
        # A failed phase is reported from phase_runs above, also after the supervisor left.
        if isinstance(alert, Mapping) and not str(alert.get("key", "")).startswith("phase:"):
            errors.append(ErrorRow("alert", alert.get("process"), str(alert.get("message"))))
    return errors


def _process_errors(processes: Sequence[ProcessRow], supervisor: SupervisorRow) -> list[ErrorRow]:
    errors = []
    for p in processes:
        if p.state == ProcessState.FATAL.value:
            why = f": {p.last_error}" if p.last_error else ""
            errors.append(ErrorRow("process_fatal", p.name, f"{p.name} is FATAL{why}"))
        elif p.heartbeat_stale:
            errors.append(
                ErrorRow(
                    "heartbeat_stale",
                    p.name,
                    f"{p.name} is {p.state} but its heartbeat is {p.heartbeat_age_s:.0f} s old",
                )
            )
    if not supervisor.running:
        for p in processes:
            if p.name != SUPERVISOR_ROW and ProcessState(p.state) in MANAGED_STATES:
                errors.append(
                    ErrorRow(
                        "supervisor_gone",
                        p.name,
                        f"no supervisor is running but {p.name} is marked {p.state} "
                        "(the last run ended without a clean stop)",
                    )
                )
    return errors


# ----------------------------------------------------------------------- rendering


def to_json(snapshot: Snapshot) -> dict[str, Any]:
    """Return the snapshot as JSON-ready data (the schema of docs/status.md)."""
    return _plain(dataclasses.asdict(snapshot))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _et(value: datetime | None, with_date: bool = False) -> str:
    if value is None:
        return "-"
    return value.astimezone(ET).strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def _money(value: float | None, signed: bool = True) -> str:
    if value is None:
        return "n/a"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "  "
) -> list[str]:
    """Return the lines of a plain-text table with left-aligned columns."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return [line.rstrip() for line in lines]


def render(snapshot: Snapshot) -> str:
    """Return the snapshot as the readable status display."""
    s = snapshot
    sup = "running" if s.supervisor.running else "not running"
    pid = f", pid {s.supervisor.pid}" if s.supervisor.pid else ""
    lines = [
        f"=== STATUS {_et(s.generated_at, True)} ET | trading day {s.trading_date} | "
        f"{s.mode} | supervisor {sup}{pid} ===",
        "Processes",
        *_process_lines(s.processes),
        _broker_line(s.broker),
        *_phase_line(s.phases),
        *_position_lines(s.active_positions),
        _pnl_line(s.daily_state),
        *_closed_lines(s.closed_today),
        *_watch_line(s.watchlist),
        *_error_lines(s.errors),
    ]
    return "\n".join(lines)


def _process_lines(rows: Sequence[ProcessRow]) -> list[str]:
    if not rows:
        return ["  (no processes recorded yet)"]
    body = [
        (
            p.name,
            p.state,
            p.pid or "-",
            _et(p.since),
            p.restarts,
            "-"
            if p.heartbeat_age_s is None
            else f"{p.heartbeat_age_s:.1f}s" + (" STALE" if p.heartbeat_stale else ""),
            p.note or (p.last_error or "")[:60],
        )
        for p in rows
    ]
    return table(("name", "state", "pid", "since(ET)", "restarts", "heartbeat", "note"), body)


def _broker_line(b: BrokerRow) -> str:
    state = {True: "connected", False: "NOT REACHABLE", None: "unknown"}[b.reachable]
    return f"Broker: {b.mode} {b.host}:{b.port} {state} ({b.detail})"


def _phase_line(rows: Sequence[PhaseRow]) -> list[str]:
    if not rows:
        return []
    parts = []
    for r in rows:
        at = r.time.astimezone(ET).strftime("%H:%M") if r.time else "--:--"
        parts.append(f"{r.phase} {at} {r.status or 'pending'}")
    return ["Phases: " + " | ".join(parts)]


def _position_lines(rows: Sequence[PositionRow]) -> list[str]:
    head = f"Positions ({len(rows)})"
    if not rows:
        return [head + ": none"]
    body = [
        (
            p.symbol + (" (recovery)" if p.is_recovery else ""),
            p.state,
            p.quantity,
            _num(p.entry_price),
            _num(p.last_price),
            _money(p.unrealized_pnl),
            _num(p.target_price),
            _num(p.stop_price),
        )
        for p in rows
    ]
    headers = ("symbol", "state", "qty", "entry", "last", "unrealized", "target", "stop")
    return [head, *table(headers, body)]


def _pnl_line(d: DailyRow) -> str:
    capital = "unknown" if d.starting_capital is None else _money(d.starting_capital, False)
    pct = "n/a" if d.pnl_pct is None else f"{d.pnl_pct:+.2f}%"
    progress = "" if d.target_progress_pct is None else f" ({d.target_progress_pct:.0f}% of it)"
    flags = " TARGET REACHED" if d.daily_target_reached else ""
    flags += f" HALTED ({d.halt_reason})" if d.halted else ""
    return (
        f"P&L: realized {_money(d.realized_pnl)}, unrealized {_money(d.unrealized_pnl)}, "
        f"total {_money(d.total_pnl)} = {pct} of {capital}; daily target "
        f"{d.target_pct:+.2f}%{progress}; trades {d.trades_count}{flags}"
    )


def _closed_lines(rows: Sequence[ClosedRow]) -> list[str]:
    head = f"Closed today ({len(rows)})"
    if not rows:
        return [head + ": none"]
    body = [
        (
            c.symbol,
            c.quantity,
            _num(c.entry_price),
            _num(c.exit_price),
            _money(c.pnl),
            c.exit_reason,
            "yes" if c.reentry_allowed else "no",
            _et(c.closed_at),
        )
        for c in rows
    ]
    headers = ("symbol", "qty", "entry", "exit", "pnl", "reason", "re-entry", "at(ET)")
    return [head, *table(headers, body)]


def _watch_line(rows: Sequence[WatchRow]) -> list[str]:
    if not rows:
        return ["Watchlist: empty"]
    names = ", ".join(w.symbol + ("" if w.validated else "?") for w in rows)
    return [f"Watchlist ({len(rows)}, ? = not validated): {names}"]


def _error_lines(rows: Sequence[ErrorRow]) -> list[str]:
    if not rows:
        return ["Attention: nothing needs attention"]
    return ["ATTENTION", *(f"  ! {e.message}" for e in rows)]
