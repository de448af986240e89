"""Which entry evaluations become ``signal.evaluate`` spans, written after the pass's orders.

A pass evaluates every watchlist symbol, LOOP_INTERVAL_S apart and at every bar close,
and almost always with the outcome of the pass before. A span per evaluation would cost
more than the decision it describes (50 symbols: about 5 ms more per pass, and at 100x
simulation speed some 400 spans to export every 5 s, competing with the next pass). So
a symbol's evaluation is traced the first time and whenever its outcome changes (signal
kind, fire, the failed conditions, the decision): the latest span of a symbol says why
it is, or is not, being bought.

The spans carry the evaluation's own start and end (indicators, signal, quote, size),
and are written after the pass's orders went out (``flush``), so tracing never delays a
buy. Without ``telemetry.tracing.setup_tracing`` they go nowhere, as ``span()``'s do.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from day_trader.decision import EntryPlan, EntrySkip
from day_trader.signals import EntrySignal
from market.clock import ET
from telemetry.tracing import clean_attributes, current

SPAN_NAME = "signal.evaluate"

Outcome = tuple[str | None, bool, tuple[str, ...], str]


@dataclass(frozen=True)
class Evaluation:
    """One symbol's entry evaluation in a pass: its times (ns since the epoch) and result."""

    symbol: str
    started_ns: int
    ended_ns: int
    signal: EntrySignal
    decision: EntryPlan | EntrySkip | None
    bar_time: datetime | None
    market_time: datetime  # the pass's trading-clock instant

    @property
    def outcome(self) -> Outcome:
        """Return what a change of is worth a span: kind, fire, failed conditions, decision."""
        s = self.signal
        return (s.kind, s.fire, s.failed, decision_name(self.decision))

    def attributes(self) -> dict[str, object]:
        """Return the span's attributes."""
        return {
            "symbol": self.symbol,
            "kind": self.signal.kind,
            "fire": self.signal.fire,
            "failed": list(self.signal.failed),
            "reason": self.signal.reason,
            "decision": decision_name(self.decision),
            "bar": self.bar_time.isoformat() if self.bar_time else None,
            "market.time": self.market_time.astimezone(ET).isoformat(),
        }


def decision_name(decision: EntryPlan | EntrySkip | None) -> str:
    """Return ``plan``, ``skip:<reason>`` or ``none``."""
    if isinstance(decision, EntryPlan):
        return "plan"
    return "none" if decision is None else f"skip:{decision.reason}"


class EvaluationSpans:
    """Collect a pass's evaluations; ``flush`` writes the changed ones as spans."""

    def __init__(self) -> None:
        self._last: dict[str, Outcome] = {}  # symbol -> outcome of its latest span
        self._pending: list[Evaluation] = []

    def note(self, evaluation: Evaluation) -> None:
        """Keep ``evaluation`` for ``flush`` when its outcome differs from the last span's."""
        if self._last.get(evaluation.symbol) != evaluation.outcome:
            self._last[evaluation.symbol] = evaluation.outcome
            self._pending.append(evaluation)

    def flush(self) -> int:
        """Write the kept evaluations as ``signal.evaluate`` spans; return how many."""
        pending, self._pending = self._pending, []
        tracing = current()
        if tracing is None or not pending:
            return 0
        tracer = tracing.provider.get_tracer("daytrader")
        for evaluation in pending:
            attributes = clean_attributes(evaluation.attributes())
            span = tracer.start_span(
                SPAN_NAME, attributes=attributes, start_time=evaluation.started_ns
            )
            span.end(end_time=evaluation.ended_ns)
        return len(pending)
