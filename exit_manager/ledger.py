"""Money of an exit: what a sell order's fills realized, net of commissions. Pure functions.

A round trip pays two commissions: the buy's and the sell's. A sale carries the
commissions of its own fills plus the buy's commission in proportion to the shares it
sells, so partial exits and the final close add up to the whole trip exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.models import ExecutionView


@dataclass(frozen=True)
class Sale:
    """What one exit order sold: shares, average price, commissions and net P&L."""

    shares: int
    avg_price: float
    commissions: float  # the sell fills' own plus the buy's share
    pnl: float  # (avg_price - entry) * shares - commissions
    missing_commissions: int  # fills whose commission report had not arrived


NOTHING = Sale(0, 0.0, 0.0, 0.0, 0)


def sells(executions: Iterable[ExecutionView], order_ref: str) -> tuple[ExecutionView, ...]:
    """Return the sell executions of ``order_ref``, once each (by exec id), in time order."""
    unique = {e.exec_id: e for e in executions if e.order_ref == order_ref and e.side == "SLD"}
    return tuple(sorted(unique.values(), key=lambda e: (e.time, e.exec_id)))


def entry_commission_share(entry_commissions: float, sold: int, round_trip_shares: int) -> float:
    """Return the part of the buy's commission that ``sold`` of ``round_trip_shares`` carry."""
    if sold <= 0 or round_trip_shares <= 0 or entry_commissions <= 0:
        return 0.0
    return entry_commissions * min(sold, round_trip_shares) / round_trip_shares


def sale_of(
    executions: Iterable[ExecutionView], entry_price: float, entry_commission: float = 0.0
) -> Sale:
    """Return the sale the sell ``executions`` of one order make, against ``entry_price``."""
    fills = list(executions)
    shares = sum(e.shares for e in fills)
    if shares <= 0:
        return NOTHING
    proceeds = sum(e.shares * e.price for e in fills)
    known = sum(e.commission for e in fills if e.commission is not None)
    missing = sum(1 for e in fills if e.commission is None)
    commissions = known + entry_commission
    pnl = proceeds - entry_price * shares - commissions
    return Sale(int(round(shares)), proceeds / shares, commissions, pnl, missing)


def unrealized_pnl(quantity: int, entry_price: float, price: float) -> float:
    """Return the paper P&L of ``quantity`` shares bought at ``entry_price`` marked at ``price``."""
    return (price - entry_price) * quantity
