"""The router's last route table on disk, so a restarted router serves what it served before."""

from __future__ import annotations

import json
import os
from pathlib import Path

from zerodown.core.routes import RouteTable
from zerodown.routers.proxy.validate import TableError, check_table


class StateFileError(Exception):
    """The state file exists but cannot be read as a route table; the message names the file."""


def load_state(path: Path) -> RouteTable | None:
    """The saved table, or None when there is no state file yet."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StateFileError(f"{path}: cannot read the router state file: {e}") from None
    try:
        return check_table(json.loads(raw))
    except (ValueError, TableError) as e:
        raise StateFileError(
            f"{path}: not a valid route table ({e}); fix or delete the file, then let the "
            "controller apply the table again"
        ) from None


def save_state(path: Path, table: RouteTable) -> None:
    """Write atomically: temp file in the same folder, fsync, rename, fsync the folder."""
    data = json.dumps(table.to_json(), indent=1, sort_keys=True).encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
