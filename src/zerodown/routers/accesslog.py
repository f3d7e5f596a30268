"""Per-request figures from a production router's access log: the RouterStats of HAProxy and nginx.

HAProxy and nginx keep no per-release counters zerodown can read, but both can write one log line
per request: HAProxy to a unix socket, nginx to a file. `AccessLog` binds that socket (mode 0600,
in the state directory's `run/`) or tails that file, reads the lines and keeps what the built-in
router keeps: cumulative counters per release (`ReleaseStats`) and a bounded ring of recent
`Sample`s per release, plus the flag-variant pseudo-releases `flag:<key>=<variant>` of responses
carrying `X-Zerodown-Flags`.
The router metric provider and the flag guards read it through `stats()` and `samples()`.

The line format (one per logged request; ASCII; fields separated by single spaces):

    zd2 <weight> <release> <status> <time> <flags> <backend>
    zd1 <release> <status> <time> <flags> <backend>          (weight 1: an older nginx routes file)

- `zd2`, `zd1`: the format's tag and version. Everything before it is ignored, so a syslog
  header (`<134>Dec  1 14:53:04 tag: `, which nginx's `access_log syslog:` always adds) does no
  harm; HAProxy sends the bare line with `log ... format raw`.
- `weight`: the requests the line stands for: the router logged one request in `weight` of
  that release (`Sampler`, below); `-` is 1.
- `release`: the release that served the request; `-` when the router did not pick one (no
  backend: the request is then counted under the release of `backend` if the collector knows
  it, else not at all).
- `status`: the HTTP status the client got; `0` or `-1` (HAProxy's "no response") counts as an
  error, as does any 5xx.
- `time`: the request's total time, in milliseconds (`12`, `12.5`, HAProxy's `%Ta`), or in
  seconds with an `s` suffix (`0.012s`, nginx's `${request_time}s`).
- `flags`: the response's `X-Zerodown-Flags` value (`key=variant,key=variant`, percent-encoded,
  no spaces), or `-` when there is none.
- `backend`: the rest of the line: the address that answered (`127.0.0.1:9001`); nginx may list
  every address it tried (`a, b`): the last one counts. `-` (or HAProxy's `<NOSRV>`) when no
  backend answered; a 5xx with no backend is a transport error, as in the built-in router.

Transports (`AccessLog(..., transport=...)`):

- `events`: the lines HAProxy keeps in its in-memory `ring` (no server), read through its
  Runtime API socket with `show events <ring> -w` (routers/ringevents.py): costs HAProxy
  nothing while no controller reads it.
- `file`: the lines a router appends to a file (nginx, `access_log FILE … buffer=64k
  flush=250ms`), tailed and rotated by the collector (routers/logtail.py): nothing dropped.

Examples: `zd2 1 v2 200 3 - 127.0.0.1:9001`, `zd2 32 v1 200 3 - 127.0.0.1:9002`,
`<134>Dec  1 14:53:04 zd: zd1 v2 503 0.001s checkout=new 127.0.0.1:9001, 127.0.0.1:9002`.
Lines that do not parse are counted (`AccessLog.malformed`) and otherwise ignored.

When the routers send the lines (`LogSwitch`): only while something reads them. Writing and
reading a line per request costs the data path (measured: managed HAProxy at 0.69x a
hand-written one, nginx at 0.80-0.89x, docs/router.md), so the drivers turn the log on while a
rollout is under way (the route table has two releases with backends: a canary, a blue-green
preview, a rolling update; what the analysis judges) and for `READ_LEASE` seconds after each read
of the samples or counters (flag guards, the dashboard's charts, a metric outside a rollout), and
off otherwise. HAProxy switches at runtime (the state of a server its response rules test, no
reload); nginx by a reload (none extra when a table change starts or ends the rollout).

How many (`Sampler`): while the log is on, every request of a release is logged until that
release passes `LINES_CAP` (1,000) requests a second; then one request in `weight`
(`sampling_weight`: HAProxy's weights are powers of two, and its lines stay between a quarter
of the cap and the cap; nginx's steps are up to 2.5 apart, its lines between a fifth of the
cap and the cap; a weight comes down only after its rate has called for less for
`SAMPLE_HOLD` seconds of traffic, quiet looks not counted). The sampler looks every
`SAMPLE_EVERY` seconds at each release's rate (the weighted counts since its last look) and sets
the weights (a release's own rate, so a canary at a few hundred requests a second keeps every
request however busy the stable release is): HAProxy at runtime (a map of the servers'
weights; the choice of a request is its `rand`), nginx by a reload (routers/nginx/render.py:
the choice is a hash of the connection's and the request's numbers). Either choice is uniform,
independent of status, latency or flags.

What the weights mean for the readers:
- `stats()` (`ReleaseStats`: requests, 4xx, 5xx, transport errors, latency histogram and sum)
  are estimates: each line counts `weight` times (Horvitz-Thompson; exact while the weight is
  1). The analysis reads them only for `request_rate` (below), a rate, not an exact count.
- `samples()` keep one sample per logged line, never repeated by its weight: a uniform sample of
  the release's requests, so the error rate, the latency quantiles, the Mann-Whitney judge
  (per-request latencies, per-second error rates) and the sequential judge (Bernoulli trials)
  judge what they would on every request, from fewer observations (at least a quarter of the cap
  a second: never fewer than the 20,000-sample ring holds over 80 s). Repeating a sample by its
  weight would make the judges over-confident. `min_samples` counts logged requests.
- `request_rate` (metrics/router.py) reads the counters, read at each measurement: every
  request, estimated; the samples, the rate of logged requests, only until a reading as old as
  the window's start exists.

HAProxy (zerodown writes this for kind haproxy):

    log ring@zd_log len 4096 format raw local0      # ring zd_log: no server
    log-format "zd2 %[var(txn.zd_weight)] %[srv_name,map(…/servers.map)] %ST %Ta %[var(txn.zd_flags)] %si:%sp"

nginx (routers/nginx/render.py; `$zd_weight` is `1` while no release is sampled):

    log_format zd escape=none 'zd2 $zd_weight ${zd_release} $status ${request_time}s '
                              '$upstream_http_x_zerodown_flags $upstream_addr';
    access_log /…/run/nginx-access.log zd buffer=64k flush=250ms if=$zd_weight;
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from zerodown.core.analysis.stats import Sample
from zerodown.core.model import is_flag_release
from zerodown.core.routes import ReleaseStats, RouteTable
from zerodown.paths import UNIX_SOCKET_MAX, Paths
from zerodown.routers.logtail import MAX_BYTES, FileTail
from zerodown.routers.proxy.stats import (
    DEFAULT_SAMPLES,
    MAX_RELEASES,
    ReleaseCounters,
    parse_flags_header,
)
from zerodown.routers.ringevents import EventsReader

log = logging.getLogger("zerodown.router.accesslog")

TAG = "zd2"
TAG_BYTES = b"zd2 "
TAG1_BYTES = b"zd1 "  # the format before the weight (an nginx routes file from before it)
MAX_WEIGHT = 1 << 20  # a larger weight is refused: no sampling rate zerodown sets
MAX_LINE = 8192  # bytes of a line that are read; a longer line is cut and refused
READ_LEASE = 600.0
"""seconds the log stays on after a read of the samples or counters: longer than the interval
between two measurements of any analysis worth running (a reader that stops for longer finds a
gap at the start of its next window)."""
NO_BACKEND = frozenset({"", "-", "<NOSRV>", "-:-", "-:0", "<NOSRV>:0"})
Transport = Literal["events", "file"]
PARSED_CACHE = 4096  # distinct (release, status, flags and backend) kept parsed
LINES_CAP = 1000.0
"""lines a second per release above which the router logs a sample of the requests
(`sampling_weight`): a canary at a few hundred requests a second has every request logged."""
POWERS_OF_TWO = tuple(1 << n for n in range(17))
"""HAProxy's weights: 1 to 65536 (one request in 65536), each twice the last."""
SAMPLE_EVERY = 0.25
"""seconds between two looks of the sampling controller: a burst is logged in full this long."""
SAMPLE_HOLD = 10.0
"""seconds the rate must call for a lower weight before the weight comes down: a lull of a few
seconds (between two load tests, a client's retries) does not bring back the full log just
before the next burst."""


class LogLine(NamedTuple):
    """One parsed request (a named tuple: built once per request, at a tenth of a frozen
    dataclass' cost)."""

    release: str | None  # None: the router picked none
    status: int  # 0 when the client got no response
    latency: float  # seconds
    flags: tuple[str, ...]  # pseudo-release names flag:<key>=<variant>
    backend: str | None  # the address that answered last, None when none did
    weight: int = 1  # the requests this line stands for (a sampled log keeps 1 in weight)

    @property
    def transport_error(self) -> bool:
        """The router answered itself (or nobody did): no backend, or no response at all."""
        return self.status < 100 or (self.status >= 500 and self.backend is None)


def parse_line(data: bytes) -> LogLine | None:
    """One line → a LogLine, or None when it is neither a `zd2` nor a `zd1` line (see the
    module docstring).

    Called once per request while the log is on: a few bytes operations on the line as it
    came, no decode of the whole line first."""
    tagged = _after_tag(data)
    if tagged is None:
        return None
    version, rest = tagged
    weight = 1
    if version == TAG_BYTES:
        parts = rest.split(b" ", 1)
        if len(parts) != 2:
            return None
        parsed = _weight(parts[0])
        if parsed is None:
            return None
        weight, rest = parsed, parts[1]
    fields = rest.strip().split(b" ", 4)
    if len(fields) != 5:
        return None
    release, status_text, time_text, flags, backend = fields
    try:
        status = max(int(status_text), 0)
        latency = _seconds(time_text.decode("latin-1"))
    except ValueError:
        return None
    if status > 999 or not release:
        return None
    address = backend.rsplit(b",", 1)[-1].strip().decode("latin-1")
    return LogLine(
        release=None if release == b"-" else release.decode("latin-1"),
        status=status,
        latency=latency,
        flags=() if flags in (b"", b"-") else parse_flags_header(flags),
        backend=None if address in NO_BACKEND else address,
        weight=weight,
    )


def _after_tag(data: bytes) -> tuple[bytes, bytes] | None:
    """(the tag, what follows it), the tag at the start (raw lines) or after a header."""
    for tag in (TAG_BYTES, TAG1_BYTES):
        if data.startswith(tag):
            return tag, data[len(tag) : MAX_LINE]
    found = [
        (at, tag)
        for tag in (TAG_BYTES, TAG1_BYTES)
        if (at := data.find(b" " + tag, 0, MAX_LINE)) >= 0
    ]
    if not found:
        return None
    at, tag = min(found)
    return tag, data[at + 1 + len(tag) : MAX_LINE]


def _weight(text: bytes) -> int | None:
    """A `zd2` line's weight: `-` (HAProxy's empty variable: no sampling) is 1."""
    if text in (b"-", b""):
        return 1
    try:
        weight = int(text)
    except ValueError:
        return None
    return weight if 1 <= weight <= MAX_WEIGHT else None


def _seconds(text: str) -> float:
    value = float(text[:-1]) if text.endswith("s") else float(text) / 1000.0
    if not value < 1e6:  # also refuses nan and inf
        raise ValueError(text)
    return max(value, 0.0)  # HAProxy logs -1 for a time it did not measure


def run_dir(paths: Paths) -> Path:
    """`.zerodown/run/` (owner only): the sockets and files of a router zerodown drives."""
    path = paths.state / "run"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def socket_path(paths: Paths, name: str) -> Path:
    """`run/<name>`, or a short stable name in the temp directory when that path is too long for
    a unix socket (sun_path holds 108 bytes)."""
    path = run_dir(paths) / name
    if len(str(path)) <= UNIX_SOCKET_MAX:
        return path
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"zerodown-{digest}-{name}"


class AccessLog:
    """The collector: read, count. Satisfies RouterStats (`stats`, `samples`).

    A thread of its own reads HAProxy's ring or nginx's file: a ring or a file only holds so
    much, so the reader must not depend on the controller's event loop being free.
    `release_of(address)` names the release of a backend address for lines whose release is
    `-` (the driver passes its route table's view). Counters start when the collector starts.
    File transport: `reopen` and `writers` are FileTail's (the router's reopen signal, the
    processes that may hold the file)."""

    def __init__(
        self,
        path: Path,
        *,
        samples: int = DEFAULT_SAMPLES,
        release_of: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.time,
        transport: Transport,
        reopen: Callable[[], None] | None = None,
        writers: Callable[[], Sequence[int]] | None = None,
        max_bytes: int = MAX_BYTES,
        ring: str = "",
    ) -> None:
        self.path = path
        self.transport = transport
        self.reopen = reopen
        self.writers = writers
        self.max_bytes = max_bytes  # the file transport rotates its file past this
        self.ring = ring  # the events transport's ring (`path` is then the Runtime API socket)
        self.samples_kept = samples
        self.release_of = release_of
        self.clock = clock
        self.releases: dict[str, ReleaseCounters] = {}
        self.received = 0
        self.malformed = 0
        self._parsed: dict[tuple[bytes, ...], LogLine | None] = {}  # receive_many's
        self._lock = threading.Lock()  # the reader thread records, the event loop reads
        self._reader: threading.Thread | None = None
        self.tail: FileTail | None = None  # the file transport's reader
        self.events: EventsReader | None = None  # the events transport's

    # --- the reader ---------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    async def start(self) -> None:
        """Start reading (the ring through the Runtime API socket, or the file); cheap when it
        reads already."""
        if self.listening:
            return
        self.close()
        if self.transport == "events":
            self.events = EventsReader(self.path, self.ring, self.receive_many)
            self._reader = self.events.start()
            return
        self.tail = FileTail(
            self.path,
            self.receive_many,
            reopen=self.reopen,
            writers=self.writers,
            max_bytes=self.max_bytes,
        )
        self._reader = self.tail.start()

    def resume(self) -> None:
        """Events transport: HAProxy runs; read its ring from the end (ringevents)."""
        if self.events is not None:
            self.events.resume()

    def follow_new_worker(self, old_done: Callable[[], bool] | None = None) -> None:
        """Events transport: a new HAProxy worker serves; read its ring from its start."""
        if self.events is not None:
            self.events.follow_new_worker(old_done)

    def close(self) -> None:
        events, self.events = self.events, None
        if events is not None:
            events.close()  # the socket is HAProxy's: it stays
            self._reader = None
            return
        tail, self.tail = self.tail, None
        if tail is not None:
            tail.close()  # the file stays: the router writes it
        self._reader = None

    # --- counting -----------------------------------------------------------------------------

    def receive_many(self, lines: Sequence[bytes]) -> None:
        """Lines that came in one read, counted under one lock and one clock.

        Batched, because a file or a ring brings thousands of lines a read: the lines that
        differ only in their time (same release, status, flags and backend: nearly all of
        them) are parsed once (`_parsed`, a bounded cache) and counted together, each line
        costing a split and a float."""
        groups: dict[tuple[bytes, bytes, bytes, bytes, bytes], list[float]] = {}
        others: list[LogLine | None] = []
        for data in lines:
            if not data:
                continue
            # The bare line (a file's, HAProxy's raw ones), inline: this loop is the cost.
            if data.startswith(TAG_BYTES):
                fields = data.split(b" ", 6)
                ok = len(fields) == 7
                weight = fields[1] if ok else b""
                del fields[:2]
            elif data.startswith(TAG1_BYTES):
                fields = data.split(b" ", 5)
                ok = len(fields) == 6
                weight = b"1"
                del fields[:1]
            else:
                ok = False
            if ok:
                time_text = fields[2]
                try:
                    if time_text.endswith(b"s"):
                        latency = float(time_text[:-1])
                    else:
                        latency = float(time_text) / 1000.0
                except ValueError:
                    latency = math.nan
                if latency < 1e6:  # false for nan and inf: parse_line refuses those
                    key = (weight, fields[0], fields[1], fields[3], fields[4])
                    group = groups.get(key)
                    if group is None:
                        groups[key] = [max(latency, 0.0)]
                    else:
                        group.append(max(latency, 0.0))
                    continue
            others.append(parse_line(data))  # a header before the tag, or not a line at all
        wall = self.clock()
        with self._lock:
            for key, latencies in groups.items():
                template = self._parsed.get(key)
                if template is None:
                    template = parse_line(b"zd2 %s %s %s 0 %s %s" % key)
                    if len(self._parsed) >= PARSED_CACHE:
                        self._parsed.clear()
                    self._parsed[key] = template
                if template is None:
                    self.malformed += len(latencies)
                    continue
                self.received += len(latencies)
                self._record_many(template, latencies, wall)
            for line in others:
                if line is None:
                    self.malformed += 1
                    continue
                self.received += 1
                self._record_many(line, [line.latency], wall)

    def record(self, line: LogLine, wall: float) -> None:
        with self._lock:
            self._record_many(line, [line.latency], wall)

    def _record_many(self, line: LogLine, latencies: list[float], wall: float) -> None:
        """Requests like `line` but for their latencies."""
        for counters in self._counters(line):
            counters.record_many(line.status, latencies, wall, line.transport_error, line.weight)

    def _counters(self, line: LogLine) -> list[ReleaseCounters]:
        """The counters a line counts under: its release's, and its flag variants'."""
        release = line.release
        if release is None and line.backend is not None and self.release_of is not None:
            release = self.release_of(line.backend)
        names = (release,) if release is not None else ()
        out = []
        for name in (*names, *line.flags):
            counters = self.releases.get(name)
            if counters is None:
                # Flag names come from a backend's header: bounded, like the built-in router.
                if name != release and len(self.releases) >= MAX_RELEASES:
                    continue
                counters = self.releases[name] = ReleaseCounters(self.samples_kept)
            out.append(counters)
        return out

    # --- RouterStats --------------------------------------------------------------------------

    async def stats(self) -> Mapping[str, ReleaseStats]:
        with self._lock:
            return {name: c.snapshot() for name, c in self.releases.items()}

    async def samples(self, release: str, since: float) -> Sequence[Sample]:
        with self._lock:
            counters = self.releases.get(release)
            if counters is None:
                return []
            return [s for s in counters.samples if s[0] > since]

    def requests(self) -> dict[str, int]:
        """Each release's requests so far (estimated from the weights: `Sampler` reads rates
        from them); not the flag variants, which share their release's lines."""
        with self._lock:
            return {
                name: c.requests for name, c in self.releases.items() if not is_flag_release(name)
            }


def in_rollout(table: RouteTable) -> bool:
    """Two releases or more with backends: the analysis compares them (canary and stable, the
    preview and the serving release, the two sides of a rolling update)."""
    return len({p.release for p in table.pools if p.backends}) > 1


class LogSwitch:
    """Whether the router sends its per-request lines: on during a rollout, and for `lease`
    seconds after every read; `turn(on)` makes the router do so (the driver's part).

    `on` is what the router does now (None: unknown, the first `sync` sets it). A read that
    finds the log off turns it on and returns at once: the samples start from there."""

    def __init__(
        self,
        turn: Callable[[bool], Awaitable[None]],
        *,
        on: bool | None = None,
        lease: float = READ_LEASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.turn = turn
        self.on = on
        self.lease = lease
        self.clock = clock
        self.rollout = False
        self.read_until = -float("inf")
        self.switches = 0  # times turn() changed it (tests and benches read it)
        self._lock = asyncio.Lock()
        self._expiry: asyncio.Task[None] | None = None

    @property
    def wanted(self) -> bool:
        return self.rollout or self.clock() < self.read_until

    async def read(self) -> None:
        """Something reads the samples or counters: keep the log on for `lease` seconds."""
        self.read_until = self.clock() + self.lease
        if self.on is not True:
            await self.sync()
        if self._expiry is None or self._expiry.done():
            self._expiry = asyncio.create_task(self._expire(), name="access log lease")

    async def table(self, table: RouteTable) -> None:
        """A route table was applied: the log follows whether it is a rollout's."""
        self.rollout = in_rollout(table)
        await self.sync()

    async def sync(self) -> None:
        async with self._lock:
            want = self.wanted
            if want != self.on:
                await self.turn(want)
                if self.on is not None:
                    self.switches += 1
                self.on = want
                log.info("per-request log %s", "on" if want else "off")

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, self.read_until - self.clock()))
            if self.clock() >= self.read_until:
                break
        try:
            await self.sync()
        except Exception as exc:  # the next read or table change tries again
            log.warning("the per-request log could not be turned off: %s", exc)

    def cancel(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None


def sampling_weight(
    rate: float, weight: int, cap: float = LINES_CAP, steps: Sequence[int] = POWERS_OF_TWO
) -> int:
    """The weight for a release that gets `rate` requests a second and is logged one request in
    `weight` now: every request while that makes at most `cap` lines a second, else the
    smallest of `steps` (ascending, from 1) that brings the lines under `cap`.

    Hysteresis: the weight rises as soon as the lines pass `cap` (to the smallest step that
    brings them back under it: between cap / ratio and cap, ratio being the gap to the step
    below), and comes down a step only while the lines at that step stay under cap/2: a steady
    rate settles at one weight, and the rate must halve or more to move it back."""
    weight = max(1, weight)
    if rate / weight > cap:
        return next((step for step in steps if rate / step <= cap), steps[-1])
    lower = [step for step in steps if step < weight]
    while lower and rate / lower[-1] <= cap / 2:
        weight = lower.pop()
    return weight


def plan_weights(
    rates: Mapping[str, float],
    weights: Mapping[str, int],
    lower_for: Mapping[str, float],
    span: float,
    *,
    cap: float = LINES_CAP,
    hold: float = SAMPLE_HOLD,
    steps: Sequence[int] = POWERS_OF_TWO,
) -> tuple[dict[str, int], dict[str, float]]:
    """Each release's next weight (`sampling_weight`; only those above 1) from its rate over
    the last `span` seconds and its weight now, and how long each release's rate has called
    for a lower weight than it has (`lower_for`, updated). A weight rises at once, and comes
    down once the rate has called for less for `hold` seconds of traffic: a look that saw no
    request of the release does not count (no request, no line to save; and when the traffic
    comes back, the first look may see only part of a second of it)."""
    out: dict[str, int] = {}
    lower_for = dict(lower_for)
    for release, rate in rates.items():
        current = weights.get(release, 1)
        weight = sampling_weight(rate, current, cap, steps)
        if weight >= current:  # the rate calls for this weight or more
            lower_for.pop(release, None)
        else:
            if rate > 0:
                lower_for[release] = lower_for.get(release, 0.0) + span
            if lower_for.get(release, 0.0) < hold:
                weight = current
            else:
                lower_for.pop(release, None)
        if weight > 1:
            out[release] = weight
    return out, lower_for


class Sampler:
    """The sampling controller: every `every` seconds while the log is on, each release's rate
    (from the weighted counts of its lines since the last look) → its weight (`plan_weights`);
    `apply(weights)` makes the router log one request in `weight` of each release (releases not
    named: every request). At most one `apply` per look, and only when a weight changes."""

    def __init__(
        self,
        access: AccessLog,
        apply: Callable[[Mapping[str, int]], Awaitable[None]],
        *,
        cap: float = LINES_CAP,
        every: float = SAMPLE_EVERY,
        hold: float = SAMPLE_HOLD,
        steps: Sequence[int] = POWERS_OF_TWO,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.access = access
        self.apply = apply
        self.cap = cap
        self.steps = steps
        self.every = every
        self.hold = hold
        self.clock = clock
        self.weights: dict[str, int] = {}  # what the router does now (absent: 1)
        self.changes = 0  # times apply() changed them (tests and benches read it)
        self._lower_for: dict[str, float] = {}  # release -> seconds its rate called for less
        self._seen: dict[str, int] = {}
        self._at = clock()
        self._task: asyncio.Task[None] | None = None

    def plan(self) -> dict[str, int]:
        """The weights from the requests counted since the last look (which this one ends)."""
        now, counts = self.clock(), self.access.requests()
        span = max(now - self._at, 1e-3)
        rates = {r: (n - self._seen.get(r, n)) / span for r, n in counts.items()}
        self._seen, self._at = counts, now
        weights, self._lower_for = plan_weights(
            rates,
            self.weights,
            self._lower_for,
            span,
            cap=self.cap,
            hold=self.hold,
            steps=self.steps,
        )
        return weights

    async def look(self) -> None:
        weights = self.plan()
        if weights != self.weights:
            await self.apply(weights)
            self.weights = weights
            self.changes += 1
            log.info("per-request log sampling: %s", weights or "every request")

    def start(self) -> None:
        """Looks from now on, from every request logged (the router's weights: cleared)."""
        if self._task is not None and not self._task.done():
            return
        self._seen, self._at = self.access.requests(), self.clock()
        self._task = asyncio.create_task(self._run(), name="access log sampler")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.look()
            except Exception as exc:  # the next look tries again
                log.warning("the per-request log's sampling could not be set: %s", exc)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
