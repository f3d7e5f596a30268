"""Which router the deploy scenario tests run against: builtin, haproxy, nginx.

A scenario test opts in with `@every_router` (it then runs once per kind in ROUTER_KINDS); the
`router_kind` fixture skips a kind whose binary is not installed, naming the Debian package
(a failure under ZERODOWN_REQUIRE_ALL=1), and the `workspace` fixture writes it into the spec.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

import pytest

from support.services import require
from zerodown.routers.accesslog import AccessLog

ROUTER_KINDS: tuple[str, ...] = ("builtin", "haproxy", "nginx")
"""Every kind a scenario test marked `every_router` runs against."""

BINARIES: dict[str, tuple[str, str]] = {
    "haproxy": ("haproxy", "haproxy"),
    "nginx": ("nginx", "nginx-light"),
}
"""kind -> (binary, the Debian package that installs it)."""

SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # not on every user's PATH

every_router = pytest.mark.parametrize("router_kind", ROUTER_KINDS, indirect=True)


def find_binary(name: str) -> str | None:
    path = os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    return shutil.which(name, path=path)


def router_missing(kind: str) -> str | None:
    """Why `kind` cannot run here, or None."""
    binary = BINARIES.get(kind)
    if binary is not None and find_binary(binary[0]) is None:
        return f"router kind {kind} needs {binary[0]} (apt-get install {binary[1]})"
    return None


def require_router(kind: str) -> None:
    reason = router_missing(kind)
    if reason is not None:
        require(reason)


def captured_lines(access: AccessLog) -> list[bytes]:
    """The lines the collector reads from now on, kept as they came (a test compares them with
    the requests it sent); the collector still counts them."""
    lines: list[bytes] = []
    receive = access.receive_many

    def capture(batch: Sequence[bytes]) -> None:
        lines.extend(b for b in batch if b)
        receive(batch)

    access.receive_many = capture  # type: ignore[method-assign]
    return lines
