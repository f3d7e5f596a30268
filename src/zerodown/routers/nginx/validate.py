"""What router kind nginx cannot do with a spec (checked when the spec is loaded; light: no
driver import)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence

from zerodown.drivers import Refusal
from zerodown.spec.model import Spec

HEADER_RULE = "nginx reads header names of letters, digits and '-' only ($http_<name>)"
COOKIE_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # an RFC 6265 token
HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
DEBIAN_PACKAGE = "nginx-light"  # the smallest Debian package with the modules zerodown uses
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")  # not on every user's PATH
MISSING = (
    "router kind nginx needs the nginx binary, which is not installed: on Debian or Ubuntu"
    f" `apt-get install {DEBIAN_PACKAGE}` (nginx 1.19.5 or newer), or set ZERODOWN_NGINX to its"
    " path"
)


def locate() -> str | None:
    """The nginx executable: $ZERODOWN_NGINX, else PATH and the sbin directories."""
    given = os.environ.get("ZERODOWN_NGINX")
    found = given or shutil.which(
        "nginx", path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN])
    )
    return found if found and os.access(found, os.X_OK) else None


def _bad_value(value: str) -> bool:
    return any(ord(c) < 0x20 or c == "\x7f" for c in value)


def validate(spec: Spec) -> Sequence[Refusal]:
    out: list[Refusal] = []
    router = spec.router
    if router.admin_listen is not None:
        out.append(
            Refusal(
                "router.admin_listen",
                "router kind nginx has no zerodown admin API; remove admin_listen (the figures"
                " are the controller's, from nginx's per-request log)",
            )
        )
    canary = spec.strategy.canary
    for n, step in enumerate(canary.steps if canary is not None else ()):
        route = step.set_header_route
        if route is None:
            continue
        if route.header is not None and not HEADER_NAME.match(route.header):
            out.append(Refusal(f"strategy.canary.steps.{n}", HEADER_RULE))
        if route.cookie is not None and not COOKIE_NAME.match(route.cookie):
            out.append(Refusal(f"strategy.canary.steps.{n}", "not a cookie name (RFC 6265 token)"))
        if _bad_value(route.value):
            out.append(
                Refusal(f"strategy.canary.steps.{n}", "a route value has no control characters")
            )
    sticky = canary.sticky if canary is not None else None
    if sticky is not None:
        if sticky.header is not None and not HEADER_NAME.match(sticky.header):
            out.append(Refusal("strategy.canary.sticky", HEADER_RULE))
        if sticky.cookie is not None and not COOKIE_NAME.match(sticky.cookie):
            out.append(Refusal("strategy.canary.sticky", "not a cookie name (RFC 6265 token)"))
    attach = router.attach
    if attach is None:
        if locate() is None:  # zerodown runs nginx: say now what to install, not at `up`
            out.append(Refusal("router.kind", MISSING))
        return out
    for name in ("admin_socket", "backend"):
        if getattr(attach, name) is not None:
            out.append(
                Refusal(
                    f"router.attach.{name}",
                    "is for kind haproxy; nginx attaches by {config, reload}",
                )
            )
    if not attach.config:
        out.append(
            Refusal(
                "router.attach.config",
                "is required: the file zerodown writes, which your nginx includes inside http {}"
                " (e.g. /etc/nginx/conf.d/shop.conf)",
            )
        )
    if not attach.reload:
        out.append(
            Refusal(
                "router.attach.reload",
                "is required: the command that reloads your nginx, e.g. [nginx, -s, reload]",
            )
        )
    metrics = [m for t in spec.analysis.templates.values() for m in t.metrics]
    if any(m.provider == "router" for m in metrics) or spec.flag_guards:
        field = "flag_guards" if spec.flag_guards else "analysis.templates"
        out.append(
            Refusal(
                field,
                "router metrics and flag guards need nginx's per-request log on zerodown's"
                " owner-only socket, which an nginx zerodown did not start cannot write to; use a"
                " prometheus or web metric, or let zerodown run nginx (remove attach)",
            )
        )
    return out
