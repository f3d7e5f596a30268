"""HAProxy's Runtime API (the stats socket, `level admin`): one command per connection.

Replies are text; a command HAProxy refuses answers with a message instead of raising, so the
callers check what they need (`RuntimeApi.ok`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from zerodown.core.errors import TransientDriverError

TIMEOUT = 5.0  # seconds per command
MAX_REPLY = 16 << 20


@dataclass(frozen=True, slots=True)
class ServerState:
    backend: str
    name: str
    address: str  # host:port
    weight: int
    maint: bool  # administratively in maintenance
    drain: bool


@dataclass(frozen=True, slots=True)
class ServerLoad:
    backend: str
    name: str
    address: str
    current: int  # sessions in flight now (scur)
    total: int  # sessions since start (stot)


class RuntimeApi:
    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def command(self, line: str) -> str:
        try:
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(str(self.socket))
        except (OSError, TimeoutError) as exc:
            raise TransientDriverError(
                f"HAProxy's runtime API at {self.socket} does not answer: {exc}"
            ) from None
        try:
            writer.write(line.encode() + b"\n")
            await writer.drain()
            async with asyncio.timeout(TIMEOUT):
                data = await reader.read(MAX_REPLY)
        except (OSError, TimeoutError) as exc:
            raise TransientDriverError(f"HAProxy's runtime API: {line.split()[0]}: {exc}") from None
        finally:
            writer.close()
        return data.decode(errors="replace")

    async def ok(self, line: str, *, expect: tuple[str, ...] = ("",)) -> str:
        """Run `line`; its reply must start with one of `expect` (empty: any reply that is
        not an error HAProxy knows to print)."""
        reply = await self.command(line)
        text = reply.strip()
        if any(text.startswith(e) for e in expect if e) or ("" in expect and not _is_error(text)):
            return reply
        raise TransientDriverError(f"HAProxy refused `{line}`: {text[:300]}")

    async def pid(self) -> int:
        for line in (await self.command("show info")).splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise TransientDriverError("HAProxy's `show info` has no Pid")

    async def servers(self, backends: list[str] | None = None) -> list[ServerState]:
        """`show servers state`, of every backend or of those named."""
        out: list[ServerState] = []
        for backend in backends or [""]:
            reply = await self.command(f"show servers state {backend}".strip())
            for line in reply.splitlines():
                if not line or line.startswith("#") or line[0].isalpha():
                    continue
                f = line.split()
                if len(f) < 19:
                    continue
                admin = int(f[6])
                out.append(
                    ServerState(
                        backend=f[1],
                        name=f[3],
                        address=f"{f[4]}:{f[18]}",
                        weight=int(f[7]),
                        maint=bool(admin & 0x01 or admin & 0x02 or admin & 0x20),
                        drain=bool(admin & 0x08 or admin & 0x10),
                    )
                )
        return out

    async def loads(self) -> list[ServerLoad]:
        """Per-server sessions from `show stat` (CSV)."""
        reply = await self.command("show stat -1 4 -1")
        lines = reply.splitlines()
        if not lines or not lines[0].startswith("# "):
            raise TransientDriverError(f"HAProxy's `show stat` said: {reply[:200]}")
        header = lines[0][2:].split(",")
        at = {name: i for i, name in enumerate(header)}
        out = []
        for line in lines[1:]:
            f = line.split(",")
            if len(f) < len(header):
                continue
            out.append(
                ServerLoad(
                    backend=f[at["pxname"]],
                    name=f[at["svname"]],
                    address=f[at["addr"]] if "addr" in at else "",
                    current=int(f[at["scur"]] or 0),
                    total=int(f[at["stot"]] or 0),
                )
            )
        return out


def _is_error(text: str) -> bool:
    lowered = text.lower()
    return lowered.startswith(("unknown", "no such", "require", "error", "can't", "cannot")) or (
        "not found" in lowered
        or "invalid" in lowered
        or "permission denied" in lowered
        or "failed" in lowered
    )
