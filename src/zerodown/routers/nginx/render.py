"""A route table as nginx configuration (pure: text in, text out).

The routes file is an http-level fragment, the same in both modes: zerodown's own nginx includes
it from the main file `main_config` writes; an nginx the team runs includes it itself (attach).
Every name it defines starts with `zd_<service>_`, so it can sit beside the team's own.

How each rule of the built-in router (docs/router.md, "Routing rules") is expressed:

- **matches**: one `map` per rule (header: `$http_<name>`; cookie: a regex over `$http_cookie`,
  any cookie name) yielding the release's upstream or "", chained so the first rule that matches
  wins. Values are exact, case-sensitive regexes (`~^value$`, escaped).
- **weighted split**: one upstream holding every backend of every eligible pool, weighted so each
  pool gets `weight / total` (backend weight = pool weight x lcm(pool sizes) / pool size).
  nginx's smooth weighted round-robin then gives the exact shares over every `total` requests of a
  worker, per request (not per client): the equivalent of the built-in router's card deck. A
  random per-request split (`split_clients` on `$request_id`) would drift by about ±1 point at
  2,000 requests.
- **sticky**: `split_clients` over the sticky key, parts in table order with the cumulative
  shares `100 * cumsum(weight) / total` (to 0.01 %), so the newest release first keeps a client
  that saw it while its weight only grows. The bucket is nginx's MurmurHash2 of the key scaled to
  0-99.99, not the built-in router's `mmh3.hash(key) % 100` (nginx cannot compute MurmurHash3
  without a scripting module): the same key is always on the same side in nginx, but a given key
  may land on another release than under the built-in router. When the sticky cookie is absent
  the key is `$request_id` (32 random hex digits), and the response sets it as the cookie.
- **pools with weight but no backends** are left out of the split and the sticky parts; when no
  pool has both weight and backends, every pool with backends gets an equal share (as built-in).
- **within a release**: the backend with the fewest open requests (`least_conn`), as built-in;
  the split upstream is weighted round-robin instead (that is what keeps its shares exact).
- **retries**: a failed connect moves to another backend of the same upstream (nginx's
  `proxy_next_upstream error timeout`, never for a non-idempotent request once sent); a release's
  own upstream lists the other releases' backends as `backup`, so same release first, then the
  others, as the built-in router does. The preview upstream has no backups.
- **no backend at all**: 503, like the built-in router.

The per-request log (routers/accesslog.py reads it): one `zd2 <weight> <release> …` line per
request, to a buffered file; when the driver samples a busy release (`Site.sampling`), each of
its requests gets a level from `split_clients` over its connection's serial number and its
number on that connection (MurmurHash2: uniform, and blind to status, latency and route), and a
release at weight `SAMPLING_STEPS[i]` logs only the requests of level i and up, each line
standing for that many requests. A split share is a whole hundredth of a percent, so a weight
divides 10,000 (`SAMPLING_STEPS`). The first line of the file says what the log does (`log_state`):
the driver compares it to decide whether a reload is due.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from zerodown.core.routes import Pool, RouteTable

HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")  # nginx reads $http_<name> with - as _
COOKIE_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 6265 token
UPSTREAM_KEEPALIVE = 64  # idle connections to backends each worker keeps per upstream
LOG_BUFFER = "buffer=64k flush=250ms"
"""Each worker writes its log lines whole, one write per 64 KB or 250 ms after the first line
(a write per request would cost nginx a system call each): the analysis sees a line at most
250 ms late (plus the collector's poll, routers/logtail.py)."""
GENERATION_PATH = "/.well-known/zerodown/generation"  # loopback only: which table serves
SAMPLING_STEPS = (1, 2, 4, 8, 16, 40, 80, 200, 400, 1000, 2000, 5000, 10000)
"""The weights nginx can log a release at (one request in each): divisors of 10,000, so that
`split_clients` (whole hundredths of a percent) keeps exactly 1 in weight; each at most 2.5
times the last."""
LOG_STATE = "# zerodown per-request log: "


class Unexpressible(ValueError):
    """A table (or spec) that nginx cannot carry out as the built-in router would."""


@dataclass(frozen=True, slots=True)
class Site:
    """What the routes file needs besides the table."""

    service: str
    listen: str  # host:port
    preview_listen: str | None = None
    log_file: str | None = None  # the per-request log's file (the collector tails it)
    sampling: tuple[tuple[str, int], ...] = ()  # (release, weight in SAMPLING_STEPS), with log_file
    header_timeout: float = 10.0  # seconds a client has to send its request headers (then 408)


def prefix(service: str) -> str:
    """`zd_<service>_`, with anything but letters, digits and _ made _ (nginx names)."""
    return "zd_" + re.sub(r"[^A-Za-z0-9_]", "_", service) + "_"


def quote(text: str) -> str:
    """An nginx double-quoted string that reads back as `text`."""
    if any(ord(c) < 0x20 or c == "\x7f" for c in text):
        raise Unexpressible(f"control characters cannot go in an nginx configuration: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def exact(value: str) -> str:
    """A map key matching exactly `value`, case-sensitively."""
    return quote("~^" + re.escape(value) + "$")


def check(table: RouteTable) -> None:
    """Raise Unexpressible when nginx cannot route this table as the built-in router would."""
    for m in table.matches:
        if m.header is not None and not HEADER_NAME.match(m.header):
            raise Unexpressible(
                f"header {m.header!r}: nginx matches header names of letters, digits and '-'"
            )
        if m.cookie is not None and not COOKIE_NAME.match(m.cookie):
            raise Unexpressible(f"cookie {m.cookie!r} is not a valid cookie name")
        quote(m.value)
    sticky = table.sticky
    if sticky is not None:
        if sticky.header is not None and not HEADER_NAME.match(sticky.header):
            raise Unexpressible(
                f"sticky header {sticky.header!r}: nginx matches header names of letters,"
                " digits and '-'"
            )
        if sticky.cookie is not None and not COOKIE_NAME.match(sticky.cookie):
            raise Unexpressible(f"sticky cookie {sticky.cookie!r} is not a valid cookie name")


def eligible(table: RouteTable) -> list[tuple[Pool, int]]:
    """Pools that take weighted traffic, with their weight (the built-in router's rule)."""
    pools = [(p, p.weight) for p in table.pools if p.weight > 0 and p.backends]
    if not pools:
        pools = [(p, 1) for p in table.pools if p.backends]
    return pools


def split_weights(pools: Sequence[tuple[Pool, int]]) -> list[tuple[str, int]]:
    """(address, weight) for one upstream in which each pool gets weight/total of requests."""
    common = math.lcm(*(len(p.backends) for p, _ in pools))
    weights = [(b.address, w * common // len(p.backends)) for p, w in pools for b in p.backends]
    divisor = math.gcd(*(w for _, w in weights))
    return [(a, w // divisor) for a, w in weights]


def sticky_parts(pools: Sequence[tuple[Pool, int]]) -> list[tuple[str, int]]:
    """(pool index name, hundredths of a percent) per pool: cumulative shares rounded to
    0.01 %, in table order; zero-width parts dropped."""
    total = sum(w for _, w in pools)
    parts: list[tuple[str, int]] = []
    before = cumulative = 0
    for pool, weight in pools:
        cumulative += weight
        bound = round(10000 * cumulative / total)
        if bound > before:
            parts.append((pool.release, bound - before))
        before = bound
    return parts


def routes_config(table: RouteTable, site: Site) -> str:
    """The routes file for `table`."""
    check(table)
    zd = prefix(site.service)
    lines = [
        log_state(site),
        f"# zerodown: service {site.service}, route table generation {table.generation}.",
        "# Written by zerodown on every table change: edits here are overwritten.",
    ]
    upstream_of: dict[str, str] = {}  # release -> its upstream name
    live = [p for p in table.pools if p.backends]
    for n, pool in enumerate(live):
        name = f"{zd}r{n}"
        if pool.release in upstream_of:
            continue  # a release twice in a table: the first pool wins, as built-in
        upstream_of[pool.release] = name
        others = [b for p in live if p is not pool for b in p.backends]
        lines += _upstream(
            name,
            [f"server {b.address}" for b in pool.backends]
            + [f"server {b.address} backup" for b in others],
            comment=f"release {pool.release}",
        )
    weighted = eligible(table)
    if len(weighted) > 1:
        lines += _upstream(
            f"{zd}split",
            [f"server {a} weight={w}" for a, w in split_weights(weighted)],
            comment="the weighted split: " + ", ".join(f"{p.release} {w}" for p, w in weighted),
            least_busy=False,
        )
        default = f"{zd}split"
    elif weighted:
        default = upstream_of[weighted[0][0].release]
    else:
        default = ""
    preview = next((p for p in live if p.release == table.preview), None)
    if preview is not None:
        lines += _upstream(
            f"{zd}preview",
            [f"server {b.address}" for b in preview.backends],
            comment=f"the preview listener: release {preview.release}",
        )
    sticky_lines, sticky_var = _sticky(table, weighted, upstream_of, zd, default)
    lines += sticky_lines
    routed = sticky_var or default
    rules = _matches(table, upstream_of, zd, routed)
    lines += rules
    lines += _release_map(table, zd)
    # With no rule to evaluate per request, the route is a constant: a plain `proxy_pass` to
    # a named upstream, as a hand-written configuration would say it (nginx then skips the
    # variable and the upstream look-up on every request).
    route = f"${zd}route" if rules else routed
    lines += _servers(table, site, zd, route, preview is not None)
    return "\n".join(lines) + "\n"


def _upstream(name: str, servers: list[str], comment: str, least_busy: bool = True) -> list[str]:
    """Within a release, the backend with the fewest open requests (the built-in router's rule);
    the weighted split is plain weighted round-robin, which keeps its shares exact."""
    return [
        f"upstream {name} {{  # {comment}",
        *(["    least_conn;"] if least_busy else []),
        *(f"    {s};" for s in servers),
        f"    keepalive {UPSTREAM_KEEPALIVE};",
        "}",
    ]


def _cookie_map(source_cookie: str, variable: str) -> list[str]:
    """`variable` = the value of cookie `source_cookie` ("" when absent): first one wins,
    spaces and double quotes around the value dropped, as the built-in router reads it."""
    pattern = r"(?:^|;)\s*" + re.escape(source_cookie) + r'\s*=\s*"?([^;"]*?)"?\s*(?:;|$)'
    return [
        f"map $http_cookie {variable} {{",
        f"    {quote('~' + pattern)} $1;",
        '    default "";',
        "}",
    ]


def _header_var(name: str) -> str:
    return "$http_" + name.lower().replace("-", "_")


def _sticky(
    table: RouteTable,
    weighted: Sequence[tuple[Pool, int]],
    upstream_of: dict[str, str],
    zd: str,
    default: str,
) -> tuple[list[str], str | None]:
    """The sticky choice (a variable naming an upstream; the weighted default when there is
    no key), and the cookie to set; no lines when there is nothing to choose between."""
    sticky = table.sticky
    if sticky is None or len(weighted) < 2:
        return [], None
    lines: list[str] = []
    parts = sticky_parts(weighted)
    if sticky.cookie is not None:
        lines += _cookie_map(sticky.cookie, f"${zd}cookie")
        lines += [
            f"map ${zd}cookie ${zd}key {{",
            '    "" $request_id;',
            f"    default ${zd}cookie;",
            "}",
            f"map ${zd}cookie ${zd}set_cookie {{",
            f'    "" "{sticky.cookie}=$request_id; Path=/; HttpOnly; SameSite=Lax";',
            '    default "";',
            "}",
        ]
        key = f"${zd}key"
    else:
        assert sticky.header is not None
        key = _header_var(sticky.header)
    lines.append(f'split_clients "{key}" ${zd}bucket {{')
    for n, (release, hundredths) in enumerate(parts):
        share = "*" if n == len(parts) - 1 else f"{hundredths / 100:.2f}%"
        lines.append(f"    {share} {upstream_of[release]};")
    lines.append("}")
    if sticky.header is not None:
        # No header: no key, so the weighted split decides (the built-in router's rule).
        lines += [
            f"map {key} ${zd}sticky {{",
            f'    "" {default};',
            f"    default ${zd}bucket;",
            "}",
        ]
        return lines, f"${zd}sticky"
    return lines, f"${zd}bucket"


def _matches(table: RouteTable, upstream_of: dict[str, str], zd: str, default: str) -> list[str]:
    """`$zd_route`: the first matching rule's upstream, else `default` (a name or a variable);
    no lines when there is no rule."""
    rules = [m for m in table.matches if m.release in upstream_of]
    lines: list[str] = []
    for n, m in enumerate(rules):
        source = f"${zd}c{n}"
        if m.cookie is not None:
            lines += _cookie_map(m.cookie, source)
        else:
            assert m.header is not None
            source = _header_var(m.header)
        lines += [
            f"map {source} ${zd}m{n} {{",
            f"    {exact(m.value)} {upstream_of[m.release]};",
            '    default "";',
            "}",
        ]
    fallback = default or '""'
    for n in reversed(range(len(rules))):
        target = f"${zd}route" if n == 0 else f"${zd}route{n}"
        lines += [
            f"map ${zd}m{n} {target} {{",
            f'    "" {fallback};',
            f"    default ${zd}m{n};",
            "}",
        ]
        fallback = target
    return lines


def _release_map(table: RouteTable, zd: str) -> list[str]:
    """`$zd_release`: the release of the backend that answered (the last one tried). Each
    address twice: exactly (a hash look-up: nearly every request, one backend tried), and as a
    regex for a list of the backends tried (`a, b`), which nginx tries only when no exact key
    matched, one regex after the other."""
    releases: dict[str, str] = {}
    for pool in table.pools:
        for b in pool.backends:
            releases.setdefault(b.address, pool.release)
    return [
        f"map $upstream_addr ${zd}release {{",
        *(f"    {quote(address)} {quote(release)};" for address, release in releases.items()),
        *(
            f"    {quote('~, ' + re.escape(address) + '$')} {quote(release)};"
            for address, release in releases.items()
        ),
        '    default "";',
        "}",
    ]


def _servers(table: RouteTable, site: Site, zd: str, route: str, has_preview: bool) -> list[str]:
    """The listeners. `route` is a variable naming the upstream per request, a constant
    upstream name, or "" (no backend: 503)."""
    log_http, log = _log(site, zd)
    common = [
        "    proxy_http_version 1.1;",
        '    proxy_set_header Connection "";',
        "    proxy_set_header Host $http_host;",
        "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "    proxy_set_header X-Forwarded-Proto $scheme;",
        "    proxy_connect_timeout 3s;",
        "    proxy_buffering off;",  # stream responses (SSE) as the built-in router does
        f"    client_header_timeout {max(1, math.ceil(site.header_timeout * 1000))}ms;",
        log,
    ]
    lines = log_http
    generation = [
        f"    location = {GENERATION_PATH} {{",
        "        allow 127.0.0.0/8;",
        "        allow ::1;",
        "        deny all;",
        "        access_log off;",
        f'        return 200 "{table.generation}\\n";',
        "    }",
    ]
    set_cookie = (
        [f"        add_header Set-Cookie ${zd}set_cookie always;"]
        if table.sticky is not None and table.sticky.cookie is not None and len(eligible(table)) > 1
        else []
    )
    lines += [
        "server {",
        f"    listen {site.listen};",
        *common,
        *generation,
        "    location / {",
        *_route_to(route, set_cookie),
        "    }",
        "}",
    ]
    if site.preview_listen:
        target = (
            [f"        proxy_pass http://{zd}preview;"] if has_preview else ["        return 503;"]
        )
        lines += [
            "server {",
            f"    listen {site.preview_listen};",
            *common,
            *generation,
            "    location / {",
            *target,
            "    }",
            "}",
        ]
    return lines


def log_state(site: Site) -> str:
    """The routes file's first line: whether it logs, and the releases it samples."""
    state = {"on": bool(site.log_file), "sampling": dict(site.sampling)}
    return LOG_STATE + json.dumps(state, sort_keys=True, separators=(",", ":"))


def read_log_state(text: str) -> tuple[bool, dict[str, int]] | None:
    """`log_state`'s (on, sampling) from a routes file, None when it has no such line."""
    first = text.split("\n", 1)[0]
    if not first.startswith(LOG_STATE):
        return None
    try:
        state = json.loads(first[len(LOG_STATE) :])
        sampling = {str(r): int(w) for r, w in state["sampling"].items() if w in SAMPLING_STEPS}
        return bool(state["on"]), sampling
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def log_format(zd: str, weight: str = "1") -> str:
    """The per-request line (routers/accesslog.py); `escape=none` keeps the flags header's
    bytes (a response without it leaves that field empty, which the collector reads as no
    flags)."""
    return (
        f"log_format {zd}log escape=none 'zd2 {weight} ${{{zd}release}} $status"
        " ${request_time}s $upstream_http_x_zerodown_flags $upstream_addr';"
    )


def _log(site: Site, zd: str) -> tuple[list[str], str]:
    """The http-level lines of the per-request log (its format, the sampling) and the
    servers' `access_log` line."""
    if not site.log_file:
        return [], "    access_log off;"
    target = f"    access_log {quote(site.log_file)} {zd}log {LOG_BUFFER}"
    if not site.sampling:
        return [log_format(zd)], target + ";"
    weight = f"${zd}weight"
    return [*_sampling(site.sampling, zd), log_format(zd, weight)], f"{target} if={weight};"


def _sampling(sampling: Sequence[tuple[str, int]], zd: str) -> list[str]:
    """`$zd_weight`: a request's line's weight, or 0 to leave it out. Its level is i or more
    with chance exactly 1 / SAMPLING_STEPS[i]; a release at that weight logs those."""
    lines = [f'split_clients "${{connection}}.${{connection_requests}}" ${zd}level {{']
    last = len(SAMPLING_STEPS) - 1
    for level, step in enumerate(SAMPLING_STEPS):
        if level == last:
            lines.append(f"    * {level};")
        else:
            hundredths = 10000 // step - 10000 // SAMPLING_STEPS[level + 1]
            lines.append(f"    {hundredths / 100:.2f}% {level};")
    lines += ["}", f'map "${{{zd}release}}:${{{zd}level}}" ${zd}weight {{', "    default 1;"]
    for release, weight in sampling:
        at = SAMPLING_STEPS.index(weight)  # ValueError: not a weight nginx can keep exactly
        lines += [
            f"    {quote(f'{release}:{level}')} {weight if level >= at else 0};"
            for level in range(last + 1)
        ]
    lines.append("}")
    return lines


def _route_to(route: str, set_cookie: list[str]) -> list[str]:
    if not route:
        return ["        return 503;"]
    if not route.startswith("$"):
        return [*set_cookie, f"        proxy_pass http://{route};"]
    return [
        f'        if ({route} = "") {{',
        "            return 503;",
        "        }",
        *set_cookie,
        f"        proxy_pass http://{route};",
    ]


def main_config(
    *,
    routes: str,
    state: str,
    error_log: str,
    workers: int | str,
    user: str | None,
    shutdown_timeout: float,
) -> str:
    """The main file of the nginx zerodown runs itself: everything kept under `state`."""
    lines = [
        "# Written by zerodown; the routes are in the file included below.",
        "daemon off;",
        "master_process on;",
        f"worker_processes {workers};",
        f"pid {state}/nginx.pid;",
        f"error_log {error_log} error;",
        # Old workers finish their requests after a reload; a stream that never ends (SSE) is
        # cut after this, so old generations cannot pile up.
        f"worker_shutdown_timeout {max(1, math.ceil(shutdown_timeout))}s;",
    ]
    if user is not None:
        lines.append(f"user {user};")
    lines += [
        "events {",
        "    worker_connections 4096;",
        "}",
        "http {",
        "    access_log off;",
        "    server_tokens off;",
        "    keepalive_timeout 75s;",
        "    keepalive_requests 100000;",
        "    client_max_body_size 0;",
        "    proxy_request_buffering off;",
        *(
            f"    {kind}_temp_path {state}/tmp/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ),
        f"    include {routes};",
        "}",
    ]
    return "\n".join(lines) + "\n"
