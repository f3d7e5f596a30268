"""Rehearsal: what a careless user's mistakes and a few faults cost a serving release, under load.

Issue 10 measured `zerodown deploy 'x/y'` refusing 3,185 of 3,582 requests at 300 req/s (the
engine died and took the router with it). This runs v1 under steady load and then, one after
the other: deploys of bad versions, a spec too large and one with a busy-loop probe, a release
whose command does not exist, and a `kill -9` of the controller followed by `zerodown up`. For
each it prints the exit code and what was said, and at the end the requests failed out of those
sent, and which version served them.

    python bench/typo_rehearsal.py [--rate 300] [--json out.json]

Only loopback traffic, bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from zerodown.loadgen import LoadGenerator
from zerodown.net import free_port

APP = Path(__file__).resolve().parents[1] / "src" / "zerodown" / "demo" / "app.py"


def base_spec(port: int) -> dict[str, object]:
    return {
        "service": "shop",
        "instances": 2,
        "run": {"command": [sys.executable, str(APP), "{port}", "{version}"], "drain": "2s"},
        "probes": {
            "startup": {"http": "/healthz", "period": "200ms", "failure_threshold": 25},
            "readiness": {"http": "/ready", "period": "1s"},
        },
        "router": {"listen": f"127.0.0.1:{port}"},
        "strategy": {"rolling": {"max_surge": 1, "max_unavailable": 0}},
    }


class Workspace:
    def __init__(self, root: Path, port: int) -> None:
        self.root, self.port = root, port
        self.spec = root / "zerodown.yaml"
        self.write(base_spec(port))

    def write(self, spec: dict[str, object]) -> None:
        self.spec.write_text(yaml.safe_dump(spec, sort_keys=False))

    def zd(self, *args: str, spec: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "zerodown.cli.main", *args, "-f", str(spec or self.spec)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    def controller_pid(self) -> int:
        return int(json.loads((self.root / ".zerodown" / "controller.json").read_text())["pid"])


def said(result: subprocess.CompletedProcess[str]) -> str:
    text = " ".join((result.stderr or result.stdout).split())
    return text if len(text) <= 110 else text[:109] + "…"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=300)
    parser.add_argument("--json", type=Path, help="write the figures here (for bench/all)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="zerodown-typo-"))
    ws = Workspace(root, free_port())
    rows: list[tuple[str, str, str]] = []

    def attempt(case: str, *argv: str, spec: Path | None = None) -> None:
        result = ws.zd(*argv, spec=spec)
        rows.append((case, str(result.returncode), said(result)))

    try:
        up = ws.zd("up", "--version", "v1")
        if up.returncode != 0:
            raise SystemExit(f"zerodown up failed: {up.stderr}")
        url = f"http://127.0.0.1:{ws.port}/"
        with LoadGenerator(url, rate=args.rate, max_seconds=240) as load:
            time.sleep(1)
            attempt("deploy 'x/y'", "deploy", "x/y")
            attempt("deploy a 300-character version", "deploy", "v" * 300)
            attempt("deploy '../../etc'", "deploy", "../../etc")
            big = root / "big.yaml"
            spec = base_spec(ws.port)
            spec["run"] = {**spec["run"], "env": {"BLOB": "x" * 5_000_000}}  # type: ignore[dict-item]
            big.write_text(yaml.safe_dump(spec))
            attempt("deploy v2 with a 5 MB run.env", "deploy", "v2", spec=big)
            busy = root / "busy.yaml"
            spec = base_spec(ws.port)
            spec["probes"] = {"readiness": {"http": "/ready", "period": "0s"}}
            busy.write_text(yaml.safe_dump(spec))
            attempt("deploy v2 with `period: 0s`", "deploy", "v2", spec=busy)
            missing = root / "missing.yaml"
            spec = base_spec(ws.port)
            spec["run"] = {"command": ["/nonexistent/app", "{port}"]}
            missing.write_text(yaml.safe_dump(spec))
            attempt("deploy v2 whose command is missing", "deploy", "v2", "--wait", spec=missing)
            os.kill(ws.controller_pid(), signal.SIGKILL)
            time.sleep(1)
            attempt("kill -9 the controller, then up", "up")
            time.sleep(2)
        report = load.report
    finally:
        ws.zd("down")
        shutil.rmtree(root, ignore_errors=True)

    print(f"v1 serving under {args.rate:g} req/s while, one after the other:\n")
    print("| what | exit | what zerodown said |\n|---|---|---|")
    for case, code, text in rows:
        print(f"| {case} | {code} | {text.replace('|', '/')} |")
    versions = dict(report.versions())
    print(
        f"\nrequests: {len(report.failed)} failed of {report.total}; served by {versions}"
        f" ({report.rate():.0f} req/s)"
    )
    if report.failed:
        print("failures:", Counter(sample.error or str(sample.status) for sample in report.failed))
    if args.json:
        figures = {"failed": len(report.failed), "total": report.total, "versions": versions}
        args.json.write_text(json.dumps({"typo": figures}, indent=1))


if __name__ == "__main__":
    main()
