"""A throwaway service directory with the sample app, driven through the real `zerodown` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from support.services import free_port
from zerodown.loadgen import LoadGenerator

APP = Path(__file__).resolve().parents[2] / "src" / "zerodown" / "demo" / "app.py"

FAULTS = {
    "v-broken": {"never_healthy": True},
    "v-slow-start": {"startup_delay_ms": 1500},
    "v-failing": {"fail_rate": 0.2},
    "v-slow": {"latency_ms": 60},
    # for baseline comparisons: a service that takes 20 ms, a peer as fast, one 3x slower
    "v-base": {"latency_ms": 20},
    "v-good": {"latency_ms": 20},
    "v-3x": {"latency_ms": 60},
}


def base_spec(port: int, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "service": "shop",
        "instances": 2,
        "run": {
            "command": [sys.executable, str(APP), "{port}", "{version}"],
            "env": {"ZD_APP_FAULTS": json.dumps(FAULTS)},
            "drain": "3s",
            "stop_timeout": "5s",
        },
        "probes": {
            "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 50},
            "liveness": {"http": "/healthz", "period": "1s", "failure_threshold": 3},
            "readiness": {"http": "/ready", "period": "500ms", "failure_threshold": 2},
        },
        "router": {"listen": f"127.0.0.1:{port}"},
        "strategy": {"rolling": {"max_surge": 1, "max_unavailable": 0}},
    }
    spec.update(overrides)
    return spec


@dataclass
class Workspace:
    root: Path
    port: int
    router_kind: str = "builtin"  # written into every spec that names no router kind

    @classmethod
    def create(cls, root: Path, *, router_kind: str = "builtin", **overrides: Any) -> Workspace:
        port = free_port()
        ws = cls(root=root, port=port, router_kind=router_kind)
        ws.write_spec(base_spec(port, **overrides))
        return ws

    @property
    def spec_file(self) -> Path:
        return self.root / "zerodown.yaml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def write_spec(self, spec: dict[str, Any]) -> None:
        if self.router_kind != "builtin" and "kind" not in spec.get("router", {}):
            spec = {**spec, "router": {**spec.get("router", {}), "kind": self.router_kind}}
        self.spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))

    def zd(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "zerodown.cli.main", *args, "-f", str(self.spec_file)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.root,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"zerodown {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def status(self) -> dict[str, Any]:
        """What `zerodown status --json` prints, read from the API without starting a CLI
        process (the tests poll it often; `status_cli` goes through the real command)."""
        import httpx

        url = json.loads((self.root / ".zerodown" / "controller.json").read_text())["url"]
        response = httpx.get(url + "/api/status", timeout=30)
        response.raise_for_status()
        return dict(response.json())

    def status_cli(self) -> dict[str, Any]:
        return json.loads(self.zd("status", "--json").stdout)

    def load(self, rate: float = 300, **kw: Any) -> LoadGenerator:
        # nginx applies every table by a graceful reload, which closes idle keep-alive client
        # connections: clients like browsers send a GET again on a new connection then (counted
        # in report.retried); the other routers are held to the strict client.
        kw.setdefault("browser_like", self.router_kind == "nginx")
        return LoadGenerator(self.url, rate=rate, max_seconds=kw.pop("max_seconds", 90), **kw)

    def controller_pid(self) -> int:
        return int(json.loads((self.root / ".zerodown" / "controller.json").read_text())["pid"])

    def launched(self, version: str) -> list[str]:
        """Every instance ever launched for `version` (each gets its own log file)."""
        return sorted(
            p.stem for p in (self.root / ".zerodown" / "logs").glob(f"shop-{version}-*.log")
        )

    def wait_for(self, predicate: Any, timeout: float = 30, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def teardown(self) -> None:
        """`zerodown down`, then make sure nothing of ours is left running."""
        state = self.root / ".zerodown"
        if (state / "controller.json").exists():
            self.zd("down", check=False, timeout=60)
        marker = f"ZERODOWN_STATE_DIR={state.resolve()}".encode()
        where = str(state.resolve()).encode()  # a router names its admin socket in there
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if marker in (entry / "environ").read_bytes().split(b"\0"):
                        os.killpg(int(entry.name), signal.SIGKILL)
                    elif where in (entry / "cmdline").read_bytes():
                        os.kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass
        for pidfile in ("router.pid",):
            try:
                os.kill(int((state / pidfile).read_text()), signal.SIGKILL)
            except (OSError, ValueError):
                pass


def api_post(ws: Workspace, path: str, body: dict[str, Any] | None = None) -> Any:
    """Call the controller API directly, to time a command without the CLI's start-up."""
    import httpx

    state = ws.root / ".zerodown"
    url = json.loads((state / "controller.json").read_text())["url"]
    token = (state / "token").read_text().strip()
    response = httpx.post(
        url + path, json=body or {}, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    response.raise_for_status()
    return response.json()
