"""backtesting.py is AGPL-licensed: the product never imports it, only tests and benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"tests", "bench"}  # dev-only code may use the dev dependency


def product_files() -> list[Path]:
    """Return every Python file of the product (not tests, benchmarks or hidden folders)."""
    files = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in ALLOWED or any(p.startswith(".") for p in parts):
            continue
        files.append(path)
    return files


def imports_backtesting(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]  # importlib.import_module("backtesting")
        else:
            continue
        if any(name == "backtesting" or name.startswith("backtesting.") for name in names):
            return True
    return False


def test_no_product_module_imports_backtesting_py() -> None:
    files = product_files()
    assert any(f.parts[-2:] == ("backtest", "engine.py") for f in files)
    assert any(f.parts[-2:] == ("scripts", "backtest.py") for f in files)
    offenders = [
        str(f.relative_to(ROOT)) for f in files if imports_backtesting(ast.parse(f.read_text()))
    ]
    assert offenders == []


def test_the_check_recognises_an_import_of_backtesting_py() -> None:
    assert imports_backtesting(ast.parse("from backtesting import Backtest"))
    assert imports_backtesting(ast.parse("import backtesting.lib"))
    assert not imports_backtesting(ast.parse("from backtest.engine import run_backtest"))
