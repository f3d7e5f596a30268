"""The container platform: each instance a container of `run.image`, made through the engine's
HTTP API (engine.py), on this machine.

Guarantees (the Platform contract, core/ports.py):

- A handle is the container's id. Ids are never reused, so a handle names one container for good;
  every action also checks the container's `zerodown.instance` label, and a container that is
  gone (removed, or replaced under the same name) is reported as exited, never acted on.
- Every container carries labels: the state directory, service, release, revision, instance and
  address. `adopt` lists this state directory's containers by label, so a restarted controller
  finds even one whose launch it never recorded; a container that was created but never started
  (the controller died in between) is removed there, so it can never start later beside its
  replacement.
- With `network: host` zerodown picks each instance's port on 127.0.0.1 and passes it as {port}
  and PORT, as for processes. With `network: bridge` the app listens on `run.port` inside the
  container and zerodown publishes it on a free port of 127.0.0.1.
- `prepare` makes sure the image is there: one the engine has is used as it is, any other is
  pulled, and a pull that fails raises PermanentDriverError with the engine's (the registry's)
  answer. `launch` raises only PermanentDriverError, with what to fix.
- The app is the container's PID 1, as with `docker run`: it must handle the stop signal itself
  (a PID 1 ignores the signals it installs no handler for, so it is killed after `grace`).
- `stop` sends the stop signal, waits `grace`, kills, then removes the container; it raises
  TransientDriverError only when the engine does not answer (the engine retries the retirement).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from zerodown.core.errors import PermanentDriverError, TransientDriverError
from zerodown.core.ports import ExecResult, Exited, Placement
from zerodown.net import LOOPBACK, NoFreePort, free_port
from zerodown.platforms.container.engine import (
    Engine,
    EngineError,
    EngineUnreachable,
    demultiplex,
    stream_errors,
)
from zerodown.spec.model import RunSpec

LABEL = "zerodown."  # every label zerodown sets starts with this
KILL_WAIT = 10.0  # seconds `stop` waits for a container after SIGKILL
POLL = 0.05  # seconds between looks at a container that is stopping
EXEC_OUTPUT = 200  # characters of an exec's output kept
PULL_TIMEOUT = httpx.Timeout(30.0, read=600.0)  # a layer may take long; silence that long is not
RUNNING = ("running", "paused", "restarting")

PortPicker = Callable[[set[int]], Awaitable[int]]
"""A free port of the instances' host, not one of those given (taken by this service)."""


class ContainerPlatform:
    def __init__(
        self,
        *,
        state_dir: Path,
        spec_dir: Path,
        service: str,
        engine: Engine | None = None,
        listen: str = LOOPBACK,
        state_label: str | None = None,
        pick_port: PortPicker | None = None,
    ) -> None:
        """`listen`, `state_label` and `pick_port` are for an engine on another host (hosts.py):
        the address instances listen on ({host}), the controller's marker its containers carry
        (machine and state directory), and how a free port of that host is found."""
        self.state_dir = state_dir.resolve()
        self.spec_dir = spec_dir
        self.service = service
        self.engine = engine or Engine()
        self.listen = listen
        self.state_label = state_label or str(self.state_dir)
        self.pick_port = pick_port
        # container names must be unique per engine: two state directories may run one service
        self.name_prefix = "zd-" + hashlib.sha256(self.state_label.encode()).hexdigest()[:8]

    # --- prepare -----------------------------------------------------------------------------

    async def prepare(self, *, release: str, run: RunSpec) -> None:
        image = _image(run, release)
        try:
            if await self._has_image(image):
                return
            await self._pull(image)
        except EngineUnreachable as exc:  # a deploy fails with it rather than waiting
            raise PermanentDriverError(str(exc)) from None

    async def _has_image(self, image: str) -> bool:
        try:
            await self.engine.call("GET", f"/images/{image}/json")
        except EngineError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def _pull(self, image: str) -> None:
        try:
            response = await self.engine.call(
                "POST", "/images/create", params={"fromImage": image}, timeout=PULL_TIMEOUT
            )
        except EngineError as exc:
            raise PermanentDriverError(f"cannot pull image {image}: {_words(exc)}") from None
        errors = stream_errors(response.text)
        if errors:
            raise PermanentDriverError(f"cannot pull image {image}: {errors[-1]}")
        if not await self._has_image(image):
            raise PermanentDriverError(f"image {image} is not there after a pull that succeeded")

    # --- launch ------------------------------------------------------------------------------

    async def launch(
        self,
        *,
        instance_id: str,
        release: str,
        run: RunSpec,
        env: Mapping[str, str],
        taken: Collection[str],
    ) -> Placement:
        image = _image(run, release)
        if self.pick_port is not None:
            host_port = await self.pick_port(_ports_on(self.listen, taken))
        else:
            try:
                host_port = free_port(_ports_on(LOOPBACK, taken))
            except NoFreePort as exc:
                raise PermanentDriverError(str(exc)) from None
        port = run.port if run.network == "bridge" and run.port else host_port
        address = f"{self.listen}:{host_port}"

        def fill(text: str) -> str:
            filled = text.replace("{port}", str(port)).replace("{version}", release)
            return filled.replace("{host}", self.listen)

        environment = {
            **{k: fill(v) for k, v in run.env.items()},
            **env,
            "PORT": str(port),
            "ZERODOWN_INSTANCE": instance_id,
            "ZERODOWN_RELEASE": release,
        }
        labels = {
            f"{LABEL}state": self.state_label,
            f"{LABEL}service": self.service,
            f"{LABEL}release": release,
            f"{LABEL}revision": env.get("ZERODOWN_REVISION", ""),
            f"{LABEL}instance": instance_id,
            f"{LABEL}address": address,
        }
        host: dict[str, Any] = {
            "NetworkMode": run.network,
            "Binds": [self._bind(v) for v in run.volumes],
        }
        body: dict[str, Any] = {
            "Image": image,
            "Env": [f"{k}={v}" for k, v in environment.items()],
            "Labels": labels,
            "StopSignal": run.stop_signal,
            "StopTimeout": max(1, round(run.stop_timeout)),
            "HostConfig": host,
        }
        if run.command:
            body["Cmd"] = [fill(a) for a in run.command]
        if run.workdir != ".":
            body["WorkingDir"] = run.workdir
        if run.network == "bridge":
            body["ExposedPorts"] = {f"{port}/tcp": {}}
            host["PortBindings"] = {
                f"{port}/tcp": [{"HostIp": self.listen, "HostPort": str(host_port)}]
            }
        container = await self._create(instance_id, image, body)
        try:
            await self.engine.call("POST", f"/containers/{container}/start")
        except (EngineError, EngineUnreachable) as exc:
            await self._remove(container)
            raise PermanentDriverError(f"cannot start {image}: {_words(exc)}") from None
        return Placement(address=address, handle=container)

    async def _create(self, instance_id: str, image: str, body: dict[str, Any]) -> str:
        name = f"{self.name_prefix}-{instance_id.replace('+', '_')}"
        try:
            made = await self.engine.json(
                "POST", "/containers/create", params={"name": name}, body=body
            )
        except EngineUnreachable as exc:
            raise PermanentDriverError(str(exc)) from None
        except EngineError as exc:
            if exc.status == 404:
                raise PermanentDriverError(
                    f"image {image} is not there: {_words(exc)} (it is pulled before the "
                    "rollout starts: was it removed since?)"
                ) from None
            if exc.status == 409:
                raise PermanentDriverError(
                    f"a container named {name} exists already: {instance_id} was launched before"
                ) from None
            raise PermanentDriverError(
                f"cannot create a container of {image}: {_words(exc)}"
            ) from None
        return str(made["Id"])

    def _bind(self, volume: str) -> str:
        """A relative source is a directory beside the spec (the engine wants absolute paths);
        a bare name is a named volume."""
        source, _, rest = volume.partition(":")
        if source.startswith((".", "~")) or ("/" in source and not source.startswith("/")):
            source = str((self.spec_dir / Path(source).expanduser()).resolve())
        return f"{source}:{rest}"

    # --- observe, stop -----------------------------------------------------------------------

    async def _inspect(self, instance_id: str, handle: str) -> dict[str, Any] | None:
        """The container the handle names, if it still is this instance's."""
        if not handle or "/" in handle:
            return None
        try:
            doc = await self.engine.json("GET", f"/containers/{handle}/json")
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise TransientDriverError(str(exc)) from None
        labels = (doc.get("Config") or {}).get("Labels") or {}
        if labels.get(f"{LABEL}instance") != instance_id or doc.get("Id") != handle:
            return None
        return dict(doc)

    async def observe(self, *, instance_id: str, handle: str) -> Exited | None:
        doc = await self._inspect(instance_id, handle)
        if doc is None:
            return Exited(f"container {handle[:12]} is gone")
        state = doc.get("State") or {}
        if state.get("Status") in RUNNING:
            return None
        tail = await self._tail(handle, 5)
        return Exited(_ended(state) + (f": {tail}" if tail else ""))

    async def stop(self, *, instance_id: str, handle: str, stop_signal: str, grace: float) -> str:
        doc = await self._inspect(instance_id, handle)
        if doc is None:
            return "already gone"
        state = doc.get("State") or {}
        if state.get("Status") not in RUNNING:
            await self._remove(handle)
            return "already gone" if state.get("Status") == "created" else _ended(state)
        await self._signal(handle, stop_signal)
        if await self._gone_within(handle, grace):
            how = f"exited after {stop_signal}"
        else:
            await self._signal(handle, "SIGKILL")
            if await self._gone_within(handle, KILL_WAIT):
                how = f"killed (SIGKILL) {grace:g}s after {stop_signal}"
            else:
                how = f"still there {KILL_WAIT:g}s after SIGKILL"
        await self._remove(handle)
        return how

    async def _signal(self, handle: str, name: str) -> None:
        try:
            await self.engine.call(
                "POST", f"/containers/{handle}/kill", params={"signal": name}, ok=(204, 200)
            )
        except EngineError as exc:
            if exc.status not in (404, 409, 500):  # gone, or exited just now
                raise TransientDriverError(str(exc)) from None

    async def _gone_within(self, handle: str, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            try:
                doc = await self.engine.json("GET", f"/containers/{handle}/json")
            except EngineError:
                return True  # removed
            if (doc.get("State") or {}).get("Status") not in RUNNING:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(POLL)

    async def _remove(self, handle: str) -> None:
        try:
            await self.engine.call(
                "DELETE", f"/containers/{handle}", params={"force": "true"}, ok=(200, 204, 404)
            )
        except EngineError:
            pass  # already being removed: it goes either way

    # --- adopt -------------------------------------------------------------------------------

    async def _ours(self, *extra: str) -> list[dict[str, Any]]:
        filters = {"label": [f"{LABEL}state={self.state_label}", *extra]}
        found = await self.engine.json(
            "GET", "/containers/json", params={"all": "true", "filters": json.dumps(filters)}
        )
        return [c for c in found or [] if isinstance(c, dict)]

    async def adopt(self) -> dict[str, Placement]:
        placed: dict[str, Placement] = {}
        for container in await self._ours():
            labels = container.get("Labels") or {}
            iid, address = labels.get(f"{LABEL}instance"), labels.get(f"{LABEL}address")
            state = container.get("State")
            if state == "created":
                await self._remove(str(container["Id"]))  # its launch never finished
            elif iid and address and state in RUNNING:
                placed[iid] = Placement(address=address, handle=str(container["Id"]))
        return placed

    # --- exec, logs --------------------------------------------------------------------------

    async def exec(
        self, *, instance_id: str, handle: str, argv: Sequence[str], timeout: float
    ) -> ExecResult:
        """Run `argv` in the container; TimeoutError when it outlives `timeout` (the engine
        offers no way to kill it: it ends with the container at the latest)."""
        doc = await self._inspect(instance_id, handle)
        if doc is None or (doc.get("State") or {}).get("Status") != "running":
            raise TransientDriverError(f"{instance_id} is not running")
        async with asyncio.timeout(timeout):
            made = await self.engine.json(
                "POST",
                f"/containers/{handle}/exec",
                body={"Cmd": list(argv), "AttachStdout": True, "AttachStderr": True},
            )
            exec_id = made["Id"]
            try:
                out = await self.engine.call(
                    "POST", f"/exec/{exec_id}/start", body={"Detach": False, "Tty": False}
                )
            except EngineError as exc:  # the command could not be started at all
                return ExecResult(code=127, output=_words(exc)[-EXEC_OUTPUT:])
            result = await self.engine.json("GET", f"/exec/{exec_id}/json")
        code = result.get("ExitCode")
        text = demultiplex(out.content).strip()[-EXEC_OUTPUT:]
        return ExecResult(code=code if isinstance(code, int) else -1, output=text)

    async def logs(self, *, instance_id: str, lines: int) -> str:
        try:
            found = await self._ours(f"{LABEL}instance={instance_id}")
        except (EngineError, EngineUnreachable):
            return ""
        return await self._tail(str(found[0]["Id"]), lines) if found else ""

    async def _tail(self, handle: str, lines: int) -> str:
        try:
            response = await self.engine.call(
                "GET",
                f"/containers/{handle}/logs",
                params={"stdout": "true", "stderr": "true", "tail": str(lines)},
            )
        except (EngineError, EngineUnreachable):
            return ""
        return " | ".join(demultiplex(response.content).strip().splitlines()[-lines:])

    async def aclose(self) -> None:
        """The containers keep running (a next controller adopts them)."""
        await self.engine.aclose()


def _image(run: RunSpec, release: str) -> str:
    if not run.image:
        raise PermanentDriverError("run.image is not set: the container platform runs an image")
    return run.image.replace("{version}", release)


def _ports_on(address: str, addresses: Collection[str]) -> set[int]:
    host_port = (a.rpartition(":") for a in addresses)
    return {int(port) for host, _, port in host_port if host == address and port.isdigit()}


def _words(exc: Exception) -> str:
    """The engine's message without our request line ("POST /containers/create: …")."""
    text = str(exc)
    method, _, rest = text.partition(" ")
    if method.isupper() and ": " in rest:
        return rest.partition(": ")[2]
    return text


def _ended(state: Mapping[str, Any]) -> str:
    """How a container that is not running ended, in the words of the local platform."""
    code = state.get("ExitCode")
    if state.get("OOMKilled"):
        return f"container killed for lack of memory (status {code})"
    if isinstance(code, int) and code > 128:
        try:
            return f"container exited (killed by {signal.Signals(code - 128).name})"
        except ValueError:
            pass
    if state.get("Status") == "created":
        return "container never started"
    return f"container exited (status {code})"
