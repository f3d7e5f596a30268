"""Bench: several hosts over SSH (issue 14), on three network-namespace hosts of this machine.

Each round makes three hosts (tests/support/hosts.py: own address on a veth link, own sshd, own
empty /tmp and pid namespace) and measures:

- shipping a release tree (the sample app plus `--files` files of 4 KiB) to the three hosts:
  the first time, again unchanged, and with one file changed (what is sent, how long it takes);
- a rolling deploy of 3 instances (one per host) under `--rate` requests/s through the built-in
  router: its duration (`zerodown deploy --wait`) and the failed requests;
- a host's link taken down under the same load: seconds until it is out of the routes, and the
  failed requests.

    python bench/hosts_bench.py [--rounds 3] [--rate 300] [--files 200]

Needs root, iproute2 and openssh-server. Traffic goes only to the namespaces it made and to
127.0.0.1; every namespace, sshd and process it started is removed at the end of its round.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the host lab the tests use

from support.hosts import HostLab, host_lab, hosts_spec, kill_controller  # noqa: E402
from support.workspace import APP, Workspace  # noqa: E402
from zerodown.platforms.ssh.driver import SshPlatform  # noqa: E402
from zerodown.spec.model import Spec  # noqa: E402


async def ship_times(spec: Spec, root: Path) -> dict[str, float]:
    platform = SshPlatform(spec, state_dir=root / ".zerodown", spec_dir=root)
    times = {}
    try:
        for name, change in (("first", None), ("unchanged", None), ("one file changed", "x")):
            if change is not None:
                (root / "data" / "f0.txt").write_text(change * 4096)
            started = time.perf_counter()
            await platform.prepare(release=f"r-{name.split()[0]}", run=spec.run)
            times[name] = time.perf_counter() - started
    finally:
        await platform.aclose()
    return times


def one_round(rate: float, files: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="zd-hosts-bench-"))
    try:
        with host_lab(3, hide=(tmp,)) as lab:
            ws = Workspace.create(tmp)
            shutil.copy(APP, ws.root / "app.py")
            (ws.root / "data").mkdir()
            for n in range(files):
                (ws.root / "data" / f"f{n}.txt").write_text(f"{n:04d}" * 1024)
            ws.write_spec(hosts_spec(ws, lab))
            try:
                ships = _ships(ws, lab)  # before the deploys: every host answers
                return {**ships, **_measure(ws, lab, rate)}
            finally:
                lab.link_up("web2")
                ws.teardown()
                kill_controller(ws)  # in case `down` gave up
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _ships(ws: Workspace, lab: HostLab) -> dict[str, Any]:
    spec = Spec.model_validate(hosts_spec(ws, lab))
    return {f"ship {k}": v for k, v in asyncio.run(ship_times(spec, ws.root)).items()}


def _measure(ws: Workspace, lab: HostLab, rate: float) -> dict[str, Any]:
    ws.zd("up", "--version", "v1")
    with ws.load(rate=rate) as load:
        time.sleep(0.5)
        started = time.perf_counter()
        ws.zd("deploy", "v2", "--wait")
        deploy = time.perf_counter() - started
        time.sleep(0.5)
    deploy_failed = len(load.report.failed)
    web2 = lab.host("web2").address
    with ws.load(rate=rate) as load:
        time.sleep(0.5)
        lab.link_down("web2")
        down = time.perf_counter()
        ws.wait_for(
            lambda: (
                not any(
                    b["address"].startswith(web2)
                    for p in ws.status()["status"]["routes"]["pools"]
                    for b in p["backends"]
                )
            ),
            what="web2 out of the routes",
        )
        out = time.perf_counter() - down
        time.sleep(0.5)
    return {
        "rolling deploy s": deploy,
        "rolling failed": deploy_failed,
        "link down → out of routes s": out,
        "link down failed": len(load.report.failed),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--files", type=int, default=200)
    args = parser.parse_args()
    rounds = []
    for n in range(args.rounds):
        result = one_round(args.rate, args.files)
        print(f"round {n + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()))
        rounds.append(result)
    print(f"\n{args.rounds} rounds, {args.rate:g} req/s, {args.files + 2} files per release:")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        print(
            f"  {key:32} median {statistics.median(values):7.2f}"
            f"   min {min(values):7.2f}   max {max(values):7.2f}"
        )


if __name__ == "__main__":
    main()
