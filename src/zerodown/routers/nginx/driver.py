"""nginx as a Router driver (`router: {kind: nginx}`); RouterStats through its access log.

Guarantees (the Router and RouterStats contract, core/ports.py, plus):

- **Managed mode** (no `attach`): zerodown writes `.zerodown/nginx/nginx.conf` and the routes
  file, and runs nginx (process.py). `start` restarts it when it has exited, from the routes
  file on disk (the last table it ran), and is cheap otherwise (checked at most once a second).
- **Attach mode** (`attach: {config: FILE, reload: [argv]}`): zerodown writes only FILE (the
  team's nginx includes it inside `http {}`) and runs the reload command; it never starts, stops
  or signals that nginx.
- **apply** renders the table, has nginx check it (`nginx -t`, managed mode), and reloads;
  it returns once the new table routes every new request (process.py says how that is known),
  and `table` answers the table nginx runs. Reloads are coalesced: one at a time, at least
  `MIN_RELOAD_GAP` apart, and an apply that arrives while one runs waits for the next, which
  carries the newest table: a burst of table changes costs one or two reloads, however long.
  A table that routes as the running one does (a new generation number only), or as the one
  this driver started nginx with, is no reload.
  Old workers pile up at most `MAX_DRAINING_WORKERS` deep before the next reload waits for them.
- **backends** (drain): nginx has no live per-backend counters, so the in-flight requests of an
  address that left the table are known from the processes that could still hold them: the
  workers that were serving when the reload that removed it began. While any of them runs
  (an old worker exits as soon as its last request is done, or at `worker_shutdown_timeout`)
  the address counts that many in flight; then 0. It over-counts (an old worker busy with
  another backend's long request keeps the address "busy", up to the spec's `run.drain`) but
  never under-counts. In attach mode zerodown cannot see the workers: a removed address counts
  as busy until `run.drain` has passed. Addresses in the table count 0 in flight (unknown).
- **stats / samples**: from nginx's per-request log, written (buffered) to a file the driver
  tails and rotates (routers/accesslog.py, routers/logtail.py), counted from when the
  controller started. A release busier than `LINES_CAP` lines a second is logged one request
  in `weight` (accesslog.Sampler; render.py says how nginx picks them): a weight change is a
  reload, so the sampler looks every `SAMPLE_EVERY` seconds and lowers a weight only after
  `SAMPLE_HOLD` seconds of traffic that call for less; a steady load costs about one reload
  after the log turns on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import pwd
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zerodown.core.analysis.stats import Sample
from zerodown.core.errors import PermanentDriverError, SpecError, TransientDriverError
from zerodown.core.ports import BackendLoad
from zerodown.core.routes import ReleaseStats, RouteTable
from zerodown.drivers import DriverContext
from zerodown.paths import Paths
from zerodown.routers.accesslog import AccessLog, LogSwitch, Sampler, in_rollout, run_dir
from zerodown.routers.nginx import render
from zerodown.routers.nginx.process import NginxProcess, child_of, find_binary
from zerodown.spec.model import Spec

log = logging.getLogger("zerodown.router.nginx")

CHECK_EVERY = 1.0  # seconds between checks that nginx runs
MIN_RELOAD_GAP = 0.25  # seconds from one reload's start to the next: at most 4 a second
MAX_DRAINING_WORKERS = 16  # old workers still finishing requests before a reload waits
DRAINING_WAIT = 5.0  # seconds a reload waits for old workers to go, then goes ahead
SHUTDOWN_TIMEOUT = 60.0  # nginx's worker_shutdown_timeout: the longest an old worker lingers
WORKERS = "auto"
ATTACH_RELOAD_WAIT = 10.0  # seconds an attached nginx has to serve a new table after its reload
SAMPLE_EVERY = 1.0
"""seconds between the sampler's looks: nginx writes its lines every 250 ms (render.LOG_BUFFER),
so shorter looks would see the bursts of its flushes, not the rate."""
SAMPLE_HOLD = 30.0
"""seconds of traffic a lower weight must be called for before a weight comes down (HAProxy's
10 s: each change here is a reload)."""


def create(ctx: DriverContext) -> NginxRouter:
    return NginxRouter(paths=ctx.paths, spec=ctx.spec)


class NginxRouter:
    def __init__(
        self, *, paths: Paths, spec: Spec, binary: str | None = None, per_request_log: bool = True
    ) -> None:
        self.paths = paths
        self.spec = spec
        self.per_request_log = per_request_log  # off only to measure what the log costs
        self.directory = paths.state / "nginx"
        self.state_file = paths.state / "nginx-table.json"  # both modes
        attach = spec.router.attach
        self.attach_config: Path | None = None
        self.attach_reload: list[str] = []
        if attach is not None and attach.config:
            self.attach_config = _resolve(paths.spec_dir, attach.config)
            self.attach_reload = list(attach.reload or ())
        self.routes_file = self.attach_config or self.directory / "routes.conf"
        self.access = AccessLog(
            run_dir(paths) / "nginx-access.log",
            release_of=self._release_of,
            transport="file",
            reopen=self._reopen_log,
            writers=self._log_writers,
        )
        # The log's state is in the routes file (a reload changes it; None: not known yet): a
        # controller before this one may have left it on, and busy releases sampled.
        state = self._routes_state()
        self.log_switch = LogSwitch(self._turn_log, on=state[0] if state else None)
        self._log_on = bool(self.log_switch.on)
        self._sampling = state[1] if state else {}  # release -> weight, as the next file says
        self.sampler = Sampler(
            self.access,
            self._set_sampling,
            steps=render.SAMPLING_STEPS,
            every=SAMPLE_EVERY,
            hold=SAMPLE_HOLD,
        )
        self.sampler.weights = dict(self._sampling)
        self._binary = binary
        self._process: NginxProcess | None = None
        self._checked_at = -math.inf
        self._running: RouteTable | None = None  # the table nginx routes by
        # The table this driver last started nginx with, before any table was committed: the
        # first apply of a table that routes as it does (the engine's first, empty one) is then
        # no reload, so the first real table is not held back by MIN_RELOAD_GAP.
        self._spawned: RouteTable | None = None
        self._draining: list[dict[str, Any]] = []  # removed addresses and who may still hold them
        self._wanted: RouteTable | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._failed: tuple[int, Exception] | None = None  # generation that failed, and why
        self._last_reload = -math.inf
        self.reloads = 0  # reloads this driver made (the bench and tests read it)

    # --- the process -------------------------------------------------------------------------

    @property
    def process(self) -> NginxProcess:
        if self._process is None:
            self._process = NginxProcess(
                binary=self._binary or find_binary(),
                directory=self.directory,
                error_log=self.paths.logs / "nginx-error.log",
                output=self.paths.logs / "nginx.log",
            )
        return self._process

    def _routes_text(self) -> str | None:
        try:
            return self.routes_file.read_text()
        except OSError:
            return None

    def _routes_state(self) -> tuple[bool, dict[str, int]] | None:
        """What the routes file's log does: (on, sampled releases); None when there is no file,
        or one from a zerodown before its first line said (the first sync rewrites it)."""
        text = self._routes_text()
        return render.read_log_state(text) if text is not None else None

    def _log_target(self) -> bool:
        """Whether the routes file should write the per-request log."""
        return self.per_request_log and self.attach_config is None and self._log_on

    def _log_changed(self) -> bool:
        """The routes file logs otherwise than wanted (on or off, sampled releases), or was
        written by a zerodown from before its first line said so."""
        text = self._routes_text()
        if text is None:
            return False
        return not text.startswith(render.log_state(self.site()) + "\n")

    def _reopen_log(self) -> None:
        """After the collector renamed the log file: nginx reopens it (`nginx -s reopen`).
        Called from the collector's thread: it uses the process object, never makes one."""
        nginx = self._process
        master = nginx.pid() if nginx is not None else None
        if nginx is not None and master is not None:
            nginx.reopen(master)

    def _log_writers(self) -> list[int]:
        """The processes that may hold the log file open: the master and its workers (from
        the collector's thread, as `_reopen_log`)."""
        nginx = self._process
        master = nginx.pid() if nginx is not None else None
        if nginx is None or master is None:
            return []
        workers = nginx.workers(master)
        return [master, *workers.serving, *workers.draining]

    async def _turn_log(self, on: bool) -> None:
        """A reload with the log on or off (the reload loop's, coalesced with table changes).
        Each time the log turns on, every request is logged until the sampler's first look."""
        self.sampler.stop()
        self._sampling = {}
        self.sampler.weights = {}
        self._log_on = on
        await self._reload_for_log()
        if on:
            self.sampler.start()

    async def _set_sampling(self, weights: Mapping[str, int]) -> None:
        """The sampler's weights, by a reload (coalesced with table changes)."""
        self._sampling = dict(weights)
        await self._reload_for_log()

    async def _reload_for_log(self) -> None:
        running = self._load()
        if running is None or not self._log_changed():
            return  # no table yet: the first one is written with the log as wanted
        if self._wanted is None or self._wanted.generation < running.generation:
            self._wanted = running
        failed = self._failed
        self._run_reloads()
        async with self._changed:
            await self._changed.wait_for(
                lambda: not self._log_changed() or self._failed is not failed
            )
        if self._failed is not None and self._failed is not failed:
            raise self._failed[1]

    def site(self) -> render.Site:
        blue_green = self.spec.strategy.blue_green
        return render.Site(
            service=self.spec.service,
            listen=self.spec.router.listen,
            preview_listen=blue_green.preview_listen if blue_green else None,
            # Attached, nginx's workers are not ours and cannot write to our owner-only
            # directory (validate.py refuses what would need the log).
            log_file=(str(self.access.path) if self._log_target() else None),
            sampling=tuple(sorted(self._sampling.items())) if self._log_target() else (),
            header_timeout=self.spec.router.header_timeout,
        )

    async def start(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < CHECK_EVERY:
            return
        if self.attach_config is None:
            await self.access.start()
            if self.log_switch.on:  # on since a controller before this one: sampled from here
                self.sampler.start()
            self.directory.mkdir(parents=True, exist_ok=True)
            if self.process.pid() is None:
                await self._spawn()
        self._checked_at = time.monotonic()

    async def _spawn(self, table: RouteTable | None = None) -> None:
        """nginx with `table`, else the table it last ran, else one with no backend (503)."""
        running = table or self._load() or RouteTable(generation=0)
        self._write(running)  # listen, log: this spec
        self._write_main()
        (self.directory / "tmp").mkdir(exist_ok=True)
        try:
            await asyncio.to_thread(self.process.test)
        except PermanentDriverError as exc:
            raise SpecError(str(exc), field="router") from None
        pid = await self.process.spawn()
        self._spawned = running
        log.info("nginx started (pid %s) on %s", pid, self.spec.router.listen)

    def _write_main(self) -> None:
        user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
        text = render.main_config(
            routes=str(self.routes_file),
            state=str(self.directory),
            error_log=str(self.paths.logs / "nginx-error.log"),
            workers=WORKERS,
            user=user,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
        )
        _atomic_write(self.process.config, text)

    async def stop(self, *, grace: float) -> None:
        self.sampler.stop()
        if self.attach_config is None:
            await self.process.stop(grace=grace)
        self.access.close()

    async def healthy(self) -> bool:
        if self.attach_config is not None:
            return True
        return self.process.pid() is not None

    # --- the table ---------------------------------------------------------------------------

    async def apply(self, table: RouteTable) -> None:
        try:
            render.check(table)
        except render.Unexpressible as exc:
            raise PermanentDriverError(f"nginx cannot route this table: {exc}") from None
        self._load()  # what nginx runs, from the state file when this driver is new
        if self._wanted is None or table.generation >= self._wanted.generation:
            self._wanted = table
            # A table that starts or ends a rollout carries the log with it: one reload.
            self.log_switch.rollout = in_rollout(table)
            self._log_on = self.log_switch.wanted
        self._run_reloads()
        async with self._changed:
            await self._changed.wait_for(lambda: self._settled(table.generation))
        if self._failed is not None and self._failed[0] >= table.generation:
            raise self._failed[1]
        await self.log_switch.table(table)  # records it; a reload only if a read changed it

    def _run_reloads(self) -> None:
        """The reload loop, started if it is not running (it ends when nginx runs what is
        wanted: a burst of changes is one reload)."""
        if self._reloader is None or self._reloader.done():
            self._reloader = asyncio.create_task(self._reload_loop(), name="nginx reloads")

    def _settled(self, generation: int) -> bool:
        running = self._running
        failed = self._failed is not None and self._failed[0] >= generation
        return failed or (running is not None and running.generation >= generation)

    async def _reload_loop(self) -> None:
        try:
            await self._reloads()
        finally:  # however it ends, no apply is left waiting for it
            await self._notify()

    async def _reloads(self) -> None:
        while True:
            wanted = self._wanted
            running = self._load()
            log_changed = self._log_changed()
            if wanted is None or (
                running is not None and running.generation >= wanted.generation and not log_changed
            ):
                return
            started = running or self._spawned
            if started is not None and started.same_routing(wanted) and not log_changed:
                self._commit(wanted, removed={}, workers=())  # a new number only: no reload
                await self._notify()
                continue
            await asyncio.sleep(max(0.0, self._last_reload + MIN_RELOAD_GAP - time.monotonic()))
            wanted = self._wanted  # the newest table, after the gap
            assert wanted is not None
            self._last_reload = time.monotonic()
            try:
                await self._reload(wanted, running)
            except Exception as exc:
                self._failed = (wanted.generation, exc)
                async with self._changed:
                    self._changed.notify_all()
                return
            await self._notify()

    async def _reload(self, table: RouteTable, running: RouteTable | None) -> None:
        removed = {
            b.address: p.release
            for p in (running.pools if running else ())
            for b in p.backends
            if b.address not in table.addresses()
        }
        previous = self.routes_file.read_text() if self.routes_file.exists() else None
        self._write(table)
        try:
            if self.attach_config is not None:
                await self._attach_reload(table)
                await self._wait_for_generation(table.generation)
                self._commit(table, removed=removed, workers=())
                return
            master = self.process.pid()
            if master is None:  # it exited: start it with the new table
                await self._spawn(table)
                self._commit(table, removed={}, workers=())
                return
            await asyncio.to_thread(self.process.test)
            await self._wait_for_old_workers(master)
            before = await self.process.reload(master)
        except Exception:
            if previous is not None:  # what nginx runs stays what the file says
                _atomic_write(self.routes_file, previous)
            raise
        self.reloads += 1
        self._commit(table, removed=removed, workers=sorted(before.serving), master=master)

    async def _wait_for_old_workers(self, master: int) -> None:
        """Old generations are bounded: wait (a little) for them before adding another."""
        deadline = time.monotonic() + DRAINING_WAIT
        while time.monotonic() < deadline:
            if len(self.process.workers(master).draining) < MAX_DRAINING_WORKERS:
                return
            await asyncio.sleep(0.05)
        log.warning("nginx: %d old workers still finishing requests", MAX_DRAINING_WORKERS)

    async def _attach_reload(self, table: RouteTable) -> None:
        if not self.attach_reload:
            return
        proc = await asyncio.create_subprocess_exec(
            *self.attach_reload,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(30):
                output, _ = await proc.communicate()
        except TimeoutError:
            proc.kill()
            raise TransientDriverError(
                f"the nginx reload command {' '.join(self.attach_reload)} took over 30 s"
            ) from None
        if proc.returncode != 0:
            raise TransientDriverError(
                f"the nginx reload command {' '.join(self.attach_reload)} exited"
                f" {proc.returncode}: {output.decode(errors='replace').strip()[-500:]}"
            )

    async def _wait_for_generation(self, generation: int) -> None:
        """Attached, the reload command only signals nginx: wait until fresh connections to the
        listener are answered by the new configuration (its generation endpoint), then for
        nginx's hand-over delay (the old workers stop accepting 100 ms after the new ones
        start), and check again."""
        host, _, port = self.spec.router.listen.rpartition(":")
        host = {"0.0.0.0": "127.0.0.1", "[::]": "::1", "": "127.0.0.1"}.get(host, host.strip("[]"))
        deadline = time.monotonic() + ATTACH_RELOAD_WAIT
        confirmed = 0
        while confirmed < 2:
            if time.monotonic() > deadline:
                raise TransientDriverError(
                    f"nginx did not serve route table generation {generation} on"
                    f" {self.spec.router.listen} within {ATTACH_RELOAD_WAIT:g}s of the reload"
                    " command: does its configuration include "
                    f"{self.attach_config} inside http {{}}, and did it accept it (nginx -t)?"
                )
            served = await _generation_served(host, int(port))
            if served is not None and served >= generation:
                confirmed += 1
                if confirmed < 2:
                    await asyncio.sleep(0.15)
            else:
                confirmed = 0
                await asyncio.sleep(0.05)

    def _write(self, table: RouteTable) -> None:
        try:
            text = render.routes_config(table, self.site())
        except render.Unexpressible as exc:
            raise PermanentDriverError(f"nginx cannot route this table: {exc}") from None
        self.routes_file.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.routes_file, text)

    def _commit(
        self,
        table: RouteTable,
        *,
        removed: Mapping[str, str],
        workers: Sequence[int],
        master: int | None = None,
    ) -> None:
        """`table` now routes every new request: remember it (and who may still hold requests
        to the addresses it removed), on disk for the next controller."""
        now = time.time()
        keep = [d for d in self._draining if d["address"] not in table.addresses()]
        for address, release in removed.items():
            keep.append(
                {
                    "address": address,
                    "release": release,
                    "master": master,
                    "workers": list(workers),
                    "since": now,
                }
            )
        self._draining = keep
        self._running = table
        self._failed = None
        _atomic_write(
            self.state_file,
            json.dumps({"table": table.to_json(), "draining": keep}, separators=(",", ":")),
        )

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _load(self) -> RouteTable | None:
        """The table nginx routes by (read from the state file once per driver)."""
        if self._running is None:
            try:
                data = json.loads(self.state_file.read_text())
                self._running = RouteTable.from_json(data["table"])
                self._draining = list(data.get("draining", []))
            except (OSError, ValueError, KeyError, TypeError):
                return None
        return self._running

    async def table(self) -> RouteTable:
        running = self._load()
        if running is None:
            raise TransientDriverError("nginx has not been given a route table yet")
        return running

    async def verify(self, table: RouteTable) -> bool | None:
        running = self._load()
        return running is not None and running.same_routing(table)

    async def backends(self) -> dict[str, BackendLoad]:
        running = self._load()
        out: dict[str, BackendLoad] = {}
        for d in self._draining:
            if self.attach_config is not None:
                busy = int(time.time() - d["since"] < self.spec.run.drain)
            else:
                busy = sum(1 for pid in d["workers"] if child_of(pid, d["master"]))
            if busy:
                out[d["address"]] = BackendLoad(release=d["release"], inflight=busy, requests=0)
        if running is not None:
            for pool in running.pools:
                for b in pool.backends:
                    out[b.address] = BackendLoad(release=pool.release, inflight=0, requests=0)
        return out

    def _release_of(self, address: str) -> str | None:
        running = self._running
        if running is not None:
            for pool in running.pools:
                if any(b.address == address for b in pool.backends):
                    return pool.release
        return next((d["release"] for d in self._draining if d["address"] == address), None)

    # --- RouterStats -------------------------------------------------------------------------

    async def stats(self) -> Mapping[str, ReleaseStats]:
        await self.log_switch.read()
        return await self.access.stats()

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        await self.log_switch.read()
        return await self.access.samples(release, since)

    async def aclose(self) -> None:
        """Stop reading the access log; nginx keeps serving."""
        self.log_switch.cancel()
        self.sampler.stop()
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(BaseException):
                await self._reloader
        self.access.close()


async def _generation_served(host: str, port: int) -> int | None:
    """The route table generation the listener answers on a fresh connection, or None."""
    try:
        async with asyncio.timeout(2):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(
                    f"GET {render.GENERATION_PATH} HTTP/1.0\r\nHost: zerodown\r\n\r\n".encode()
                )
                answer = await reader.read(4096)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return None
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200") or not body.strip().isdigit():
        return None
    return int(body.strip())


def _resolve(base: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else base / p


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
