"""Children get exactly the supervisor's settings and clock through their environment."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from config.settings import load_settings
from market.clock import CLOCK_ENV, ET, VirtualClock, clock_from_env
from supervision.environment import CHILD_NAME_ENV, PARENT_ENV, child_environment
from supervision.identity import ProcessIdentity


def test_a_child_loading_its_settings_from_the_environment_gets_the_supervisor_s(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / "custom.env"
    env_file.write_text("SIM_SPEED=321\nDEEPSEEK_API_KEY=sk-secret-value\nMIDDAY_FILTER=yes\n")
    parent = load_settings(environ={"DB_PATH": "rel/db.sqlite"}, env_file=env_file)
    clock = VirtualClock(datetime(2025, 11, 26, 6, 50, tzinfo=ET), 321.0)
    env = child_environment(
        {"PATH": "/bin"}, parent, clock, "exit_manager", ProcessIdentity(1, 2.0)
    )

    child = load_settings(environ=env, env_file=None)

    assert child.sim_speed == 321.0
    assert child.deepseek_api_key.reveal() == "sk-secret-value"
    assert child.midday_filter is True
    assert child.db_path == Path("rel/db.sqlite").resolve()  # children run elsewhere
    assert {f: getattr(child, f) for f in ("broker", "ib_port", "heartbeat_interval_s")} == {
        f: getattr(parent, f) for f in ("broker", "ib_port", "heartbeat_interval_s")
    }
    assert clock_from_env(env).spec() == clock.spec()
    assert env[CHILD_NAME_ENV] == "exit_manager"
    assert ProcessIdentity.parse(env[PARENT_ENV]) == ProcessIdentity(1, 2.0)
    assert env["PATH"] == "/bin"


def test_the_clock_replaces_one_inherited_from_the_caller() -> None:
    clock = VirtualClock(datetime(2025, 11, 26, 6, 50, tzinfo=ET), 5.0)
    env = child_environment(
        {CLOCK_ENV: "live"}, load_settings(environ={}, env_file=None), clock, "x",
        ProcessIdentity.current(),
    )  # fmt: skip
    assert env[CLOCK_ENV] == clock.spec()
