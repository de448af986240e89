"""Worker of the concurrency test: hammer claim / fill / begin-exit / close on 3 symbols.

    python worker_hammer.py DB_PATH WORKER_ID SEED SECONDS SLOT_SECONDS MAX_RECOVERY

Prints ``ready``, waits for a line ``go <epoch>`` on stdin, then works until
``epoch + SECONDS`` (wall clock, shared by every worker). The trading date is
``BASE_DAY + (now - epoch) // SLOT_SECONDS``, so all workers move to a new day together.
At the end prints one JSON line: every successful claim and close, refusals, busy errors.

Exit reasons: AAA always closes at 'stop' (so its day must allow exactly MAX_RECOVERY
recovery entries), BBB and CCC at a random 'target' or 'stop'.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared_state import (
    ActivePosition,
    NotFoundError,
    PositionState,
    Store,
    StoreBusyError,
    TransitionError,
)

SYMBOLS = ("AAA", "BBB", "CCC")
BASE_DAY = date(2025, 6, 2)
NOW = datetime(2025, 6, 2, 15, 0, tzinfo=UTC)
NEXT_OP = {
    None: "claim",
    PositionState.ENTRY_PENDING: "fill",
    PositionState.OPEN: "exit",
    PositionState.EXIT_PENDING: "close",
}


class Hammer:
    def __init__(self, store: Store, worker: str, rng: random.Random, max_recovery: int) -> None:
        self.store = store
        self.worker = worker
        self.rng = rng
        self.max_recovery = max_recovery
        self.claims: list[dict[str, Any]] = []
        self.closes: list[dict[str, Any]] = []
        self.refusals: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.busy_errors = 0
        self.serial = 0

    def step(self, day: date) -> None:
        symbol = self.rng.choice(SYMBOLS)
        row = self.store.active_position(symbol)
        # Mostly the step the row is waiting for, sometimes any step: both races happen.
        wanted = NEXT_OP[None if row is None else row.state]
        op = wanted if self.rng.random() < 0.7 else self.rng.choice(list(NEXT_OP.values()))
        try:
            getattr(self, op)(symbol, day, row)
        except StoreBusyError:
            self.busy_errors += 1
        except (NotFoundError, TransitionError) as exc:  # the row moved on meanwhile
            self.outcomes[f"{op}:{type(exc).__name__}"] += 1

    def claim(self, symbol: str, day: date, row: ActivePosition | None) -> None:
        self.serial += 1
        ref = f"{self.worker}-{self.serial}"
        result = self.store.claim_for_entry(
            symbol,
            day,
            now=NOW,
            order_ref=ref,
            quantity=100,
            limit_price=10.0,
            max_recovery_entries=self.max_recovery,
            max_trades_per_day=10_000,
            max_positions=10,
            owner="hammer",
        )
        if result.ok:
            assert result.position is not None
            self.claims.append(
                {
                    "ref": ref,
                    "symbol": symbol,
                    "day": day.isoformat(),
                    "recovery": result.is_recovery,
                    "id": result.position.id,
                }
            )
        else:
            assert result.refusal is not None
            self.refusals[f"{symbol}|{day.isoformat()}|{result.refusal.value}"] += 1

    def fill(self, symbol: str, day: date, row: ActivePosition | None) -> None:
        self.store.mark_filled(
            symbol, now=NOW, entry_price=10.0, quantity=100, target_price=10.2, stop_price=9.9
        )
        self.outcomes["fill:ok"] += 1

    def exit(self, symbol: str, day: date, row: ActivePosition | None) -> None:
        self.serial += 1
        reason = "stop" if symbol == "AAA" else self.rng.choice(("target", "stop"))
        ticket = self.store.begin_exit(
            symbol,
            now=NOW,
            order_ref=f"{self.worker}-{self.serial}",
            quantity=100,
            limit_price=10.1,
            reason=reason,
        )
        self.outcomes["exit:ok" if ticket else "exit:none"] += 1

    def close(self, symbol: str, day: date, row: ActivePosition | None) -> None:
        if row is None or row.exit_reason is None:
            self.outcomes["close:skipped"] += 1
            return
        pnl = self.rng.randint(-500, 500) / 100.0
        closed = self.store.close_position(
            symbol,
            trading_date=row.trading_date,
            now=NOW,
            exit_price=10.1,
            reason=row.exit_reason,
            pnl=pnl,
            commissions=1.0,
            position_id=row.id,
        )
        if closed is None:
            self.outcomes["close:none"] += 1
            return
        self.closes.append(
            {
                "id": closed.id,
                "position_id": closed.position_id,
                "pnl": pnl,
                "symbol": symbol,
                "day": closed.trading_date.isoformat(),
                "reason": closed.exit_reason.value,
            }
        )


def main() -> None:
    db_path, worker, seed, seconds, slot, max_recovery = sys.argv[1:7]
    store = Store(db_path, process=f"hammer-{worker}", create=False)
    hammer = Hammer(store, f"w{worker}", random.Random(int(seed)), int(max_recovery))
    print("ready", flush=True)
    epoch = float(sys.stdin.readline().split()[1])
    time.sleep(max(0.0, epoch - time.time()))
    end = epoch + float(seconds)
    steps = 0
    while (now := time.time()) < end:
        day = BASE_DAY + timedelta(days=int((now - epoch) // float(slot)))
        hammer.step(day)
        steps += 1
    stats = store.busy_stats()
    print(
        json.dumps(
            {
                "worker": worker,
                "steps": steps,
                "claims": hammer.claims,
                "closes": hammer.closes,
                "refusals": dict(hammer.refusals),
                "outcomes": dict(hammer.outcomes),
                "busy_errors": hammer.busy_errors + stats.busy_errors,
                "retries": stats.retries,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
