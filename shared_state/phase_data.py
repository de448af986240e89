"""What the phases found and decided, per trading date: candidates, bars, snapshots, LLM
calls, parameter suggestions and the day's evaluation.

These tables sit in the shared-state file next to the contract tables of ``schema.py``
but are not part of them (nor of ``SCHEMA_VERSION``): they are created here when
missing, after the ``Store`` has stamped the file, and only the phases write them. The
day trader and the exit manager read one thing: ``parameters_for(day)``, the target,
stop and size the post-close evaluation applied for that day (None: the settings).

Every table is keyed by trading date, so a phase that runs again for a date replaces
its own rows for that date and nothing else; each method is one transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ColumnElement,
    Connection,
    Integer,
    MetaData,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)

from shared_state import schema
from shared_state.db import Database
from shared_state.errors import StoreError
from shared_state.schema import IsoDate, Real, UtcDateTime

metadata = MetaData()


def _date_key() -> Column[Any]:
    return Column("trading_date", IsoDate, nullable=False)


candidates = Table(
    "phase_candidates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _date_key(),
    Column("symbol", String(16), nullable=False),
    Column("position", Integer, nullable=False),  # order in which the sources offered it
    Column("sources", Text, nullable=False),  # JSON list, e.g. ["scan:TOP_PERC_GAIN#3"]
    Column("price", Real),
    Column("avg_volume", Real),
    Column("passed", Boolean, nullable=False),
    Column("reason", Text, nullable=False),
    UniqueConstraint("trading_date", "symbol", name="uq_phase_candidates"),
)

daily_bars = Table(
    "phase_daily_bars",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _date_key(),
    Column("symbol", String(16), nullable=False),
    Column("bar_date", IsoDate, nullable=False),
    Column("open", Real, nullable=False),
    Column("high", Real, nullable=False),
    Column("low", Real, nullable=False),
    Column("close", Real, nullable=False),
    Column("volume", Real, nullable=False),
    UniqueConstraint("trading_date", "symbol", "bar_date", name="uq_phase_daily_bars"),
)

snapshots = Table(
    "phase_snapshots",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _date_key(),
    Column("symbol", String(16), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("prior_close", Real),
    Column("avg_volume", Real),
    Column("atr_pct", Real),
    Column("trend", String(8)),
    Column("return_20d_pct", Real),
    Column("reason", Text, nullable=False),
    UniqueConstraint("trading_date", "symbol", name="uq_phase_snapshots"),
)

premarket = Table(
    "phase_premarket",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _date_key(),
    Column("symbol", String(16), nullable=False),
    Column("rank", Integer, nullable=False),
    Column("last_price", Real),
    Column("gap_pct", Real),
    Column("momentum", Real),
    Column("gap_and_go", Boolean, nullable=False),
    Column("final_score", Real, nullable=False),
    Column("reason", Text, nullable=False),
    Column("detail", Text, nullable=False, default="{}"),
    UniqueConstraint("trading_date", "symbol", name="uq_phase_premarket"),
)

llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _date_key(),
    Column("purpose", String(32), nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime),
    Column("outcome", String(32), nullable=False),  # 'started' until finished
    Column("latency_ms", Real),
    Column("reason", Text),
)

suggestions = Table(
    "param_suggestions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _date_key(),
    Column("parameter", String(32), nullable=False),
    Column("current_value", Real, nullable=False),
    Column("proposed_value", Real, nullable=False),
    Column("reason", Text, nullable=False),
    Column("accepted", Boolean, nullable=False),
    Column("verdict", Text, nullable=False),
    Column("current_pnl", Real),
    Column("candidate_pnl", Real),
    Column("detail", Text, nullable=False, default="{}"),
)

parameter_sets = Table(
    "param_sets",
    metadata,
    Column("effective_date", IsoDate, primary_key=True),
    Column("profit_target_pct", Real, nullable=False),
    Column("stop_loss_pct", Real, nullable=False),
    Column("size_pct", Real, nullable=False),
    Column("recovery_target_pct", Real, nullable=False),
    Column("decided_on", IsoDate, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
)

evaluations = Table(
    "daily_evaluations",
    metadata,
    Column("trading_date", IsoDate, primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("metrics", Text, nullable=False),
    Column("regime", String(32), nullable=False),
    Column("regime_detail", Text, nullable=False),
    Column("insights", Text, nullable=False),
    Column("insights_source", String(64), nullable=False),
    Column("report_files", Text, nullable=False),
)


# --------------------------------------------------------------------------- snapshots


@dataclass(frozen=True)
class Candidate:
    """A symbol the universe phase was offered, and whether it passed the filters."""

    symbol: str
    position: int
    sources: tuple[str, ...]
    price: float | None
    avg_volume: float | None
    passed: bool
    reason: str


@dataclass(frozen=True)
class DailyBar:
    bar_date: date
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True)
class SymbolSnapshot:
    """The data phase's figures of one candidate, from daily bars before the trading date."""

    symbol: str
    ok: bool
    sessions: int
    prior_close: float | None
    avg_volume: float | None
    atr_pct: float | None
    trend: str | None  # 'up', 'down', 'flat'
    return_20d_pct: float | None
    reason: str


@dataclass(frozen=True)
class PremarketSnapshot:
    """The pre-market phase's figures and final rank of one watchlist symbol."""

    symbol: str
    rank: int
    last_price: float | None
    gap_pct: float | None
    momentum: float | None
    gap_and_go: bool
    final_score: float
    reason: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LlmCall:
    id: int
    trading_date: date
    purpose: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    latency_ms: float | None
    reason: str | None


@dataclass(frozen=True)
class SuggestionRecord:
    """A parameter suggestion and the replay's verdict on it."""

    parameter: str
    current_value: float
    proposed_value: float
    reason: str
    accepted: bool
    verdict: str
    current_pnl: float | None
    candidate_pnl: float | None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ParameterSet:
    """Target, stop and size (percentages) in force from ``effective_date`` on."""

    effective_date: date
    profit_target_pct: float
    stop_loss_pct: float
    size_pct: float  # ALLOCATION as a percentage of ExcessLiquidity
    recovery_target_pct: float
    decided_on: date
    created_at: datetime
    reason: str


@dataclass(frozen=True)
class Evaluation:
    trading_date: date
    created_at: datetime
    metrics: Mapping[str, Any]
    regime: str
    regime_detail: Mapping[str, Any]
    insights: Sequence[str]
    insights_source: str
    report_files: Sequence[str]


def _finite(value: float | None) -> float | None:
    """Return None for a missing or non-finite number (SQLite has no NaN)."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, allow_nan=False)


# --------------------------------------------------------------------------- the store


class PhaseData:
    """The phase tables of the shared-state file at ``path`` (open the ``Store`` first)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._db = Database(self.path, busy_timeout_ms=busy_timeout_ms)
        self._db.write(self._create)

    def _create(self, conn: Connection) -> None:
        # A file without the Store's stamp would refuse the contract tables later
        # ("holds tables but no shared_state stamp"), so never create ours first.
        if schema.check_version(conn, self.path) != schema.SCHEMA_VERSION:
            raise StoreError(f"{self.path}: open the Store (create=True) before PhaseData")
        metadata.create_all(conn, checkfirst=True)

    def close(self) -> None:
        """Close this process's connections."""
        self._db.dispose()

    def _day_rows[T](
        self,
        table: Table,
        trading_date: date,
        order_by: ColumnElement[Any],
        convert: Callable[[Row[Any]], T],
        *where: ColumnElement[bool],
    ) -> list[T]:
        """Return ``table``'s rows of ``trading_date`` (and ``where``) by ``order_by``."""
        query = select(table).where(table.c.trading_date == trading_date, *where)
        query = query.order_by(order_by)
        return self._db.read(lambda conn: [convert(r) for r in conn.execute(query)])

    # ------------------------------------------------------------------ candidates

    def replace_candidates(self, trading_date: date, rows: Sequence[Candidate]) -> int:
        """Replace the day's candidates with ``rows``; return how many were written."""
        values = [
            {
                "trading_date": trading_date,
                "symbol": r.symbol,
                "position": r.position,
                "sources": _json(list(r.sources)),
                "price": _finite(r.price),
                "avg_volume": _finite(r.avg_volume),
                "passed": r.passed,
                "reason": r.reason,
            }
            for r in rows
        ]
        return self._db.write(lambda conn: _replace(conn, candidates, trading_date, values))

    def candidates(self, trading_date: date, *, passed_only: bool = False) -> list[Candidate]:
        """Return the day's candidates in the order the sources offered them."""
        only = (candidates.c.passed.is_(True),) if passed_only else ()
        return self._day_rows(candidates, trading_date, candidates.c.position, _candidate, *only)

    # ------------------------------------------------------------------ daily bars

    def put_daily_bars(self, trading_date: date, symbol: str, bars: Sequence[DailyBar]) -> int:
        """Store ``symbol``'s daily bars as fetched on ``trading_date`` (replacing earlier ones)."""
        values = [{"trading_date": trading_date, "symbol": symbol, **asdict(b)} for b in bars]

        def work(conn: Connection) -> int:
            conn.execute(
                daily_bars.delete().where(
                    daily_bars.c.trading_date == trading_date, daily_bars.c.symbol == symbol
                )
            )
            if values:
                conn.execute(daily_bars.insert(), values)
            return len(values)

        return self._db.write(work)

    def daily_bars(self, trading_date: date, symbol: str) -> list[DailyBar]:
        """Return ``symbol``'s stored daily bars of ``trading_date``, oldest first."""
        query = (
            select(daily_bars)
            .where(daily_bars.c.trading_date == trading_date, daily_bars.c.symbol == symbol)
            .order_by(daily_bars.c.bar_date)
        )
        return self._db.read(
            lambda conn: [
                DailyBar(r.bar_date, r.open, r.high, r.low, r.close, r.volume)
                for r in conn.execute(query)
            ]
        )

    def bar_counts(self, trading_date: date) -> dict[str, int]:
        """Return how many daily bars are stored per symbol for ``trading_date``."""
        query = (
            select(daily_bars.c.symbol, func.count())
            .where(daily_bars.c.trading_date == trading_date)
            .group_by(daily_bars.c.symbol)
        )
        return self._db.read(lambda conn: {s: int(n) for s, n in conn.execute(query)})

    # ------------------------------------------------------------------ snapshots

    def replace_snapshots(self, trading_date: date, rows: Sequence[SymbolSnapshot]) -> int:
        """Replace the day's symbol snapshots with ``rows``."""
        values = [
            {
                "trading_date": trading_date,
                "symbol": r.symbol,
                "ok": r.ok,
                "sessions": r.sessions,
                "prior_close": _finite(r.prior_close),
                "avg_volume": _finite(r.avg_volume),
                "atr_pct": _finite(r.atr_pct),
                "trend": r.trend,
                "return_20d_pct": _finite(r.return_20d_pct),
                "reason": r.reason,
            }
            for r in rows
        ]
        return self._db.write(lambda conn: _replace(conn, snapshots, trading_date, values))

    def snapshots(self, trading_date: date, *, ok_only: bool = False) -> list[SymbolSnapshot]:
        """Return the day's symbol snapshots by symbol."""
        only = (snapshots.c.ok.is_(True),) if ok_only else ()
        return self._day_rows(snapshots, trading_date, snapshots.c.symbol, _snapshot, *only)

    def replace_premarket(self, trading_date: date, rows: Sequence[PremarketSnapshot]) -> int:
        """Replace the day's pre-market snapshots with ``rows``."""
        values = [
            {
                "trading_date": trading_date,
                "symbol": r.symbol,
                "rank": r.rank,
                "last_price": _finite(r.last_price),
                "gap_pct": _finite(r.gap_pct),
                "momentum": _finite(r.momentum),
                "gap_and_go": r.gap_and_go,
                "final_score": _finite(r.final_score) or 0.0,
                "reason": r.reason,
                "detail": _json(dict(r.detail)),
            }
            for r in rows
        ]
        return self._db.write(lambda conn: _replace(conn, premarket, trading_date, values))

    def premarket(self, trading_date: date) -> list[PremarketSnapshot]:
        """Return the day's pre-market snapshots by rank."""
        return self._day_rows(premarket, trading_date, premarket.c.rank, _premarket)

    # ------------------------------------------------------------------ LLM calls

    def reserve_llm_call(
        self, trading_date: date, purpose: str, cap: int, now: datetime
    ) -> int | None:
        """Count a call against the day's cap and return its id; None when the cap is reached.

        Count and insert are one ``BEGIN IMMEDIATE`` transaction, so two processes can
        never both take the last call.
        """

        def work(conn: Connection) -> int | None:
            used = conn.execute(
                select(func.count())
                .select_from(llm_calls)
                .where(llm_calls.c.trading_date == trading_date)
            ).scalar_one()
            if used >= cap:
                return None
            result = conn.execute(
                llm_calls.insert(),
                {
                    "trading_date": trading_date,
                    "purpose": purpose,
                    "started_at": now,
                    "outcome": "started",
                },
            )
            return int(result.lastrowid)

        return self._db.write(work)

    def finish_llm_call(
        self, call_id: int, outcome: str, *, now: datetime, latency_ms: float, reason: str | None
    ) -> None:
        """Record how a reserved call ended."""
        statement = (
            llm_calls.update()
            .where(llm_calls.c.id == call_id)
            .values(ended_at=now, outcome=outcome, latency_ms=latency_ms, reason=reason)
        )
        self._db.write(lambda conn: conn.execute(statement))

    def llm_calls(self, trading_date: date) -> list[LlmCall]:
        """Return the day's LLM calls, oldest first."""
        query = (
            select(llm_calls)
            .where(llm_calls.c.trading_date == trading_date)
            .order_by(llm_calls.c.id)
        )
        return self._db.read(
            lambda conn: [
                LlmCall(
                    r.id,
                    r.trading_date,
                    r.purpose,
                    r.started_at,
                    r.ended_at,
                    r.outcome,
                    r.latency_ms,
                    r.reason,
                )
                for r in conn.execute(query)
            ]
        )

    # ------------------------------------------------------------------ parameters

    def replace_suggestions(self, trading_date: date, rows: Sequence[SuggestionRecord]) -> int:
        """Replace the day's parameter suggestions (with their verdicts)."""
        values = [
            {
                "trading_date": trading_date,
                "parameter": r.parameter,
                "current_value": r.current_value,
                "proposed_value": r.proposed_value,
                "reason": r.reason,
                "accepted": r.accepted,
                "verdict": r.verdict,
                "current_pnl": _finite(r.current_pnl),
                "candidate_pnl": _finite(r.candidate_pnl),
                "detail": _json(dict(r.detail)),
            }
            for r in rows
        ]
        return self._db.write(lambda conn: _replace(conn, suggestions, trading_date, values))

    def suggestions(self, trading_date: date) -> list[SuggestionRecord]:
        """Return the day's parameter suggestions in the order they were made."""
        return self._day_rows(suggestions, trading_date, suggestions.c.id, _suggestion)

    def set_parameters(self, params: ParameterSet) -> None:
        """Record the parameters in force from ``params.effective_date`` (replacing that day's)."""
        row = asdict(params)

        def work(conn: Connection) -> None:
            conn.execute(
                parameter_sets.delete().where(
                    parameter_sets.c.effective_date == params.effective_date
                )
            )
            conn.execute(parameter_sets.insert(), row)

        self._db.write(work)

    def parameters_for(self, trading_date: date) -> ParameterSet | None:
        """Return the parameters in force on ``trading_date``: the latest set on or before it."""
        query = (
            select(parameter_sets)
            .where(parameter_sets.c.effective_date <= trading_date)
            .order_by(parameter_sets.c.effective_date.desc())
            .limit(1)
        )

        def work(conn: Connection) -> ParameterSet | None:
            row = conn.execute(query).first()
            if row is None:
                return None
            return ParameterSet(**{c.name: getattr(row, c.name) for c in parameter_sets.c})

        return self._db.read(work)

    # ------------------------------------------------------------------ evaluation

    def put_evaluation(self, evaluation: Evaluation) -> None:
        """Record (or replace) the day's post-close evaluation."""
        row = {
            "trading_date": evaluation.trading_date,
            "created_at": evaluation.created_at,
            "metrics": _json(dict(evaluation.metrics)),
            "regime": evaluation.regime,
            "regime_detail": _json(dict(evaluation.regime_detail)),
            "insights": _json(list(evaluation.insights)),
            "insights_source": evaluation.insights_source,
            "report_files": _json(list(evaluation.report_files)),
        }

        def work(conn: Connection) -> None:
            conn.execute(
                evaluations.delete().where(evaluations.c.trading_date == evaluation.trading_date)
            )
            conn.execute(evaluations.insert(), row)

        self._db.write(work)

    def evaluation(self, trading_date: date) -> Evaluation | None:
        """Return the day's post-close evaluation, if any."""
        query = select(evaluations).where(evaluations.c.trading_date == trading_date)

        def work(conn: Connection) -> Evaluation | None:
            r = conn.execute(query).first()
            if r is None:
                return None
            return Evaluation(
                trading_date=r.trading_date,
                created_at=r.created_at,
                metrics=json.loads(r.metrics),
                regime=r.regime,
                regime_detail=json.loads(r.regime_detail),
                insights=json.loads(r.insights),
                insights_source=r.insights_source,
                report_files=json.loads(r.report_files),
            )

        return self._db.read(work)


# --------------------------------------------------------------------------- helpers


def _replace(
    conn: Connection, table: Table, trading_date: date, values: Sequence[dict[str, Any]]
) -> int:
    conn.execute(table.delete().where(table.c.trading_date == trading_date))
    if values:
        conn.execute(table.insert(), list(values))
    return len(values)


def _candidate(r: Any) -> Candidate:
    return Candidate(
        symbol=r.symbol,
        position=r.position,
        sources=tuple(json.loads(r.sources)),
        price=r.price,
        avg_volume=r.avg_volume,
        passed=bool(r.passed),
        reason=r.reason,
    )


def _snapshot(r: Any) -> SymbolSnapshot:
    return SymbolSnapshot(
        symbol=r.symbol,
        ok=bool(r.ok),
        sessions=r.sessions,
        prior_close=r.prior_close,
        avg_volume=r.avg_volume,
        atr_pct=r.atr_pct,
        trend=r.trend,
        return_20d_pct=r.return_20d_pct,
        reason=r.reason,
    )


def _premarket(r: Any) -> PremarketSnapshot:
    return PremarketSnapshot(
        symbol=r.symbol,
        rank=r.rank,
        last_price=r.last_price,
        gap_pct=r.gap_pct,
        momentum=r.momentum,
        gap_and_go=bool(r.gap_and_go),
        final_score=r.final_score,
        reason=r.reason,
        detail=json.loads(r.detail),
    )


def _suggestion(r: Any) -> SuggestionRecord:
    return SuggestionRecord(
        parameter=r.parameter,
        current_value=r.current_value,
        proposed_value=r.proposed_value,
        reason=r.reason,
        accepted=bool(r.accepted),
        verdict=r.verdict,
        current_pnl=r.current_pnl,
        candidate_pnl=r.candidate_pnl,
        detail=json.loads(r.detail),
    )
