"""One host as the controller reaches it: an asyncssh connection, the host-side program
(`remote.py`) running over one channel of it, and whether the host answers.

Host keys are checked against the spec's known_hosts file and never accepted blindly: an unknown
or changed key is a PermanentDriverError that names the host and what to do, as is a refused
key; a host that cannot be reached is a TransientDriverError with the reason. A watcher pings
each host every PING_EVERY seconds; a host that misses a ping is down (its channel is closed, so
nothing waits on a dead link) until it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import asyncssh

from zerodown.core.errors import PermanentDriverError, TransientDriverError
from zerodown.spec.hosts import HostSpec, SshSpec

log = logging.getLogger("zerodown.platforms.ssh")
# asyncssh logs every channel it opens at INFO: keep the controller log to our own words.
logging.getLogger("asyncssh").setLevel(logging.WARNING)

REMOTE = Path(__file__).with_name("remote.py")
PING_EVERY = 0.5  # seconds between pings of a host
PING_TIMEOUT = 1.5  # a host that does not answer a ping within this is down
REQUEST_TIMEOUT = 30.0  # any other request (a stop waits out its grace on the host: added)
START_TIMEOUT = 30.0  # connected: upload the host program and hear it (its hello: 15 s of it)
RECONNECT_TIMEOUT = 3.0  # a down host's reconnection attempts give up after this
# Timeouts here are `asyncio.timeout` blocks, not `asyncio.wait_for`: on Python 3.11, wait_for
# returns the result when a cancellation meets a result already in (a ping's answer read in the
# same pass of the loop), so the host watcher that Hosts.aclose cancelled pinged on, and aclose
# waited for it forever.


@dataclass(frozen=True)
class HostState:
    up: bool
    since: float  # wall clock of the last change
    reason: str = ""


class HostLink:
    """The controller's link to one host."""

    def __init__(self, host: HostSpec, ssh: SshSpec, *, spec_dir: Path, service: str) -> None:
        self.host = host
        self.ssh = ssh
        self.spec_dir = spec_dir
        self.base = str(PurePosixPath(ssh.dir) / service)
        self.conn: asyncssh.SSHClientConnection | None = None
        self.process: asyncssh.SSHClientProcess[str] | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.reader: asyncio.Task[None] | None = None
        self.lock = asyncio.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state = HostState(up=True, since=time.time())  # until a check says otherwise
        self.ever_up = False

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def where(self) -> str:
        return f"host {self.host.name} ({self.host.ssh}, port {self.host.port})"

    # --- connecting ----------------------------------------------------------------------

    def _on_this_loop(self) -> None:
        """A connection belongs to the event loop that made it: on another one (a test that
        runs each scenario with asyncio.run), start afresh."""
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop = loop
            self.lock = asyncio.Lock()
            self.conn, self.process, self.reader = None, None, None
            self.pending = {}

    async def connected(self, timeout: float | None = None) -> None:
        """Connect and start the host-side program, unless that is done."""
        self._on_this_loop()
        async with self.lock:
            if self.process is not None and self.reader is not None and not self.reader.done():
                return
            await self._close()
            try:
                await self._connect(timeout or self.ssh.connect_timeout)
            except BaseException:
                await self._close()
                raise

    async def _connect(self, timeout: float) -> None:
        known_hosts = self._path(self.ssh.known_hosts)
        if not known_hosts.is_file():
            raise PermanentDriverError(
                f"{self.where}: the known_hosts file {known_hosts} does not exist; write the"
                f" host keys you trust there (e.g. `ssh-keyscan -p {self.host.port}"
                f" {self.host.address}`, checked against the host's fingerprint), or set"
                " ssh.known_hosts"
            )
        keys = None
        if self.ssh.identity is not None:
            identity = self._path(self.ssh.identity)
            if not identity.is_file():
                raise PermanentDriverError(
                    f"ssh.identity {identity} does not exist: point it at your private key"
                )
            keys = [str(identity)]
        try:
            async with asyncio.timeout(timeout):
                self.conn = await asyncssh.connect(
                    self.host.address,
                    self.host.port,
                    username=self.host.user,
                    known_hosts=str(known_hosts),
                    client_keys=keys,
                    password=None,
                    kbdint_auth=False,
                    agent_path=None if keys else (),
                    config=[],
                    keepalive_interval=2,
                    keepalive_count_max=2,
                    connect_timeout=timeout,
                )
        except asyncssh.HostKeyNotVerifiable:
            raise PermanentDriverError(
                f"{self.where}: its host key is not trusted: it is not in"
                f" {known_hosts}, or it changed. Check the host's fingerprint, then add its key"
                f" (`ssh-keyscan -p {self.host.port} {self.host.address} >> {known_hosts}`)"
            ) from None
        except asyncssh.PermissionDenied:
            which = self.ssh.identity or "the SSH agent's and ~/.ssh/id_* keys"
            raise PermanentDriverError(
                f"{self.where}: refused our key ({which}) for user {self.host.user}: add the"
                f" public key to ~{self.host.user}/.ssh/authorized_keys on {self.host.name}, or"
                " set ssh.identity"
            ) from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            why = _why(exc) or f"no answer within {timeout:g}s"
            raise TransientDriverError(
                f"{self.where}: cannot connect: {why}; check the address and port, and that"
                " sshd runs there"
            ) from None
        try:
            # SFTP and the channel have no timeout of their own: a host that accepted the
            # connection and then stalls would hold every caller forever.
            async with asyncio.timeout(START_TIMEOUT):
                self.process = await self._start_remote()
        except TimeoutError:
            raise TransientDriverError(
                f"{self.where}: connected, but zerodown's host program did not start within"
                f" {START_TIMEOUT:g}s (SFTP upload, then python3)"
            ) from None
        self.reader = asyncio.create_task(self._read(self.process), name=f"ssh {self.name}")

    async def _start_remote(self) -> asyncssh.SSHClientProcess[str]:
        """Ship remote.py (once per content) and run it over one channel."""
        assert self.conn is not None
        code = REMOTE.read_bytes()
        target = f"{self.ssh.dir}/.zerodown-remote-{hashlib.sha256(code).hexdigest()[:12]}.py"
        async with self.conn.start_sftp_client() as sftp:
            await sftp.makedirs(self.ssh.dir, exist_ok=True)
            if not await sftp.exists(target):
                async with sftp.open(target + ".tmp", "wb") as f:
                    await f.write(code)
                await sftp.posix_rename(target + ".tmp", target)
        process = await self.conn.create_process(
            f"exec python3 {_quote(target)} {_quote(self.base)}", encoding="utf-8"
        )
        try:
            async with asyncio.timeout(15):
                hello = await process.stdout.readline()
        except TimeoutError:
            hello = ""
        if not hello.startswith("{"):
            err = ""
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    err = await process.stderr.read(500)
            why = err.strip() or "no answer"
            raise PermanentDriverError(
                f"{self.where}: cannot run zerodown's host program with python3 ({why}):"
                " the host needs python3 (3.8 or newer) on its PATH"
            )
        return process

    async def _read(self, process: asyncssh.SSHClientProcess[str]) -> None:
        try:
            async for line in process.stdout:
                reply = json.loads(line)
                future = self.pending.pop(reply.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(reply)
        except Exception as exc:
            log.debug("%s: channel ended: %s", self.name, exc)
        finally:
            self._fail_pending(f"{self.where}: the connection was lost")

    def _fail_pending(self, why: str) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(TransientDriverError(why))
        self.pending.clear()

    async def _close(self) -> None:
        reader, self.reader = self.reader, None
        try:
            if reader is not None and not reader.done():
                reader.cancel()
                # asyncio.wait, not `await reader` under suppress(BaseException): that also
                # swallowed a cancellation of this task (the watcher's, by aclose), and the
                # watcher then pinged on while aclose waited for it.
                await asyncio.wait([reader])
        finally:
            self._fail_pending(f"{self.where}: the connection was closed")
            if self.process is not None:
                self.process.close()
                self.process = None
            if self.conn is not None:
                self.conn.abort()  # never waits on a dead link
                self.conn = None

    async def close(self) -> None:
        self._on_this_loop()
        async with self.lock:
            await self._close()

    def _path(self, text: str) -> Path:
        return (self.spec_dir / Path(text).expanduser()).resolve()

    # --- requests ------------------------------------------------------------------------

    async def request(
        self, op: str, timeout: float = REQUEST_TIMEOUT, *, probe: bool = False, **args: Any
    ) -> Any:
        """One request to the host-side program; its result, or TransientDriverError (the host
        is unreachable), or PermanentDriverError (the host refused it, with its words). A host
        the watcher found down is not waited on (unless this is the watcher's `probe`)."""
        if not probe and not self.state.up and self.ever_up:
            raise TransientDriverError(f"{self.where} is not answering: {self.state.reason}")
        await self.connected()
        assert self.process is not None
        rid = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[rid] = future
        self.process.stdin.write(json.dumps({"id": rid, "op": op, **args}) + "\n")
        try:
            async with asyncio.timeout(timeout):
                reply = await future
        except TimeoutError:
            self.pending.pop(rid, None)
            raise TransientDriverError(
                f"{self.where}: no answer to {op} within {timeout:g}s"
            ) from None
        if "error" in reply:
            raise PermanentDriverError(f"{self.name}: {reply['error']}")
        result = reply["result"]
        if isinstance(result, dict) and "error" in result:
            raise PermanentDriverError(f"on {self.name}: {result['error']}")
        return result

    async def sftp(self) -> asyncssh.SFTPClient:
        await self.connected()
        assert self.conn is not None
        return await self.conn.start_sftp_client()

    # --- watching ------------------------------------------------------------------------

    async def check(self) -> HostState:
        """Ping the host (connecting first if need be); the state, updated."""
        try:
            await self.connected(timeout=RECONNECT_TIMEOUT if self.ever_up else None)
            await self.request("ping", timeout=PING_TIMEOUT, probe=True)
        except TransientDriverError as exc:
            await self.close()
            self._set(False, str(exc))
        except PermanentDriverError as exc:
            self._set(False, str(exc))
        else:
            self.ever_up = True
            self._set(True, "")
        return self.state

    def _set(self, up: bool, reason: str) -> None:
        if up != self.state.up:
            level = logging.INFO if up else logging.WARNING
            log.log(
                level,
                "%s is %s%s",
                self.where,
                "up" if up else "down",
                f": {reason}" * bool(reason),
            )
            self.state = HostState(up=up, since=time.time(), reason=reason)
        elif reason != self.state.reason:
            self.state = HostState(up=up, since=self.state.since, reason=reason)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"
