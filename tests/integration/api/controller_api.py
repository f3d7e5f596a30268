"""A real Controller in a temp workspace, its API served by uvicorn on 127.0.0.1.

The engine does not run: these tests are about what the API accepts and records, and a deploy
that a fuzzer got through must not launch whatever command it made up. Everything else is the
controller `zerodown up` starts: its store, flag store, keyring directory and `make_app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from support.servers import serve_asgi
from support.services import free_port
from support.workspace import base_spec
from zerodown.api.app import make_app
from zerodown.api.controller import Controller
from zerodown.paths import Paths
from zerodown.spec.load import load_spec


@dataclass
class ControllerApi:
    url: str
    controller: Controller
    token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def spec(self) -> dict[str, Any]:
        """A valid spec to deploy (the workspace's own)."""
        loaded: dict[str, Any] = yaml.safe_load(self.controller.paths.spec.read_text())
        return loaded

    def snapshot(self) -> dict[str, Any]:
        """Everything a request could change: the rollout state, revisions, decision log, and
        the flags with their audit log. Flags' usage times are left out: OFREP evaluation, which
        is public, records them by design (see docs/flags.md)."""
        c = self.controller
        version, flags = c.flags.snapshot()
        return {
            "status": c.status().to_json(),
            "revisions": [r.to_json() for r in c.store.revisions(c.service)],
            "events": [e.to_json() for e in c.store.events(c.service, limit=10_000)],
            "instances": [i.to_json() for i in c.store.instances(c.service)],
            "flags": (version, [f.model_dump(exclude={"last_evaluated_at"}) for f in flags]),
            "audit": [e.model_dump() for e in c.flags.audit(limit=10_000)],
        }


def write_workspace(root: Path, **api: Any) -> Paths:
    spec = base_spec(free_port())
    if api:
        spec["api"] = api
    (root / "zerodown.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return Paths.for_spec(root / "zerodown.yaml")


@contextmanager
def serve_controller(root: Path, **api: Any) -> Iterator[ControllerApi]:
    """`api` is the spec's `api:` section, e.g. read_token="${READ}"."""
    paths = write_workspace(root, **api)
    controller = Controller(paths, load_spec(paths.spec))
    try:
        with serve_asgi(make_app(controller, paths.token())) as url:
            yield ControllerApi(url=url, controller=controller, token=paths.token())
    finally:
        asyncio.run(controller.router.aclose())
        controller.flags.close()
        controller.store.close()
