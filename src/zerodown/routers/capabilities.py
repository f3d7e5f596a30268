"""What each router driver can do with a spec, checked when the spec is loaded (light modules:
the spec loader imports these, never a driver).

A check returns `drivers.Refusal`s naming the field at fault; the loader prints them as
`zerodown.yaml:LINE: field: why`.
"""

from __future__ import annotations

from collections.abc import Sequence

from zerodown.drivers import Refusal
from zerodown.spec.model import Spec


def builtin(spec: Spec) -> Sequence[Refusal]:
    """The built-in router runs its own process: there is nothing to attach to; its TCP admin
    API speaks for one process."""
    out = []
    if spec.router.attach is not None:
        out.append(
            Refusal(
                "router.attach",
                "the builtin router is a process zerodown starts; attach is for kind haproxy"
                " or nginx (remove attach, or set router.kind)",
            )
        )
    if spec.router.admin_listen is not None and spec.router.worker_count > 1:
        out.append(
            Refusal(
                "router.admin_listen",
                "with several router workers each counts its own share of the traffic, and the"
                " TCP admin API would show one worker's; use one worker with admin_listen (the"
                " controller's API and `zerodown status` show every worker's, merged)",
            )
        )
    return out
