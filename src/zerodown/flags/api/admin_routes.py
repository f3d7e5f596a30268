"""The flags API for people and tools holding the admin token: CRUD under /api/flags, the audit
log, the stale report, Unleash export/import, and /api/flags/usage (which flags an SDK evaluated:
it changes what the stale report says, so it is a change like any other).

The actor recorded in the audit log is the `X-Zerodown-Actor` header (the CLI sends the user's
name), else "api". The per-flag routes (/api/flags/{key}) come last, so that the fixed paths
declared before them are not taken for keys.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from zerodown.flags.api.auth import require_admin
from zerodown.flags.api.limits import (
    MAX_KEY,
    MAX_TEXT,
    MAX_USAGE_KEYS,
    BoundedFlag,
    FlagKey,
    bounded_flag,
)
from zerodown.flags.api.service import Service, definitions_document
from zerodown.flags.model import Flag
from zerodown.flags.stale import stale_report
from zerodown.flags.steps import FlagChange, apply_flag_change
from zerodown.flags.stores import FlagExists, FlagNotFound, FlagStore
from zerodown.flags.unleash import UnleashFormatError, flags_from_unleash, flags_to_unleash

router = APIRouter(dependencies=[Depends(require_admin)])

# The import body is read by the handler itself; described for the OpenAPI document (and so for
# schemathesis).
_JSON_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}
}


class FlagPatch(FlagChange):
    """PATCH /api/flags/{key}: rollout and/or enabled, with a note for the audit log."""

    note: str = Field("", max_length=MAX_TEXT)


class UsageReport(BaseModel):
    keys: list[Annotated[str, Field(max_length=MAX_KEY)]] = Field(max_length=MAX_USAGE_KEYS)


def _actor(request: Request) -> str:
    return request.headers.get("x-zerodown-actor", "").strip()[:200] or "api"


Actor = Annotated[str, Depends(_actor)]


def _existing(store: FlagStore, key: str) -> Flag:
    flag = store.get_flag(key)
    if flag is None:
        raise HTTPException(404, str(FlagNotFound(key)))
    return flag


@router.get("/api/flags")
def list_flags(service: Service) -> dict[str, Any]:
    version, flags = service.store.snapshot()
    return {"version": version, "flags": [f.to_json() for f in flags]}


@router.post("/api/flags", status_code=201)
def create_flag(flag: BoundedFlag, service: Service, who: Actor) -> dict[str, Any]:
    try:
        return service.store.create_flag(flag, actor=who).to_json()
    except FlagExists as e:
        raise HTTPException(409, str(e)) from None


@router.get("/api/flags/audit")
def audit(
    service: Service,
    key: str | None = Query(None, max_length=MAX_KEY),
    limit: int = Query(100, ge=1, le=10_000),
) -> dict[str, Any]:
    entries = service.store.audit(key=key, limit=limit)
    return {"entries": [e.model_dump(mode="json") for e in entries]}


@router.get("/api/flags/stale")
def stale(
    service: Service,
    # a century: further back than any flag, and within what dates can count back to
    unused_days: int = Query(30, ge=1, le=36_500),
    settled_days: int = Query(30, ge=1, le=36_500),
) -> dict[str, Any]:
    report = stale_report(
        service.store.list_flags(),
        service.clock(),
        unused_days=unused_days,
        settled_days=settled_days,
    )
    return {
        "stale": [
            {"key": s.key, "type": s.type, "owner": s.owner, "reasons": list(s.reasons)}
            for s in report
        ]
    }


@router.get("/api/flags/export")
def export(
    service: Service, format: str = Query("zerodown", pattern="^(zerodown|unleash)$")
) -> dict[str, Any]:
    version, flags = service.store.snapshot()
    if format == "unleash":
        return flags_to_unleash(flags)
    return definitions_document(version, flags)


@router.post("/api/flags/import", openapi_extra=_JSON_OBJECT_BODY)
async def import_flags(request: Request, service: Service, who: Actor) -> dict[str, Any]:
    """Body: our export (`{"flags": [...]}`) or Unleash's (`{"features": [...]}`). Creates
    missing flags and replaces existing ones."""
    try:
        body = json.loads(await request.body())
        if isinstance(body, dict) and "features" in body:
            flags = flags_from_unleash(body)
        elif isinstance(body, dict) and isinstance(body.get("flags"), list):
            flags = [Flag.model_validate(f) for f in body["flags"]]
        else:
            raise HTTPException(
                422, "import: the body needs `flags` (zerodown) or `features` (Unleash)"
            )
        for f in flags:
            bounded_flag(f)
    # ValueError: JSON that Python cannot hold (an integer of 5,000 digits); RecursionError:
    # nesting deeper than the parser goes
    except (ValueError, RecursionError, UnleashFormatError) as e:
        raise HTTPException(422, f"import: {e}") from None
    return await anyio.to_thread.run_sync(_create_or_replace, service.store, flags, who)


def _create_or_replace(store: FlagStore, flags: list[Flag], who: str) -> dict[str, list[str]]:
    created, updated = [], []
    for f in flags:
        try:
            store.create_flag(f, actor=who, note="import")
            created.append(f.key)
        except FlagExists:
            store.update_flag(f, actor=who, note="import")
            updated.append(f.key)
    return {"created": created, "updated": updated}


@router.post("/api/flags/usage", status_code=204)
def report_usage(report: UsageReport, service: Service) -> Response:
    service.store.mark_evaluated(report.keys, service.clock())
    return Response(status_code=204)


# --- per flag: after every fixed path under /api/flags ---------------------------------------


@router.get("/api/flags/{key}")
def get_flag(key: FlagKey, service: Service) -> dict[str, Any]:
    return _existing(service.store, key).to_json()


@router.put("/api/flags/{key}")
def replace_flag(key: FlagKey, flag: BoundedFlag, service: Service, who: Actor) -> dict[str, Any]:
    if flag.key != key:
        raise HTTPException(422, f"the body's key {flag.key!r} differs from the URL's {key!r}")
    try:
        return service.store.update_flag(flag, actor=who).to_json()
    except FlagNotFound as e:
        raise HTTPException(404, str(e)) from None


@router.patch("/api/flags/{key}")
def patch_flag(key: FlagKey, patch: FlagPatch, service: Service, who: Actor) -> dict[str, Any]:
    flag = _existing(service.store, key)
    change = FlagChange(rollout=patch.rollout, enabled=patch.enabled)
    try:
        return service.store.update_flag(
            apply_flag_change(flag, change), actor=who, note=patch.note
        ).to_json()
    except FlagNotFound as e:
        raise HTTPException(404, str(e)) from None


@router.delete("/api/flags/{key}", status_code=204)
def delete_flag(key: FlagKey, service: Service, who: Actor) -> Response:
    try:
        service.store.delete_flag(key, actor=who)
    except FlagNotFound as e:
        raise HTTPException(404, str(e)) from None
    return Response(status_code=204)
