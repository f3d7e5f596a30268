"""Instances as local processes, each in its own process group, logging to `.zerodown/logs/`.

Every instance carries ZERODOWN_INSTANCE and ZERODOWN_STATE_DIR in its environment, so a restarted
controller finds the processes of its own state directory in /proc and adopts them instead of
launching duplicates, even one whose pid it never got to record. A pid is trusted only together
with its start time, so a recycled pid is never mistaken for an instance.

`launch` raises only PermanentDriverError, with what to fix in words (a command not found, an
environment too large for the kernel, a log file that cannot be opened); `stop` always returns,
even for a process that outlives SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import socket
import subprocess
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from zerodown.core.errors import PermanentDriverError
from zerodown.spec.model import RunSpec

KILL_WAIT = 10.0  # seconds `stop` waits for a process after SIGKILL (one stuck in the kernel)
LOG_TAIL_BYTES = 8192  # how much of an instance's log `log_tail` reads


@dataclass(frozen=True)
class Process:
    pid: int
    start_ticks: int  # /proc/<pid>/stat field 22: start time in clock ticks after boot


def proc_start_ticks(pid: int) -> int | None:
    """None when the process does not exist or is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def free_port(taken: Collection[int] = ()) -> int:
    """A port free on 127.0.0.1 now (and not in `taken`)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in taken:
            return port
    raise PermanentDriverError("no free port on 127.0.0.1")


class LocalPlatform:
    def __init__(self, *, state_dir: Path, spec_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.spec_dir = spec_dir
        self.logs = self.state_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def launch(
        self, *, instance_id: str, version: str, port: int, run: RunSpec, extra_env: dict[str, str]
    ) -> Process:
        def fill(text: str) -> str:
            return text.replace("{port}", str(port)).replace("{version}", version)

        argv = [fill(a) for a in run.command]
        env = {
            **os.environ,
            **{k: fill(v) for k, v in run.env.items()},
            **extra_env,
            "PORT": str(port),
            "ZERODOWN_INSTANCE": instance_id,
            "ZERODOWN_RELEASE": version,
            "ZERODOWN_STATE_DIR": str(self.state_dir),
        }
        workdir = (self.spec_dir / run.workdir).resolve()
        log_path = self.log_path(instance_id)
        try:
            log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
        except OSError as exc:
            raise PermanentDriverError(
                f"cannot open the instance log {log_path}: {exc.strerror or exc}"
            ) from exc
        try:
            child = subprocess.Popen(
                argv,
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise PermanentDriverError(_launch_error(exc, argv, env, workdir)) from exc
        except (ValueError, subprocess.SubprocessError) as exc:  # e.g. a NUL byte in run.env
            raise PermanentDriverError(f"cannot start {argv[0]!r}: {exc}") from exc
        finally:
            log.close()
        self._children[child.pid] = child
        ticks = proc_start_ticks(child.pid) or 0
        return Process(pid=child.pid, start_ticks=ticks)

    def alive(self, process: Process) -> bool:
        child = self._children.get(process.pid)
        if child is not None and child.poll() is not None:
            return False
        ticks = proc_start_ticks(process.pid)
        return ticks is not None and (process.start_ticks == 0 or ticks == process.start_ticks)

    def exit_code(self, pid: int) -> int | None:
        child = self._children.get(pid)
        return child.returncode if child is not None else None

    def log_path(self, instance_id: str) -> Path:
        if not instance_id or "/" in instance_id or instance_id.startswith("."):
            raise PermanentDriverError(f"{instance_id!r} cannot name a log file")
        return self.logs / f"{instance_id}.log"

    def log_tail(self, instance_id: str, lines: int = 5) -> str:
        try:
            with open(self.log_path(instance_id), "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
                text = log.read().decode(errors="replace")
        except (OSError, PermanentDriverError):
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def adoptable(self) -> dict[str, Process]:
        """Processes of this state directory found in /proc, by instance id."""
        found: dict[str, Process] = {}
        marker = f"ZERODOWN_STATE_DIR={self.state_dir}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker not in environ:
                continue
            for item in environ:
                if item.startswith(b"ZERODOWN_INSTANCE="):
                    pid = int(entry.name)
                    ticks = proc_start_ticks(pid)
                    if ticks is not None and os.getpgid(pid) == pid:
                        found[item.split(b"=", 1)[1].decode()] = Process(pid, ticks)
        return found

    async def stop(self, process: Process, *, stop_signal: str, grace: float) -> str:
        """Signal the process group, wait `grace`, then SIGKILL. Returns how it ended."""
        if not self.alive(process):
            return "already gone"
        self._signal(process.pid, getattr(signal, stop_signal))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline:
            if not self.alive(process):
                self._children.pop(process.pid, None)
                return f"exited after {stop_signal}"
            await asyncio.sleep(0.05)
        self._signal(process.pid, signal.SIGKILL)
        deadline = loop.time() + KILL_WAIT
        while self.alive(process):
            if loop.time() > deadline:
                return f"still there {KILL_WAIT:g}s after SIGKILL (stuck in the kernel?)"
            await asyncio.sleep(0.05)
        self._children.pop(process.pid, None)
        return f"killed (SIGKILL) {grace:g}s after {stop_signal}"

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)


def _launch_error(exc: OSError, argv: list[str], env: dict[str, str], workdir: Path) -> str:
    """Why a process could not start, and what to change."""
    if exc.errno == errno.E2BIG:
        size = sum(len(k) + len(v) + 2 for k, v in env.items()) + sum(len(a) + 1 for a in argv)
        return (
            f"cannot start {argv[0]!r}: its arguments and environment are too large for the "
            f"system ({size:,} bytes, or one value over 128 KiB): make run.env and "
            "run.command smaller"
        )
    if isinstance(exc, FileNotFoundError):
        if not workdir.is_dir():
            return f"cannot start {argv[0]!r}: run.workdir {workdir} does not exist"
        return f"cannot start {argv[0]!r}: not found (run.command, workdir {workdir})"
    return f"cannot start {argv[0]!r}: {exc.strerror or exc}"
