"""Real services for the tests: PostgreSQL, Redis, and binaries such as haproxy or prometheus.

Each finder returns what it found, starts an embedded one, or skips with a reason that names what
is missing. With ZERODOWN_REQUIRE_ALL=1 (CI) a skip becomes a failure, so CI never passes by
skipping what it was meant to test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from zerodown import net


def require(reason: str) -> None:
    """Skip with `reason`, or fail under ZERODOWN_REQUIRE_ALL=1."""
    if os.environ.get("ZERODOWN_REQUIRE_ALL") == "1":
        pytest.fail(f"ZERODOWN_REQUIRE_ALL=1 but {reason}")
    pytest.skip(reason)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback port below the ephemeral range (see zerodown.net)."""
    return net.free_port()


def binary(name: str, why: str) -> str:
    """Path of an executable, or skip naming the Debian package to install."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None
    )
    if path is None:
        require(f"`{name}` is not installed ({why}); `.ci/run` installs it with apt-get")
    assert path is not None
    return path


@contextmanager
def postgres_server() -> Iterator[str]:
    """A PostgreSQL URL: $ZERODOWN_TEST_DATABASE_URL, the local server, or an embedded pgserver."""
    url = os.environ.get("ZERODOWN_TEST_DATABASE_URL")
    if url:
        yield url
        return
    if port_open("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    try:
        import pgserver
    except ImportError:
        require("no PostgreSQL at 127.0.0.1:5432 and the `pgserver` wheel is not installed")
    datadir = tempfile.mkdtemp(prefix="zerodown-pg-")
    server = pgserver.get_server(datadir, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def fresh_database(server_url: str, prefix: str = "zd_test") -> Iterator[str]:
    """A database of its own on the server of `server_url`, as a URL (what a spec holds),
    dropped with its connections afterwards."""
    import secrets
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"{prefix}_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def redis_server() -> Iterator[str]:
    """A Redis URL: $ZERODOWN_TEST_REDIS_URL, the local server, or a redis-server we start."""
    url = os.environ.get("ZERODOWN_TEST_REDIS_URL")
    if url:
        yield url
        return
    if port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    exe = binary("redis-server", "Redis for the session and flag store tests")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start within 10 s")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)
