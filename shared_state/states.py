"""Names and lifecycles of everything the store keeps: enums plus transition tables.

The string values are what the database holds (and what its CHECK constraints allow), so
renaming a value is a schema change.
"""

from __future__ import annotations

from enum import StrEnum


class PositionState(StrEnum):
    """Lifecycle of an ``active_positions`` row (a closed position leaves the table)."""

    ENTRY_PENDING = "ENTRY_PENDING"
    OPEN = "OPEN"
    EXIT_PENDING = "EXIT_PENDING"


class PositionTrigger(StrEnum):
    """What may happen to an active position."""

    FILL = "fill"  # the entry (partly) filled: the row holds the filled quantity
    CANCEL_ENTRY = "cancel_entry"  # entry cancelled with nothing filled: the row goes away
    BEGIN_EXIT = "begin_exit"  # a sell intent was written
    CANCEL_EXIT = "cancel_exit"  # the sell ended without selling everything
    REDUCE = "reduce"  # part of the position was sold
    CLOSE = "close"  # everything was sold (or reconciled away): the row moves to closed


#: (state, trigger) -> new state; ``None`` means the row leaves ``active_positions``.
#: Any pair not listed is refused with ``TransitionError``.
POSITION_TRANSITIONS: dict[tuple[PositionState, PositionTrigger], PositionState | None] = {
    (PositionState.ENTRY_PENDING, PositionTrigger.FILL): PositionState.OPEN,
    (PositionState.ENTRY_PENDING, PositionTrigger.CANCEL_ENTRY): None,
    (PositionState.OPEN, PositionTrigger.FILL): PositionState.OPEN,
    (PositionState.OPEN, PositionTrigger.BEGIN_EXIT): PositionState.EXIT_PENDING,
    (PositionState.OPEN, PositionTrigger.REDUCE): PositionState.OPEN,
    (PositionState.OPEN, PositionTrigger.CLOSE): None,
    (PositionState.EXIT_PENDING, PositionTrigger.REDUCE): PositionState.EXIT_PENDING,
    (PositionState.EXIT_PENDING, PositionTrigger.CANCEL_EXIT): PositionState.OPEN,
    (PositionState.EXIT_PENDING, PositionTrigger.CLOSE): None,
}


class ExitReason(StrEnum):
    """Why a position was (or is being) closed."""

    TARGET = "target"
    STOP = "stop"
    EOD = "eod"
    DAILY_TARGET = "daily_target"
    LOSS_LIMIT = "loss_limit"
    MANUAL = "manual"
    RECONCILED = "reconciled"


#: Exits after which the symbol may not be bought again the same trading day.
REENTRY_FORBIDDING_EXITS: frozenset[ExitReason] = frozenset(
    {
        ExitReason.TARGET,
        ExitReason.DAILY_TARGET,
        ExitReason.LOSS_LIMIT,
        ExitReason.MANUAL,
        ExitReason.EOD,
    }
)

#: Exits after which a *recovery* entry is allowed (up to the configured number a day).
RECOVERY_EXITS: frozenset[ExitReason] = frozenset({ExitReason.STOP})


class ClaimRefusal(StrEnum):
    """Why ``claim_for_entry`` refused a symbol."""

    ALREADY_ACTIVE = "ALREADY_ACTIVE"
    HALTED = "HALTED"
    DAILY_TARGET_REACHED = "DAILY_TARGET_REACHED"
    REENTRY_FORBIDDEN = "REENTRY_FORBIDDEN"
    RECOVERY_LIMIT = "RECOVERY_LIMIT"
    MAX_TRADES = "MAX_TRADES"
    MAX_POSITIONS = "MAX_POSITIONS"


class OrderSide(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderPurpose(StrEnum):
    ENTRY = "entry"
    EXIT = "exit"


class OrderStatus(StrEnum):
    """Lifecycle of an ``orders`` row, from the intent to the broker's final word."""

    INTENT = "INTENT"  # committed, maybe not yet sent
    SUBMITTED = "SUBMITTED"  # the broker acknowledged it
    PARTIAL = "PARTIAL"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"
    UNKNOWN = "UNKNOWN"  # no acknowledgement after a timeout: never assumed cancelled


ORDER_DONE_STATES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED}
)
#: States in which the order may still be working at the broker.
ORDER_LIVE_STATES: frozenset[OrderStatus] = frozenset(
    {OrderStatus.SUBMITTED, OrderStatus.PARTIAL, OrderStatus.UNKNOWN}
)

_ANY_BROKER_STATE = frozenset(
    {
        OrderStatus.SUBMITTED,
        OrderStatus.PARTIAL,
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
        OrderStatus.REJECTED,
    }
)

#: status -> statuses it may move to. Staying in the same status (to record a new filled
#: quantity or broker id) is always allowed; a done order never changes again.
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.INTENT: _ANY_BROKER_STATE | {OrderStatus.UNKNOWN},
    OrderStatus.SUBMITTED: (_ANY_BROKER_STATE - {OrderStatus.SUBMITTED}) | {OrderStatus.UNKNOWN},
    OrderStatus.PARTIAL: frozenset(
        {OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.UNKNOWN}
    ),
    # Design 4: an unknown order is unknown until the broker says otherwise.
    OrderStatus.UNKNOWN: _ANY_BROKER_STATE,
    OrderStatus.FILLED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
}


def order_transition_allowed(old: OrderStatus, new: OrderStatus) -> bool:
    """Return whether an order may move from ``old`` to ``new``."""
    return old == new or new in ORDER_TRANSITIONS[old]


class ProcessState(StrEnum):
    """supervisord's process states, with supervisord's meanings (design 5)."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"


#: state -> states it may move to (supervisord's table). ``set_process_state(force=True)``
#: bypasses it, for a supervisor that finds rows left over by a previous instance.
PROCESS_TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    ProcessState.STOPPED: frozenset({ProcessState.STARTING}),
    ProcessState.STARTING: frozenset(
        {ProcessState.RUNNING, ProcessState.BACKOFF, ProcessState.STOPPING, ProcessState.EXITED}
    ),
    ProcessState.RUNNING: frozenset({ProcessState.STOPPING, ProcessState.EXITED}),
    ProcessState.BACKOFF: frozenset(
        {ProcessState.STARTING, ProcessState.FATAL, ProcessState.STOPPED}
    ),
    ProcessState.STOPPING: frozenset({ProcessState.STOPPED, ProcessState.EXITED}),
    # EXITED -> FATAL: a child that reaches RUNNING every time and then crashes is a crash
    # loop that never passes through BACKOFF; the flapping window ends it here.
    ProcessState.EXITED: frozenset(
        {ProcessState.STARTING, ProcessState.STOPPED, ProcessState.FATAL}
    ),
    ProcessState.FATAL: frozenset({ProcessState.STARTING, ProcessState.STOPPED}),
}

#: Entering STARTING from one of these counts as a restart.
RESTART_FROM: frozenset[ProcessState] = frozenset(
    {ProcessState.BACKOFF, ProcessState.EXITED, ProcessState.FATAL}
)


class CommandKind(StrEnum):
    LIQUIDATE_ALL = "liquidate_all"
    LIQUIDATE_TODAY = "liquidate_today"
    LIQUIDATE_SYMBOL = "liquidate_symbol"
    HALT_ENTRIES = "halt_entries"
    RESUME_ENTRIES = "resume_entries"


class CommandStatus(StrEnum):
    PENDING = "PENDING"
    TAKEN = "TAKEN"
    DONE = "DONE"
    FAILED = "FAILED"


class PhaseStatus(StrEnum):
    RUNNING = "RUNNING"
    DONE = "DONE"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"


class WatchlistSource(StrEnum):
    LLM = "llm"
    RULES = "rules"


def check_values(enum: type[StrEnum]) -> str:
    """Return the SQL list literal of an enum's values, for a CHECK constraint."""
    return ", ".join(f"'{member.value}'" for member in enum)
