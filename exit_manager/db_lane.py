"""One thread that runs every database call of the exit manager, in submission order.

The event loop must never block (a blocked loop delays the next stop by as long), and a
SQLite write with ``synchronous=FULL`` waits for the disk. One worker thread keeps the
loop free *and* keeps the writes in the order the broker's events arrived: an order's
status update is always written before the settlement that reads it.

The exit manager runs two lanes: the general one, and a fast one that only carries the
``begin_exit`` transaction of a new exit, so a stop's sell never waits behind a queue of
settlement and audit writes (SQLite still serialises the two lanes' transactions, which
each take a millisecond or two).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

log = logging.getLogger("exit_manager.db")


class DbLane:
    """A single-worker executor for store calls: ``await call(...)`` or fire-and-forget ``post``."""

    def __init__(self, name: str = "exit-manager-db") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call[T](self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the lane and return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(fn, *args, **kwargs))

    def post(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue ``fn(*args, **kwargs)`` behind earlier calls; log (not raise) a failure."""
        future = self._pool.submit(fn, *args, **kwargs)
        future.add_done_callback(partial(_log_failure, what))
        return future

    async def drain(self) -> None:
        """Wait until everything queued so far has run."""
        await self.call(lambda: None)

    def close(self) -> None:
        """Finish the queued calls and stop the worker."""
        self._pool.shutdown(wait=True)


def _log_failure(what: str, future: Future[Any]) -> None:
    exc = future.exception()
    if exc is not None:
        log.error("database call %s failed: %s", what, exc, exc_info=exc)
