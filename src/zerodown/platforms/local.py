"""The local platform: instances as processes on this machine, each in its own process group,
listening on a free port of 127.0.0.1 and logging to `.zerodown/logs/<instance id>.log`.

Guarantees (the Platform contract, core/ports.py):

- A handle is "<pid>:<start time>" (the start time in clock ticks after boot, /proc/<pid>/stat
  field 22). Every action parses it and acts only on a process that still has that start time, so
  a pid the kernel recycled for another process is never signalled, observed or exec'd into.
- Every instance carries ZERODOWN_INSTANCE and ZERODOWN_STATE_DIR in its environment, so `adopt`
  finds the processes of this state directory in /proc, with their port, even one whose launch a
  controller never got to record.
- `launch` raises only PermanentDriverError, with what to fix in words (a command not found, an
  environment too large for the kernel, a log file that cannot be opened); `stop` always returns,
  even for a process that outlives SIGKILL.
- An exec probe runs with the instance's own working directory and environment (read from /proc),
  minus the two markers, so that it is never taken for an instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import signal
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from zerodown.core.errors import PermanentDriverError, TransientDriverError
from zerodown.core.ports import ExecResult, Exited, Placement
from zerodown.drivers import DriverContext
from zerodown.net import LOOPBACK, NoFreePort, free_port
from zerodown.spec.model import RunSpec

HOST = LOOPBACK
KILL_WAIT = 10.0  # seconds `stop` waits for a process after SIGKILL (one stuck in the kernel)
LOG_TAIL_BYTES = 8192  # how much of an instance's log `logs` reads
EXEC_OUTPUT = 200  # characters of an exec's output kept
EXEC_SETTLE_POLLS = 1000  # 1 ms polls for a new process's environment to appear (execve)
INSTANCE_MARKER = "ZERODOWN_INSTANCE"
STATE_MARKER = "ZERODOWN_STATE_DIR"


def create(ctx: DriverContext) -> LocalPlatform:
    return LocalPlatform(state_dir=ctx.paths.state, spec_dir=ctx.spec_dir)


def proc_start_ticks(pid: int, *, zombie: bool = False) -> int | None:
    """The process's start time; None when it does not exist (or is a zombie, unless asked)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X") and not zombie:
        return None
    return int(fields[19])


@dataclass(frozen=True)
class Process:
    """One process, named by its pid and its start time together."""

    pid: int
    start_ticks: int

    @property
    def handle(self) -> str:
        return f"{self.pid}:{self.start_ticks}"

    @classmethod
    def parse(cls, handle: str) -> Process:
        pid, _, ticks = handle.partition(":")
        if not (pid.isdigit() and ticks.isdigit() and int(pid) > 0 and int(ticks) > 0):
            raise PermanentDriverError(f"{handle!r} is not a local process handle (pid:start)")
        return cls(int(pid), int(ticks))

    def running(self) -> bool:
        return proc_start_ticks(self.pid) == self.start_ticks


class LocalPlatform:
    def __init__(self, *, state_dir: Path, spec_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.spec_dir = spec_dir
        self.log_dir = self.state_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._children: dict[Process, subprocess.Popen[bytes]] = {}  # to read exit statuses

    # --- prepare, launch ---------------------------------------------------------------------

    async def prepare(self, *, release: str, run: RunSpec) -> None:
        """Nothing to do: the command and its workdir are on this machine already."""

    async def launch(
        self,
        *,
        instance_id: str,
        release: str,
        run: RunSpec,
        env: Mapping[str, str],
        taken: Collection[str],
    ) -> Placement:
        try:
            port = free_port(_local_ports(taken))
        except NoFreePort as exc:
            raise PermanentDriverError(str(exc)) from None

        def fill(text: str) -> str:
            return text.replace("{port}", str(port)).replace("{version}", release)

        argv = [fill(a) for a in run.command]
        child_env = {
            **os.environ,
            **{k: fill(v) for k, v in run.env.items()},
            **env,
            "PORT": str(port),
            INSTANCE_MARKER: instance_id,
            "ZERODOWN_RELEASE": release,
            STATE_MARKER: str(self.state_dir),
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
                env=child_env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise PermanentDriverError(_launch_error(exc, argv, child_env, workdir)) from exc
        except (ValueError, subprocess.SubprocessError) as exc:  # e.g. a NUL byte in run.env
            raise PermanentDriverError(f"cannot start {argv[0]!r}: {exc}") from exc
        finally:
            log.close()
        # Not reaped until we poll it, so its start time is there even if it exited at once.
        ticks = proc_start_ticks(child.pid, zombie=True)
        if ticks is None:
            raise PermanentDriverError(f"{argv[0]!r} started but vanished before it could be seen")
        process = Process(child.pid, ticks)
        self._children[process] = child
        await self._exec_done(process)
        return Placement(address=f"{HOST}:{port}", handle=process.handle)

    async def _exec_done(self, process: Process) -> None:
        """Wait until the new program's environment is in /proc: Popen may return (vfork) while
        execve is still setting it up, and `adopt` and `exec` read it there."""
        for _ in range(EXEC_SETTLE_POLLS):
            environ = _environ(process.pid)
            if (environ and INSTANCE_MARKER in environ) or not self._alive(process):
                return
            await asyncio.sleep(0.001)

    # --- observe, stop -----------------------------------------------------------------------

    async def observe(self, *, instance_id: str, handle: str) -> Exited | None:
        process = Process.parse(handle)
        if self._alive(process):
            return None
        child = self._children.pop(process, None)
        code = child.returncode if child is not None else None
        tail = await self.logs(instance_id=instance_id, lines=5)
        return Exited(f"process exited ({_status(code)})" + (f": {tail}" if tail else ""))

    def _alive(self, process: Process) -> bool:
        child = self._children.get(process)
        if child is not None:  # ours: its pid cannot be reused before we reap it
            return child.poll() is None
        return process.running()

    async def stop(self, *, instance_id: str, handle: str, stop_signal: str, grace: float) -> str:
        """Signal the process group, wait `grace`, then SIGKILL. Returns how it ended."""
        process = Process.parse(handle)
        if not self._alive(process):
            self._children.pop(process, None)
            return "already gone"
        self._signal(process, getattr(signal, stop_signal))
        if await self._gone_within(process, grace):
            return f"exited after {stop_signal}"
        self._signal(process, signal.SIGKILL)
        if await self._gone_within(process, KILL_WAIT):
            return f"killed (SIGKILL) {grace:g}s after {stop_signal}"
        return f"still there {KILL_WAIT:g}s after SIGKILL (stuck in the kernel?)"

    async def _gone_within(self, process: Process, seconds: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while self._alive(process):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.05)
        self._children.pop(process, None)
        return True

    def _signal(self, process: Process, sig: int) -> None:
        """The whole group (the instance's own children too), if its leader is still ours."""
        if process.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)

    # --- adopt -------------------------------------------------------------------------------

    async def adopt(self) -> dict[str, Placement]:
        return await asyncio.to_thread(self._scan)

    def _scan(self) -> dict[str, Placement]:
        """Process group leaders of this state directory found in /proc, by instance id."""
        found: dict[str, Placement] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            environ = _environ(int(entry.name))
            if environ is None or environ.get(STATE_MARKER) != str(self.state_dir):
                continue
            pid = int(entry.name)
            ticks = proc_start_ticks(pid)
            iid, port = environ.get(INSTANCE_MARKER), environ.get("PORT")
            if ticks is None or iid is None or port is None or not _leads_group(pid):
                continue
            found[iid] = Placement(address=f"{HOST}:{port}", handle=Process(pid, ticks).handle)
        return found

    # --- exec, logs --------------------------------------------------------------------------

    async def exec(
        self, *, instance_id: str, handle: str, argv: Sequence[str], timeout: float
    ) -> ExecResult:
        """Run `argv` in the instance's directory with its environment; TimeoutError (the
        command killed) when it outlives `timeout`."""
        process = Process.parse(handle)
        try:
            cwd = os.readlink(f"/proc/{process.pid}/cwd")
            environ = _environ(process.pid)
        except OSError:
            environ = None
        if environ is None or not process.running():
            raise TransientDriverError(f"{instance_id} is not running")
        for marker in (INSTANCE_MARKER, STATE_MARKER):
            environ.pop(marker, None)
        child = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=environ,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(timeout):
                out, _ = await child.communicate()
        except BaseException:  # the timeout, or the probe cancelled
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()
            raise
        text = out.decode(errors="replace").strip()[-EXEC_OUTPUT:]
        return ExecResult(
            code=child.returncode if child.returncode is not None else -1, output=text
        )

    def log_path(self, instance_id: str) -> Path:
        if not instance_id or "/" in instance_id or instance_id.startswith("."):
            raise PermanentDriverError(f"{instance_id!r} cannot name a log file")
        return self.log_dir / f"{instance_id}.log"

    async def logs(self, *, instance_id: str, lines: int) -> str:
        try:
            with open(self.log_path(instance_id), "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
                text = log.read().decode(errors="replace")
        except (OSError, PermanentDriverError):
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    async def aclose(self) -> None:
        """Nothing to let go of: the instances keep running (a next controller adopts them)."""


def _local_ports(addresses: Collection[str]) -> set[int]:
    host_port = (a.rpartition(":") for a in addresses)
    return {int(port) for host, _, port in host_port if host == HOST and port.isdigit()}


def _environ(pid: int) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _status(code: int | None) -> str:
    if code is None:
        return "status unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"status {code}"


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
