"""The ssh platform with a handle whose host left `hosts:` (edited, then a controller restart):
the instance is reported gone and `stop` returns, without reaching any host."""

from __future__ import annotations

from pathlib import Path

import pytest

from zerodown.core.ports import Exited
from zerodown.platforms.ssh.driver import SshPlatform
from zerodown.spec.model import Spec


@pytest.mark.anyio
async def test_a_handle_on_a_host_no_longer_in_the_spec(tmp_path: Path) -> None:
    spec = Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["app"]},
            "hosts": [{"name": "web1", "ssh": "root@192.0.2.250"}],
        }
    )
    platform = SshPlatform(spec, state_dir=tmp_path / ".zerodown", spec_dir=tmp_path)
    try:
        seen = await platform.observe(instance_id="shop-v1-a", handle="web9:123:456")
        assert isinstance(seen, Exited) and "web9 is no longer in hosts" in seen.reason
        how = await platform.stop(
            instance_id="shop-v1-a", handle="web9:123:456", stop_signal="SIGTERM", grace=1
        )
        assert how.startswith("not stopped: its host web9")
    finally:
        await platform.aclose()
