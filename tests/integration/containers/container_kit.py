"""What the container scenarios share: the sample app's spec as containers, and the containers a
workspace's state directory owns, read from the engine by label."""

from __future__ import annotations

import json
from typing import Any

from support.containers import APP_COMMAND, VOLUMES, Engine
from support.workspace import FAULTS, Workspace, base_spec

VERSIONS = ("v1", "v2", "v3", "v4", "v-slow-start")


def container_spec(port: int, engine: Engine, **overrides: Any) -> dict[str, Any]:
    for version in VERSIONS:
        engine.image(version)
    spec = base_spec(port, **overrides)
    spec["platform"] = {"kind": "container"}
    spec["run"] = {
        "image": f"{engine.repository}:{{version}}",
        "command": APP_COMMAND,
        "volumes": VOLUMES,
        "env": {"ZD_APP_FAULTS": json.dumps(FAULTS)},
        "drain": "1s",  # the app finishes its in-flight requests on SIGTERM as well
        "stop_timeout": "5s",
    }
    return spec


def state_label(ws: Workspace) -> str:
    return f"label=zerodown.state={(ws.root / '.zerodown').resolve()}"


def containers(engine: Engine, ws: Workspace) -> list[dict[str, Any]]:
    """Every container of the workspace's state directory, running or not."""
    out = engine.podman("ps", "-a", "--filter", state_label(ws), "--format", "json").stdout
    return list(json.loads(out or "[]"))


def remove_containers(engine: Engine, ws: Workspace) -> None:
    for container in containers(engine, ws):
        engine.podman("rm", "-f", "-t", "0", container["Id"], check=False)
