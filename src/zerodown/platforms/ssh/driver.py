"""The ssh platform: instances as processes on the spec's `hosts:`, reached over SSH (asyncssh).

Guarantees (the Platform contract, core/ports.py), as the local platform keeps them, per host:

- `prepare` ships the release's `run.workdir` tree to every host (ship.py) before the rollout
  starts; a host that cannot be reached, refuses our key or shows a host key known_hosts does not
  trust fails it, naming the host and what to do, before any instance starts or leaves. A host the
  watcher already knows to be down is skipped (the engine replaces its instances); it gets the
  release at its next launch.
- A handle is "<host>:<pid>:<start ticks>"; the host-side program (remote.py) acts only on a
  process that still has that start time. Every instance carries the controller's marker
  (machine and state directory) and its host's name in its environment, so `adopt` finds them
  on every host that answers, even ones whose launch was never recorded.
- An instance goes where the engine asks (ZERODOWN_HOST in `env`, chosen by core/hosts.py), or
  else to the answering host with the fewest instances; it listens on its host's address
  (`{host}` in run.command and run.env), on a port the host finds free.
- While a host does not answer, `observe` reports its instances as running (the engine learns of
  the host through `host_states` and decides), and `stop` raises TransientDriverError so the
  engine tries again once the host is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Collection, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from zerodown.core.errors import PermanentDriverError, TransientDriverError
from zerodown.core.ports import ExecResult, Exited, HostState, Placement
from zerodown.platforms.ssh.artifact import unpacked
from zerodown.platforms.ssh.connection import PING_EVERY, HostLink
from zerodown.platforms.ssh.ship import LocalFile, manifest, ship
from zerodown.spec.model import RunSpec, Spec

log = logging.getLogger("zerodown.platforms.ssh")

HOST_ENV = "ZERODOWN_HOST"
OBSERVE_TIMEOUT = 3.0
DOWN_RETRY = 1.0  # seconds between attempts to reach a host that does not answer
KILL_WAIT = 10.0  # the host program's wait after SIGKILL


class Hosts:
    """The platform's work, on the SSH thread's event loop (see SshPlatform)."""

    def __init__(self, spec: Spec, *, state_dir: Path, spec_dir: Path) -> None:
        if not spec.hosts:
            raise PermanentDriverError("platform ssh needs hosts: in the spec")
        self.spec = spec
        self.state_dir = state_dir.resolve()
        self.spec_dir = spec_dir
        self.marker = f"{socket.gethostname()}:{self.state_dir}"
        self.links = {
            h.name: HostLink(h, spec.ssh, spec_dir=spec_dir, service=spec.service)
            for h in spec.hosts
        }
        self.shipped: set[tuple[str, str]] = set()  # (host, release) this controller shipped
        self.watcher: asyncio.Task[None] | None = None

    # --- hosts ---------------------------------------------------------------------------

    def _watch(self) -> None:
        if self.watcher is None or self.watcher.done():
            self.watcher = asyncio.create_task(self._watch_loop(), name="ssh hosts")

    async def _watch_loop(self) -> None:
        await asyncio.gather(*(self._watch_host(link) for link in self.links.values()))

    @staticmethod
    async def _watch_host(link: HostLink) -> None:
        """One loop per host, so that a host that hangs delays no other host's ping."""
        while True:
            state = await link.check()
            await asyncio.sleep(PING_EVERY if state.up else DOWN_RETRY)

    async def host_states(self) -> Sequence[HostState]:
        self._watch()
        return [
            HostState(name=n, address=link.host.address, up=link.state.up, reason=link.state.reason)
            for n, link in self.links.items()
        ]

    def _link(self, handle: str) -> tuple[HostLink, int, int]:
        name, _, rest = handle.partition(":")
        pid, _, ticks = rest.partition(":")
        link = self.links.get(name)
        if link is None or not (pid.isdigit() and ticks.isdigit()):
            raise PermanentDriverError(f"{handle!r} is not a handle of this spec's hosts")
        return link, int(pid), int(ticks)

    def _known_down(self, link: HostLink) -> bool:
        return link.ever_up and not link.state.up

    # --- prepare -------------------------------------------------------------------------

    async def _tree(self, release: str, run: RunSpec) -> Path:
        """What a host receives: `run.workdir`, or `run.artifact` unpacked here once."""
        if run.artifact is not None:
            archive = self.spec_dir / run.artifact.replace("{version}", release)
            into = self.state_dir / "artifacts" / release
            return await asyncio.to_thread(unpacked, archive, into)
        workdir = (self.spec_dir / run.workdir).resolve()
        if not workdir.is_dir():
            raise PermanentDriverError(f"run.workdir {workdir} does not exist: nothing to ship")
        return workdir

    async def prepare(self, *, release: str, run: RunSpec) -> None:
        self._watch()
        workdir = await self._tree(release, run)
        files = await asyncio.to_thread(manifest, workdir, self.state_dir)
        targets = [link for link in self.links.values() if not self._known_down(link)]
        results = await asyncio.gather(
            *(self._ship(link, release, workdir, files) for link in targets),
            return_exceptions=True,
        )
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        if errors:
            raise PermanentDriverError("; ".join(errors))
        for link in self.links.values():
            if link not in targets:
                log.warning(
                    "%s is down: %s gets %s when it is back", link.where, link.name, release
                )

    async def _ship(
        self, link: HostLink, release: str, workdir: Path, files: dict[str, LocalFile]
    ) -> None:
        try:
            done = await ship(
                link,
                release=release,
                workdir=workdir,
                files=files,
                keep=self.spec.ssh.keep_releases,
                state=self.marker,
            )
        except (TransientDriverError, PermanentDriverError):
            raise
        except Exception as exc:  # an SFTP error, a full disk: the host's words
            raise PermanentDriverError(f"{link.where}: shipping {release} failed: {exc}") from exc
        self.shipped.add((link.name, release))
        log.info("shipped %s to %s", release, done.describe())

    async def _ensure(self, link: HostLink, release: str, run: RunSpec) -> None:
        """A release this controller has not shipped to this host (a restart, a host that was
        down at prepare): shipped now; unchanged files are not sent again."""
        if (link.name, release) in self.shipped:
            return
        workdir = await self._tree(release, run)
        files = await asyncio.to_thread(manifest, workdir, self.state_dir)
        await self._ship(link, release, workdir, files)

    # --- launch --------------------------------------------------------------------------

    def _pick(self, wanted: str | None, taken: Collection[str]) -> HostLink:
        up = [link for link in self.links.values() if not self._known_down(link)]
        if not up:
            raise TransientDriverError("no host is answering")
        if wanted is not None and wanted in self.links and self.links[wanted] in up:
            return self.links[wanted]
        hosts = [a.rpartition(":")[0].strip("[]") for a in taken]
        return min(up, key=lambda link: hosts.count(link.host.address))

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
        await self._ensure(link, release, run)
        address = link.host.address
        ports = [
            int(port)
            for host, _, port in (a.rpartition(":") for a in taken)
            if host.strip("[]") == address and port.isdigit()
        ]
        child_env = {
            **run.env,
            **env,
            "ZERODOWN_INSTANCE": instance_id,
            "ZERODOWN_STATE_DIR": self.marker,
            "ZERODOWN_RELEASE": release,
            HOST_ENV: link.name,
        }
        started = await link.request(
            "launch",
            instance=instance_id,
            release=release,
            address=address,
            argv=list(run.command),
            env=child_env,
            taken=ports,
        )
        return Placement(
            address=_join(address, int(started["port"])),
            handle=f"{link.name}:{started['pid']}:{started['ticks']}",
        )

    # --- observe, stop, adopt ------------------------------------------------------------

    def _gone_from_spec(self, handle: str) -> str | None:
        """Why a handle's host is not ours any more (hosts: changed, then a restart)."""
        name = handle.partition(":")[0]
        if name in self.links:
            return None
        return f"its host {name} is no longer in hosts: (left running there, if it runs)"

    async def observe(self, *, instance_id: str, handle: str) -> Exited | None:
        gone = self._gone_from_spec(handle)
        if gone is not None:
            return Exited(gone)
        link, pid, ticks = self._link(handle)
        if self._known_down(link):
            return None  # the host's fate is the engine's to decide (host_states)
        try:
            seen = await link.request(
                "observe", timeout=OBSERVE_TIMEOUT, instance=instance_id, pid=pid, ticks=ticks
            )
        except TransientDriverError:
            return None
        if seen["running"]:
            return None
        tail = seen.get("tail") or ""
        return Exited(
            f"process exited ({seen['status']}) on {link.name}" + (f": {tail}" if tail else "")
        )

    async def stop(self, *, instance_id: str, handle: str, stop_signal: str, grace: float) -> str:
        gone = self._gone_from_spec(handle)
        if gone is not None:
            return f"not stopped: {gone}"
        link, pid, ticks = self._link(handle)
        done = await link.request(
            "stop",
            timeout=grace + KILL_WAIT + 10,
            instance=instance_id,
            pid=pid,
            ticks=ticks,
            signal=stop_signal,
            grace=grace,
        )
        how = str(done["how"])
        return how if how == "already gone" else f"{how} on {link.name}"

    async def adopt(self) -> dict[str, Placement]:
        self._watch()
        found: dict[str, Placement] = {}
        replies = await asyncio.gather(
            *(
                link.request("adopt", state=self.marker, host=link.name)
                for link in self.links.values()
            ),
            return_exceptions=True,
        )
        for link, reply in zip(self.links.values(), replies, strict=True):
            if isinstance(reply, BaseException):
                log.warning("adopting on %s: %s", link.name, reply)
                continue
            for item in reply["instances"]:
                found[item["instance"]] = Placement(
                    address=_join(link.host.address, int(item["port"])),
                    handle=f"{link.name}:{item['pid']}:{item['ticks']}",
                )
        return found

    # --- exec, logs ----------------------------------------------------------------------

    async def exec(
        self, *, instance_id: str, handle: str, argv: Sequence[str], timeout: float
    ) -> ExecResult:
        link, pid, ticks = self._link(handle)
        try:
            done = await link.request(
                "exec", timeout=timeout + 5, pid=pid, ticks=ticks, argv=list(argv), limit=timeout
            )
        except PermanentDriverError as exc:
            raise TransientDriverError(str(exc)) from None
        if done.get("timeout"):
            raise TimeoutError(f"{argv[0]} ran over {timeout:g}s on {link.name}")
        return ExecResult(code=int(done["code"]), output=str(done["output"]))

    async def logs(self, *, instance_id: str, lines: int) -> str:
        for link in self.links.values():
            if self._known_down(link):
                continue
            with contextlib.suppress(Exception):
                text = await link.request("logs", timeout=5, instance=instance_id, lines=lines)
                if text["text"]:
                    return str(text["text"])
        return ""

    async def aclose(self) -> None:
        """Let go of the hosts (the instances keep running: a next controller adopts them)."""
        if self.watcher is not None:
            self.watcher.cancel()
            with contextlib.suppress(BaseException):
                await self.watcher
        for link in self.links.values():
            await link.close()


T = TypeVar("T")


class SshPlatform:
    """The Platform port. asyncssh runs on an event loop of its own, in one thread: connections
    and the host watcher outlive any one caller's loop (the controller's, or a test's that
    runs each scenario with asyncio.run), and a slow host never holds the caller's loop."""

    hosts_type: type[Hosts] = Hosts  # containers on hosts: platforms/container/hosts.py

    def __init__(self, spec: Spec, *, state_dir: Path, spec_dir: Path) -> None:
        self.hosts = self.hosts_type(spec, state_dir=state_dir, spec_dir=spec_dir)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def _call(self, work: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="ssh", daemon=True)
            self._thread.start()
            self._loop = loop
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    async def host_states(self) -> Sequence[HostState]:
        return await self._call(self.hosts.host_states())

    async def prepare(self, *, release: str, run: RunSpec) -> None:
        await self._call(self.hosts.prepare(release=release, run=run))

    async def launch(
        self,
        *,
        instance_id: str,
        release: str,
        run: RunSpec,
        env: Mapping[str, str],
        taken: Collection[str],
    ) -> Placement:
        return await self._call(
            self.hosts.launch(
                instance_id=instance_id, release=release, run=run, env=env, taken=taken
            )
        )

    async def observe(self, *, instance_id: str, handle: str) -> Exited | None:
        return await self._call(self.hosts.observe(instance_id=instance_id, handle=handle))

    async def stop(self, *, instance_id: str, handle: str, stop_signal: str, grace: float) -> str:
        return await self._call(
            self.hosts.stop(
                instance_id=instance_id, handle=handle, stop_signal=stop_signal, grace=grace
            )
        )

    async def adopt(self) -> dict[str, Placement]:
        return await self._call(self.hosts.adopt())

    async def exec(
        self, *, instance_id: str, handle: str, argv: Sequence[str], timeout: float
    ) -> ExecResult:
        return await self._call(
            self.hosts.exec(instance_id=instance_id, handle=handle, argv=argv, timeout=timeout)
        )

    async def logs(self, *, instance_id: str, lines: int) -> str:
        return await self._call(self.hosts.logs(instance_id=instance_id, lines=lines))

    async def aclose(self) -> None:
        """Let go of the hosts and stop the SSH thread (a later call starts them again)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            await self._call(self.hosts.aclose())
        finally:
            self._loop = self._thread = None
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, 10)
            if not thread.is_alive():
                loop.close()


def _join(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
