"""The specs `zerodown export kubernetes` is tested on, and a way to run the command on them.

Each case is a spec (a file of tests/data/k8s/specs/ or one of the demo's) and the command's
options; its golden files are tests/data/k8s/golden/<case>/. Regenerate them after an intended
change with:

    ZERODOWN_UPDATE_GOLDEN=1 PYTHONPATH=src pytest tests/unit/export -q

and read the diff before committing it.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from zerodown.cli.export import export_app
from zerodown.demo.tour import db_spec, demo_spec

DATA = Path(__file__).parents[2] / "data" / "k8s"
GOLDEN = DATA / "golden"
IMAGE = "registry.example/shop"
PLACE = "<out>"
"""Stands for the output directory in the golden copy of the command's output."""


@dataclass(frozen=True)
class Case:
    name: str
    spec: str | None = None
    """A file of tests/data/k8s/specs/, or None for a demo spec (see `demo`)."""
    demo: str | None = None
    args: tuple[str, ...] = ()


def _portable(spec: dict[str, Any]) -> dict[str, Any]:
    """The demo runs the app with this interpreter's path; the golden files say python3."""
    run = dict(spec["run"])
    run["command"] = ["python3" if a == sys.executable else a for a in run["command"]]
    return {**spec, "run": run}


CASES = [
    Case("rolling", spec="rolling.yaml"),
    Case("canary", spec="canary.yaml"),
    Case("canary-gateway-api", spec="canary.yaml", args=("--traffic", "gateway-api")),
    Case("blue-green", spec="blue_green.yaml"),
    Case("demo-init", demo="init"),
    Case("demo-tour", demo="tour"),
    Case("demo-db", demo="db"),
]


def write_spec(case: Case, workdir: Path) -> Path:
    """The case's zerodown.yaml in `workdir` (with the demo's migrations beside it)."""
    target = workdir / "zerodown.yaml"
    if case.spec is not None:
        shutil.copy(DATA / "specs" / case.spec, target)
        return target
    demo = resources.files("zerodown.demo")
    if case.demo == "init":
        target.write_text(demo.joinpath("zerodown.yaml").read_text())
    elif case.demo == "tour":
        target.write_text(yaml.safe_dump(_portable(demo_spec(8080)), sort_keys=False))
    else:
        spec = _portable(db_spec(8080))
        target.write_text(yaml.safe_dump(spec, sort_keys=False))
        migrations = workdir / spec["migrations"]["dir"]
        migrations.mkdir()
        for item in demo.joinpath("migrations").iterdir():
            if item.name.endswith((".yaml", ".yml", ".json")):
                (migrations / item.name).write_text(item.read_text())
    return target


def run(*args: str) -> tuple[int, str, str]:
    """`zerodown export ARGS` (the sub-app alone: building the whole CLI costs 0.2 s a call)."""
    result = CliRunner().invoke(export_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def export_case(case: Case, workdir: Path, version: str = "v2") -> tuple[Path, str]:
    """Run the command on the case; the output directory and what it printed."""
    spec = write_spec(case, workdir)
    out = workdir / "out"
    code, stdout, stderr = run(
        "kubernetes",
        "-f",
        str(spec),
        "--image",
        IMAGE,
        "--version",
        version,
        "--out",
        str(out),
        *case.args,
    )
    assert code == 0, stdout + stderr
    return out, stdout.replace(str(out), PLACE)
