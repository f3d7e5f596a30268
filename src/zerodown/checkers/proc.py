"""Run a command with a deadline, keep the tail of its output, never leave it behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

TAIL_BYTES = 4000


@dataclass(frozen=True, slots=True)
class ProcResult:
    exit_code: int | None  # None: killed at the deadline
    output: str  # the tail of stdout and stderr, interleaved as written
    duration: float
    timed_out: bool

    def tail(self, limit: int = 600) -> str:
        text = self.output.strip()
        return text if len(text) <= limit else "…" + text[-limit:]


async def run_command(
    argv: list[str],
    *,
    timeout: float,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcResult:
    """Run argv in its own process group; at the deadline (or on cancel) kill the group.

    Raises OSError when the program cannot be started (not found, not executable).
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        start_new_session=True,
    )
    assert proc.stdout is not None
    tail = bytearray()

    async def read() -> None:
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(65536):
            tail.extend(chunk)
            del tail[:-TAIL_BYTES]
        await proc.wait()

    timed_out = False
    try:
        async with asyncio.timeout(timeout):
            await read()
    except TimeoutError:
        timed_out = True
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            # shielded: a cancelled caller must still reap the child it started
            await asyncio.shield(proc.wait())
    return ProcResult(
        exit_code=None if timed_out else proc.returncode,
        output=tail.decode(errors="replace"),
        duration=time.monotonic() - started,
        timed_out=timed_out,
    )
