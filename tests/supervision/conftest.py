"""Fixtures of the supervision tests: a supervisor subprocess over stand-in children."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test modules share helpers through ``supervision_harness`` (and the stand-ins' journal).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from supervision_harness import Harness  # noqa: E402


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    created = Harness(tmp_path)
    try:
        yield created
    finally:
        created.cleanup()
