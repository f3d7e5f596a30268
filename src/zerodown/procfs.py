"""What /proc says about a process: whether it still runs, and the TCP connections it holds.

The router drivers use these to tell when an old worker has finished its clients; the chaos
bench, which requests a killed process held.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LISTEN = "0A"  # /proc/net/tcp's state column


def running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")


def accepted(pid: int, ports: set[int]) -> set[tuple[int, int]]:
    """The connections process `pid` holds (not yet closed on its side) whose local port is one
    of `ports` (its listeners'), as (local port, remote port): its file descriptors' sockets
    looked up in the TCP tables of its network namespace. Empty once the process is gone."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return set()
    sockets = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
            if link.startswith("socket:["):
                sockets.add(link[8:-1])
    found = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            # local address, remote address, state, ..., inode (the 10th column)
            fields = row.split()
            local = int(fields[1].rsplit(":", 1)[1], 16)
            if fields[3] != LISTEN and fields[9] in sockets and local in ports:
                found.add((local, int(fields[2].rsplit(":", 1)[1], 16)))
    return found
