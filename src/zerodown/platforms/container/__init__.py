"""Instances as containers, through a Docker-compatible engine's API (Docker, or Podman's
service): `platform: {kind: container}` with `run.image`. See platform.py and docs/containers.md;
with `hosts:`, each host's engine over SSH (hosts.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zerodown.drivers import DriverContext

if TYPE_CHECKING:
    from zerodown.platforms.container.hosts import ContainerHostsPlatform
    from zerodown.platforms.container.platform import ContainerPlatform


def create(ctx: DriverContext) -> ContainerPlatform | ContainerHostsPlatform:
    if ctx.spec.hosts:
        from zerodown.platforms.container.hosts import ContainerHostsPlatform

        return ContainerHostsPlatform(ctx.spec, state_dir=ctx.paths.state, spec_dir=ctx.spec_dir)
    from zerodown.platforms.container.platform import ContainerPlatform

    return ContainerPlatform(
        state_dir=ctx.paths.state, spec_dir=ctx.spec_dir, service=ctx.spec.service
    )
