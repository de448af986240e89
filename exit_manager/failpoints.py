"""Crash points for tests: die exactly where a crash is most dangerous.

``EXIT_MANAGER_FAILPOINT=<name>`` in the environment makes the process kill itself
(SIGKILL: no cleanup, no flush, like a power cut or ``kill -9``) the first time it
reaches that point. Unset (always, in production) it does nothing but one dict lookup.

- ``after_begin_exit``: the sell intent is committed, the order not yet sent.
- ``after_place``: the order went to the broker, its acknowledgement not yet recorded.
"""

from __future__ import annotations

import os
import signal

ENV = "EXIT_MANAGER_FAILPOINT"

AFTER_BEGIN_EXIT = "after_begin_exit"
AFTER_PLACE = "after_place"


def hit(name: str) -> None:
    """Kill this process at once if the failpoint ``name`` is armed."""
    if os.environ.get(ENV) != name:
        return
    kill = getattr(signal, "SIGKILL", None)
    if kill is None:  # Windows: the closest thing to a kill -9
        os._exit(137)
    os.kill(os.getpid(), kill)
