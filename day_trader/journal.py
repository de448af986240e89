"""The day trader's audit events, written in order by one background task.

Events (``entry_order``, ``entry_state``, ``entry_skipped``, ...) are the audit trail, not
the coordination: the claim, the order rows and the positions are written in line, in
their own transactions, before the next step depends on them. An event written in line
would cost a synchronous commit on the path from a bar close to the next order, so
``record`` stamps the event with the clock now and queues it; ``run`` writes the queue
in order, off the event loop. ``close`` writes what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from market.clock import Clock
from shared_state import Store, StoreError

log = logging.getLogger("day_trader.journal")

_Item = tuple[datetime, str, str | None, dict[str, Any]]


class Journal:
    """Queue events now, write them in order in the background."""

    def __init__(self, store: Store, clock: Clock, process: str) -> None:
        self.store = store
        self.clock = clock
        self.process = process
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the writer task (on the running loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="day-trader-journal")

    def record(self, kind: str, symbol: str | None, detail: dict[str, Any]) -> None:
        """Queue one event, stamped with the clock's now."""
        self._queue.put_nowait((self.clock.now(), kind, symbol, detail))

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self._task is None:
            return
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if item is None:
                    return
                await asyncio.to_thread(self._write, item)
            finally:
                self._queue.task_done()

    def _write(self, item: _Item) -> None:
        now, kind, symbol, detail = item
        try:
            self.store.record_event(self.process, kind, now=now, symbol=symbol, detail=detail)
        except (StoreError, ValueError) as exc:
            log.warning("event %s of %s not recorded: %s", kind, symbol, exc)
