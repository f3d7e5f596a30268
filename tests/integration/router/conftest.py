"""Fixtures of the router tests: real router processes and real backends on 127.0.0.1."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from router_kit import BackendProc, RouterProc, start_backend, start_router


@pytest.fixture(scope="session")
def backend_a() -> Iterator[BackendProc]:
    b = start_backend("a")
    yield b
    b.kill()


@pytest.fixture(scope="session")
def backend_b() -> Iterator[BackendProc]:
    b = start_backend("b")
    yield b
    b.kill()


@pytest.fixture
def backends() -> Iterator[Callable[[str], BackendProc]]:
    """Backends private to one test (they may be killed)."""
    started: list[BackendProc] = []

    def make(name: str, script: str = "backend_app.py") -> BackendProc:
        b = start_backend(name, script=script)
        started.append(b)
        return b

    yield make
    for b in started:
        b.kill()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[RouterProc]:
    r = start_router(tmp_path)
    yield r
    r.stop(signal.SIGKILL)


@pytest.fixture
def routers(tmp_path: Path) -> Iterator[Callable[..., RouterProc]]:
    started: list[RouterProc] = []

    def make(**kw: Any) -> RouterProc:
        r = start_router(tmp_path, **kw)
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop(signal.SIGKILL)
