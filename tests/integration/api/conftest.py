"""Fixtures: a real controller API (see controller_api.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from controller_api import ControllerApi, serve_controller


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ControllerApi]:
    with serve_controller(tmp_path) as served:
        yield served
