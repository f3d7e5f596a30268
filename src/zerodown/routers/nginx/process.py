"""The nginx master zerodown starts, supervises and reloads (managed mode).

nginx runs in the foreground (`daemon off`) in its own session, so it outlives the controller
like the built-in router does; its pid file says which master is ours, and a pid is trusted only
while its command line still names our configuration file (a recycled pid is never signalled).

A reload is SIGHUP to the master: it reads the configuration, starts new workers, waits 100 ms,
then tells the old workers to stop accepting, close their idle connections and exit once their
requests are done (`worker_shutdown_timeout` bounds that). `reload` returns once that hand-over
is visible in /proc: at least one worker the master started after the signal, and every worker
from before it shutting down or gone. From then on no new request is routed by the old table.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from zerodown import procfs
from zerodown.core.errors import PermanentDriverError, SpecError, TransientDriverError
from zerodown.routers.nginx.validate import MISSING, locate

MIN_VERSION = (1, 19, 5)  # -e (the error log named on the command line)
START_WAIT = 5.0  # seconds a new master has to start its workers
RELOAD_WAIT = 10.0  # seconds a reload has to hand over to new workers
KILL_WAIT = 10.0
SHUTTING_DOWN = b"shutting down"  # in an old worker's process title


def find_binary() -> str:
    """The nginx binary ($ZERODOWN_NGINX, else PATH and the sbin directories), new enough; a
    SpecError on router.kind naming the Debian package or the version otherwise."""
    found = locate()
    if found is None:
        raise SpecError(MISSING, field="router.kind")
    version = binary_version(found)
    if version < MIN_VERSION:
        raise SpecError(
            f"{found} is nginx {_dotted(version)}; zerodown needs {_dotted(MIN_VERSION)} or newer"
            " (it names its error log with -e); Debian 12 ships 1.22",
            field="router.kind",
        )
    return found


def binary_version(path: str) -> tuple[int, ...]:
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SpecError(f"cannot run {path} -v: {exc}", field="router.kind") from None
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out)
    if found is None:
        raise SpecError(f"{path} -v does not say its version: {out[:200]!r}", field="router.kind")
    return tuple(int(g) for g in found.groups())


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


@dataclass(frozen=True)
class Workers:
    """The master's children: serving workers, and old ones finishing their requests."""

    serving: frozenset[int]
    draining: frozenset[int]


class NginxProcess:
    def __init__(self, *, binary: str, directory: Path, error_log: Path, output: Path) -> None:
        self.binary = binary
        self.directory = directory  # holds nginx.conf, the routes file, the pid file, temp dirs
        self.error_log = error_log
        self.output = output  # the master's stdout and stderr
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.directory / "nginx.conf"

    @property
    def pid_file(self) -> Path:
        return self.directory / "nginx.pid"

    def argv(self, *extra: str) -> list[str]:
        return [
            self.binary,
            "-p",
            str(self.directory),
            "-c",
            str(self.config),
            "-e",
            str(self.error_log),
            *extra,
        ]

    def pid(self) -> int | None:
        """Our master's pid while it runs."""
        try:
            pid = int(self.pid_file.read_text())
            # nginx rewrites its title: "nginx: master process /usr/sbin/nginx -p … -c FILE …"
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (OSError, ValueError):
            return None
        ours = b" -c " + str(self.config).encode() + b" " in title + b" "
        return pid if ours and b"master process" in title and procfs.running(pid) else None

    def test(self) -> None:
        """`nginx -t` on the files as written: PermanentDriverError with nginx's words."""
        result = subprocess.run(
            self.argv("-t", "-q"), capture_output=True, text=True, timeout=30, check=False
        )
        if result.returncode != 0:
            raise PermanentDriverError(
                f"nginx refused the configuration zerodown wrote: {result.stderr.strip()}"
            )

    async def spawn(self) -> int:
        """Start the master; its pid once its workers run. SpecError (on router.listen) quoting
        nginx when it does not come up, e.g. when the address is taken."""
        (self.directory / "tmp").mkdir(parents=True, exist_ok=True)
        if self._child is not None:
            self._child.poll()  # reap the master we started before, if it died
        await self._end_orphans()
        with open(self.output, "ab") as out:
            child = subprocess.Popen(
                self.argv(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._child = child
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline and child.poll() is None:
            if self.pid() == child.pid and self.workers(child.pid).serving:
                return child.pid
            await asyncio.sleep(0.02)
        if child.poll() is None:
            child.kill()
            child.wait()
        raise SpecError(
            f"nginx did not start: {self.error_tail() or 'no error logged'}", field="router.listen"
        )

    async def _end_orphans(self) -> None:
        """Workers of a master that died (kill -9) keep serving and hold the listening socket,
        so no new master could bind it. They are in the old master's session (its pid, ours
        since we started it with setsid): ask them to finish their requests and go (SIGQUIT
        closes their listeners at once), and wait a little for that."""
        try:
            old = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        orphans = [pid for pid in _session(old) if b"nginx: " in _title(pid)]
        for pid in orphans:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 2.0
        while any(procfs.running(pid) for pid in orphans) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # they close their listeners first, then finish requests

    def error_tail(self, lines: int = 3) -> str:
        """The last error lines nginx logged (emerg, alert, crit, error), joined by " | "."""
        try:
            with open(self.error_log, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 16384))
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        bad = [
            line.split("] ", 1)[-1]
            for line in text.splitlines()
            if any(f"[{level}]" in line for level in ("emerg", "alert", "crit", "error"))
        ]
        return " | ".join(bad[-lines:])

    def workers(self, master: int) -> Workers:
        serving: set[int] = set()
        draining: set[int] = set()
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except OSError:
            children = []
        for text in children:
            pid = int(text)
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if not procfs.running(pid):
                continue
            (draining if SHUTTING_DOWN in title else serving).add(pid)
        return Workers(frozenset(serving), frozenset(draining))

    async def reload(self, master: int) -> Workers:
        """SIGHUP, then wait for the hand-over (see the module docstring). Returns the workers as
        they were just before: the ones that may still finish requests routed by the old table."""
        before = self.workers(master)
        errors_before = self.error_tail()
        try:
            os.kill(master, signal.SIGHUP)
        except OSError as exc:
            raise TransientDriverError(f"cannot signal nginx (pid {master}): {exc}") from None
        deadline = time.monotonic() + RELOAD_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            now = self.workers(master)
            if now.serving - before.serving and not (now.serving & before.serving):
                return before
            if not procfs.running(master):
                break
        errors = self.error_tail()
        raise TransientDriverError(
            "nginx did not take the new configuration within "
            f"{RELOAD_WAIT:g}s: {errors if errors != errors_before else 'no new error logged'}"
        )

    def reopen(self, master: int) -> None:
        """SIGUSR1 (`nginx -s reopen`): the master and its workers write out their buffered log
        lines, then open the log files by their names again. OSError when it cannot be sent."""
        os.kill(master, signal.SIGUSR1)

    async def stop(self, *, grace: float) -> None:
        """SIGQUIT (finish requests, then exit), SIGKILL after `grace`."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + grace
        killed = False
        while procfs.running(pid):
            if time.monotonic() > deadline + KILL_WAIT:
                return
            if time.monotonic() > deadline and not killed:
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
                killed = True
            await asyncio.sleep(0.05)
        if self._child is not None and self._child.pid == pid:
            self._child.wait()


def child_of(pid: int, parent: int) -> bool:
    """`pid` runs and is a child of `parent` (an old worker of our master, not a recycled pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[0] not in ("Z", "X") and int(fields[1]) == parent


def _session(sid: int) -> list[int]:
    """The running processes of session `sid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            out.append(int(entry.name))
    return out


def _title(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
