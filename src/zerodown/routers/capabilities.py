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
    """The built-in router runs its own process: there is nothing to attach to."""
    if spec.router.attach is not None:
        return [
            Refusal(
                "router.attach",
                "the builtin router is a process zerodown starts; attach is for kind haproxy"
                " or nginx (remove attach, or set router.kind)",
            )
        ]
    return []
