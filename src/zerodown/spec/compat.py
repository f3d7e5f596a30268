"""The `compat:` section: proof at deploy time that the new release accepts what the old one
issued (a session made through the old release, a token signed with the active key)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from zerodown.spec.types import JsonValue, StrictModel

_REQUEST = re.compile(r"^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (/\S*)$")


def parse_request(text: str) -> tuple[str, str]:
    match = _REQUEST.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a request; write it like 'GET /me' or 'POST /login'")
    return match.group(1), match.group(2)


class Expect(StrictModel):
    status: int = Field(default=200, ge=100, le=599)


def _check_request(value: str) -> str:
    parse_request(value)
    return value.strip()


class SessionCheck(StrictModel):
    login: str = "POST /login"
    """The request that makes a session through the old release (its Set-Cookie is kept)."""
    request: str = "GET /me"
    expect: Expect = Expect()

    _requests = field_validator("login", "request")(_check_request)


class TokenCheck(StrictModel):
    request: str = "GET /api/me"
    expect: Expect = Expect()
    keys: str = ".zerodown/keys"
    """Keyring directory whose active key signs the check's token."""
    claims: dict[str, JsonValue] = Field(default_factory=lambda: {"sub": "zerodown-compat"})

    _requests = field_validator("request")(_check_request)


class CompatSpec(StrictModel):
    session: SessionCheck | None = None
    token: TokenCheck | None = None
