"""The haproxy.cfg zerodown writes for `router: {kind: haproxy}` (managed mode), and the Lua
converter that gives sticky users the built-in router's buckets.

Everything that changes with traffic lives in servers and map files the Runtime API edits; the
configuration holds only the rules (plan.Rules) and, at each reload, the servers as they are
then, so that a reload or a restart starts from the current table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zerodown.routers.haproxy.plan import NONE, SLOTS, SPLIT, Desired, Key, Rules, slot_backend

RING = "zd_log"
"""The ring the per-request lines go to; the controller reads it with `show events` on the
Runtime API (routers/ringevents.py). It has no server: a ring that forwards to the controller's
socket makes HAProxy 2.6 retry the connection in a tight loop while no controller listens."""
LOG_SWITCH = "zd_log_switch/on"
"""The per-request log's switch: a server that takes no traffic (no rule routes to its backend),
up while the log is on, in maintenance while it is off (`set server … state ready|maint` on the
Runtime API, no reload). `srv_is_up` reads its state: the cheapest test of something the Runtime
API changes (no map lookup; bench/haproxy_log_cost.py, docs/router.md)."""

MURMUR3_LUA = """\
-- zerodown: sticky bucket = murmur3_32(key, seed 0) % 100, as the built-in router computes it
local function rotl(x, r) return ((x << r) | (x >> (32 - r))) & 0xffffffff end
local function murmur3_32(s)
  local c1, c2, h, len = 0xcc9e2d51, 0x1b873593, 0, #s
  local function mixk(k) return (rotl((k * c1) & 0xffffffff, 15) * c2) & 0xffffffff end
  local blocks = len // 4
  for i = 0, blocks - 1 do
    local b1, b2, b3, b4 = string.byte(s, 4 * i + 1, 4 * i + 4)
    h = h ~ mixk(b1 | (b2 << 8) | (b3 << 16) | (b4 << 24))
    h = (rotl(h, 13) * 5 + 0xe6546b64) & 0xffffffff
  end
  local rest, k, at = len & 3, 0, 4 * blocks
  if rest == 3 then k = k ~ (string.byte(s, at + 3) << 16) end
  if rest >= 2 then k = k ~ (string.byte(s, at + 2) << 8) end
  if rest >= 1 then h = h ~ mixk(k ~ string.byte(s, at + 1)) end
  h = h ~ len
  h = ((h ~ (h >> 16)) * 0x85ebca6b) & 0xffffffff
  h = ((h ~ (h >> 13)) * 0xc2b2ae35) & 0xffffffff
  return h ~ (h >> 16)
end
core.register_converters("zd_bucket", function(key) return murmur3_32(key) % 100 end)
"""


@dataclass(frozen=True)
class Files:
    """Where the managed HAProxy's files are (all in the state directory's run/)."""

    run: Path
    admin_socket: Path

    @property
    def config(self) -> Path:
        return self.run / "haproxy.cfg"

    @property
    def server_state(self) -> Path:
        return self.run / "haproxy.state"

    @property
    def lua(self) -> Path:
        return self.run / "sticky.lua"

    @property
    def table(self) -> Path:
        return self.run / "haproxy-table.json"

    @property
    def log_switch(self) -> Path:
        """The driver's record of the per-request log's switch (`on 1`: on; accesslog.LogSwitch),
        read by the next controller. HAProxy reads the switch from `LOG_SWITCH` (a HAProxy
        written by a zerodown before it read this file, as a map)."""
        return self.run / "log.map"

    @property
    def sampling(self) -> Path:
        """The map `<server name> <weight>`: while the log is on, one response in `weight` of
        that server is logged (the servers of the releases accesslog.Sampler weighs; others:
        every response)."""
        return self.run / "log-sampling.map"

    def map_file(self, name: str) -> Path:
        return self.run / f"{name}.map"


def _fetch(key: Key) -> str:
    # req.fhdr: the whole header value (req.hdr would split it at commas)
    return f"req.fhdr({key.name})" if key.kind == "header" else f"req.cook({key.name})"


def _map(files: Files, name: str) -> str:
    return f"map({files.map_file(name)})"


def log_format(files: Files) -> str:
    """The accesslog line (routers/accesslog.py): the weight of the line (`-`: 1), the release
    of the server that answered (its name looked up in `servers.map` when the line is built:
    only for the lines kept)."""
    servers = files.map_file("servers")
    return (
        f"zd2 %[var(txn.zd_weight)] %[srv_name,map({servers})] %ST %Ta %[var(txn.zd_flags)] %si:%sp"
    )


def _logged(files: Files) -> list[str]:
    """The per-request line; whether it is kept is decided by the response rules (`_sampled`)."""
    return [
        "  log global",
        f'  log-format "{log_format(files)}"',
        "  option dontlognull",  # a connection that sent nothing (a port probe) is no request
    ]


def _sampled(files: Files) -> list[str]:
    """Which responses of a server have a line, the frontend's last rules (`allow` ends them).

    Each response is silenced first (an action without a condition, the cheapest rule); while
    the log is off the next rule ends the rules there: two rules a request at rest, one test
    (`srv_is_up`). While it is on: uniform sampling per server, so per release: the weight of
    the server that answered (1 when the sampling map has none), the rules end for the responses
    `rand` modulo the weight leaves out (still silent), and the others get their line back
    (`info`, the level a line has by default), the weight and the flags header, read only for
    them. The weight is looked up into a session variable: set again by every response of the
    connection before it is read, it is allocated once per connection, not per request (220
    instructions a request less, sampled); the line reads a request's own copy, so a response
    HAProxy makes itself never shows another request's weight.
    Responses HAProxy makes itself (no server) run no http-response rule: their lines are never
    silenced (weight `-`, 1), and with the log off they go to a ring nobody reads. Nothing may
    follow these rules: `allow` ends the frontend's http-response rules."""
    return [
        "  http-response set-log-level silent",
        f"  http-response allow unless {{ srv_is_up({LOG_SWITCH}) }}",
        f"  http-response set-var(sess.zd_weight) srv_name,map_str_int({files.sampling},1)",
        "  http-response allow if { rand,mod(sess.zd_weight) gt 0 }",
        "  http-response set-log-level info",
        "  http-response set-var(txn.zd_weight) var(sess.zd_weight)",
        "  http-response set-var(txn.zd_flags) res.hdr(x-zerodown-flags)",
    ]


def render(
    rules: Rules, servers: Desired, files: Files, *, drain: float, log_on: bool = False
) -> str:
    """The whole configuration for `rules`, with `servers` as static servers and the log's
    switch as `log_on` (the state when it is written; the Runtime API changes them afterwards)."""
    unset = "!{ var(txn.zd_be) -m found }"
    lines = [
        "# Written by zerodown: changes here are overwritten at the next reload.",
        "global",
        f"  stats socket {files.admin_socket} mode 600 level admin expose-fd listeners",
        "  stats timeout 30s",
        f"  server-state-file {files.server_state}",
        f"  lua-load {files.lua}",
        f"  log ring@{RING} len 4096 format raw local0",
        f"  hard-stop-after {max(int(drain), 1)}s",
        "",
        # The per-request lines go to a ring in HAProxy's memory, which the controller reads
        # through the Runtime API (`show events zd_log -w`): many lines per write, kept while
        # the controller is slow; with nobody reading, the oldest are forgotten, at no cost.
        f"ring {RING}",
        "  format raw",
        "  maxlen 4096",
        "  size 4194304",
        "",
        "defaults",
        "  mode http",
        "  timeout connect 3s",
        "  timeout client 75s",
        "  timeout server 75s",
        "  timeout http-keep-alive 75s",
        f"  timeout http-request {max(int(rules.header_timeout * 1000), 1)}ms",
        "  timeout queue 10s",
        "  option redispatch 1",
        "  retries 3",
        # A refused connection is retried (HAProxy's default, `retry-on conn-failure`); not
        # `empty-response`, whose L7 retries keep a copy of every request (measured: 57 -> 45 µs
        # of HAProxy CPU per request, the hand-written configuration 48; docs/router.md).
        "  http-reuse safe",
        "  load-server-state-from-file global",
        "",
        "frontend zd_main",
        f"  bind {rules.listen}",
        *_logged(files),
        "  option forwardfor",
        "  http-request set-header X-Forwarded-Proto http",
    ]
    for n, key in enumerate(rules.match_keys):
        fetch = _fetch(key)
        lines.append(
            f"  http-request set-var(txn.zd_be) {fetch},{_map(files, f'match{n}')}"
            f" if {unset} {{ {fetch} -m found }}"
        )
    if rules.sticky is not None:
        fetch = _fetch(rules.sticky)
        lines.append(f"  http-request set-var(txn.zd_key) {fetch} if {{ {fetch} -m found }}")
        if rules.sticky.kind == "cookie":
            lines += [
                "  http-request set-var(txn.zd_new) bool(true) if !{ var(txn.zd_key) -m found }",
                "  http-request set-var(txn.zd_key) uuid if !{ var(txn.zd_key) -m found }",
                f'  http-response add-header Set-Cookie "{rules.sticky.name}=%[var(txn.zd_key)];'
                ' Path=/; HttpOnly; SameSite=Lax" if { var(txn.zd_new) -m found }',
            ]
        lines.append(
            "  http-request set-var(txn.zd_be) var(txn.zd_key),lua.zd_bucket,"
            f"{_map(files, 'buckets')} if {unset} {{ var(txn.zd_key) -m found }}"
        )
    lines += _tail(files, default=SPLIT, routed=bool(rules.match_keys) or rules.sticky is not None)
    if rules.preview_listen is not None:
        lines += [
            "frontend zd_preview",
            f"  bind {rules.preview_listen}",
            *_logged(files),
            "  option forwardfor",
            "  http-request set-header X-Forwarded-Proto http",
            f"  http-request set-var(txn.zd_be) str(preview),{_map(files, 'meta')}",
            *_tail(files, default=NONE, routed=True),
        ]
    by_slot: dict[int, list[str]] = {s: [] for s in range(SLOTS)}
    split: list[str] = []
    for server in servers.servers:
        split.append(f"  server {server.name} {server.address} weight {server.split_weight}")
        by_slot[server.slot].append(f"  server {server.name} {server.address} weight 1")
    lines += ["backend " + SPLIT, "  balance roundrobin", *split, ""]
    for slot in range(SLOTS):
        lines += [f"backend {slot_backend(slot)}", "  balance leastconn", *by_slot[slot], ""]
    lines += [f"backend {NONE}", ""]
    switch_backend, switch_server = LOG_SWITCH.split("/")
    lines += [
        f"backend {switch_backend}",  # no rule routes here: a switch, not a destination
        f"  server {switch_server} 127.0.0.1:1{'' if log_on else ' disabled'}",
        "",
    ]
    return "\n".join(lines)


def _tail(files: Files, *, default: str, routed: bool) -> list[str]:
    """The backend (`txn.zd_be` when a rule above set it: `routed`, else never looked up, which
    costs HAProxy 200-500 instructions a request; bench/haproxy_log_cost.py) and the log."""
    return [
        *(["  use_backend %[var(txn.zd_be)] if { var(txn.zd_be) -m found }"] if routed else []),
        f"  default_backend {default}",
        *_sampled(files),
        "",
    ]
