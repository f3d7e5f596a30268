"""Ports on the loopback interface: for the local platform's instances, the demo and the benches.

A port is free when it is picked; nothing holds it for the process that binds it later.
"""

from __future__ import annotations

import socket
from collections.abc import Collection

LOOPBACK = "127.0.0.1"


class NoFreePort(OSError):
    """The kernel kept offering ports that are taken."""


def free_port(taken: Collection[int] = ()) -> int:
    """A port free on 127.0.0.1 now (and not in `taken`)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port
    raise NoFreePort(f"no free port on {LOOPBACK}")
