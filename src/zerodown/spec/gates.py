"""The checks of zerodown.yaml a release must pass: the test gate before any new instance
starts, and smoke checks before it gets traffic (and again through the router once promoted).

gate: {command: ["pytest", "-q"], timeout: 10m}
smoke:
  timeout: 60s
  checks:
    - {name: home, request: GET /, expect: {status: 200, body_contains: "ok"}}
    - {name: suite, command: ["pytest", "tests/smoke", "-q"]}
    - {name: page, browser: {path: /checkout, text: "Pay now"}}   # in Chromium; no console errors

zerodown.checkers runs them; notifications are in zerodown.spec.notify.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from zerodown.spec.types import Duration, JsonValue, StrictModel, Timeout


class GateSpec(StrictModel):
    """A command that must succeed before any new instance starts."""

    command: list[str] = Field(min_length=1, description="argv, run in workdir; exit 0 passes")
    timeout: Timeout = 600.0
    workdir: str = "."
    env: dict[str, str] = Field(default_factory=dict)


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_REQUEST = re.compile(r"^([A-Z]+)\s+(/\S*)$")


class Expect(StrictModel):
    status: int | list[int] = Field(200, description="one status or a list of accepted ones")
    body_contains: str | None = None
    json_: dict[str, JsonValue] | None = Field(
        None, alias="json", description="these fields must be present with these values"
    )

    @field_validator("status")
    @classmethod
    def _statuses(cls, value: int | list[int]) -> int | list[int]:
        for status in [value] if isinstance(value, int) else value:
            if not 100 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP status")
        return value

    def statuses(self) -> list[int]:
        return [self.status] if isinstance(self.status, int) else list(self.status)


class BrowserCheck(StrictModel):
    """A page loaded in a real browser (Chromium, through Playwright): the document's status,
    text the page shows once loaded, and no errors in its console. A failure keeps a
    screenshot in .zerodown/screenshots/."""

    path: str = Field(description="the page, e.g. /checkout")
    status: int = Field(200, ge=100, le=599, description="of the page's own response")
    text: str | None = Field(None, description="text the rendered page must show")
    console_errors: bool = Field(
        False, description="allow errors in the browser console (uncaught exceptions included)"
    )
    wait_until: Literal["load", "domcontentloaded", "networkidle"] = "load"

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c.isspace() for c in value):
            raise ValueError(f"path {value!r} should be a path starting with '/'")
        return value


class SmokeCheck(StrictModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    request: str | None = Field(None, description="'GET /path', sent to the release under test")
    json_: JsonValue = Field(None, alias="json", description="request body, sent as JSON")
    body: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    expect: Expect | None = None
    max_latency: Duration | None = None
    command: list[str] | None = Field(
        None, min_length=1, description="argv; ZERODOWN_SMOKE_URL holds the base URL"
    )
    browser: BrowserCheck | None = None
    timeout: Timeout | None = Field(None, description="for this check; default: the budget")

    @field_validator("request")
    @classmethod
    def _request(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _REQUEST.match(value.strip())
        if match is None or match.group(1) not in METHODS:
            methods = ", ".join(METHODS)
            raise ValueError(f"request {value!r} should look like 'GET /path' ({methods})")
        return value.strip()

    @model_validator(mode="after")
    def _one_kind(self) -> SmokeCheck:
        kinds = [k for k in ("request", "command", "browser") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                f"check {self.name!r} needs exactly one of request, command or browser"
            )
        if self.request is None:
            extra = [
                k
                for k in ("json_", "body", "expect", "max_latency")
                if getattr(self, k) is not None
            ]
            if extra or self.headers:
                raise ValueError(
                    f"check {self.name!r}: a {kinds[0]} check takes no request fields"
                    f" ({', '.join(k.rstrip('_') for k in extra) or 'headers'})"
                )
        if self.json_ is not None and self.body is not None:
            raise ValueError(f"check {self.name!r}: give json or body, not both")
        return self

    @property
    def method(self) -> str:
        assert self.request is not None
        return self.request.split()[0]

    @property
    def path(self) -> str:
        assert self.request is not None
        return self.request.split()[1]


class SmokeSpec(StrictModel):
    timeout: Timeout = Field(60.0, description="budget for the whole smoke run")
    checks: list[SmokeCheck] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> SmokeSpec:
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"check name(s) used twice: {', '.join(dupes)}")
        return self
