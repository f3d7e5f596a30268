"""Finding the haproxy binary, checking its version, and the life of the master process.

zerodown runs HAProxy in master-worker mode (`-W`): the master is the process zerodown starts
and supervises; a reload is SIGUSR2 to the master, which starts a new worker that takes the
listening sockets over from the old one (`expose-fd listeners`, passed as `-x` by the master)
while the old worker finishes its requests.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

from zerodown import procfs
from zerodown.core.errors import PermanentDriverError

MIN_VERSION = (2, 4)  # `add server` / `del server` on the Runtime API
PACKAGE = "haproxy"  # the Debian (and Ubuntu) package
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # not on every user's PATH


def find_binary() -> str:
    """The haproxy binary ($ZERODOWN_HAPROXY, else PATH and the sbin directories), checked to be
    new enough; PermanentDriverError naming the package or version otherwise."""
    given = os.environ.get("ZERODOWN_HAPROXY")
    path = given or shutil.which(
        "haproxy", path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    )
    if not path or not os.access(path, os.X_OK):
        raise PermanentDriverError(
            "router kind haproxy needs the haproxy binary, which is not installed: "
            f"apt-get install {PACKAGE} (HAProxy {'.'.join(map(str, MIN_VERSION))} or newer),"
            " or set ZERODOWN_HAPROXY to its path"
        )
    version = binary_version(path)
    if version < MIN_VERSION:
        raise PermanentDriverError(
            f"{path} is HAProxy {'.'.join(map(str, version))}; zerodown needs "
            f"{'.'.join(map(str, MIN_VERSION))} or newer (servers added and removed through the"
            " Runtime API): install a newer haproxy (Debian 12 ships 2.6)"
        )
    return path


def binary_version(path: str) -> tuple[int, int]:
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PermanentDriverError(f"cannot run {path} -v: {exc}") from None
    found = re.search(r"version (\d+)\.(\d+)", out)
    if found is None:
        raise PermanentDriverError(f"{path} -v does not say its version: {out[:200]!r}")
    return int(found.group(1)), int(found.group(2))


def check_config(binary: str, config: Path) -> str | None:
    """None when HAProxy accepts `config`, else what it said."""
    result = subprocess.run(
        [binary, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    if result.returncode == 0:
        return None
    lines = [ln for ln in (result.stdout + result.stderr).splitlines() if "ALERT" in ln]
    return " | ".join(lines[-3:]) or result.stderr.strip()[-500:]


def ours(pid: int, config: Path) -> bool:
    """`pid` runs haproxy with `config` (a recycled pid is never signalled)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    alive = stat[stat.rindex(")") + 2 :].split()[0] not in ("Z", "X")
    return alive and str(config).encode() in cmdline


def children(pid: int) -> list[int]:
    """The master's workers (the new one, and old ones still finishing their requests)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def signal_master(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signum)


def has_clients(pid: int, ports: set[int]) -> bool:
    """`pid` holds an open client connection to one of `ports` (its listeners' ports): a
    worker that stopped accepting still has requests to finish while it does. False once the
    process is gone."""
    return bool(procfs.accepted(pid, ports))
