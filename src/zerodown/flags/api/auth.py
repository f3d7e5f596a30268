"""Bearer tokens: the dependencies that refuse (401) a request without an accepted token.

Every check compares the given token with every accepted one, so the time taken does not tell
which token was close. The scheme is declared in the OpenAPI document, so clients and
schemathesis know which calls need a token.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zerodown.flags.api.service import Service

ADMIN_TOKEN = "the controller's token (.zerodown/token)"
READ_TOKEN = "the read token (api.read_token in the spec) or the controller's token"

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _check_bearer(
    credentials: HTTPAuthorizationCredentials | None,
    accepted: Sequence[str],
    *,
    what: str,
    which: str,
) -> None:
    """HTTPException 401 unless `credentials` holds one of the `accepted` tokens; `what` and
    `which` finish the message: "<what> needs ... with <which>"."""
    given = credentials.credentials.strip().encode() if credentials else b""
    if sum(secrets.compare_digest(given, t.encode()) for t in accepted) == 0:
        raise HTTPException(
            401,
            f"{what} needs `Authorization: Bearer <token>` with {which}",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_token(*accepted: str, what: str, which: str) -> Any:
    """A FastAPI dependency (for routes outside the flags API) that accepts these tokens."""

    def check(credentials: Credentials) -> None:
        _check_bearer(credentials, accepted, what=what, which=which)

    return Depends(check)


async def require_admin(service: Service, credentials: Credentials) -> None:
    _check_bearer(
        credentials, [service.admin_token], what="changing or listing flags", which=ADMIN_TOKEN
    )


async def require_read(service: Service, credentials: Credentials) -> None:
    """Put on the SDK routes only when a read token is set: they are open otherwise (the
    controller binds to loopback by default)."""
    accepted = [t for t in (service.read_token, service.admin_token) if t]
    _check_bearer(credentials, accepted, what="reading flag definitions", which=READ_TOKEN)
