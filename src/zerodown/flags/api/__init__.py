"""The flag service's HTTP API, as a FastAPI router the controller mounts.

One router per audience, each a module of module-level handlers:
- admin_routes (Bearer admin token): flag CRUD, audit log, stale report, export/import, usage;
- sdk_routes (Bearer read token when one is set, else open; the admin token always works):
  definitions (ETag / 304) and the Server-Sent Events stream;
- ofrep_routes (public): OFREP evaluation, for the OpenFeature OFREP providers.
What they share (the store, the caches, the clock, the tokens) is one FlagService (service), and
the bounds on their input are in limits: bad input is a 4xx naming it, never a 5xx.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Depends

from zerodown.flags.api import admin_routes, ofrep_routes, sdk_routes
from zerodown.flags.api.auth import ADMIN_TOKEN, READ_TOKEN, require_read, require_token
from zerodown.flags.api.limits import MAX_TEXT
from zerodown.flags.api.service import FlagService
from zerodown.flags.stores import FlagStore, utc_now

# Also what other code imports from here: the controller's app its tokens, a test MAX_TEXT.
__all__ = ["ADMIN_TOKEN", "MAX_TEXT", "READ_TOKEN", "make_flags_router", "require_token"]


def make_flags_router(
    store: FlagStore,
    *,
    admin_token: str,
    read_token: str | None = None,
    clock: Callable[[], datetime] = utc_now,
    heartbeat: float = 15.0,
    usage_interval: float = 30.0,
) -> APIRouter:
    if not admin_token:
        raise ValueError("make_flags_router: admin_token must not be empty")
    service = FlagService(
        store,
        admin_token=admin_token,
        read_token=read_token,
        clock=clock,
        heartbeat=heartbeat,
        usage_interval=usage_interval,
    )
    # The router's own dependency runs first on every route: the handlers find `service` by it.
    router = APIRouter(dependencies=[Depends(service.attach)])
    # SDK reads before the admin routes, so /api/flags/definitions is not taken for a flag's key.
    # Open when no read token is set: the controller binds to loopback by default.
    router.include_router(
        sdk_routes.router, dependencies=[Depends(require_read)] if read_token else []
    )
    router.include_router(admin_routes.router)
    router.include_router(ofrep_routes.router)
    return router
