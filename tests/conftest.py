from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.containers import Engine, podman_engine
from support.servers import serve_asgi, serve_wsgi
from support.services import postgres_server, redis_server
from support.site import Site, serve_site


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def container_engine() -> Iterator[Engine]:
    """Podman's Docker-compatible service on a socket of its own (support/containers.py)."""
    with podman_engine() as engine:
        yield engine


Serve = Callable[[Any], AbstractContextManager[str]]


@pytest.fixture
def asgi_server() -> Serve:
    return serve_asgi


@pytest.fixture
def wsgi_server() -> Serve:
    return serve_wsgi


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the controller's loop), through anyio's pytest plugin."""
    return "asyncio"


@pytest.fixture
def site() -> Iterator[Site]:
    """A scripted HTTP site on loopback (metric sources, smoke targets, webhooks)."""
    with serve_site() as s:
        yield s
