"""A real flag service: our router in a FastAPI app, served by uvicorn on 127.0.0.1.

Fixtures are in conftest.py; this module is imported by tests that need `serve` directly."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from support.services import free_port
from zerodown.flags.api import make_flags_router
from zerodown.flags.stores.sqlite import SqliteFlagStore

TOKEN = "admin-secret"


@dataclass
class FlagServer:
    url: str
    store: SqliteFlagStore
    token: str = TOKEN

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "X-Zerodown-Actor": "tester"}


def make_app(store: SqliteFlagStore, **kw: object) -> FastAPI:
    app = FastAPI()
    app.include_router(make_flags_router(store, admin_token=TOKEN, **kw))  # type: ignore[arg-type]
    return app


@contextmanager
def serve(db: Path, **kw: object) -> Iterator[FlagServer]:
    store = SqliteFlagStore(db, poll_interval=0.02)
    port = free_port()
    config = uvicorn.Config(
        make_app(store, **{"heartbeat": 0.5, **kw}),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.02)
    try:
        yield FlagServer(f"http://127.0.0.1:{port}", store)
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
