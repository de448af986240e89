"""The environment every child starts with: the same settings, the same clock.

Children load their settings with ``config.settings.load_settings()`` like any process;
the supervisor exports its *effective* settings (after ``--env-file``, ``--date`` and
``--speed``) as environment variables, which take precedence over any ``.env``, so a
child can never run with settings other than the supervisor's. Relative paths are made
absolute because children run in the repository root.

Besides the settings:

- ``TRADING_CLOCK``: the clock spec (``market.clock``): ``live`` or the virtual clock.
- ``SUPERVISOR_CHILD``: the child's name, i.e. its ``processes`` row.
- ``SUPERVISOR_PARENT``: ``pid:create_time`` of the supervisor; a child whose supervisor
  is gone stops itself (``supervision.child``), so no orphan outlives a crashed run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from config.settings import SPECS, Secret, Settings
from market.clock import CLOCK_ENV, Clock
from supervision.identity import ProcessIdentity

CHILD_NAME_ENV = "SUPERVISOR_CHILD"
PARENT_ENV = "SUPERVISOR_PARENT"


def setting_text(value: object) -> str:
    """Return the environment text that parses back to ``value``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, Path):
        return str(value.resolve())
    if isinstance(value, float):
        return repr(value)
    return str(value)


def settings_env(settings: Settings) -> dict[str, str]:
    """Return every setting as an environment variable."""
    return {spec.env: setting_text(getattr(settings, spec.attr)) for spec in SPECS}


def child_environment(
    base: Mapping[str, str],
    settings: Settings,
    clock: Clock,
    name: str,
    parent: ProcessIdentity,
) -> dict[str, str]:
    """Return the environment of child ``name``: ``base`` plus settings, clock, identity."""
    env = dict(base)
    env.update(settings_env(settings))
    env[CLOCK_ENV] = clock.spec()
    env[CHILD_NAME_ENV] = name
    env[PARENT_ENV] = str(parent)
    # Children print straight to their log files; unbuffered so a crash loses nothing
    # and a ready line is seen at once.
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return env
