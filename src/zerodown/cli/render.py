"""How the CLI shows state: rich tables for people, `--json` for scripts."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text


def _ago(at: float | None, now: float) -> str:
    if at is None:
        return "-"
    seconds = max(0.0, now - at)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def weights(status: dict[str, Any]) -> str:
    pools = status["routes"]["pools"]
    total = sum(p["weight"] for p in pools) or 1
    shares = [f"{p['release']} {100 * p['weight'] / total:.0f}%" for p in pools if p["weight"]]
    matches = [
        f"{m['header'] or m['cookie']}={m['value']} → {m['release']}"
        for m in status["routes"]["matches"]
    ]
    return ", ".join(shares + matches) or "no traffic routed"


def status_view(state: dict[str, Any]) -> Group:
    status, now = state["status"], state["now"]
    rollout = status["rollout"]
    head = Table.grid(padding=(0, 2))
    head.add_row("service", f"[bold]{state['service']}[/] on http://{state['router']}")
    if state.get("dashboard"):
        head.add_row("dashboard", state["dashboard"])
    head.add_row("stable", status["stable"] or "-")
    head.add_row("traffic", weights(status))
    if rollout:
        phase = rollout["phase"]
        color = {"completed": "green", "failed": "red", "aborted": "red", "paused": "yellow"}.get(
            phase, "cyan"
        )
        head.add_row(
            "rollout",
            f"revision {rollout['revision']}: {rollout['previous'] or '-'} → "
            f"[bold]{rollout['version']}[/] ({rollout['strategy']}) [{color}]{phase}[/]",
        )
        if rollout["reason"] and phase not in ("progressing",):
            head.add_row("why", rollout["reason"])
        if rollout["pause_reason"]:
            head.add_row("paused", rollout["pause_reason"])
    if status["last_decision"]:
        head.add_row(
            "decision", f"{status['last_decision']} ({_ago(status['last_decision_at'], now)})"
        )
    parts: list[Any] = [head]
    if state["steps"] and rollout:
        steps = Table(title="steps", title_justify="left", show_header=False, box=None)
        for step in state["steps"]:
            mark = (
                "✓"
                if step["n"] <= rollout["step"]
                else ("▶" if step["n"] == rollout["step"] + 1 else " ")
            )
            steps.add_row(mark, f"{step['n']}.", step["step"])
        parts.append(steps)
    if rollout and rollout.get("checks"):
        checks = Table(title="checks", title_justify="left")
        for column in ("check", "state", "why"):
            checks.add_column(column)
        colors = {"passed": "green", "failed": "red", "inconclusive": "yellow"}
        for key, check in rollout["checks"].items():
            outcome = check["state"]
            shown = f"[{colors[outcome]}]{outcome}[/]" if outcome in colors else outcome
            checks.add_row(key, shown, escape(check["reason"]))
        parts.append(checks)
    table = Table(title="instances", title_justify="left")
    for column in ("instance", "release", "address", "phase", "ready", "note"):
        table.add_column(column)
    for i in state["instances"]:
        ready = "[green]yes[/]" if i["ready"] else "[red]no[/]"
        note = i["failure"] or i["retire_reason"] or ""
        table.add_row(i["id"], i["release"], i["address"], i["phase"], ready, note)
    parts.append(table)
    per_release = Counter(i["release"] for i in state["instances"] if i["ready"])
    summary = ", ".join(f"{r}: {n} ready" for r, n in sorted(per_release.items()))
    parts.append(Text(summary or "no instance is ready", style="dim"))
    return Group(*parts)


def history_view(revisions: list[dict[str, Any]]) -> Table:
    table = Table(title="history")
    for column in ("rev", "version", "strategy", "started", "outcome", "reason"):
        table.add_column(column)
    now = time.time()
    for r in revisions:
        color = {"completed": "green", "failed": "red", "aborted": "red"}.get(r["outcome"], "")
        outcome = f"[{color}]{r['outcome']}[/]" if color else r["outcome"]
        table.add_row(
            str(r["revision"]),
            r["version"],
            r["strategy"],
            _ago(r["created_at"], now),
            outcome,
            r["reason"],
        )
    return table
