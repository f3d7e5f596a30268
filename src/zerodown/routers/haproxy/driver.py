"""HAProxy as a router driver (`router: {kind: haproxy}`).

Managed mode (no `attach`): zerodown writes the configuration (config.py), starts HAProxy in
master-worker mode in its own session (it outlives the controller, like the built-in router) and
starts it again when it is gone, from the last table (run/haproxy-table.json), its map files and
the servers rendered into the configuration. Every table change goes through the Runtime API on
the 0600 socket run/haproxy.sock: servers added and removed (`add server` / `del server`),
weights, maintenance for servers leaving (their in-flight requests finish; `backends()` counts
them from `show stat` until they are done), map entries for routes, sticky buckets and the
preview release, changed atomically (`prepare map` / `commit map`). Only a new rule (a header or
cookie no route looked at before, a new sticky key) reloads: the server state is saved
(`server-state-file`), the configuration rewritten and checked (`haproxy -c`), and the master
told SIGUSR2; the new worker takes the listening sockets over and the old one finishes its
requests.

Attach mode (`attach: {admin_socket, backend}`): zerodown starts nothing and writes no
configuration; it adds, weighs, drains and removes only its own servers (named `zd-…`) of the
named backend of a HAProxy the team runs. Weighted routing only (capabilities in validate.py).

Per-request figures come from the access log (routers/accesslog.py): in managed mode HAProxy
writes one `zd2` line per request into its ring `zd_log`, which the controller reads through
the Runtime API (`show events zd_log -w`, routers/ringevents.py), while a rollout is under way
or something reads the samples (accesslog.LogSwitch): the state of the server
`zd_log_switch/on` (config.LOG_SWITCH), up or in maintenance through the Runtime API, without a
reload; run/log.map records it for the next controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from zerodown.core.analysis.stats import Sample
from zerodown.core.errors import PermanentDriverError, SpecError, TransientDriverError
from zerodown.core.ports import BackendLoad
from zerodown.core.routes import ReleaseStats, RouteTable
from zerodown.drivers import DriverContext
from zerodown.paths import Paths
from zerodown.routers.accesslog import AccessLog, LogSwitch, Sampler, run_dir, socket_path
from zerodown.routers.haproxy import process
from zerodown.routers.haproxy.config import LOG_SWITCH, MURMUR3_LUA, RING, Files, render
from zerodown.routers.haproxy.plan import (
    SLOTS,
    SPLIT,
    Desired,
    Key,
    Rules,
    Server,
    TooManyReleases,
    desired,
    eligible,
    map_names,
    server_name,
    slot_backend,
    split_weights,
)
from zerodown.routers.haproxy.runtime import RuntimeApi, ServerState
from zerodown.spec.model import Spec

log = logging.getLogger("zerodown.router.haproxy")

CHECK_EVERY = 1.0  # seconds between health checks of a running HAProxy
START_WAIT = 10.0  # seconds a new master has to answer (or a reload to bring a new worker)
KILL_WAIT = 10.0
LEGACY_RING_SERVER = "server zd unix@"  # the ring forwarded to the controller's socket (before)
ATTACH_PREFIX = "zd-"  # the only servers attach mode ever touches
DYNAMIC_SERVER = "pool-max-conn -1 pool-purge-delay 5s"
"""A server added at runtime keeps no idle connection unless told (2.6: pool limit 0, purge
delay 0): every request would open a new connection to the backend (measured: 0.43x the
throughput). These are a static server's defaults."""


def create(ctx: DriverContext) -> ManagedHaproxy | AttachedHaproxy:
    if ctx.spec.router.attach is not None:
        return AttachedHaproxy(paths=ctx.paths, spec=ctx.spec)
    router = ManagedHaproxy(paths=ctx.paths, spec=ctx.spec)
    router.binary()  # a missing or old haproxy stops the controller from starting, saying why
    return router


def spec_rules(spec: Spec) -> Rules:
    """The rules the spec will need (its header routes and sticky key), written from the start
    so that reaching those steps changes maps, not the configuration."""
    blue_green = spec.strategy.blue_green
    keys: list[Key] = []
    sticky: Key | None = None
    canary = spec.strategy.canary
    if canary is not None:
        for step in canary.steps:
            route = step.set_header_route
            if route is not None:
                key = (
                    Key("header", route.header)
                    if route.header
                    else Key("cookie", route.cookie or "")
                )
                if key not in keys:
                    keys.append(key)
        if canary.sticky is not None:
            sticky = (
                Key("cookie", canary.sticky.cookie)
                if canary.sticky.cookie
                else Key("header", canary.sticky.header or "")
            )
    return Rules(
        listen=spec.router.listen,
        preview_listen=blue_green.preview_listen if blue_green else None,
        header_timeout=spec.router.header_timeout,
        match_keys=tuple(keys),
        sticky=sticky,
    )


class _Common:
    """What both modes share: the Runtime API and the record of the last table."""

    api: RuntimeApi
    _table: RouteTable
    _leaving: dict[str, str]  # address -> release, of servers out of the table, not yet deleted

    def _release_of(self, address: str) -> str | None:
        for pool in self._table.pools:
            if any(b.address == address for b in pool.backends):
                return pool.release
        return self._leaving.get(address)

    async def healthy(self) -> bool:
        try:
            await self.api.pid()
        except TransientDriverError:
            return False
        return True

    async def table(self) -> RouteTable:
        return self._table

    async def aclose(self) -> None:
        """Nothing to close: every Runtime API command has its own connection."""


class ManagedHaproxy(_Common):
    def __init__(self, *, paths: Paths, spec: Spec) -> None:
        self.paths = paths
        self.spec = spec
        run = run_dir(paths)
        self.files = Files(run=run, admin_socket=socket_path(paths, "haproxy.sock"))
        self.pid_file = run / "haproxy.pid"
        self.api = RuntimeApi(self.files.admin_socket)
        self.access = AccessLog(
            self.files.admin_socket, release_of=self._release_of, transport="events", ring=RING
        )
        self.log_switch = LogSwitch(self._turn_log, on=self._log_file_says())
        self._log_on = bool(self.log_switch.on)  # what HAProxy is told (set under _log_lock)
        self.sampler = Sampler(self.access, self._set_sampling)
        self.rules = spec_rules(spec)  # what the running configuration holds
        self._table, self._slots = self._load_table()
        self.sampler.weights = self._sampling_file_says()
        self._leaving = {}
        self._old_workers: set[int] = set()  # workers finishing requests after a reload
        self._reload_leaving: dict[str, str] = {}  # addresses they may still be serving
        self._checked_at = -math.inf
        self._config_current = False  # the running configuration has the log switch
        self._binary: str | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()
        self._sampling_lock = asyncio.Lock()
        self._log_lock = asyncio.Lock()  # a switch of the log and a reload, one at a time

    def _load_table(self) -> tuple[RouteTable, dict[str, int]]:
        try:
            data = json.loads(self.files.table.read_text())
            table = RouteTable.from_json(data["table"])
            slots = {str(k): int(v) for k, v in data.get("slots", {}).items()}
            keys = [Key(str(k["kind"]), str(k["name"])) for k in data.get("match_keys", [])]
            sticky = data.get("sticky")
        except (OSError, ValueError, KeyError, TypeError):
            return RouteTable(generation=0), {}
        for key in keys:  # rules a table needed before this controller started
            if key not in self.rules.match_keys:
                self.rules = Rules(
                    self.rules.listen,
                    self.rules.preview_listen,
                    self.rules.header_timeout,
                    (*self.rules.match_keys, key),
                    self.rules.sticky,
                )
        if sticky and self.rules.sticky is None:
            self.rules = Rules(
                self.rules.listen,
                self.rules.preview_listen,
                self.rules.header_timeout,
                self.rules.match_keys,
                Key(str(sticky["kind"]), str(sticky["name"])),
            )
        return table, slots

    def _save_table(self, table: RouteTable, slots: dict[str, int]) -> None:
        data = {
            "table": table.to_json(),
            "slots": slots,
            "match_keys": [{"kind": k.kind, "name": k.name} for k in self.rules.match_keys],
            "sticky": (
                None
                if self.rules.sticky is None
                else {"kind": self.rules.sticky.kind, "name": self.rules.sticky.name}
            ),
        }
        _write_atomic(self.files.table, json.dumps(data))

    # --- the process -------------------------------------------------------------------------

    def binary(self) -> str:
        if self._binary is None:
            try:
                self._binary = process.find_binary()
            except PermanentDriverError as exc:
                raise SpecError(str(exc), field="router.kind") from None
        return self._binary

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if process.ours(pid, self.files.config) else None

    async def start(self) -> None:
        await self.access.start()
        if self.log_switch.on:  # on since a controller before this one: sampled from here
            self.sampler.start()
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY:
            return
        running = self.pid()
        if running is not None and await self.healthy():
            self._checked_at = now
            self.access.resume()  # its ring, from the end, unless read already
            if not self._config_current:  # read once per controller, not at every check
                config = self.files.config
                text = config.read_text() if config.exists() else ""
                if (
                    self.files.sampling.name not in text
                    or LEGACY_RING_SERVER in text
                    or LOG_SWITCH.split("/")[0] not in text
                ):
                    # Written by a zerodown from before the log switch, the ring read through
                    # the Runtime API, the sampled log or the switch by a server's state: once,
                    # seamlessly.
                    async with self._lock:
                        await self.reload()
                self._config_current = True
            return
        if running is not None:
            raise TransientDriverError(
                f"HAProxy (master pid {running}) runs but does not answer on "
                f"{self.files.admin_socket}; traffic still flows through it"
            )
        async with self._lock:
            await self._spawn()
        self._checked_at = time.monotonic()

    def _log_file_says(self) -> bool | None:
        try:
            return self.files.log_switch.read_text().split() == ["on", "1"]
        except OSError:
            return None

    def _sampling_file_says(self) -> dict[str, int]:
        """The weights per release a controller before this one left HAProxy with."""
        releases = {
            server_name(b.instance): pool.release
            for pool in self._table.pools
            for b in pool.backends
        }
        weights = {}
        try:
            for line in self.files.sampling.read_text().splitlines():
                server, _, weight = line.partition(" ")
                if server in releases and weight.strip().isdigit():
                    weights[releases[server]] = int(weight)
        except OSError:
            pass
        return weights

    def _sampling_entries(self, weights: Mapping[str, int]) -> dict[str, int]:
        """Release weights → the sampling map's entries: each server of those releases."""
        return {
            server_name(b.instance): weights[pool.release]
            for pool in self._table.pools
            if pool.release in weights
            for b in pool.backends
        }

    def _write_log_switch(self, on: bool) -> None:
        _write_map(self.files.log_switch, {"on": 1} if on else {})

    async def _turn_log(self, on: bool) -> None:
        """The switch's state, at runtime (a HAProxy not running yet starts from the
        configuration, written with `log_on`). Each time the log turns on, every request is
        logged until the sampler's first look."""
        self.sampler.stop()
        if self.sampler.weights:
            await self._set_sampling({})
            self.sampler.weights = {}
        async with self._log_lock:  # not between a reload's saved state and its new worker
            self._log_on = on
            self._write_log_switch(on)
            if self.pid() is not None:
                await self.api.ok(f"set server {LOG_SWITCH} state {'ready' if on else 'maint'}")
        if on:
            self.sampler.start()

    async def _set_sampling(self, weights: Mapping[str, int]) -> None:
        """The sampling map (`<server> <weight>`), in its file and at runtime."""
        async with self._sampling_lock:  # the sampler's look and a table change
            entries = self._sampling_entries(weights)
            _write_map(self.files.sampling, entries)
            if self.pid() is not None:
                await self._replace_map(self.files.sampling, entries)

    async def _replace_map(self, path: Path, entries: Mapping[str, object]) -> None:
        """A map's entries replaced atomically: a new version filled, then committed."""
        reply = await self.api.ok(f"prepare map {path}", expect=("New version created",))
        version = reply.strip().rsplit(":", 1)[-1].strip()
        for key, value in entries.items():
            await self.api.ok(f"add map @{version} {path} {key} {value}")
        await self.api.ok(f"commit map @{version} {path}")

    def _write_files(self, want: Desired) -> None:
        self.files.lua.write_text(MURMUR3_LUA)
        self._write_log_switch(self._log_on)
        _write_map(self.files.sampling, self._sampling_entries(self.sampler.weights))
        for name in map_names(self.rules):
            _write_map(self.files.map_file(name), want.maps.get(name, {}))
        config = render(
            self.rules,
            want,
            self.files,
            drain=self.spec.run.drain + 30,
            log_on=self._log_on,
        )
        _write_atomic(self.files.config, config)

    async def _spawn(self) -> None:
        async with self._log_lock:  # the configuration's log switch is the one HAProxy starts with
            await self._spawn_locked()

    async def _spawn_locked(self) -> None:
        binary = self.binary()
        if self._child is not None:  # reap the master that died (it may be dying still)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(5)
        try:
            want = desired(self._table, self.rules, self._slots)
        except TooManyReleases:
            want = desired(RouteTable(generation=self._table.generation), self.rules, {})
        self._write_files(want)
        self.files.server_state.unlink(missing_ok=True)  # a stale state would override weights
        problem = process.check_config(binary, self.files.config)
        if problem is not None:
            raise SpecError(f"HAProxy refuses the configuration: {problem}", field="router")
        log_file = self.paths.logs / "haproxy.log"
        env = {**os.environ, "ZERODOWN_STATE_DIR": str(self.paths.state)}
        with open(log_file, "ab") as out:
            written_before = out.tell()
            child = subprocess.Popen(
                [binary, "-W", "-f", str(self.files.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        self._child = child
        self.pid_file.write_text(str(child.pid))
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline and child.poll() is None:
            if await self.healthy():
                log.info("HAProxy started (master pid %s) on %s", child.pid, self.rules.listen)
                self.access.follow_new_worker()  # its ring from its start: every line
                return
            await asyncio.sleep(0.05)
        with open(log_file, "rb") as written:
            written.seek(written_before)
            tail = written.read(4096).decode(errors="replace").strip().splitlines()[-3:]
        raise SpecError(
            f"HAProxy did not start on {self.rules.listen}: {' | '.join(tail)}",
            field="router.listen",
        )

    async def stop(self, *, grace: float) -> None:
        # The ring's reader first: a soft-stopping HAProxy waits for its Runtime API sessions
        # too, and `show events -w` never ends by itself (every stop took the whole grace).
        self.access.close()
        self.log_switch.cancel()
        self.sampler.stop()
        pid = self.pid()
        if pid is not None:
            process.signal_master(pid, signal.SIGUSR1)  # soft stop: in-flight requests finish
            deadline = time.monotonic() + grace
            killed = False
            while process.ours(pid, self.files.config):
                if time.monotonic() > deadline + KILL_WAIT:
                    log.warning("HAProxy (pid %s) is still there after SIGKILL", pid)
                    break
                if time.monotonic() > deadline and not killed:
                    log.warning("HAProxy (pid %s) still had requests after %gs: killed", pid, grace)
                    _kill_group(pid)
                    killed = True
                await asyncio.sleep(0.05)
            if self._child is not None and self._child.pid == pid:
                self._child.wait()
        self.pid_file.unlink(missing_ok=True)

    async def reload(self) -> None:
        """Seamless: save server state, check and write the configuration, SIGUSR2 the master,
        wait for the new worker to answer."""
        async with self._log_lock:  # the saved state and the configuration agree on the log
            await self._reload()

    async def _reload(self) -> None:
        master = self.pid()
        if master is None:
            raise TransientDriverError("HAProxy is not running: the next pass starts it")
        old_worker = await self.api.pid()
        state = await self.api.command("show servers state")
        _write_atomic(self.files.server_state, state)
        want = desired(self._table, self.rules, self._slots)
        self._write_files(want)
        problem = process.check_config(self.binary(), self.files.config)
        if problem is not None:
            raise PermanentDriverError(f"HAProxy refuses the new configuration: {problem}")
        self._old_workers = set(process.children(master))
        self._reload_leaving = dict(self._leaving)
        process.signal_master(master, signal.SIGUSR2)
        deadline = time.monotonic() + START_WAIT
        while time.monotonic() < deadline:
            try:
                if await self.api.pid() != old_worker:
                    log.info("HAProxy reloaded (master pid %s)", master)
                    self.access.follow_new_worker(self._old_workers_done(self._old_workers))
                    return
            except TransientDriverError:
                pass
            await asyncio.sleep(0.05)
        raise TransientDriverError(
            f"HAProxy did not reload within {START_WAIT:.0f}s; see {self.paths.logs}/haproxy.log"
        )

    def _old_workers_done(self, workers: set[int]) -> Callable[[], bool]:
        """Whether the workers a reload replaced have no client left (their last log lines
        are written): the collector then lets go of their rings."""
        listeners = (self.rules.listen, self.rules.preview_listen)
        ports = {int(a.rsplit(":", 1)[1]) for a in listeners if a is not None}
        old = frozenset(workers)
        return lambda: not any(process.has_clients(pid, ports) for pid in old)

    # --- traffic ------------------------------------------------------------------------------

    async def apply(self, table: RouteTable) -> None:
        async with self._lock:
            await self._apply(table)

    async def _apply(self, table: RouteTable) -> None:
        rules = self.rules.with_table(table)
        try:
            want = desired(table, rules, self._slots)
        except TooManyReleases as exc:
            raise PermanentDriverError(str(exc)) from None
        reload = rules != self.rules
        current = {(s.backend, s.name): s for s in await self.api.servers()}
        for server in want.servers:  # joiners first: nothing routes to them yet
            for backend, weight in (
                (SPLIT, server.split_weight),
                (slot_backend(server.slot), 1),
            ):
                await self._ensure(current.get((backend, server.name)), backend, server, weight)
        await self._set_maps(want, names=map_names(self.rules))
        wanted = {(b, s.name) for s in want.servers for b in (SPLIT, slot_backend(s.slot))}
        for key, state in current.items():
            if key in wanted or not _ours(state.backend):
                continue
            if not state.maint:  # leaving: no new request; in-flight ones finish
                await self.api.ok(f"set server {state.backend}/{state.name} state maint")
            release = self._release_of(state.address)
            if release is not None:
                self._leaving[state.address] = release
        self._table, self._slots = table, want.slots
        self.rules = rules
        self._save_table(table, want.slots)
        for name in map_names(rules):
            _write_map(self.files.map_file(name), want.maps.get(name, {}))
        if reload:
            await self.reload()
        elif self.sampler.weights:  # the weighed releases' servers, as they are now
            await self._set_sampling(self.sampler.weights)
        await self.log_switch.table(table)
        await self._collect()

    async def _ensure(
        self, state: ServerState | None, backend: str, server: Server, weight: int
    ) -> None:
        target = f"{backend}/{server.name}"
        if state is not None and state.address != server.address:
            await self._delete(state)
            state = None
        if state is None:
            await self.api.ok(
                f"add server {target} {server.address} weight {weight} {DYNAMIC_SERVER}",
                expect=("New server registered",),
            )
            await self.api.ok(f"enable server {target}")
            self._leaving.pop(server.address, None)
            return
        if state.weight != weight:
            await self.api.ok(f"set server {target} weight {weight}")
        if state.maint or state.drain:
            await self.api.ok(f"set server {target} state ready")
            self._leaving.pop(server.address, None)

    async def _delete(self, state: ServerState) -> bool:
        target = f"{state.backend}/{state.name}"
        if not state.maint:
            await self.api.ok(f"set server {target} state maint")
        await self.api.command(f"shutdown sessions server {target}")
        reply = await self.api.command(f"del server {target}")
        return reply.strip().startswith("Server deleted")

    async def _set_maps(self, want: Desired, *, names: list[str]) -> None:
        for name in names:
            await self._replace_map(self.files.map_file(name), want.maps.get(name, {}))

    async def _collect(self) -> None:
        """Delete the servers that left and have nothing in flight any more."""
        if not self._leaving:
            return
        loads = await self.api.loads()
        busy = {(s.backend, s.name) for s in loads if s.current > 0}
        wanted = {(b, s) for b, s in self._wanted_names()}
        for state in await self.api.servers():
            key = (state.backend, state.name)
            if key in wanted or not _ours(state.backend) or key in busy:
                continue
            await self._delete(state)
        remaining = {
            s.address for s in await self.api.servers() if (s.backend, s.name) not in wanted
        }
        self._leaving = {a: r for a, r in self._leaving.items() if a in remaining}

    def _wanted_names(self) -> set[tuple[str, str]]:
        out = set()
        for pool in self._table.pools:
            slot = self._slots.get(pool.release)
            for b in pool.backends:
                out.add((SPLIT, server_name(b.instance)))
                if slot is not None:
                    out.add((slot_backend(slot), server_name(b.instance)))
        return out

    async def verify(self, table: RouteTable) -> bool | None:
        if not table.same_routing(self._table):
            return False
        try:
            want = desired(table, self.rules, self._slots)
        except TooManyReleases:
            return False
        running = {(s.backend, s.name): s for s in await self.api.servers()}
        for server in want.servers:
            split = running.get((SPLIT, server.name))
            if split is None or split.maint or split.weight != server.split_weight:
                return False
            if (slot_backend(server.slot), server.name) not in running:
                return False
        return True

    async def backends(self) -> dict[str, BackendLoad]:
        out: dict[str, BackendLoad] = {}
        for load in await self.api.loads():
            if not _ours(load.backend) or load.name in ("FRONTEND", "BACKEND"):
                continue
            release = self._release_of(load.address)
            if release is None:
                continue
            seen = out.get(load.address)
            out[load.address] = BackendLoad(
                release=release,
                inflight=load.current + (seen.inflight if seen else 0),
                requests=load.total + (seen.requests if seen else 0),
            )
        master = self.pid()
        if self._old_workers and master is not None:
            self._old_workers &= set(process.children(master))
        if self._old_workers:  # an old worker may still serve what left before the reload
            for address, release in self._reload_leaving.items():
                seen = out.get(address)
                out[address] = BackendLoad(release, max(1, seen.inflight if seen else 0), 0)
        else:
            self._reload_leaving = {}
        await self._collect()
        return out

    async def stats(self) -> Mapping[str, ReleaseStats]:
        await self.log_switch.read()
        return await self.access.stats()

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        await self.log_switch.read()
        return await self.access.samples(release, since)

    async def aclose(self) -> None:
        self.log_switch.cancel()
        self.sampler.stop()


class AttachedHaproxy(_Common):
    """Only the `zd-` servers of one backend of the team's HAProxy: weights, drain, removal."""

    def __init__(self, *, paths: Paths, spec: Spec) -> None:
        attach = spec.router.attach
        assert attach is not None and attach.admin_socket and attach.backend
        path = Path(attach.admin_socket)
        self.api = RuntimeApi(path if path.is_absolute() else paths.spec_dir / path)
        self.backend = attach.backend
        self.table_file = run_dir(paths) / "haproxy-attach-table.json"
        try:
            self._table = RouteTable.from_json(json.loads(self.table_file.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            self._table = RouteTable(generation=0)
        self._leaving = {}

    async def start(self) -> None:
        if not await self.healthy():
            raise TransientDriverError(
                f"the team's HAProxy does not answer on {self.api.socket} (router.attach)"
            )

    async def stop(self, *, grace: float) -> None:
        """The team's HAProxy is not ours to stop."""

    def _names(self, table: RouteTable) -> dict[str, tuple[str, str, int]]:
        """server name -> (address, release, weight)."""
        chosen = eligible(table.pools)
        weights = split_weights(chosen) if chosen else {}
        return {
            ATTACH_PREFIX + server_name(b.instance): (
                b.address,
                p.release,
                weights.get(b.address, 0),
            )
            for p in table.pools
            for b in p.backends
        }

    async def apply(self, table: RouteTable) -> None:
        want = self._names(table)
        current = {
            s.name: s
            for s in await self.api.servers([self.backend])
            if s.name.startswith(ATTACH_PREFIX)
        }
        for name, (address, _, weight) in want.items():
            state = current.get(name)
            target = f"{self.backend}/{name}"
            if state is None:
                await self.api.ok(
                    f"add server {target} {address} weight {weight} {DYNAMIC_SERVER}",
                    expect=("New server registered",),
                )
                await self.api.ok(f"enable server {target}")
                continue
            if state.weight != weight:
                await self.api.ok(f"set server {target} weight {weight}")
            if state.maint or state.drain:
                await self.api.ok(f"set server {target} state ready")
        for name, state in current.items():
            if name not in want and not state.maint:
                await self.api.ok(f"set server {self.backend}/{name} state maint")
                release = self._release_of(state.address)
                if release:
                    self._leaving[state.address] = release
        self._table = table
        _write_atomic(self.table_file, json.dumps(table.to_json()))

    async def verify(self, table: RouteTable) -> bool | None:
        want = self._names(table)
        current = {s.name: s for s in await self.api.servers([self.backend])}
        return table.same_routing(self._table) and all(
            name in current and current[name].weight == weight and not current[name].maint
            for name, (_, _, weight) in want.items()
        )

    async def backends(self) -> dict[str, BackendLoad]:
        out: dict[str, BackendLoad] = {}
        loads = [
            s
            for s in await self.api.loads()
            if s.backend == self.backend and s.name.startswith(ATTACH_PREFIX)
        ]
        for load in loads:
            release = self._release_of(load.address)
            if release is not None:
                out[load.address] = BackendLoad(release, load.current, load.total)
        wanted = set(self._names(self._table))
        for load in loads:
            if load.name not in wanted and load.current == 0:
                target = f"{self.backend}/{load.name}"
                await self.api.command(f"del server {target}")
        return out

    async def stats(self) -> Mapping[str, ReleaseStats]:
        return {}

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        return []


def _ours(backend: str) -> bool:
    return backend == SPLIT or any(backend == slot_backend(s) for s in range(SLOTS))


def _kill_group(pid: int) -> None:
    """SIGKILL the master and its workers (their own session: the group is the master's)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _write_map(path: Path, entries: Mapping[str, object]) -> None:
    """A map file as HAProxy reads it at start: `<key> <value>` a line."""
    _write_atomic(path, "".join(f"{k} {v}\n" for k, v in entries.items()))
