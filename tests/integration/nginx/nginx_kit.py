"""Backends (the sample app) and an nginx driver on a throwaway state directory."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from support.services import binary, free_port, port_open
from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.paths import Paths
from zerodown.routers.nginx.driver import NginxRouter
from zerodown.spec.model import Spec

APP = Path(__file__).resolve().parents[3] / "src" / "zerodown" / "demo" / "app.py"


def nginx_binary() -> str:
    return binary("nginx", "the nginx router driver runs it; Debian package nginx-light")


class Backends:
    """Sample-app processes: `start("v1")` → its address."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, version: str) -> str:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(APP), str(port), version],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        address = f"127.0.0.1:{port}"
        self.procs[address] = proc
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            assert time.monotonic() < deadline, f"backend {version} did not start"
            time.sleep(0.02)
        return address

    def stop_all(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait()


def make_router(tmp: Path, nginx: str, **strategy: Any) -> NginxRouter:
    listen = f"127.0.0.1:{free_port()}"
    spec = Spec.model_validate(
        {
            "service": "shop",
            "run": {"command": ["true"], "drain": "5s"},
            "router": {"kind": "nginx", "listen": listen},
            "strategy": strategy or {"rolling": {}},
        }
    )
    (tmp / "zerodown.yaml").write_text("service: shop\n")
    paths = Paths.for_spec(tmp / "zerodown.yaml")
    paths.ensure()
    return NginxRouter(paths=paths, spec=spec, binary=nginx)


def table(generation: int, *pools: tuple[str, int, list[str]], **extra: Any) -> RouteTable:
    return RouteTable(
        generation=generation,
        pools=tuple(
            Pool(release, weight, tuple(Backend(a, f"{release}-{n}") for n, a in enumerate(addrs)))
            for release, weight, addrs in pools
        ),
        **extra,
    )


def versions(url: str, n: int, **kw: Any) -> list[str]:
    with httpx.Client() as client:
        return [client.get(url, **kw).text.strip() for _ in range(n)]
