"""Pre-trade checks every order passes before it reaches the broker (design section 9).

Pure functions, each raising a ``BrokerError`` subclass that names the rule:

- the process's role owns this side (the day trader buys, the exit manager sells);
- quantity is a positive whole number of shares;
- the limit price sits on the tick grid (rounded here, towards the order's side);
- notional cap: quantity * limit <= MAX_ORDER_NOTIONAL, except for a covered sell;
- price collar: the limit is within PRICE_COLLAR_PCT of the reference (last) price;
- the exit manager never sells more than the broker says is held.

A *covered sell* (``is_covered_sell``) is a sell of a role whose sells are checked
against the broker's position (never more than held minus the sells still working):
it can only reduce risk. The notional cap is there to stop a fat-fingered *entry*, and
selling down a position must never be blocked or slowed by it (design 9: the exit
manager may always reduce positions), so covered sells are exempt; the collar and the
position check still apply.
"""

from __future__ import annotations

import math
from enum import StrEnum

from broker.errors import OrderRefusedError, RoleError
from market.pricing import PENNY_TICK, SUB_DOLLAR_TICK, round_to_tick

ACTIONS = ("BUY", "SELL")


class Role(StrEnum):
    """Which process owns the adapter; decides which order sides it may send."""

    EXIT_MANAGER = "exit_manager"
    DAY_TRADER = "day_trader"
    PHASES = "phases"
    SCRIPTS = "scripts"
    SUPERVISOR = "supervisor"
    #: Tests, benchmarks and manual tools against the simulator: both sides.
    TOOL = "tool"


#: role -> order actions it may send. Buys and sells have exactly one owner each.
ROLE_ACTIONS: dict[Role, frozenset[str]] = {
    Role.EXIT_MANAGER: frozenset({"SELL"}),
    Role.DAY_TRADER: frozenset({"BUY"}),
    Role.PHASES: frozenset(),
    Role.SCRIPTS: frozenset(),
    Role.SUPERVISOR: frozenset(),
    Role.TOOL: frozenset(ACTIONS),
}


#: Roles whose sells the adapter checks against the broker's position (``check_sell_covered``).
COVERED_SELLERS: frozenset[Role] = frozenset({Role.EXIT_MANAGER})


def is_covered_sell(role: Role, action: str) -> bool:
    """Return True when ``role``'s ``action`` order is a covered sell (see the module doc)."""
    return action == "SELL" and role in COVERED_SELLERS


def check_role(role: Role, action: str) -> None:
    """Raise RoleError unless ``role`` may send ``action`` orders."""
    if action not in ACTIONS:
        raise OrderRefusedError("action", f"action must be BUY or SELL, got {action!r}")
    if action not in ROLE_ACTIONS[role]:
        allowed = "/".join(sorted(ROLE_ACTIONS[role])) or "no"
        raise RoleError(f"role {role} may send {allowed} orders, not {action}")


def check_quantity(quantity: float) -> int:
    """Return ``quantity`` as whole shares; raise unless it is a positive whole number."""
    if not (math.isfinite(quantity) and quantity > 0 and float(quantity).is_integer()):
        raise OrderRefusedError(
            "quantity", f"quantity must be a positive whole number, got {quantity!r}"
        )
    return int(quantity)


def tick_for(price: float, contract_min_tick: float | None = None) -> float:
    """Return the tick a limit at ``price`` must sit on.

    IBKR: $0.0001 below $1.00, $0.01 at or above (or the contract's coarser tick).
    """
    if price < 1.0:
        return SUB_DOLLAR_TICK
    return max(PENNY_TICK, contract_min_tick or PENNY_TICK)


def round_limit(action: str, price: float, contract_min_tick: float | None = None) -> float:
    """Return ``price`` on the tick grid: buys round up, sells down (as market.pricing does)."""
    if not (math.isfinite(price) and price > 0):
        raise OrderRefusedError("limit_price", f"limit must be a positive price, got {price!r}")
    direction = "up" if action == "BUY" else "down"
    return round_to_tick(price, tick_for(price, contract_min_tick), direction)


def check_notional(quantity: float, limit: float, cap: float) -> None:
    """Raise unless quantity * limit is within the notional cap."""
    notional = quantity * limit
    if notional > cap:
        raise OrderRefusedError(
            "notional_cap", f"{quantity:g} x {limit:g} = {notional:,.2f} USD exceeds {cap:,.2f}"
        )


def check_collar(limit: float, reference: float | None, collar_pct: float) -> None:
    """Raise unless ``limit`` is within ``collar_pct`` percent of ``reference``."""
    if reference is None or not (math.isfinite(reference) and reference > 0):
        raise OrderRefusedError("price_collar", "no reference price to check the limit against")
    distance_pct = abs(limit - reference) / reference * 100.0
    if distance_pct > collar_pct + 1e-9:
        raise OrderRefusedError(
            "price_collar",
            f"limit {limit:g} is {distance_pct:.2f}% from reference {reference:g} "
            f"(collar {collar_pct:g}%)",
        )


def check_sell_covered(quantity: float, held: float, pending_sells: float) -> None:
    """Raise unless selling ``quantity`` keeps the position >= 0 after pending sells."""
    free = held - pending_sells
    if quantity > free + 1e-9:
        raise OrderRefusedError(
            "sell_exceeds_position",
            f"sell {quantity:g} but the broker holds {held:g} with {pending_sells:g} already "
            "being sold",
        )
