"""The supervisor a child belongs to: named in ``SUPERVISOR_PARENT``, watched until it is gone.

A child started by the supervisor gets its parent's ``pid:create_time``
(``supervision.environment``). A child whose supervisor disappears (killed, crashed)
stops itself, so no orphan outlives a crashed run: the child runtime does it for the
exit manager, the day trader and the phases, the simulator does it in its own loop. The
identity includes the create time, so a reused pid does not pass for the supervisor.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from supervision.environment import PARENT_ENV
from supervision.identity import ProcessIdentity

#: How often (real seconds) a child without settings checks that its supervisor lives.
DEFAULT_POLL_S = 1.0


def parent_from_env(environ: Mapping[str, str] | None = None) -> ProcessIdentity | None:
    """Return the supervisor named in ``SUPERVISOR_PARENT`` (None: not started by one)."""
    env = os.environ if environ is None else environ
    return ProcessIdentity.parse(env.get(PARENT_ENV, ""))


async def wait_parent_gone(parent: ProcessIdentity, interval: float = DEFAULT_POLL_S) -> str:
    """Return (with the reason) once ``parent`` no longer runs; check every ``interval`` s."""
    while await asyncio.to_thread(parent.is_alive):
        await asyncio.sleep(interval)
    return f"supervisor (pid {parent.pid}) is gone"
