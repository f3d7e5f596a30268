"""Ports on the loopback interface: for the local platform's instances, the demo and the benches.

A port is free when it is picked; nothing holds it for the process that binds it later. So it is
picked below the kernel's ephemeral range: an outgoing connection takes its own port from that
range, and would otherwise be able to take a picked port before its listener binds it.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Collection
from pathlib import Path

LOOPBACK = "127.0.0.1"
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000  # below this are ports services are configured on


class NoFreePort(OSError):
    """The kernel kept offering ports that are taken."""


def listen_ports() -> range:
    """Ports no outgoing connection takes (empty when the kernel leaves none above LOWEST)."""
    try:
        ephemeral_low = int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768  # Linux's default
    return range(LOWEST, ephemeral_low)


def free_port(taken: Collection[int] = ()) -> int:
    """A port free on 127.0.0.1 now (and not in `taken`)."""
    candidates = listen_ports()
    for _ in range(50):
        with socket.socket() as s:
            try:
                s.bind((LOOPBACK, random.choice(candidates) if candidates else 0))
            except OSError:
                continue  # in use: try another
            port = int(s.getsockname()[1])
        if port not in taken:
            return port
    raise NoFreePort(f"no free port on {LOOPBACK}")
