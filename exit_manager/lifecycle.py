"""The lifecycle of one exit order: stages, their transition table, and what follows it.

Pure: enums, the (stage, trigger) table, and the decision taken when an order is final
(``after_order``). The ``Seller`` (``selling.py``) owns the mutable ``ExitOrder`` objects
and moves them only through ``next_stage``.

The usual path is SENDING -> WORKING -> DONE (filled), or WORKING -> CANCELLING -> DONE
(cancelled to be replaced). Off it: SENDING -> UNSENT (not connected: provably not sent,
sent again with the same order_ref); WORKING -> UNKNOWN (no acknowledgement in time: it
stays UNKNOWN until the broker acknowledges it, reports it final, or a newer connection's
full snapshot proves it was never received: LOST -> DONE).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum

from broker.models import ACKED_STATUSES, DONE_STATUSES, OrderView
from broker.models import OrderStatus as BrokerStatus
from exit_manager.rules import ExitParams
from shared_state import ExitReason


class Stage(StrEnum):
    """Where one exit order is, as far as this process knows."""

    SENDING = "sending"  # intent committed, placeOrder under way
    UNSENT = "unsent"  # provably not sent (not connected): send again, same order_ref
    WORKING = "working"  # at the broker (or on its way there)
    UNKNOWN = "unknown"  # no acknowledgement: wait for the broker's word
    CANCELLING = "cancelling"  # cancel asked for; waiting for the final status
    DONE = "done"  # final at the broker: settle it


class Trigger(StrEnum):
    """What can happen to an exit order."""

    SENT = "sent"
    NOT_SENT = "not_sent"
    ACKED = "acked"
    NO_ACK = "no_ack"
    CANCEL = "cancel"
    FINAL = "final"  # filled, cancelled or rejected at the broker
    LOST = "lost"  # absent from a full snapshot of a newer connection: never received


_S, _T = Stage, Trigger

#: (stage, trigger) -> new stage. Any other pair is a bug (``StageError``).
STAGE_TRANSITIONS: dict[tuple[Stage, Trigger], Stage] = {
    (_S.SENDING, _T.SENT): _S.WORKING,
    (_S.SENDING, _T.NOT_SENT): _S.UNSENT,
    (_S.SENDING, _T.ACKED): _S.WORKING,
    (_S.SENDING, _T.NO_ACK): _S.UNKNOWN,
    (_S.SENDING, _T.FINAL): _S.DONE,
    (_S.UNSENT, _T.SENT): _S.WORKING,
    (_S.UNSENT, _T.NOT_SENT): _S.UNSENT,
    (_S.WORKING, _T.SENT): _S.WORKING,
    (_S.WORKING, _T.ACKED): _S.WORKING,
    (_S.WORKING, _T.NO_ACK): _S.UNKNOWN,
    (_S.WORKING, _T.CANCEL): _S.CANCELLING,
    (_S.WORKING, _T.FINAL): _S.DONE,
    (_S.WORKING, _T.LOST): _S.DONE,
    (_S.UNKNOWN, _T.SENT): _S.UNKNOWN,
    (_S.UNKNOWN, _T.ACKED): _S.WORKING,
    (_S.UNKNOWN, _T.NO_ACK): _S.UNKNOWN,
    (_S.UNKNOWN, _T.FINAL): _S.DONE,
    (_S.UNKNOWN, _T.LOST): _S.DONE,
    (_S.CANCELLING, _T.ACKED): _S.CANCELLING,
    (_S.CANCELLING, _T.NO_ACK): _S.CANCELLING,
    (_S.CANCELLING, _T.CANCEL): _S.CANCELLING,
    (_S.CANCELLING, _T.FINAL): _S.DONE,
    (_S.CANCELLING, _T.LOST): _S.DONE,
    (_S.DONE, _T.SENT): _S.DONE,
    (_S.DONE, _T.ACKED): _S.DONE,
    (_S.DONE, _T.NO_ACK): _S.DONE,
    (_S.DONE, _T.FINAL): _S.DONE,
}

del _S, _T


class StageError(RuntimeError):
    """A (stage, trigger) pair the transition table does not list."""


def next_stage(stage: Stage, trigger: Trigger) -> Stage:
    """Return the stage ``trigger`` moves ``stage`` to; raise ``StageError`` if not allowed."""
    try:
        return STAGE_TRANSITIONS[(stage, trigger)]
    except KeyError:
        raise StageError(f"exit order: {trigger.value} is not allowed in {stage.value}") from None


def trigger_of(view: OrderView) -> Trigger | None:
    """Return the trigger a broker report of an order is (None: nothing new)."""
    if view.status in DONE_STATUSES:
        return Trigger.FINAL
    if view.status == BrokerStatus.UNKNOWN:
        return Trigger.NO_ACK
    if view.status in ACKED_STATUSES:
        return Trigger.ACKED
    return None


class Ending(StrEnum):
    """Why an exit order ended."""

    FILLED = "filled"  # the broker filled all of it
    REPLACED = "replaced"  # this process cancelled it to replace it more aggressively
    REJECTED = "rejected"
    EXPIRED = "expired"  # cancelled by the broker or a person (e.g. a DAY order at the close)
    LOST = "lost"  # never reached the broker


class NextKind(StrEnum):
    """What follows a settled exit order."""

    CLOSE = "close"  # nothing left: close the position
    RESELL = "resell"  # sell what is left with a new order
    REOPEN = "reopen"  # give the rest back to OPEN (under the rules) and explain why


@dataclass(frozen=True)
class Next:
    """The decision after an exit order's final status."""

    kind: NextKind
    step: int = 0
    why: str = ""


def after_order(
    *,
    sold: int,
    held: int,
    broker_left: int,
    ending: Ending,
    step: int,
    rejections: int,
    market_open: bool,
    params: ExitParams,
    max_rejections: int,
) -> Next:
    """Decide what follows an exit order that sold ``sold`` of ``held`` shares.

    ``broker_left`` is what the broker holds now; a flat broker closes the position
    whatever the database thought it held (it can never be sold again).
    """
    if sold >= held or (sold > 0 and broker_left <= 0):
        return Next(NextKind.CLOSE, step, "everything sold")
    if broker_left <= 0:
        return Next(NextKind.CLOSE, step, "the broker holds nothing any more")
    if not market_open:
        return Next(NextKind.REOPEN, step, "market closed with shares unsold")
    if ending is Ending.REJECTED:
        if rejections >= max_rejections:
            return Next(NextKind.REOPEN, step, f"{rejections} rejected sells")
        return Next(NextKind.RESELL, step, "sell rejected: trying again")
    if ending is Ending.REPLACED:
        return Next(NextKind.RESELL, min(step + 1, params.replace_steps), "not filled in time")
    return Next(NextKind.RESELL, step, f"order {ending.value} with shares unsold")


_REF_STEP = re.compile(r"-s(\d+)-[0-9a-f]{8}$")


def new_order_ref(symbol: str, position_id: int, step: int) -> str:
    """Return a fresh, unique exit order_ref that names symbol, position and step."""
    return f"em-{symbol}-{position_id}-s{step}-{uuid.uuid4().hex[:8]}"


def step_of(order_ref: str) -> int:
    """Return the replacement step an exit order_ref was sent at (0 when unknown)."""
    found = _REF_STEP.search(order_ref)
    return int(found.group(1)) if found else 0


@dataclass
class ExitOrder:
    """One exit order of one position: mutable, owned by the ``Seller``."""

    symbol: str
    position_id: int
    order_ref: str
    reason: ExitReason
    quantity: int
    limit: float
    step: int
    epoch: int  # the adapter's connection count when it was sent (0: a previous process)
    stage: Stage = Stage.SENDING
    since: float = field(default_factory=time.monotonic)  # when the stage began
    sent_at: float = field(default_factory=time.monotonic)
    view: OrderView | None = None
    cancel_for: Ending | None = None
    lost: bool = False
    rejections: int = 0
    alerted: bool = False
    halted_noted: bool = False
    last_check: float = 0.0
    decided_at: float = 0.0  # monotonic time of the exit decision (first order only)
    intent_ms: float | None = None  # how long the begin_exit transaction took

    def age(self) -> float:
        """Return the real seconds since the order was sent."""
        return time.monotonic() - self.sent_at

    def in_stage(self) -> float:
        """Return the real seconds since the current stage began."""
        return time.monotonic() - self.since


def ending_of(order: ExitOrder) -> Ending:
    """Return why a DONE exit order ended."""
    view = order.view
    if order.lost:
        return Ending.LOST
    if view is not None and view.status == BrokerStatus.FILLED:
        return Ending.FILLED
    if view is not None and view.status == BrokerStatus.REJECTED:
        return Ending.REJECTED
    if order.cancel_for is not None:
        return order.cancel_for
    return Ending.EXPIRED
