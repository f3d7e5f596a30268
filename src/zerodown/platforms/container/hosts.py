"""Containers on several hosts: `platform: {kind: container}` with `hosts:`.

Each host runs its own container engine (Docker, or Podman's service); the controller reaches it
through the host's SSH connection (the ssh platform's HostLink): a unix socket of this machine is
forwarded to the engine's socket on the host, and the one Docker-Engine-API client of this
package (engine.py, platform.py) talks to it as to a local engine. So everything the container
platform guarantees holds per host (labels, adoption, stop signal and grace, logs, exec), and
everything the ssh platform does for hosts is reused, not repeated: the host watcher, the
placement of instances (ZERODOWN_HOST, chosen by core/hosts.py, with max_unavailable per host),
and a down host's instances replaced on the others.

Guarantees, on top of platform.py's:

- `prepare` makes sure the image is on every host that answers (there, or pulled by that host's
  engine) before the rollout starts; a host whose engine cannot be found or cannot get the image
  fails it, naming the host and the image, before any instance leaves. A host already known to
  be down is skipped and gets the image at its next launch.
- A handle is "<host>:<container id>". Containers carry the controller's marker (machine and
  state directory) as their state label, so `adopt` finds them on every host that answers.
- Instances listen on their host's address (`{host}`), on a port the host finds free.
- While a host does not answer, `observe` reports its instances as running (the engine decides
  through `host_states`) and `stop` raises TransientDriverError (retried once it is back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import asyncssh

from zerodown.core.errors import PermanentDriverError, TransientDriverError
from zerodown.core.ports import ExecResult, Exited, Placement
from zerodown.platforms.container.engine import Engine
from zerodown.platforms.container.platform import ContainerPlatform
from zerodown.platforms.ssh.connection import HostLink
from zerodown.platforms.ssh.driver import HOST_ENV, OBSERVE_TIMEOUT, Hosts, SshPlatform
from zerodown.spec.model import RunSpec, Spec

log = logging.getLogger("zerodown.platforms.container")


class HostEngine:
    """One host's engine, as a unix socket of this machine forwarded over the host's SSH
    connection (made again whenever the connection is)."""

    def __init__(self, link: HostLink, local: Path) -> None:
        self.link = link
        self.local = local
        self.remote = ""
        self.listener: asyncssh.SSHListener | None = None
        self.forwarded_on: asyncssh.SSHClientConnection | None = None
        self.lock: asyncio.Lock | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def ready(self) -> None:
        loop = asyncio.get_running_loop()
        if self.lock is None or self.loop is not loop:  # a lock belongs to its event loop
            self.lock, self.loop = asyncio.Lock(), loop
        async with self.lock:  # concurrent calls after a reconnection forward once
            await self._forward()

    async def _forward(self) -> None:
        await self.link.connected()
        conn = self.link.conn
        if conn is None:
            raise TransientDriverError(f"{self.link.where}: not connected")
        if conn is self.forwarded_on and self.listener is not None:
            return
        found = await self.link.request("engine")
        self.remote = str(found["socket"])
        self._close_listener()
        self.local.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.local.unlink(missing_ok=True)
        try:
            self.listener = await conn.forward_local_path(str(self.local), self.remote)
        except (OSError, asyncssh.Error) as exc:
            raise PermanentDriverError(
                f"{self.link.where}: cannot reach its container engine at {self.remote} over"
                f" SSH ({exc}); sshd must allow stream-local forwarding"
                " (AllowStreamLocalForwarding yes, the default)"
            ) from None
        self.forwarded_on = conn

    def _close_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        self.forwarded_on = None

    def close(self) -> None:
        self._close_listener()
        self.local.unlink(missing_ok=True)


class ContainerHosts(Hosts):
    """The work of containers on hosts, on the SSH thread's event loop (SshPlatform runs it)."""

    def __init__(self, spec: Spec, *, state_dir: Path, spec_dir: Path) -> None:
        super().__init__(spec, state_dir=state_dir, spec_dir=spec_dir)
        # one socket per host and controller process: a second controller of the same state
        # directory (a standby) never takes over this one's path
        names = {n: f"{n}.{os.getpid()}.sock" for n in self.links}
        self.sockets = _socket_dir(self.state_dir, max(len(n) for n in names.values()))
        self.engines = {
            n: HostEngine(link, self.sockets / names[n]) for n, link in self.links.items()
        }
        self.platforms = {n: self._platform(link) for n, link in self.links.items()}
        self.prepared: set[tuple[str, str]] = set()  # (host, release) whose image is there

    def _platform(self, link: HostLink) -> ContainerPlatform:
        async def pick_port(taken: set[int]) -> int:
            found = await link.request("port", address=link.host.address, taken=sorted(taken))
            return int(found["port"])

        return ContainerPlatform(
            state_dir=self.state_dir,
            spec_dir=self.spec_dir,
            service=self.spec.service,
            engine=Engine(self.engines[link.name].local),
            listen=link.host.address,
            state_label=self.marker,
            pick_port=pick_port,
        )

    async def _on(self, name: str) -> tuple[HostLink, ContainerPlatform]:
        """The host's link and its engine's platform, the engine reachable."""
        link = self.links[name]
        await self.engines[name].ready()
        return link, self.platforms[name]

    def _split(self, handle: str) -> tuple[str, str]:
        name, _, container = handle.partition(":")
        if name not in self.links or not container:
            raise PermanentDriverError(f"{handle!r} is not a handle of this spec's hosts")
        return name, container

    # --- prepare -------------------------------------------------------------------------

    async def prepare(self, *, release: str, run: RunSpec) -> None:
        self._watch()
        targets = [link for link in self.links.values() if not self._known_down(link)]
        results = await asyncio.gather(
            *(self._image_on(link, release, run) for link in targets), return_exceptions=True
        )
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        if errors:
            raise PermanentDriverError("; ".join(errors))
        for link in self.links.values():
            if link not in targets:
                log.warning(
                    "%s is down: it gets the image of %s when it is back", link.where, release
                )

    async def _image_on(self, link: HostLink, release: str, run: RunSpec) -> None:
        try:
            _, platform = await self._on(link.name)
            await platform.prepare(release=release, run=run)
        except TransientDriverError as exc:
            text = str(exc)
            raise TransientDriverError(
                text if text.startswith(link.where) else f"{link.where}: {text}"
            ) from None
        except PermanentDriverError as exc:
            text = str(exc).removeprefix(f"on {link.name}: ")  # the host program's words
            raise PermanentDriverError(
                text if text.startswith(link.where) else f"on {link.where}: {text}"
            ) from None
        self.prepared.add((link.name, release))

    # --- launch --------------------------------------------------------------------------

    async def launch(
        self,
        *,
        instance_id: str,
        release: str,
        run: RunSpec,
        env: Mapping[str, str],
        taken: Collection[str],
    ) -> Placement:
        self._watch()
        link = self._pick(env.get(HOST_ENV), taken)
        if (link.name, release) not in self.prepared:  # a restart, or down at prepare
            await self._image_on(link, release, run)
        _, platform = await self._on(link.name)
        placed = await platform.launch(
            instance_id=instance_id,
            release=release,
            run=run,
            env={**env, HOST_ENV: link.name},
            taken=taken,
        )
        return Placement(address=placed.address, handle=f"{link.name}:{placed.handle}")

    # --- observe, stop, adopt ------------------------------------------------------------

    async def observe(self, *, instance_id: str, handle: str) -> Exited | None:
        gone = self._gone_from_spec(handle)
        if gone is not None:
            return Exited(gone)
        name, container = self._split(handle)
        if self._known_down(self.links[name]):
            return None  # the host's fate is the engine's to decide (host_states)
        try:
            async with asyncio.timeout(OBSERVE_TIMEOUT):
                _, platform = await self._on(name)
                seen = await platform.observe(instance_id=instance_id, handle=container)
        except (TransientDriverError, TimeoutError):
            return None
        return None if seen is None else Exited(f"{seen.reason} on {name}")

    async def stop(self, *, instance_id: str, handle: str, stop_signal: str, grace: float) -> str:
        gone = self._gone_from_spec(handle)
        if gone is not None:
            return f"not stopped: {gone}"
        name, container = self._split(handle)
        if self._known_down(self.links[name]):
            raise TransientDriverError(f"{self.links[name].where} is not answering")
        _, platform = await self._on(name)
        how = await platform.stop(
            instance_id=instance_id, handle=container, stop_signal=stop_signal, grace=grace
        )
        return how if how == "already gone" else f"{how} on {name}"

    async def adopt(self) -> dict[str, Placement]:
        self._watch()
        names = list(self.links)
        replies = await asyncio.gather(
            *(self._adopt_on(name) for name in names), return_exceptions=True
        )
        found: dict[str, Placement] = {}
        for name, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                log.warning("adopting on %s: %s", name, reply)
                continue
            for iid, placed in reply.items():
                found[iid] = Placement(address=placed.address, handle=f"{name}:{placed.handle}")
        return found

    async def _adopt_on(self, name: str) -> dict[str, Placement]:
        _, platform = await self._on(name)
        return await platform.adopt()

    # --- exec, logs ----------------------------------------------------------------------

    async def exec(
        self, *, instance_id: str, handle: str, argv: Sequence[str], timeout: float
    ) -> ExecResult:
        name, container = self._split(handle)
        try:
            _, platform = await self._on(name)
        except PermanentDriverError as exc:
            raise TransientDriverError(str(exc)) from None
        return await platform.exec(
            instance_id=instance_id, handle=container, argv=argv, timeout=timeout
        )

    async def logs(self, *, instance_id: str, lines: int) -> str:
        for name, link in self.links.items():
            if self._known_down(link):
                continue
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    _, platform = await self._on(name)
                    text = await platform.logs(instance_id=instance_id, lines=lines)
                if text:
                    return text
        return ""

    async def aclose(self) -> None:
        """Let go of the engines and the hosts (the containers keep running)."""
        for platform in self.platforms.values():
            await platform.aclose()
        for engine in self.engines.values():
            engine.close()
        await super().aclose()
        with contextlib.suppress(OSError):
            self.sockets.rmdir()  # empty now; a next start makes it again


class ContainerHostsPlatform(SshPlatform):
    """The Platform port for containers on hosts: the ssh platform's thread and event loop,
    with containers instead of processes."""

    hosts_type = ContainerHosts


SOCKET_PATH_MAX = 107  # bytes of a unix socket's path (sun_path, less its final NUL)


def _socket_dir(state_dir: Path, longest_name: int) -> Path:
    """Where the forwarded engine sockets live: in the state directory when their paths fit a
    unix socket's limit, else in a directory of their own under the temp directory. Whoever can
    connect to one commands that host's engine: the directory is the controller user's only
    (made 0700 by HostEngine.ready, or by mkdtemp)."""
    near = state_dir / "engines"
    if len(str(near).encode()) + 1 + longest_name <= SOCKET_PATH_MAX:
        return near
    return Path(tempfile.mkdtemp(prefix="zd-engines-"))
