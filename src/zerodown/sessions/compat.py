"""Deploy-time checks: does the new release accept what the old one issued?

Before the new release gets traffic the engine makes a session through the old release and a
token with the currently active key, and asks the new release's instance to accept them. A
refusal fails the rollout before any user is logged out. The checks never raise for a refusal
or an unreachable instance: they return a `CompatResult` whose `reason` says what happened and
what to look at.

The `compat:` section of zerodown.yaml:

    compat:
      session: {request: GET /me, expect: {status: 200}}
      token:   {request: GET /api/me, expect: {status: 200}}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from zerodown.keys.model import KeyringError
from zerodown.spec.compat import CompatSpec, parse_request


@dataclass(frozen=True, slots=True)
class CompatResult:
    ok: bool
    check: str  # "session" | "token"
    reason: str
    status: int | None = None

    def __str__(self) -> str:
        return f"{self.check} compat {'ok' if self.ok else 'FAILED'}: {self.reason}"


async def _send(
    base_url: str, request: str, headers: dict[str, str], timeout: float
) -> httpx.Response:
    method, path = parse_request(request)
    # A fresh client per call: no cookie jar carries anything we did not put in `headers`.
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await client.request(method, base_url.rstrip("/") + path, headers=headers)


def _cookie_header(response: httpx.Response) -> str:
    return "; ".join(f"{name}={value}" for name, value in response.cookies.items())


async def check_session_compat(
    old_base_url: str,
    new_base_url: str,
    request: str = "GET /me",
    expect_status: int = 200,
    *,
    login: str = "POST /login",
    timeout: float = 5.0,
) -> CompatResult:
    """Log in through the old release, then ask the new release to accept that session."""

    def fail(reason: str, status: int | None = None) -> CompatResult:
        return CompatResult(False, "session", reason, status)

    try:
        made = await _send(old_base_url, login, {}, timeout)
    except httpx.HTTPError as exc:
        return fail(f"could not reach the old release at {old_base_url} for `{login}`: {exc!r}")
    if made.status_code >= 400:
        return fail(f"logging in through the old release (`{login}`) answered {made.status_code}")
    cookie = _cookie_header(made)
    if not cookie:
        return fail(f"`{login}` on the old release set no cookie: nothing to check")
    headers = {"cookie": cookie}
    try:
        own = await _send(old_base_url, request, headers, timeout)
    except httpx.HTTPError as exc:
        return fail(f"could not reach the old release at {old_base_url}: {exc!r}")
    if own.status_code != expect_status:
        return fail(
            f"the old release itself answered {own.status_code} to `{request}` with its own "
            f"session (expected {expect_status}); fix compat.session in zerodown.yaml",
            own.status_code,
        )
    try:
        got = await _send(new_base_url, request, headers, timeout)
    except httpx.HTTPError as exc:
        return fail(f"could not reach the new release at {new_base_url}: {exc!r}")
    if got.status_code != expect_status:
        return fail(
            f"the new release answered {got.status_code} to `{request}` with a session made by "
            f"the old release (expected {expect_status}): it would log users out. Check that it "
            "uses the same session store and still lists the old cookie secret, and that it "
            "reads the old session format",
            got.status_code,
        )
    return CompatResult(
        True,
        "session",
        f"the new release accepted a session made by the old release (`{request}` → "
        f"{got.status_code})",
        got.status_code,
    )


async def check_token_compat(
    new_base_url: str,
    token: str,
    request: str = "GET /api/me",
    expect_status: int = 200,
    *,
    timeout: float = 5.0,
) -> CompatResult:
    """Ask the new release to accept a token signed by the currently active key."""
    headers = {"authorization": f"Bearer {token}"}
    try:
        got = await _send(new_base_url, request, headers, timeout)
    except httpx.HTTPError as exc:
        return CompatResult(False, "token", f"could not reach {new_base_url}: {exc!r}")
    if got.status_code != expect_status:
        return CompatResult(
            False,
            "token",
            f"the new release answered {got.status_code} to `{request}` with a token signed "
            f"by the active key (expected {expect_status}): it would reject users' tokens. "
            "Check its JWKS URL and issuer/audience settings",
            got.status_code,
        )
    return CompatResult(
        True,
        "token",
        f"the new release accepted a token signed by the active key (`{request}` → "
        f"{got.status_code})",
        got.status_code,
    )


def compat_token(keys_dir: str | Path, claims: dict[str, Any], lifetime: float = 60) -> str:
    """A short-lived token signed by the active key of `keys_dir`, for check_token_compat."""
    # Imported here so that loading CompatSpec (the spec does) pulls in no JOSE machinery.
    from zerodown.keys.tokens import TokenSigner

    return TokenSigner(keys_dir).sign(claims, lifetime=lifetime)


async def run_compat(
    spec: CompatSpec,
    old_base_url: str,
    new_base_url: str,
    *,
    base_dir: str | Path = ".",
    timeout: float = 5.0,
) -> list[CompatResult]:
    """Every check the `compat:` section asks for, in order; the rollout fails if any is not ok.

    `base_dir` is the directory of zerodown.yaml: a relative `token.keys` is resolved from it.
    """
    results: list[CompatResult] = []
    if spec.session is not None:
        s = spec.session
        results.append(
            await check_session_compat(
                old_base_url,
                new_base_url,
                s.request,
                s.expect.status,
                login=s.login,
                timeout=timeout,
            )
        )
    if spec.token is not None:
        t = spec.token
        try:
            token = compat_token(Path(base_dir) / t.keys, dict(t.claims))
        except (KeyringError, OSError) as exc:
            results.append(CompatResult(False, "token", f"cannot sign the check's token: {exc}"))
        else:
            results.append(
                await check_token_compat(
                    new_base_url, token, t.request, t.expect.status, timeout=timeout
                )
            )
    return results
