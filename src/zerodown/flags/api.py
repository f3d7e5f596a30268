"""The flag service's HTTP API, as a FastAPI router the controller mounts.

- Admin (Bearer admin token): CRUD under /api/flags, audit log, stale report, Unleash export/import,
  and /api/flags/usage (which flags an SDK evaluated, for the stale report: it changes what the
  report says, so it is a change like any other). The actor recorded in the audit log is the
  `X-Zerodown-Actor` header (the CLI sends the user's name), else "api".
- SDK reads (Bearer read token when one is set, else open; the admin token always works):
  /api/flags/definitions (ETag / 304, for polling), /api/flags/stream (Server-Sent Events: the
  whole definitions document at connect and after every change).
- OFREP: POST /ofrep/v1/evaluate/flags/{key} and the bulk POST /ofrep/v1/evaluate/flags (ETag /
  304), so the official OpenFeature OFREP providers work unchanged. Public by design, like a
  flag-evaluation endpoint of any flag service: it answers values for a context, never the rules.

Every parameter and field is bounded (see MAX_*), so bad input is a 4xx naming it, never a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, Field

from zerodown.flags.evaluate import EvalContext, evaluate
from zerodown.flags.model import Flag
from zerodown.flags.ofrep import ofrep_error, ofrep_success
from zerodown.flags.stale import stale_report
from zerodown.flags.steps import FlagChange, apply_flag_change
from zerodown.flags.stores import FlagExists, FlagNotFound, FlagStore, utc_now
from zerodown.flags.unleash import UnleashFormatError, flags_from_unleash, flags_to_unleash

# A flag is served to every SDK and dashboard, so one huge flag costs every reader: each text and
# list in it is bounded (the controller's body limit bounds a whole request on top of this).
MAX_KEY = 200  # as KEY_PATTERN
MAX_TEXT = 1_000  # description, owner, names, constraint values, notes
MAX_PAYLOAD = 10_000  # a variant's payload (JSON or CSV text)
MAX_ITEMS = 1_000  # entries of any list: strategies, constraints, values, user ids, variants
MAX_USAGE_KEYS = 10_000  # keys in one usage report


def _oversized(value: Any, path: str) -> str | None:
    """The first text or list in `value` over its limit, as `path: what is wrong`."""
    if isinstance(value, str):
        limit = MAX_PAYLOAD if path.endswith("payload.value") else MAX_TEXT
        if len(value) > limit:
            return f"{path}: {len(value)} characters; at most {limit}"
    elif isinstance(value, list | tuple):
        if len(value) > MAX_ITEMS:
            return f"{path}: {len(value)} entries; at most {MAX_ITEMS}"
        for n, item in enumerate(value):
            if problem := _oversized(item, f"{path}.{n}"):
                return problem
    elif isinstance(value, dict):
        for name, item in value.items():
            if problem := _oversized(item, f"{path}.{name}" if path else str(name)):
                return problem
    return None


def bounded_flag(flag: Flag) -> Flag:
    """The flag, or ValueError naming the first field over its limit."""
    if problem := _oversized(flag.model_dump(mode="json"), ""):
        raise ValueError(problem)
    return flag


BoundedFlag = Annotated[Flag, AfterValidator(bounded_flag)]
FlagKey = Annotated[str, Path(min_length=1, max_length=MAX_KEY)]


class FlagPatch(FlagChange):
    """PATCH /api/flags/{key}: rollout and/or enabled, with a note for the audit log."""

    note: str = Field("", max_length=MAX_TEXT)


class UsageReport(BaseModel):
    keys: list[Annotated[str, Field(max_length=MAX_KEY)]] = Field(max_length=MAX_USAGE_KEYS)


# --- tokens ------------------------------------------------------------------------------------

# Declared in the OpenAPI document, so clients and schemathesis know which calls need a token.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")


def require_token(*accepted: str, what: str, which: str) -> Any:
    """A FastAPI dependency that refuses (401) a request without one of the `accepted` bearer
    tokens; `what` and `which` finish the message: "<what> needs ... with <which>"."""
    wanted = [t.encode() for t in accepted]

    def check(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials.strip().encode() if credentials else b""
        # compare with every token, so the time taken does not tell which one was close
        if sum(secrets.compare_digest(given, t) for t in wanted) == 0:
            raise HTTPException(
                401,
                f"{what} needs `Authorization: Bearer <token>` with {which}",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return Depends(check)


ADMIN_TOKEN = "the controller's token (.zerodown/token)"
READ_TOKEN = "the read token (api.read_token in the spec) or the controller's token"


# Bodies these routes read themselves, described for the OpenAPI document (and so for schemathesis).
_JSON_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}}
}
_OFREP_BODY: dict[str, Any] = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"context": {"type": "object"}}}
            }
        }
    }
}


def definitions_document(version: int, flags: list[Flag]) -> dict[str, Any]:
    # Usage times are left out: they change on every evaluation and would churn every ETag.
    return {
        "version": version,
        "flags": [f.model_dump(mode="json", exclude={"last_evaluated_at"}) for f in flags],
    }


class _Definitions:
    """The store's flags, re-read only when its version moves (one cheap read per request)."""

    def __init__(self, store: FlagStore):
        self._store = store
        self._lock = threading.Lock()
        self._version = -1
        self._flags: dict[str, Flag] = {}

    def current(self) -> tuple[int, dict[str, Flag]]:
        version = self._store.version()
        with self._lock:
            if version != self._version:
                v, flags = self._store.snapshot()
                self._version, self._flags = v, {f.key: f for f in flags}
            return self._version, self._flags


class _Changes:
    """One watcher per router follows the store and fans each new definitions document out to
    every open stream: one thread and one read per change, however many SDKs listen."""

    def __init__(self, store: FlagStore):
        self._store = store
        self._version = -1
        self._doc = ""
        self._subscribers = 0
        self._cond: asyncio.Condition | None = None
        self._task: asyncio.Task[None] | None = None
        self._limiter = anyio.CapacityLimiter(1)  # the watcher's own thread, not the shared pool
        self._generation = 0

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[None]:
        if self._subscribers == 0 or self._cond is None or self._task is None or self._task.done():
            # A new watcher; a previous one that is winding down no longer writes (generation).
            self._generation += 1
            self._cond = asyncio.Condition()
            self._version, self._doc = -1, ""
            self._task = asyncio.get_running_loop().create_task(self._watch(self._generation))
        self._subscribers += 1
        try:
            yield
        finally:
            self._subscribers -= 1

    async def wait_newer(self, seen: int, timeout: float) -> tuple[int, str]:
        assert self._cond is not None
        async with self._cond:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cond.wait_for(lambda: self._version != seen), timeout)
            return self._version, self._doc

    async def _watch(self, generation: int) -> None:
        cond = self._cond
        assert cond is not None
        seen = -1
        while generation == self._generation and (self._subscribers > 0 or seen < 0):
            new = await anyio.to_thread.run_sync(
                self._store.wait_for_change, seen, 0.5, limiter=self._limiter
            )
            if new == seen:
                continue
            version, flags = await anyio.to_thread.run_sync(
                self._store.snapshot, limiter=self._limiter
            )
            doc = json.dumps(definitions_document(version, flags), separators=(",", ":"))
            seen = version
            async with cond:
                if generation == self._generation:
                    self._version, self._doc = version, doc
                    cond.notify_all()


class _Usage:
    """Which flags were evaluated; written to the store at most every `interval` seconds."""

    def __init__(self, store: FlagStore, clock: Callable[[], datetime], interval: float = 30.0):
        self._store, self._clock, self._interval = store, clock, interval
        self._keys: set[str] = set()
        self._last = 0.0
        self._lock = threading.Lock()

    def record(self, keys: list[str]) -> None:
        with self._lock:
            self._keys.update(keys)
            if time.monotonic() - self._last < self._interval:
                return
            pending, self._keys, self._last = self._keys, set(), time.monotonic()
        self._store.mark_evaluated(sorted(pending), self._clock())


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
    router = APIRouter()
    defs = _Definitions(store)
    changes = _Changes(store)
    usage = _Usage(store, clock, usage_interval)

    admin = require_token(admin_token, what="changing or listing flags", which=ADMIN_TOKEN)
    # Open when no read token is set: the controller binds to loopback by default.
    read = (
        [require_token(read_token, admin_token, what="reading flag definitions", which=READ_TOKEN)]
        if read_token
        else []
    )

    def actor(request: Request) -> str:
        return request.headers.get("x-zerodown-actor", "").strip()[:200] or "api"

    def _get(key: str) -> Flag:
        flag = store.get_flag(key)
        if flag is None:
            raise HTTPException(404, str(FlagNotFound(key)))
        return flag

    # --- admin -------------------------------------------------------------------------------

    @router.get("/api/flags", dependencies=[admin])
    def list_flags() -> dict[str, Any]:
        version, flags = store.snapshot()
        return {"version": version, "flags": [f.to_json() for f in flags]}

    @router.post("/api/flags", status_code=201, dependencies=[admin])
    def create_flag(flag: BoundedFlag, who: str = Depends(actor)) -> dict[str, Any]:
        try:
            return store.create_flag(flag, actor=who).to_json()
        except FlagExists as e:
            raise HTTPException(409, str(e)) from None

    @router.get("/api/flags/audit", dependencies=[admin])
    def audit(
        key: str | None = Query(None, max_length=MAX_KEY),
        limit: int = Query(100, ge=1, le=10_000),
    ) -> dict[str, Any]:
        return {"entries": [e.model_dump(mode="json") for e in store.audit(key=key, limit=limit)]}

    @router.get("/api/flags/stale", dependencies=[admin])
    def stale(
        # a century: further back than any flag, and within what dates can count back to
        unused_days: int = Query(30, ge=1, le=36_500),
        settled_days: int = Query(30, ge=1, le=36_500),
    ) -> dict[str, Any]:
        report = stale_report(
            store.list_flags(), clock(), unused_days=unused_days, settled_days=settled_days
        )
        return {
            "stale": [
                {"key": s.key, "type": s.type, "owner": s.owner, "reasons": list(s.reasons)}
                for s in report
            ]
        }

    @router.get("/api/flags/export", dependencies=[admin])
    def export(format: str = Query("zerodown", pattern="^(zerodown|unleash)$")) -> dict[str, Any]:
        version, flags = store.snapshot()
        if format == "unleash":
            return flags_to_unleash(flags)
        return definitions_document(version, flags)

    @router.post("/api/flags/import", dependencies=[admin], openapi_extra=_JSON_OBJECT_BODY)
    async def import_flags(request: Request, who: str = Depends(actor)) -> dict[str, Any]:
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

        def apply() -> dict[str, list[str]]:
            created, updated = [], []
            for f in flags:
                try:
                    store.create_flag(f, actor=who, note="import")
                    created.append(f.key)
                except FlagExists:
                    store.update_flag(f, actor=who, note="import")
                    updated.append(f.key)
            return {"created": created, "updated": updated}

        return await anyio.to_thread.run_sync(apply)

    # --- SDK reads (declared before /api/flags/{key} so they are not taken for keys) ---------

    @router.get("/api/flags/definitions", dependencies=read)
    def definitions(request: Request) -> Response:
        version, flags = store.snapshot()
        etag = f'"{version}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse(definitions_document(version, flags), headers={"ETag": etag})

    @router.get("/api/flags/stream", dependencies=read)
    async def stream(request: Request) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
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

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.post("/api/flags/usage", status_code=204, dependencies=[admin])
    def report_usage(report: UsageReport) -> Response:
        store.mark_evaluated(report.keys, clock())
        return Response(status_code=204)

    # --- admin, per flag ---------------------------------------------------------------------

    @router.get("/api/flags/{key}", dependencies=[admin])
    def get_flag(key: FlagKey) -> dict[str, Any]:
        return _get(key).to_json()

    @router.put("/api/flags/{key}", dependencies=[admin])
    def replace_flag(key: FlagKey, flag: BoundedFlag, who: str = Depends(actor)) -> dict[str, Any]:
        if flag.key != key:
            raise HTTPException(422, f"the body's key {flag.key!r} differs from the URL's {key!r}")
        try:
            return store.update_flag(flag, actor=who).to_json()
        except FlagNotFound as e:
            raise HTTPException(404, str(e)) from None

    @router.patch("/api/flags/{key}", dependencies=[admin])
    def patch_flag(key: FlagKey, patch: FlagPatch, who: str = Depends(actor)) -> dict[str, Any]:
        flag = _get(key)
        change = FlagChange(rollout=patch.rollout, enabled=patch.enabled)
        try:
            return store.update_flag(
                apply_flag_change(flag, change), actor=who, note=patch.note
            ).to_json()
        except FlagNotFound as e:
            raise HTTPException(404, str(e)) from None

    @router.delete("/api/flags/{key}", status_code=204, dependencies=[admin])
    def delete_flag(key: FlagKey, who: str = Depends(actor)) -> Response:
        try:
            store.delete_flag(key, actor=who)
        except FlagNotFound as e:
            raise HTTPException(404, str(e)) from None
        return Response(status_code=204)

    # --- OFREP -------------------------------------------------------------------------------

    async def _context(request: Request, key: str) -> EvalContext | JSONResponse:
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
    async def ofrep_one(key: FlagKey, request: Request) -> JSONResponse:
        ctx = await _context(request, key)
        if isinstance(ctx, JSONResponse):
            return ctx
        _, flags = await anyio.to_thread.run_sync(defs.current)
        flag = flags.get(key)
        if flag is None:
            return JSONResponse(
                ofrep_error(key, "FLAG_NOT_FOUND", f"flag {key!r} does not exist"), 404
            )
        result = ofrep_success(flag, evaluate(flag, ctx, flags=flags))
        await anyio.to_thread.run_sync(usage.record, [key])
        return JSONResponse(result)

    @router.post("/ofrep/v1/evaluate/flags", openapi_extra=_OFREP_BODY)
    async def ofrep_bulk(request: Request) -> Response:
        ctx = await _context(request, "")
        if isinstance(ctx, JSONResponse):
            return ctx
        _, flags = await anyio.to_thread.run_sync(defs.current)
        body = {"flags": [ofrep_success(f, evaluate(f, ctx, flags=flags)) for f in flags.values()]}
        data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        # The ETag names the result, so it changes with the definitions and with the context.
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        await anyio.to_thread.run_sync(usage.record, list(flags))
        return Response(data, media_type="application/json", headers={"ETag": etag})

    return router
