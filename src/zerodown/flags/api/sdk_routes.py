"""The flags API for SDKs: /api/flags/definitions (ETag / 304, for polling) and
/api/flags/stream (Server-Sent Events: the whole definitions document at connect and after every
change). They need the read token when one is set (the admin token always works); make_flags_router
decides, and mounts these routes before /api/flags/{key} so they are not taken for keys.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from zerodown.flags.api.service import ChangeWatcher, Service, definitions_document

router = APIRouter()


@router.get("/api/flags/definitions")
def definitions(request: Request, service: Service) -> Response:
    version, flags = service.store.snapshot()
    etag = f'"{version}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    return JSONResponse(definitions_document(version, flags), headers={"ETag": etag})


@router.get("/api/flags/stream")
async def stream(request: Request, service: Service) -> StreamingResponse:
    return StreamingResponse(
        _definitions_events(request, service.changes, service.heartbeat),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _definitions_events(
    request: Request, changes: ChangeWatcher, heartbeat: float
) -> AsyncIterator[str]:
    """Each new definitions document as an event (`id:` its version); a comment every
    `heartbeat` seconds of quiet, so proxies keep the connection open."""
    async with changes.subscribe():
        version = -1
        last_sent = time.monotonic()
        while not await request.is_disconnected():
            new, doc = await changes.wait_newer(version, timeout=0.5)
            if new != version:
                version = new
                yield f"id: {version}\nevent: definitions\ndata: {doc}\n\n"
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= heartbeat:
                yield ": keep-alive\n\n"
                last_sent = time.monotonic()
