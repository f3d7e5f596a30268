"""Issue 14, bad input: an unreachable host, a refused key, an unknown host key. Each is a clear
error naming the host and what to do, before any instance starts or leaves; never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.hosts import HostLab, hosts_spec
from support.workspace import Workspace
from zerodown.core.errors import PermanentDriverError
from zerodown.platforms.ssh.driver import SshPlatform
from zerodown.spec.model import Spec

pytestmark = pytest.mark.slow


def test_unknown_host_key_fails_up_naming_the_host(hosted: Workspace, lab: HostLab) -> None:
    trusted = lab.known_hosts.read_text().splitlines(keepends=True)
    partial = hosted.root / "known_hosts"
    partial.write_text("".join(line for line in trusted if lab.host("web2").address not in line))
    hosted.write_spec(hosts_spec(hosted, lab, ssh={"known_hosts": str(partial)}))
    result = hosted.zd("up", "--version", "v1", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0, out
    assert "host web2" in out and "host key is not trusted" in out and "ssh-keyscan" in out, out
    assert "Traceback" not in out
    for host in lab.hosts:  # nothing started anywhere
        assert lab.run(host.name, "ls /tmp/zerodown/shop/logs 2>/dev/null").split() == []


async def _prepare_error(spec: Spec, root: Path) -> str:
    platform = SshPlatform(spec, state_dir=root / ".zerodown", spec_dir=root)
    try:
        with pytest.raises(PermanentDriverError) as caught:
            await platform.prepare(release="v1", run=spec.run)
    finally:
        await platform.aclose()
    return str(caught.value)


@pytest.mark.anyio
async def test_refused_key_and_unreachable_host_are_named(hosted: Workspace, lab: HostLab) -> None:
    stranger = hosted.root / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    refused = Spec.model_validate(hosts_spec(hosted, lab, ssh={"identity": str(stranger)}))
    message = await _prepare_error(refused, hosted.root)
    assert "host web1 (root@" in message and "refused our key" in message, message
    assert "authorized_keys" in message

    lab.link_down("web3")
    unreachable = Spec.model_validate(hosts_spec(hosted, lab))
    message = await _prepare_error(unreachable, hosted.root)
    assert "host web3" in message and "cannot connect" in message, message
    assert "web1" not in message and "web2" not in message  # the others were fine
