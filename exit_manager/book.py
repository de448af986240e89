"""The positions the exit manager protects, in memory: one O(1) lookup per quote.

The database is the truth; the book is a copy refreshed every pass (so a position the
day trader opened is protected within a pass) and updated at once after this process's
own transitions. Only OPEN rows with an entry price get a ``PositionView`` (the rules'
input); ENTRY_PENDING rows belong to the day trader, EXIT_PENDING rows to the seller.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from exit_manager.rules import ExitParams, PositionView, stop_price, target_price
from shared_state import ActivePosition, PositionState


@dataclass(frozen=True)
class BookChange:
    """What a refresh changed: symbols that appeared and symbols that went away."""

    added: tuple[str, ...]
    removed: tuple[str, ...]


def position_view(row: ActivePosition, params: ExitParams) -> PositionView | None:
    """Return the rules' view of an OPEN row (target/stop from the row, else the defaults)."""
    if row.state is not PositionState.OPEN or row.entry_price is None or row.quantity <= 0:
        return None
    entry = row.entry_price
    return PositionView(
        symbol=row.symbol,
        quantity=row.quantity,
        entry_price=entry,
        is_recovery=row.is_recovery,
        target_price=row.target_price or target_price(entry, row.is_recovery, params),
        stop_price=row.stop_price or stop_price(entry, params),
    )


class Book:
    """Active rows by symbol, with the rules' view of the OPEN ones."""

    def __init__(self, params: ExitParams) -> None:
        self.params = params
        self._rows: dict[str, ActivePosition] = {}
        self._views: dict[str, PositionView] = {}

    def load(self, rows: Iterable[ActivePosition]) -> BookChange:
        """Replace the book with ``rows`` (one consistent read); return what changed."""
        fresh = {row.symbol: row for row in rows}
        added = tuple(sorted(fresh.keys() - self._rows.keys()))
        removed = tuple(sorted(self._rows.keys() - fresh.keys()))
        self._rows = fresh
        self._views = {}
        for row in fresh.values():
            self._index(row)
        return BookChange(added, removed)

    def put(self, row: ActivePosition) -> None:
        """Take this process's own transition of ``row`` into the book."""
        self._rows[row.symbol] = row
        self._views.pop(row.symbol, None)
        self._index(row)

    def drop(self, symbol: str) -> None:
        """Forget ``symbol`` (its row was closed)."""
        self._rows.pop(symbol, None)
        self._views.pop(symbol, None)

    def _index(self, row: ActivePosition) -> None:
        view = position_view(row, self.params)
        if view is not None:
            self._views[row.symbol] = view

    def row(self, symbol: str) -> ActivePosition | None:
        """Return the symbol's row, if active."""
        return self._rows.get(symbol)

    def view(self, symbol: str) -> PositionView | None:
        """Return the rules' view of the symbol's OPEN row (None otherwise)."""
        return self._views.get(symbol)

    def rows(self) -> list[ActivePosition]:
        """Return every active row, by symbol."""
        return [self._rows[s] for s in sorted(self._rows)]

    def symbols(self) -> list[str]:
        """Return every active symbol, sorted."""
        return sorted(self._rows)

    def held(self) -> list[ActivePosition]:
        """Return the rows that hold shares (OPEN or EXIT_PENDING)."""
        return [r for r in self.rows() if r.state is not PositionState.ENTRY_PENDING]

    def __len__(self) -> int:
        return len(self._rows)
