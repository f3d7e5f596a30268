"""Issue 14's proof for containers on three hosts (network namespaces, each with its own sshd
and its own Podman service and image storage): rolling, canary and blue-green under 300
requests/s through the built-in router on this machine, 0 failed, with the controller killed by
SIGKILL during the canary (the next one adopts the containers on every host; none runs twice);
then a release whose image one host lacks fails before anything leaves, naming the host and the
image; then web3's link is taken down: its container is replaced on the others, and once it
answers again the one left there is stopped and an instance moves back to it."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.container_hosts import (
    HostEngines,
    container_hosts_spec,
    host_engines,
    prepare_engine_dirs,
)
from support.hosts import HostLab, host_lab, kill_controller
from support.workspace import Workspace
from zerodown.core.errors import PermanentDriverError
from zerodown.platforms.container.hosts import ContainerHostsPlatform
from zerodown.spec.model import Spec

pytestmark = pytest.mark.slow

RELEASES = ("v1", "v2", "v3", "v4")


@pytest.fixture
def engines(tmp_path: Path) -> Iterator[HostEngines]:
    hide = (tmp_path, *prepare_engine_dirs())
    with host_lab(3, hide=hide) as lab, host_engines(lab) as made:
        yield made


def per_host(ws: Workspace, lab: HostLab) -> dict[str, list[str]]:
    by_address = {h.address: h.name for h in lab.hosts}
    found: dict[str, list[str]] = {h.name: [] for h in lab.hosts}
    for i in ws.status()["instances"]:
        if not i["address"]:
            found.setdefault("(launching)", []).append(i["release"])
            continue
        found[by_address[i["address"].rpartition(":")[0]]].append(i["release"])
    return found


def test_containers_on_three_hosts_rolling_canary_blue_green_and_a_missing_image(
    tmp_path: Path, engines: HostEngines
) -> None:
    lab = engines.lab
    for host in lab.hosts:
        for release in RELEASES:
            engines.image(host.name, release)
    engines.image("web1", "v5")
    engines.image("web2", "v5")  # web3 lacks it
    ws = Workspace.create(tmp_path)
    try:
        ws.write_spec(container_hosts_spec(ws, lab, engines))
        ws.zd("up", "--version", "v1")
        assert per_host(ws, lab) == {"web1": ["v1"], "web2": ["v1"], "web3": ["v1"]}
        with ws.load() as load:
            time.sleep(0.5)
            ws.zd("deploy", "v2", "--wait")
            steps = [{"set_weight": 34}, {"pause": {"duration": "1s"}}, {"set_weight": 100}]
            ws.write_spec(
                container_hosts_spec(ws, lab, engines, strategy={"canary": {"steps": steps}})
            )
            ws.zd("deploy", "v3")
            ws.wait_for(lambda: "v3" in str(per_host(ws, lab)), what="the canary's container")
            os.kill(ws.controller_pid(), signal.SIGKILL)  # mid-canary: the next one adopts
            time.sleep(0.3)  # the router and the containers serve on without a controller
            ws.zd("up")
            ws.zd("deploy", "v3", "--wait")  # attaches to the resumed rollout
            blue_green = {"blue_green": {"auto_promote": True, "scale_down_delay": "1s"}}
            ws.write_spec(container_hosts_spec(ws, lab, engines, strategy=blue_green))
            ws.zd("deploy", "v4", "--wait")
            missing = ws.zd("deploy", "v5", "--wait", check=False)
            done = time.time()
            time.sleep(1)
        report = load.report
        print(f"containers on three hosts, rolling + canary + blue-green: {report.summary()}")
        assert report.total >= 300 * 3
        assert [(s.status, s.error) for s in report.failed] == []
        assert set(report.versions(since=done)) == {"v4"}

        # v5: refused before anything started or left, naming the host and the image
        assert missing.returncode == 3, missing.stdout + missing.stderr
        said = " ".join(missing.stderr.split())
        assert "web3" in said and f"cannot pull image {engines.repository}:v5" in said, said
        assert "web1" not in said and "web2" not in said, said
        ws.wait_for(
            lambda: per_host(ws, lab) == {"web1": ["v4"], "web2": ["v4"], "web3": ["v4"]},
            what="one v4 instance on each host",
        )
        for host in lab.hosts:  # each host ran its share, through its own engine; none twice
            assert engines.releases(host.name, running=False) == ["v4"], host.name
        on_hosts = [
            f"{h.name}:{c}"
            for h in lab.hosts
            for c in engines.podman(h.name, "ps", "-a", "-q", "--no-trunc").stdout.split()
        ]
        assert sorted(on_hosts) == sorted(i["handle"] for i in ws.status()["instances"])
        status = ws.zd("status").stdout
        assert "hosts" in status and "DOWN" not in status
        try:
            _web3_down_and_back(ws, engines)
        finally:
            lab.link_up("web3")
        ws.zd("down")  # stops what runs on every host
        for host in lab.hosts:
            assert engines.releases(host.name, running=False) == [], host.name
    finally:
        kill_controller(ws)


def _web3_down_and_back(ws: Workspace, engines: HostEngines) -> None:
    lab = engines.lab
    lab.link_down("web3")
    web3 = lab.host("web3").address

    def replaced() -> bool:  # 3 ready elsewhere (web3's stays listed until it can be stopped)
        ready = [i for i in ws.status()["instances"] if i["ready"] and i["address"]]
        return sum(1 for i in ready if not i["address"].startswith(web3 + ":")) == 3

    ws.wait_for(replaced, timeout=60, what="web3's container replaced on the others")
    status = ws.zd("status").stdout
    assert "web3" in status and "DOWN" in status, status
    lab.link_up("web3")
    ws.wait_for(
        lambda: (
            per_host(ws, lab) == {"web1": ["v4"], "web2": ["v4"], "web3": ["v4"]}
            and all(engines.releases(h.name) == ["v4"] for h in lab.hosts)
        ),
        timeout=60,
        what="web3 in use again, the container left there stopped",
    )


def test_a_host_without_an_engine_is_named_with_where_zerodown_looked(tmp_path: Path) -> None:
    with host_lab(1, hide=(tmp_path, *prepare_engine_dirs())) as lab:  # no engine started
        made = Spec.model_validate(
            {
                "service": "shop",
                "platform": {"kind": "container"},
                "run": {"image": "localhost/shop:{version}"},
                "hosts": lab.spec(),
                "ssh": lab.ssh_spec(),
            }
        )
        platform = ContainerHostsPlatform(made, state_dir=tmp_path / ".zerodown", spec_dir=tmp_path)

        async def prepare() -> None:
            try:
                await platform.prepare(release="v1", run=made.run)
            finally:
                await platform.aclose()

        with pytest.raises(PermanentDriverError) as caught:
            asyncio.run(prepare())
    said = str(caught.value)
    assert said.startswith("on host web1 (root@"), said
    assert "no container engine socket: looked at DOCKER_HOST (unset)" in said, said
    assert "/run/podman/podman.sock" in said and "podman system service" in said, said
