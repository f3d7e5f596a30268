"""Containers (issue 14): the sample app as containers on a Docker-compatible engine, deployed by
rolling, blue-green and canary under a steady load; failed/total requests and the seconds each
`zerodown deploy --wait` took, over rounds, beside the same rolling deploy of processes; and how
long a release whose image is missing takes to fail its rollout.

    python bench/containers_bench.py [--rate 300] [--rounds 3]

Uses the engine at DOCKER_HOST when it is set; otherwise starts `podman system service` on a
socket of its own (as root, with the containers.conf of docs/containers.md) and stops it at the
end. Images are made locally (`podman import` of a root file system holding the app; the host's
/usr and /lib are mounted read-only). Only loopback traffic, bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from zerodown.loadgen import LoadGenerator
from zerodown.net import free_port

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"
CONF = (
    '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n'
)
VOLUMES = [f"{d}:{d}:ro" for d in ("/usr", "/lib", "/lib64") if os.path.isdir(d)]
STRATEGIES = ("rolling", "blue-green", "canary")


@contextlib.contextmanager
def engine(work: Path) -> Iterator[dict[str, str]]:
    """The environment that points zerodown and podman at an engine."""
    if os.environ.get("DOCKER_HOST"):
        yield dict(os.environ)
        return
    (work / "containers.conf").write_text(CONF)
    env = {**os.environ, "CONTAINERS_CONF": str(work / "containers.conf")}
    sock = work / "podman.sock"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time", "0", f"unix://{sock}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        yield {**env, "DOCKER_HOST": f"unix://{sock}"}
    finally:
        service.terminate()
        service.wait(10)


def make_images(work: Path, env: dict[str, str], repository: str, tags: list[str]) -> None:
    tar = work / "rootfs.tar"
    with tarfile.open(tar, "w") as archive:
        for mount_point in ("usr", "lib", "lib64", "tmp", "etc", "proc", "sys", "dev"):
            info = tarfile.TarInfo(mount_point)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            archive.addfile(info)
        archive.add(str(APP), arcname="app/app.py")
    for tag in tags:
        podman(env, "import", "-q", str(tar), f"{repository}:{tag}")


def podman(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        ["podman", *args], env=env, check=True, capture_output=True, text=True
    ).stdout


def spec_for(port: int, platform: str, repository: str) -> dict[str, Any]:
    run: dict[str, Any] = {"drain": "1s", "stop_timeout": "5s"}
    if platform == "container":
        run |= {
            "image": f"{repository}:{{version}}",
            "command": ["/usr/bin/python3", "/app/app.py", "{port}", "{version}"],
            "volumes": VOLUMES,
        }
    else:
        run |= {"command": [sys.executable, str(APP), "{port}", "{version}"]}
    return {
        "service": "shop",
        "instances": 2,
        "run": run,
        "platform": {"kind": platform},
        "probes": {
            "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 50},
            "readiness": {"http": "/ready", "period": "500ms", "failure_threshold": 2},
        },
        "router": {"listen": f"127.0.0.1:{port}"},
        "strategy": {
            "canary": {"steps": [{"set_weight": 50}, {"pause": {"duration": "2s"}}]},
        },
    }


def zd(spec: Path, env: dict[str, str], *args: str, check: bool = True) -> float:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "zerodown.cli.main", *args, "-f", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"zerodown {' '.join(args)}: {result.stdout}{result.stderr}")
    return time.monotonic() - started


def deploy_under_load(
    spec: Path, env: dict[str, str], port: int, rate: float, version: str, strategy: str
) -> tuple[float, int, int]:
    with LoadGenerator(f"http://127.0.0.1:{port}/", rate=rate, max_seconds=120) as load:
        time.sleep(1)
        seconds = zd(spec, env, "deploy", version, "--strategy", strategy, "--wait")
        time.sleep(1)
    return seconds, len(load.report.failed), load.report.total


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="zerodown-containers-bench-"))
    repository = f"localhost/zd-bench-{uuid.uuid4().hex[:8]}"
    tags = [f"v{n}" for n in range(1, 2 + args.rounds * len(STRATEGIES))]
    results: dict[str, list[tuple[float, int, int]]] = {}
    missing: list[float] = []
    with engine(work) as env:
        make_images(work, env, repository, tags)
        try:
            for platform in ("container", "local"):
                port = free_port()
                root = work / platform
                root.mkdir()
                spec = root / "zerodown.yaml"
                spec.write_text(yaml.safe_dump(spec_for(port, platform, repository)))
                zd(spec, env, "up", "--version", "v1")
                versions = iter(tags[1:])
                try:
                    for _ in range(args.rounds):
                        for strategy in STRATEGIES if platform == "container" else ("rolling",):
                            key = f"{platform} {strategy}"
                            outcome = deploy_under_load(
                                spec, env, port, args.rate, next(versions), strategy
                            )
                            results.setdefault(key, []).append(outcome)
                            print(key, outcome, flush=True)
                        if platform == "container":
                            missing.append(
                                zd(spec, env, "deploy", "v-missing", "--wait", check=False)
                            )
                finally:
                    zd(spec, env, "down", check=False)
        finally:
            for tag in tags:
                subprocess.run(["podman", "rmi", "-f", f"{repository}:{tag}"], env=env, check=False)
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.rounds} rounds at {args.rate:g} req/s; median (min-max)\n")
    print("| deploy | `deploy --wait` seconds | failed / total requests |")
    print("|---|---|---|")
    for key, rows in results.items():
        failed = " / ".join(f"{f} of {t:,}" for _, f, t in rows)
        print(f"| {key} | {spread([s for s, _, _ in rows])} | {failed} |")
    print(f"| container, image missing → rollout failed | {spread(missing)} | — |")
    print(json.dumps({"results": results, "missing": missing}))


if __name__ == "__main__":
    main()
