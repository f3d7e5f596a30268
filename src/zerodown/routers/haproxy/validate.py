"""What router kind haproxy cannot do with a spec (checked when the spec is loaded; light: no
driver import)."""

from __future__ import annotations

from collections.abc import Sequence

from zerodown.drivers import Refusal
from zerodown.spec.model import Spec

NAME_RULE = "a name HAProxy can read: letters, digits and - _ . only"


def _token(name: str) -> bool:
    return bool(name) and all(c.isascii() and (c.isalnum() or c in "-_.") for c in name)


def _value(value: str) -> bool:
    return bool(value) and all(c.isascii() and c.isprintable() and not c.isspace() for c in value)


def validate(spec: Spec) -> Sequence[Refusal]:
    attach = spec.router.attach
    out: list[Refusal] = []
    if spec.router.admin_listen is not None:
        out.append(
            Refusal(
                "router.admin_listen",
                "router kind haproxy has no zerodown admin API; remove admin_listen (read the"
                " figures from the controller, or HAProxy's own stats)",
            )
        )
    canary = spec.strategy.canary
    for n, step in enumerate(canary.steps if canary is not None else ()):
        route = step.set_header_route
        if route is not None and not _token(route.header or route.cookie or ""):
            out.append(Refusal(f"strategy.canary.steps.{n}", f"{NAME_RULE} (header or cookie)"))
        if route is not None and not _value(route.value):
            out.append(
                Refusal(
                    f"strategy.canary.steps.{n}",
                    "a header route value for HAProxy has no spaces or control characters",
                )
            )
    sticky = canary.sticky if canary is not None else None
    if sticky is not None and not _token(sticky.cookie or sticky.header or ""):
        out.append(Refusal("strategy.canary.sticky", NAME_RULE))
    if attach is None:
        return out
    for name in ("config", "reload"):
        if getattr(attach, name) is not None:
            out.append(
                Refusal(
                    f"router.attach.{name}",
                    "is for kind nginx; haproxy attaches by {admin_socket, backend}",
                )
            )
    for name in ("admin_socket", "backend"):
        if not getattr(attach, name):
            out.append(
                Refusal(
                    f"router.attach.{name}" if attach else "router.attach",
                    "is required: attach: {admin_socket: /run/haproxy/admin.sock, backend: NAME}"
                    " (the backend whose servers zerodown may add and remove)",
                )
            )
    # Attach mode changes only servers of one backend: whatever needs a rule is out of reach.
    why = "needs a rule in the team's HAProxy configuration, which attach mode never changes"
    if canary is not None:
        for n, step in enumerate(canary.steps):
            if step.set_header_route is not None:
                out.append(Refusal(f"strategy.canary.steps.{n}", f"a header route {why}"))
        if canary.sticky is not None:
            out.append(Refusal("strategy.canary.sticky", f"sticky users {why}"))
    bg = spec.strategy.blue_green
    if bg is not None and bg.preview_listen is not None:
        out.append(Refusal("strategy.blue_green.preview_listen", f"a preview listener {why}"))
    metrics = [m for t in spec.analysis.templates.values() for m in t.metrics]
    if any(m.provider == "router" for m in metrics) or spec.flag_guards:
        field = "flag_guards" if spec.flag_guards else "analysis.templates"
        out.append(
            Refusal(
                field,
                "router metrics and flag guards need per-request logs, which an attached HAProxy"
                " does not send to zerodown; use a prometheus or web metric instead",
            )
        )
    return out
