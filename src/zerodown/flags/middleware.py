"""ASGI and WSGI middleware: put the request's evaluation context in place for the SDK, and name
the flag variants the request used in a response header, `X-Zerodown-Flags: key=variant,...`,
so the router can count requests and errors per flag variant.

The context comes from the request: user id from the `X-User-Id` header, session id from the
`X-Session-Id` header or the `session` cookie, remote address from the connection, and the
environment given to the middleware; pass `context=` for anything else (a JWT's subject, say).
The header holds the flags evaluated before the response started (the usual case); flags first
evaluated while a body streams come too late to be named.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Any

from zerodown.flags.context import current_context, header_value, request_variants
from zerodown.flags.evaluate import EvalContext

HEADER = "X-Zerodown-Flags"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    headers: Mapping[str, str]  # lower-case names
    cookies: Mapping[str, str]
    remote_address: str | None
    path: str


ContextFactory = Callable[[RequestInfo], EvalContext]


def _cookies(raw: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return {}
    return {k: m.value for k, m in jar.items()}


def default_context(
    *,
    user_header: str = "x-user-id",
    session_header: str = "x-session-id",
    session_cookie: str = "session",
    environment: str | None = None,
) -> ContextFactory:
    def build(req: RequestInfo) -> EvalContext:
        return EvalContext(
            user_id=req.headers.get(user_header) or None,
            session_id=req.headers.get(session_header) or req.cookies.get(session_cookie) or None,
            remote_address=req.remote_address,
            environment=environment,
        )

    return build


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class FlagsASGIMiddleware:
    def __init__(self, app: ASGIApp, *, context: ContextFactory | None = None):
        self.app = app
        self.context = context or default_context()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client")
        info = RequestInfo(
            headers=headers,
            cookies=_cookies(headers.get("cookie", "")),
            remote_address=client[0] if client else None,
            path=scope.get("path", ""),
        )
        used: dict[str, str] = {}

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start" and used:
                extra = (HEADER.lower().encode(), header_value(used).encode("latin-1"))
                message = {**message, "headers": [*message.get("headers", []), extra]}
            await send(message)

        ctx_token = current_context.set(self.context(info))
        used_token = request_variants.set(used)
        try:
            await self.app(scope, receive, send_with_header)
        finally:
            request_variants.reset(used_token)
            current_context.reset(ctx_token)


StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class FlagsWSGIMiddleware:
    def __init__(self, app: WSGIApp, *, context: ContextFactory | None = None):
        self.app = app
        self.context = context or default_context()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        info = RequestInfo(
            headers=headers,
            cookies=_cookies(environ.get("HTTP_COOKIE", "")),
            remote_address=environ.get("REMOTE_ADDR"),
            path=environ.get("PATH_INFO", ""),
        )
        used: dict[str, str] = {}

        def start_with_header(
            status: str, response_headers: list[Any], exc_info: Any = None
        ) -> Any:
            if used:
                response_headers = [*response_headers, (HEADER, header_value(used))]
            return start_response(status, response_headers, exc_info)

        ctx_token = current_context.set(self.context(info))
        used_token = request_variants.set(used)

        def reset() -> None:
            try:
                request_variants.reset(used_token)
                current_context.reset(ctx_token)
            except ValueError:  # closed from another context (some servers do): just clear
                request_variants.set(None)
                current_context.set(None)

        try:
            result = self.app(environ, start_with_header)
        except BaseException:
            reset()
            raise
        # A WSGI app may call start_response and evaluate flags while its body is iterated, so
        # the context stays in place until the server closes the body.
        return _ClosingBody(result, reset)


class _ClosingBody:
    def __init__(self, body: Iterable[bytes], on_close: Callable[[], None]):
        self._body = body
        self._on_close = on_close

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._on_close()
