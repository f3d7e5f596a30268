"""How the CLI shows state: rich tables for people, `--json` for scripts.

Every string that comes from the spec, the user or the controller goes through `esc` before
rich sees it: a reason such as "path /[a-z]+ failed" must print as written, not lose its
brackets to rich markup.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

RECENT_ERROR = 300.0
"""Seconds a controller error is shown as a warning after it happened."""


def esc(value: Any) -> str:
    return escape(str(value))


def ago(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    seconds = max(0.0, now - at)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def weights(status: dict[str, Any]) -> str:
    pools = status["routes"]["pools"]
    total = sum(p["weight"] for p in pools) or 1
    shares = [f"{p['release']} {100 * p['weight'] / total:.0f}%" for p in pools if p["weight"]]
    matches = [
        f"{m['header'] or m['cookie']}={m['value']} → {m['release']}"
        for m in status["routes"]["matches"]
    ]
    return ", ".join(shares + matches) or "no traffic routed"


def controller_health(state: dict[str, Any]) -> str | None:
    """One markup line when the controller is stalled or failed recently, else None.

    `state["controller"]` is absent from older controllers; they are shown as healthy."""
    health = state.get("controller") or {}
    now = float(state.get("now") or time.time())
    error = health.get("last_error") or None
    message = esc(error["message"]) if error else "no error recorded"
    stalled = health.get("stalled_since")
    if stalled is not None:
        return (
            f"[bold red]controller stalled since {clock(stalled)} ({now - stalled:.0f}s ago):"
            f"[/] {message}"
        )
    if error and now - error["at"] <= RECENT_ERROR:
        return f"[yellow]controller error at {clock(error['at'])} ({ago(error['at'], now)}):[/] {message}"
    return None


def leadership(state: dict[str, Any]) -> str | None:
    """Which controller leads and since when, and the standbys (None from a controller whose
    store has no leases, or an older one)."""
    seen = state.get("leadership")
    if not seen:
        return None
    leader = seen.get("leader")
    if leader:
        since = clock(leader["since"])
        line = f"[bold]{esc(leader['id'])}[/] since {since} ({duration(leader['for'])})"
    else:
        line = "[bold red]none[/]: the lease is free or ran out; a standby takes it"
    standbys = [f"{esc(s['id'])} (seen {s['seen_ago']:.0f}s ago)" for s in seen["standbys"]]
    line += "; standby: " + ", ".join(standbys) if standbys else "; no standby"
    if seen.get("role") == "standby":
        line += f" [yellow](answered by standby {esc(seen['this'])})[/]"
    return line


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def status_view(state: dict[str, Any]) -> Group:
    status, now = state["status"], state["now"]
    rollout = status["rollout"]
    parts: list[Any] = []
    health = controller_health(state)
    if health:
        parts.append(Text.from_markup(health))
    head = Table.grid(padding=(0, 2))
    head.add_row("service", f"[bold]{esc(state['service'])}[/] on http://{esc(state['router'])}")
    if state.get("dashboard"):
        head.add_row("dashboard", esc(state["dashboard"]))
    leads = leadership(state)
    if leads:
        head.add_row("leader", leads)
    head.add_row("stable", esc(status["stable"] or "-"))
    head.add_row("traffic", esc(weights(status)))
    if state.get("routes_applied") is False:  # absent from older controllers, null on standbys
        # The status is saved before its routes are applied (engine/reconciler.py): say so,
        # or a reader would trust the traffic row while nginx or HAProxy is still reloading.
        head.add_row("router", "[yellow]applying this table; the previous one serves until then[/]")
    if rollout:
        phase = rollout["phase"]
        color = {"completed": "green", "failed": "red", "aborted": "red", "paused": "yellow"}.get(
            phase, "cyan"
        )
        head.add_row(
            "rollout",
            f"revision {rollout['revision']}: {esc(rollout['previous'] or '-')} → "
            f"[bold]{esc(rollout['version'])}[/] ({esc(rollout['strategy'])}) "
            f"[{color}]{esc(phase)}[/]",
        )
        if rollout["reason"] and phase not in ("progressing",):
            head.add_row("why", esc(rollout["reason"]))
        if rollout["pause_reason"]:
            head.add_row("paused", esc(rollout["pause_reason"]))
        if state.get("caution"):
            head.add_row("caution", f"[yellow]{esc(state['caution'])}[/]")
    if status["last_decision"]:
        head.add_row(
            "decision",
            f"{esc(status['last_decision'])} ({ago(status['last_decision_at'], now)})",
        )
    parts.append(head)
    if state["steps"] and rollout:
        parts.append(_steps(state["steps"], rollout["step"]))
    if rollout and rollout.get("checks"):
        parts.append(_checks(rollout["checks"]))
    if state.get("hosts"):
        parts.append(_hosts(state["hosts"], now))
    parts.append(_instances(state["instances"]))
    per_release = Counter(i["release"] for i in state["instances"] if i["ready"])
    summary = ", ".join(f"{r}: {n} ready" for r, n in sorted(per_release.items()))
    parts.append(Text(summary or "no instance is ready", style="dim"))
    for t in state.get("tunnels") or ():  # absent from older controllers
        left = max(0.0, t["closes_at"] - now)
        parts.append(
            Text(
                f"{t['release']} still holds {t['open']} upgraded connection"
                f"{'s' if t['open'] != 1 else ''} (WebSockets) on {t['address']}: "
                f"closed in {left:.0f}s so they reconnect to the new release",
                style="yellow",
            )
        )
    return Group(*parts)


def _steps(steps: list[dict[str, Any]], done: int) -> Table:
    table = Table(title="steps", title_justify="left", show_header=False, box=None)
    for step in steps:
        mark = "✓" if step["n"] <= done else ("▶" if step["n"] == done + 1 else " ")
        table.add_row(mark, f"{step['n']}.", esc(step["step"]))
    return table


def _checks(checks: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="checks", title_justify="left")
    for column in ("check", "state", "why"):
        table.add_column(column)
    colors = {"passed": "green", "failed": "red", "inconclusive": "yellow"}
    for key, check in checks.items():
        outcome = str(check["state"])
        shown = f"[{colors[outcome]}]{outcome}[/]" if outcome in colors else esc(outcome)
        table.add_row(esc(key), shown, esc(check.get("reason") or ""))
    return table


def _hosts(hosts: list[dict[str, Any]], now: float) -> Table:
    table = Table(title="hosts", title_justify="left")
    for column in ("host", "address", "state", "why"):
        table.add_column(column)
    for h in hosts:
        if h["up"]:
            state, why = "[green]up[/]", ""
        else:
            state, why = f"[red]DOWN[/] since {ago(h['down_since'], now)}", h["reason"] or ""
        table.add_row(esc(h["name"]), esc(h["address"]), state, esc(why))
    return table


def _instances(instances: list[dict[str, Any]]) -> Table:
    table = Table(title="instances", title_justify="left")
    for column in ("instance", "release", "address", "phase", "ready", "note"):
        table.add_column(column)
    for i in instances:
        ready = "[green]yes[/]" if i["ready"] else "[red]no[/]"
        note = i["failure"] or i["retire_reason"] or ""
        table.add_row(
            esc(i["id"]), esc(i["release"]), esc(i["address"]), esc(i["phase"]), ready, esc(note)
        )
    return table


def history_view(revisions: list[dict[str, Any]], now: float | None = None) -> Table:
    table = Table(title="history")
    for column in ("rev", "version", "strategy", "started", "outcome", "reason"):
        table.add_column(column)
    now = time.time() if now is None else now
    for r in revisions:
        color = {"completed": "green", "failed": "red", "aborted": "red"}.get(r["outcome"], "")
        outcome = f"[{color}]{esc(r['outcome'])}[/]" if color else esc(r["outcome"] or "")
        table.add_row(
            str(r["revision"]),
            esc(r["version"]),
            esc(r["strategy"]),
            ago(r["created_at"], now),
            outcome,
            esc(r["reason"] or ""),
        )
    return table
