"""The children table: data only, the built check, loading a replacement table."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import load_settings
from supervision.children import (
    TABLE,
    ChildSpec,
    ChildTable,
    ReadyBy,
    command,
    load_table,
    missing_reason,
)

HERE = Path(__file__).resolve().parent


def test_default_table_starts_simulator_then_exit_manager_then_day_trader() -> None:
    names = [c.name for c in TABLE.active(load_settings(environ={}, env_file=None))]
    assert names == ["simulator", "exit_manager", "day_trader"]


def test_simulator_is_left_out_with_a_real_gateway() -> None:
    names = [c.name for c in TABLE.active(load_settings(environ={"BROKER": "ibkr"}, env_file=None))]
    assert names == ["exit_manager", "day_trader"]


def test_exit_manager_is_critical_and_kept_alive_while_positions_exist() -> None:
    exit_manager = next(c for c in TABLE.children if c.name == "exit_manager")
    day_trader = next(c for c in TABLE.children if c.name == "day_trader")
    assert exit_manager.critical and exit_manager.restart.keep_alive_while_positions
    assert not day_trader.critical and not day_trader.restart.keep_alive_while_positions


def test_simulator_readiness_is_its_listening_line() -> None:
    simulator = TABLE.children[0]
    assert simulator.ready_by is ReadyBy.STDOUT_LINE
    assert simulator.ready_line in "listening on 127.0.0.1:7499"


def test_missing_components_are_named_without_importing_them(tmp_path: Path) -> None:
    (tmp_path / "exit_manager").mkdir()
    (tmp_path / "exit_manager" / "__init__.py").write_text("raise SystemExit('imported!')")
    assert "not built yet" in (missing_reason("exit_manager", tmp_path) or "")
    (tmp_path / "exit_manager" / "__main__.py").write_text("")
    assert missing_reason("exit_manager", tmp_path) is None
    assert missing_reason("nothing_here", tmp_path) is not None
    assert missing_reason(str(tmp_path / "x.py"), tmp_path) is not None


def test_the_built_simulator_is_not_reported_missing() -> None:
    assert missing_reason("broker.simulator") is None


def test_command_runs_a_module_with_dash_m_and_a_script_by_path() -> None:
    assert command("py", "exit_manager", ("--x",)) == ["py", "-m", "exit_manager", "--x"]
    assert command("py", "/a/b.py", ()) == ["py", "/a/b.py"]


def test_load_table_from_a_file_path() -> None:
    table = load_table(str(HERE / "standin_table.py"))
    assert [c.name for c in table.children] == ["simulator", "exit_manager", "day_trader"]
    assert load_table(f"{HERE / 'standin_table.py'}:BENCH_TABLE") is not table


def test_load_table_from_a_module_name() -> None:
    assert load_table("supervision.children") is TABLE


def test_load_table_refuses_a_missing_attribute() -> None:
    with pytest.raises(ValueError, match="no ChildTable named NOPE"):
        load_table("supervision.children:NOPE")


def test_duplicate_child_names_are_refused() -> None:
    spec = ChildSpec(name="a", title="a", target="a")
    with pytest.raises(ValueError, match="unique"):
        ChildTable(children=(spec, spec))


def test_stdout_readiness_needs_a_line() -> None:
    with pytest.raises(ValueError, match="ready_line"):
        ChildSpec(name="a", title="a", target="a", ready_by=ReadyBy.STDOUT_LINE)
