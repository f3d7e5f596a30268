"""Issue 14's proof on three hosts (network namespaces with their own sshd): rolling, canary and
blue-green under 300 requests/s through the built-in router on this machine, 0 failed."""

from __future__ import annotations

import tarfile
import time

import pytest

from support.hosts import HostLab, hosts_spec
from support.workspace import Workspace

pytestmark = pytest.mark.slow

RELEASES = "/tmp/zerodown/shop/releases"


def per_host(ws: Workspace, lab: HostLab) -> dict[str, list[str]]:
    """The release of each instance, by the host its address is on."""
    by_address = {h.address: h.name for h in lab.hosts}
    found: dict[str, list[str]] = {h.name: [] for h in lab.hosts}
    for i in ws.status()["instances"]:
        found[by_address[i["address"].rpartition(":")[0]]].append(i["release"])
    return found


def test_rolling_canary_blue_green_on_three_hosts(hosted: Workspace, lab: HostLab) -> None:
    hosted.zd("up", "--version", "v1")
    assert per_host(hosted, lab) == {"web1": ["v1"], "web2": ["v1"], "web3": ["v1"]}
    with hosted.load() as load:
        time.sleep(0.5)
        hosted.zd("deploy", "v2", "--wait")
        steps = [{"set_weight": 34}, {"pause": {"duration": "1s"}}, {"set_weight": 100}]
        hosted.write_spec(hosts_spec(hosted, lab, strategy={"canary": {"steps": steps}}))
        hosted.zd("deploy", "v3", "--wait")
        blue_green = {"blue_green": {"auto_promote": True, "scale_down_delay": "1s"}}
        hosted.write_spec(hosts_spec(hosted, lab, strategy=blue_green))
        hosted.zd("deploy", "v4", "--wait")
        done = time.time()
        time.sleep(1)
    report = load.report
    print(f"three hosts, rolling + canary + blue-green: {report.summary()}")
    assert report.total >= 300 * 3
    assert [(s.status, s.error) for s in report.failed] == []
    assert set(report.versions(since=done)) == {"v4"}
    hosted.wait_for(
        lambda: per_host(hosted, lab) == {"web1": ["v4"], "web2": ["v4"], "web3": ["v4"]},
        what="one v4 instance on each host",
    )
    # Every host got each release in a directory of its own; ssh.keep_releases (3) pruned v1.
    for host in lab.hosts:
        assert lab.run(host.name, f"ls {RELEASES}").split() == ["v2", "v3", "v4"]
    # A release given as an archive (run.artifact): unpacked once here, shipped the same way.
    with tarfile.open(hosted.root / "shop-v5.tar.gz", "w:gz") as tar:
        tar.add(hosted.root / "app.py", arcname="app.py")
    spec = hosts_spec(hosted, lab)
    spec["run"]["artifact"] = "shop-{version}.tar.gz"
    hosted.write_spec(spec)
    with hosted.load() as load:
        time.sleep(0.5)
        hosted.zd("deploy", "v5", "--wait")
        time.sleep(0.5)
    assert [(s.status, s.error) for s in load.report.failed] == []
    assert "v5" in dict(load.report.versions())
    for host in lab.hosts:
        assert lab.run(host.name, f"ls {RELEASES}").split() == ["v3", "v4", "v5"]
    status = hosted.zd("status").stdout
    assert "hosts" in status and "DOWN" not in status
    hosted.zd("down")  # stops what runs on every host
    for host in lab.hosts:
        assert "app.py" not in lab.run(host.name, "ps ax -o args"), host.name
