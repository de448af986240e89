"""Fixtures of the shared-state tests: a real database file per test, and helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared_state import ActivePosition, ClaimResult, ClosedPosition, Store

# Test modules and worker scripts share constants through ``state_fixtures``.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from state_fixtures import DAY, LIMITS, T0  # noqa: E402


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "trading_state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    created = Store(db_path, process="test")
    yield created
    created.close()


@pytest.fixture
def claim(store: Store) -> Callable[..., ClaimResult]:
    """Claim a symbol with the default limits; keyword arguments override them."""
    counter = iter(range(1, 1_000_000))

    def _claim(symbol: str, **overrides: Any) -> ClaimResult:
        arguments: dict[str, Any] = {
            "now": T0,
            "order_ref": f"buy-{symbol}-{next(counter)}",
            "quantity": 100,
            "limit_price": 10.05,
            "owner": "day_trader",
            **LIMITS,
        }
        arguments.update(overrides)
        trading_date = arguments.pop("trading_date", DAY)
        return store.claim_for_entry(symbol, trading_date, **arguments)

    return _claim


@pytest.fixture
def open_position(store: Store, claim: Callable[..., ClaimResult]) -> Callable[..., ActivePosition]:
    """Claim and fill a symbol: an OPEN position."""

    def _open(symbol: str, quantity: int = 100, **claim_overrides: Any) -> ActivePosition:
        result = claim(symbol, quantity=quantity, **claim_overrides)
        assert result.ok, result
        return store.mark_filled(
            symbol,
            now=T0,
            entry_price=10.0,
            quantity=quantity,
            target_price=10.2,
            stop_price=9.9,
        )

    return _open


@pytest.fixture
def round_trip(
    store: Store, open_position: Callable[..., ActivePosition]
) -> Callable[..., ClosedPosition]:
    """Open, begin the exit of, and close a symbol with ``reason`` and ``pnl``."""
    counter = iter(range(1, 1_000_000))

    def _trip(symbol: str, reason: str, pnl: float = 1.0, **claim_overrides: Any) -> ClosedPosition:
        opened = open_position(symbol, **claim_overrides)
        ticket = store.begin_exit(
            symbol,
            now=T0 + timedelta(minutes=5),
            order_ref=f"sell-{symbol}-{next(counter)}",
            quantity=opened.quantity,
            limit_price=10.1,
            reason=reason,
        )
        assert ticket is not None
        closed = store.close_position(
            symbol,
            trading_date=claim_overrides.get("trading_date", DAY),
            now=T0 + timedelta(minutes=6),
            exit_price=10.1,
            reason=reason,
            pnl=pnl,
            commissions=1.0,
            position_id=ticket.position_id,
        )
        assert closed is not None
        return closed

    return _trip
