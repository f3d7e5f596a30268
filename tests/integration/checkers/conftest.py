"""Fixtures of the tests of the check runners and the notifier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.site import Site, serve_site


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the controller's loop), through anyio's pytest plugin."""
    return "asyncio"


@pytest.fixture
def site() -> Iterator[Site]:
    with serve_site() as s:
        yield s
