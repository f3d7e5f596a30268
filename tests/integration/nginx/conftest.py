from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.nginx.nginx_kit import Backends, nginx_binary


@pytest.fixture
def nginx() -> str:
    return nginx_binary()


@pytest.fixture
def backends() -> Iterator[Backends]:
    b = Backends()
    yield b
    b.stop_all()
