"""Bench: containers on several hosts (issue 14), on three network-namespace hosts of this machine,
each with its own Podman service and image storage (tests/support/container_hosts.py).

Each round makes three hosts and measures:

- `prepare` of a release whose image every host has (the image checked on each host's engine,
  over SSH): the first time (SSH connections and socket forwarding included), then again;
- a rolling and a blue-green deploy of 3 containers (one per host) under `--rate` requests/s
  through the built-in router: their duration (`zerodown deploy --wait`) and failed requests.

    python bench/container_hosts_bench.py [--rounds 3] [--rate 300]

Needs root, iproute2, openssh-server, podman and runc. Traffic goes only to the namespaces it made
and to 127.0.0.1; every namespace and process it started is removed at the end of its round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the host lab the tests use

from support.container_hosts import (  # noqa: E402
    container_hosts_spec,
    host_engines,
    prepare_engine_dirs,
)
from support.hosts import host_lab, kill_controller  # noqa: E402
from support.workspace import Workspace  # noqa: E402
from zerodown.platforms.container.hosts import ContainerHostsPlatform  # noqa: E402
from zerodown.spec.model import Spec  # noqa: E402


async def prepare_times(made: Spec, root: Path) -> dict[str, float]:
    platform = ContainerHostsPlatform(made, state_dir=root / ".zerodown", spec_dir=root)
    times = {}
    try:
        for name in ("first", "again"):
            started = time.perf_counter()
            await platform.prepare(release="v1", run=made.run)
            times[name] = time.perf_counter() - started
    finally:
        await platform.aclose()
    return times


def one_round(rate: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="zd-ctrhosts-bench-"))
    with host_lab(3, hide=(tmp, *prepare_engine_dirs())) as lab, host_engines(lab) as engines:
        for host in lab.hosts:
            for release in ("v1", "v2", "v3"):
                engines.image(host.name, release)
        ws = Workspace.create(tmp)
        try:
            ws.write_spec(container_hosts_spec(ws, lab, engines))
            parsed = Spec.model_validate(container_hosts_spec(ws, lab, engines))
            result: dict[str, Any] = {
                f"prepare {k}": v for k, v in asyncio.run(prepare_times(parsed, tmp)).items()
            }
            ws.zd("up", "--version", "v1")
            for release, strategy in (("v2", "rolling"), ("v3", "blue-green")):
                with ws.load(rate=rate) as load:
                    time.sleep(1)
                    started = time.perf_counter()
                    ws.zd("deploy", release, "--strategy", strategy, "--wait", timeout=120)
                    result[f"{strategy} s"] = time.perf_counter() - started
                    time.sleep(1)
                result[f"{strategy} failed"] = len(load.report.failed)
                result[f"{strategy} total"] = load.report.total
            ws.zd("down", timeout=60)
        finally:
            kill_controller(ws)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300)
    args = parser.parse_args()
    rounds = []
    for n in range(args.rounds):
        rounds.append(one_round(args.rate))
        print(f"round {n + 1}: {rounds[-1]}", flush=True)
    print(f"\n{args.rounds} rounds at {args.rate:g} requests/s, median (min - max):")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        print(
            f"  {key}: {statistics.median(values):.2f} ({min(values):.2f} - {max(values):.2f})"
            f"  per round: {values}"
        )


if __name__ == "__main__":
    main()
