"""Fixtures: a real flag server (uvicorn on 127.0.0.1) and an HTTP client for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flagserver import FlagServer, serve


@pytest.fixture
def flag_server(tmp_path: Path) -> Iterator[FlagServer]:
    with serve(tmp_path / "flags.db", usage_interval=0.0) as server:
        yield server


@pytest.fixture
def client(flag_server: FlagServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=flag_server.url, timeout=10) as c:
        yield c
