"""The flags API for OpenFeature providers: OFREP's POST /ofrep/v1/evaluate/flags/{key} and the
bulk POST /ofrep/v1/evaluate/flags (ETag / 304), so the official OFREP providers work unchanged.
Public by design, like a flag-evaluation endpoint of any flag service: it answers values for a
context, never the rules. The JSON shapes come from the pure zerodown.flags.ofrep.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from zerodown.flags.api.limits import FlagKey
from zerodown.flags.api.service import Service
from zerodown.flags.evaluate import EvalContext, evaluate
from zerodown.flags.ofrep import ofrep_error, ofrep_success

router = APIRouter()

# The body is read by the handlers themselves; described for the OpenAPI document (and so for
# schemathesis).
_OFREP_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"context": {"type": "object"}}}
            }
        }
    }
}


async def _context(request: Request, key: str) -> EvalContext | JSONResponse:
    """The body's evaluation context, or the OFREP error response that says what is wrong."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    # ValueError: not JSON, or JSON that Python cannot hold (an integer of 5,000 digits);
    # RecursionError: nesting deeper than the parser goes
    except (ValueError, RecursionError) as e:
        return JSONResponse(ofrep_error(key, "PARSE_ERROR", f"body is not JSON: {e}"), 400)
    ctx = body.get("context", {}) if isinstance(body, dict) else None
    if not isinstance(ctx, dict):
        return JSONResponse(
            ofrep_error(key, "INVALID_CONTEXT", "`context` must be a JSON object"), 400
        )
    return EvalContext.from_mapping(ctx)


@router.post("/ofrep/v1/evaluate/flags/{key}", openapi_extra=_OFREP_BODY)
async def ofrep_one(key: FlagKey, request: Request, service: Service) -> JSONResponse:
    ctx = await _context(request, key)
    if isinstance(ctx, JSONResponse):
        return ctx
    _, flags = await anyio.to_thread.run_sync(service.definitions.current)
    flag = flags.get(key)
    if flag is None:
        return JSONResponse(ofrep_error(key, "FLAG_NOT_FOUND", f"flag {key!r} does not exist"), 404)
    result = ofrep_success(flag, evaluate(flag, ctx, flags=flags))
    await anyio.to_thread.run_sync(service.usage.record, [key])
    return JSONResponse(result)


@router.post("/ofrep/v1/evaluate/flags", openapi_extra=_OFREP_BODY)
async def ofrep_bulk(request: Request, service: Service) -> Response:
    ctx = await _context(request, "")
    if isinstance(ctx, JSONResponse):
        return ctx
    _, flags = await anyio.to_thread.run_sync(service.definitions.current)
    body = {"flags": [ofrep_success(f, evaluate(f, ctx, flags=flags)) for f in flags.values()]}
    data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    # The ETag names the result, so it changes with the definitions and with the context.
    etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    await anyio.to_thread.run_sync(service.usage.record, list(flags))
    return Response(data, media_type="application/json", headers={"ETag": etag})
