"""`zerodown plan` and `zerodown lint`: what a deploy would do and how it would be undone, and the
mistakes in a spec, read without starting or changing anything.

Both read the spec; `plan` also reads the state store when one exists (the stable release, the
revisions and the database schema each used, from which it knows which migrations have run) and
`lint` asks a running router for the longest request it has seen. Neither needs a controller,
and neither writes: the store is only opened when `.zerodown/` already exists.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from zerodown import drivers
from zerodown.control.process import router_pid
from zerodown.core.model import Revision
from zerodown.core.ports import RouterStats
from zerodown.core.rollback_plan import RollbackPlan, Trigger, compute
from zerodown.core.routes import LATENCY_BUCKETS, ReleaseStats
from zerodown.migrations.outlook import migration_outlook
from zerodown.paths import Paths
from zerodown.spec.lint import ERROR, NOTE, WARNING, Finding, Observed, lint
from zerodown.spec.load import line_of, load_spec
from zerodown.spec.model import Spec
from zerodown.spec.types import check_version, format_duration

ROUTER_WAIT = 3.0  # seconds a running router has to answer for its figures


# --- plan -------------------------------------------------------------------------------------


def plan_command(
    file: Annotated[
        Path, typer.Option("-f", "--file", help="the spec file; state lives beside it")
    ] = Path("zerodown.yaml"),
    version: Annotated[
        str | None, typer.Option("--version", help="the release the deploy would roll out")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Print the rollout a deploy would run and its rollback plan; change nothing."""
    from zerodown.cli.main import EXIT_OK, EXIT_USAGE, fail, run_guarded

    if version is not None:
        try:
            check_version(version)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)

    def go() -> int:
        plan = gather_plan(file, version)
        print(json.dumps(plan.to_json(), indent=2) if as_json else render_plan(plan))
        return EXIT_OK

    raise typer.Exit(run_guarded(go))


def gather_plan(file: Path, version: str | None) -> RollbackPlan:
    spec = load_spec(file)
    paths = Paths.for_spec(file)
    stable, first, revisions = _stored(paths, spec)
    outlook = migration_outlook(spec, paths.spec_dir, revisions, stable, stored=first is not None)
    return compute(spec, version=version, stable=stable, first=bool(first), migrations=outlook)


def _stored(paths: Paths, spec: Spec) -> tuple[str | None, bool | None, list[Revision]]:
    """(stable release, whether none has completed yet, revisions); (None, None, []) when no
    controller ever ran here (nothing is created to find out)."""
    if not paths.state.exists():
        return None, None, []
    store = drivers.stores.create(
        drivers.store_kind(spec.state.url), drivers.DriverContext(spec=spec, paths=paths)
    )
    try:
        status = store.status(spec.service)
        return status.stable, status.stable is None, store.revisions(spec.service)
    finally:
        store.close()


def render_plan(plan: RollbackPlan) -> str:
    over = f" over {plan.stable}" if plan.stable else ""
    lines = [
        f"zerodown plan: {plan.service} {plan.version or '(next version)'}{over}"
        f" ({plan.strategy}, {plan.instances} instances)",
        "",
        "rollout",
        *[f"  {n}. {step}" for n, step in enumerate(plan.steps, 1)],
        "",
        "what triggers a rollback",
    ]
    for trigger in plan.triggers:
        lines += _trigger_lines(trigger)
    lines += ["", "how long"]
    if plan.worst_case is None:
        lines.append("  not bounded: no analysis watches for a regression (see notes)")
    else:
        back = plan.stable or "the stable release"
        lines += [
            f"  worst case {plan.worst_case:.2f}s from a regression to all traffic on {back}",
            f"  = {plan.worst_case_formula}",
            f"  (via {plan.worst_case_via})",
        ]
    lines += ["", "who can roll back", *[f"  - {w}" for w in plan.who]]
    lines += ["", "how", f"  {plan.how}"]
    lines += ["", "migrations", *[f"  - {m}" for m in plan.migrations]]
    lines += ["", "what would block it", *[f"  - {b}" for b in plan.blockers or ["nothing"]]]
    lines += ["", "caution", *[f"  - {c}" for c in plan.caution or ["not raised"]]]
    if plan.notes:
        lines += ["", "notes", *[f"  - {n}" for n in plan.notes]]
    return "\n".join(lines)


def _trigger_lines(trigger: Trigger) -> list[str]:
    settings = ", ".join(
        f"{k} {format_duration(v) if k in _DURATIONS else v}"
        for k, v in trigger.settings.items()
        if k not in ("provider", "query")
    )
    lines = [f"  - {trigger.name}: {trigger.condition}", f"      watches {trigger.watches}"]
    if settings:
        lines.append(f"      {settings}")
    lines.append(f"      then: {trigger.effect}")
    if trigger.detect is not None:
        lines.append(f"      detects within {trigger.detect:.2f}s = {trigger.formula}")
    elif trigger.formula:
        lines.append(f"      {trigger.formula}")
    return lines


_DURATIONS = {"interval", "window", "period", "timeout", "initial_delay", "progress_deadline"}


# --- lint -------------------------------------------------------------------------------------


def lint_command(
    file: Annotated[
        Path, typer.Option("-f", "--file", help="the spec file; state lives beside it")
    ] = Path("zerodown.yaml"),
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Check the spec for the mistakes that cost failed requests; exit 1 on errors."""
    from zerodown.cli.main import EXIT_ERROR, EXIT_OK, run_guarded

    def go() -> int:
        findings = lint_file(file)
        if as_json:
            print(json.dumps([f.to_json() for f in findings], indent=2))
        else:
            print(render_findings(findings, str(file)))
        return EXIT_ERROR if any(f.severity == ERROR for f in findings) else EXIT_OK

    raise typer.Exit(run_guarded(go))


def lint_file(file: Path) -> list[Finding]:
    """The findings for the spec in `file`, each with its line."""
    spec = load_spec(file)
    text = file.read_text(encoding="utf-8")
    observed = replace(router_observed(Paths.for_spec(file), spec), cores=os.cpu_count())
    return [
        Finding(f.rule, f.severity, f.loc, f.why, f.fix, line_of(text, list(f.loc)))
        for f in lint(spec, observed)
    ]


def render_findings(findings: Sequence[Finding], file: str) -> str:
    lines = []
    for f in findings:
        where = f"{file}:{f.line}" if f.line else file
        lines += [f"{where}: {f.severity}: {f.rule} ({f.field}): {f.why}", f"    fix: {f.fix}"]
    count = {s: sum(1 for f in findings if f.severity == s) for s in (ERROR, WARNING, NOTE)}
    summary = ", ".join(f"{n} {s}{'' if n == 1 else 's'}" for s, n in count.items())
    lines.append(summary if findings else f"{file}: no findings")
    return "\n".join(lines)


def router_observed(paths: Paths, spec: Spec) -> Observed:
    """The longest request the running router has seen (a lower bound, from its histogram)."""
    if router_pid(paths) is None:
        return Observed(router_note="no router runs for this spec")
    try:
        stats = asyncio.run(_router_stats(paths, spec))
    except Exception as exc:  # any failure only means the rule is skipped, with the reason
        return Observed(router_note=f"the router did not give its figures ({exc})")
    if stats is None:
        return Observed(router_note=f"router kind {spec.router.kind} keeps no latency figures")
    longest = longest_request(stats.values())
    if longest is None:
        return Observed(router_note="the router has served no request yet")
    return Observed(longest_request=longest)


async def _router_stats(paths: Paths, spec: Spec) -> dict[str, ReleaseStats] | None:
    router = drivers.routers.create(spec.router.kind, drivers.DriverContext(spec=spec, paths=paths))
    try:
        if not isinstance(router, RouterStats):
            return None
        async with asyncio.timeout(ROUTER_WAIT):
            return dict(await router.stats())
    finally:
        await router.aclose()


def longest_request(stats: Iterable[ReleaseStats]) -> float | None:
    """At least how long the longest request took: the lower edge of the highest latency
    bucket holding a request (the router keeps a histogram, not each duration)."""
    edges = (0.0, *LATENCY_BUCKETS)
    highest = -1
    for release in stats:
        for n, count in enumerate(release.latency_counts):
            if count:
                highest = max(highest, n)
    return None if highest < 0 else edges[min(highest, len(edges) - 1)]
