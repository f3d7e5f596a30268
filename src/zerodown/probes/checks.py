"""One probe attempt: http (2xx/3xx pass, as in Kubernetes), tcp (connect), exec (exit 0).

http and tcp go straight to the instance's address; exec runs where the instance runs, through
its platform (`Platform.exec`). A `Prober` is what the engine's probe monitors call, so a test
world can supply its own outcomes.

A probe never raises: every failure is a ProbeResult with a message a person can act on.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Protocol

from zerodown.core.model import Instance
from zerodown.core.ports import Platform
from zerodown.spec.model import ProbeSpec


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str


class Prober(Protocol):
    async def check(self, probe: ProbeSpec, instance: Instance) -> ProbeResult:
        """One attempt of `probe` against `instance`; never raises."""
        ...


class PlatformProber:
    """The real probes: the network for http and tcp, the instance's platform for exec."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    async def check(self, probe: ProbeSpec, instance: Instance) -> ProbeResult:
        try:
            async with asyncio.timeout(probe.timeout):
                return await self._attempt(probe, instance)
        except TimeoutError:
            return ProbeResult(False, f"timed out after {probe.timeout:g}s")
        except OSError as exc:
            return ProbeResult(False, exc.strerror or type(exc).__name__)
        except Exception as exc:  # e.g. a reply no parser expected: a failed attempt, not a crash
            return ProbeResult(False, f"{type(exc).__name__}: {exc}"[:200])

    async def _attempt(self, probe: ProbeSpec, instance: Instance) -> ProbeResult:
        if probe.http is not None:
            return await _http(probe.http, instance.address)
        if probe.tcp is not None:
            host, port = _host_port(instance.address, probe.tcp.port)
            try:
                _, writer = await asyncio.open_connection(host, port)
            except OSError as exc:  # asyncio's text is "Connect call failed (addr)": say why
                why = os.strerror(exc.errno) if exc.errno else str(exc)
                return ProbeResult(False, f"tcp {port}: {why.lower()}")
            writer.close()
            await writer.wait_closed()
            return ProbeResult(True, f"tcp {port} open")
        assert probe.exec is not None
        if instance.handle is None:
            return ProbeResult(False, "not launched yet")
        result = await self.platform.exec(
            instance_id=instance.id, handle=instance.handle, argv=probe.exec, timeout=probe.timeout
        )
        return ProbeResult(
            result.code == 0,
            f"exit {result.code}" + (f": {result.output}" if result.output else ""),
        )


def _host_port(address: str, port: int | None) -> tuple[str, int]:
    host, _, default = address.rpartition(":")
    return host, port or int(default)


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
