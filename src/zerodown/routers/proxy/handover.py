"""Handing the router's listening sockets to another process, so a restart refuses nothing.

The router listens on a second unix socket beside its admin socket (`<admin socket>.handover`,
mode 0600). A process that connects and says:

- `take`: gets the router's sockets (client listener, preview listener, admin socket, this
  handover socket) with SCM_RIGHTS, starts serving on them, and answers `ready`. The old router
  then stops accepting, finishes what is in flight and exits. Until `ready`, nothing changes:
  a successor that fails to start leaves the old router serving.
- `give`: gets copies of the same sockets and nothing else happens. The controller keeps them
  so that, when a router dies, connections wait in the listen backlog for the next router
  instead of being refused.

Both sides share one kernel socket per listener, so a connection that arrives during the
handover is accepted by whichever process is still accepting: none is refused.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

NAMES = ("listen", "preview", "admin", "handover", "redirect")
MAX_MESSAGE = 4096


def handover_path(admin_socket: str | Path) -> Path:
    path = Path(admin_socket)
    return path.with_name(path.name + ".handover")


def send_sockets(conn: socket.socket, sockets: dict[str, socket.socket], **meta: Any) -> None:
    names = [n for n in NAMES if n in sockets]
    message = json.dumps({"names": names, **meta}).encode()
    socket.send_fds(conn, [message], [sockets[n].fileno() for n in names])


def request_sockets(
    path: Path, verb: bytes, *, timeout: float = 10.0
) -> tuple[socket.socket, dict[str, socket.socket], dict[str, Any]]:
    """Ask the router on `path` for its sockets (blocking): the connection (to answer `ready`
    on after a `take`), the sockets by name, and what the router said about itself."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(str(path))
        conn.sendall(verb + b"\n")
        message, fds, _flags, _addr = socket.recv_fds(conn, MAX_MESSAGE, len(NAMES))
        if not message:
            raise OSError(f"{path}: the router closed the handover connection")
        meta = json.loads(message)
        if "error" in meta:
            raise OSError(f"{path}: {meta['error']}; `zerodown release` first")
        names = meta.pop("names")
    except BaseException:
        conn.close()
        raise
    return conn, {n: socket.socket(fileno=fd) for n, fd in zip(names, fds, strict=True)}, meta
