"""One probe attempt: http (2xx/3xx pass, as in Kubernetes), tcp (connect), exec (exit 0).

A probe never raises: every failure is a ProbeResult with a message a person can act on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from zerodown.spec.model import ProbeSpec


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str


def _host_port(address: str, port: int | None) -> tuple[str, int]:
    host, _, default = address.rpartition(":")
    return host, port or int(default)


async def check(probe: ProbeSpec, address: str, *, cwd: Path, env: dict[str, str]) -> ProbeResult:
    try:
        return await asyncio.wait_for(_attempt(probe, address, cwd, env), probe.timeout)
    except TimeoutError:
        return ProbeResult(False, f"timed out after {probe.timeout:g}s")
    except OSError as exc:
        return ProbeResult(False, exc.strerror or type(exc).__name__)
    except Exception as exc:  # e.g. a reply no parser expected: a failed attempt, not a crash
        return ProbeResult(False, f"{type(exc).__name__}: {exc}"[:200])


async def _attempt(probe: ProbeSpec, address: str, cwd: Path, env: dict[str, str]) -> ProbeResult:
    if probe.http is not None:
        return await _http(probe.http, address)
    if probe.tcp is not None:
        host, port = _host_port(address, probe.tcp.port)
        _, writer = await asyncio.open_connection(host, port)
        writer.close()
        await writer.wait_closed()
        return ProbeResult(True, f"tcp {port} open")
    assert probe.exec is not None
    child = await asyncio.create_subprocess_exec(
        *probe.exec,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await child.communicate()
    except asyncio.CancelledError:
        child.kill()
        await child.wait()
        raise
    text = out.decode(errors="replace").strip()[-200:]
    return ProbeResult(
        child.returncode == 0, f"exit {child.returncode}" + (f": {text}" if text else "")
    )


async def _http(path: str, address: str) -> ProbeResult:
    host, port = _host_port(address, None)
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: zerodown-probe\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        await writer.drain()
        data = await reader.read(4096)
    finally:
        writer.close()
    line, _, rest = data.partition(b"\r\n")
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return ProbeResult(False, f"GET {path}: not an HTTP response")
    status = int(parts[1])
    body = rest.partition(b"\r\n\r\n")[2].decode(errors="replace").strip()[:120]
    message = f"GET {path} → {status}" + (f" {body!r}" if body else "")
    return ProbeResult(200 <= status < 400, message)
