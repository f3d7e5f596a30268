"""The ssh platform: instances as processes on several hosts over SSH (driver.py)."""

from __future__ import annotations

from zerodown.drivers import DriverContext
from zerodown.platforms.ssh.driver import SshPlatform


def create(ctx: DriverContext) -> SshPlatform:
    return SshPlatform(ctx.spec, state_dir=ctx.paths.state, spec_dir=ctx.spec_dir)
