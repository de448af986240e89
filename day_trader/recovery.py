"""Restart: resolve this process's unfinished entries at the broker, before anything else.

The day trader is the process expected to crash and be restarted during the day; a
restart must never produce a second buy (design section 4; NautilusTrader: reconcile
with the venue before trading). So, once connected and before it reports ready:

1. read its own unfinished entries: live BUY orders whose ``order_ref`` carries this
   client id, and ENTRY_PENDING rows of such orders (``entries.read_pending``);
2. wait until every intent is at least the adapter's ack timeout old (real seconds): an
   order sent just before the crash may still be on its way;
3. take a fresh reconciliation snapshot (open orders of all clients, completed orders,
   executions) and look each entry up by order_ref (then perm id, then executions);
4. an order found is *adopted*: its ids, status and fills go to the DB and the position
   becomes OPEN with the filled quantity (or its row is removed when the order ended
   with nothing filled); it is never sent again;
5. an order not found: an intent never acknowledged is proven never to have reached the
   broker (a fresh snapshot taken after the ack timeout has no trace of it, and the
   process that could have sent it is gone: the broker lets only one connection use a
   client id) and is cancelled with its row; an order the broker had acknowledged stays
   UNKNOWN, keeping its row (and so the symbol) claimed, and the loop keeps asking.

A ``recovery`` event records what happened to each entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from day_trader.entries import EntryBook, EntryPhase, PendingEntry, read_pending
from shared_state import OrderStatus

log = logging.getLogger("day_trader.recovery")


@dataclass(frozen=True)
class RecoveryReport:
    """What the restart found, by order_ref."""

    adopted: tuple[str, ...] = ()
    never_sent: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()
    settled: tuple[str, ...] = ()  # found done with nothing filled: row removed

    @property
    def count(self) -> int:
        return len(self.adopted) + len(self.never_sent) + len(self.unknown) + len(self.settled)


async def recover(book: EntryBook, session_close: datetime | None) -> RecoveryReport:
    """Resolve every unfinished entry of this client id; see the module docstring."""
    pending = await asyncio.to_thread(read_pending, book.store, book.prefix)
    if not pending:
        log.info("recovery: no unfinished entries of %s*", book.prefix)
        return RecoveryReport()
    await _let_intents_arrive(book, pending)
    await book.adapter.reconcile()
    for entry in pending:
        view = book.adapter.find_order_now(entry.order_ref)
        if view is None:
            await book.resolve_absent(entry, session_close)
        else:
            await book.apply(entry, view)
    report = _report(book, pending)
    book.record("recovery", None, _detail(report))
    log.info(
        "recovery: %d adopted, %d never sent, %d settled, %d unknown",
        len(report.adopted),
        len(report.never_sent),
        len(report.settled),
        len(report.unknown),
    )
    return report


async def _let_intents_arrive(book: EntryBook, pending: Sequence[PendingEntry]) -> None:
    """Sleep until the youngest unacknowledged intent is older than the ack timeout."""
    now = book.clock.now()
    ages = [
        book.clock.to_real_seconds(max(0.0, (now - e.order.created_at).total_seconds()))
        for e in pending
        if e.order.status is OrderStatus.INTENT
    ]
    if not ages:
        return
    wait = book.adapter.config.ack_timeout_s - min(ages)
    if wait > 0:
        log.info("recovery: waiting %.1f s for a just-sent order to reach the broker", wait)
        await asyncio.sleep(wait)


_ADOPTED = frozenset(
    {
        EntryPhase.WORKING,
        EntryPhase.PARTIAL,
        EntryPhase.CANCELLING,
        EntryPhase.FILLED,
        EntryPhase.PARTLY_FILLED,
    }
)


def _report(book: EntryBook, pending: Sequence[PendingEntry]) -> RecoveryReport:
    groups: dict[str, list[str]] = {"adopted": [], "never_sent": [], "unknown": [], "settled": []}
    for entry in pending:
        phase = book.phase(entry.order_ref)
        if phase in _ADOPTED:
            groups["adopted"].append(entry.order_ref)
        elif phase is EntryPhase.NEVER_SENT:
            groups["never_sent"].append(entry.order_ref)
        elif phase in (EntryPhase.CANCELLED, EntryPhase.REJECTED):
            groups["settled"].append(entry.order_ref)
        else:
            groups["unknown"].append(entry.order_ref)
    return RecoveryReport(**{name: tuple(refs) for name, refs in groups.items()})


def _detail(report: RecoveryReport) -> dict[str, list[str]]:
    return {
        "adopted": list(report.adopted),
        "never_sent": list(report.never_sent),
        "settled": list(report.settled),
        "unknown": list(report.unknown),
    }
