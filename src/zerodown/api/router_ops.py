"""The router's own operations through the controller API (admin token needed):

POST /api/router/restart   replace the router process without refusing a connection
POST /api/router/hold      {"max": "30s"}: queue new requests, at most that long
POST /api/router/release   route the held requests, in order

Only for a router driver that runs its own process (core.ports.RouterOps); others get 409, as
does a router that cannot do it now (not running, or holding traffic during a restart).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.params import Depends
from pydantic import BaseModel, Field

from zerodown.core.errors import DriverError
from zerodown.core.ports import RouterOps
from zerodown.spec.types import Duration

MAX_HOLD = 3600.0


class HoldRequest(BaseModel):
    max: Duration = Field(30.0, gt=0, le=MAX_HOLD, description="the longest a request waits")
    who: str = "cli"


def make_router_ops_router(controller: Any, admin: list[Depends]) -> APIRouter:
    routes = APIRouter()

    def ops() -> RouterOps:
        controller._commands_here()  # a standby controller names the leader (NotLeader)
        router = controller.router
        if not isinstance(router, RouterOps):
            kind = controller.spec.router.kind
            raise HTTPException(409, f"the {kind} router does not support this")
        return router

    async def call(what: str, coro: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await coro
        except DriverError as exc:  # the router's state, not a fault of the controller
            raise HTTPException(409, f"{what}: {exc}") from None
        return result

    @routes.post("/api/router/restart", dependencies=admin)
    async def restart() -> dict[str, Any]:
        return await call("restarting the router", ops().restart())

    @routes.post("/api/router/hold", dependencies=admin)
    async def hold(body: HoldRequest) -> dict[str, Any]:
        return await call("holding traffic", ops().hold(body.max))

    @routes.post("/api/router/release", dependencies=admin)
    async def release() -> dict[str, Any]:
        return await call("releasing traffic", ops().release())

    return routes
