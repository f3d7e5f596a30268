"""Driver client of the built-in router: the controller's side of the admin API."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import httpx

from zerodown.core.errors import PermanentDriverError, TransientDriverError
from zerodown.core.ports import BackendLoad
from zerodown.core.routes import ReleaseStats, RouteTable


def router_command(
    *,
    listen: str,
    preview_listen: str | None,
    admin_socket: str,
    state_file: str,
    admin_listen: str | None = None,
    admin_token_file: str | None = None,
    header_timeout: float | None = None,
    take_over: bool = False,
    listen_fd: int | None = None,
    preview_listen_fd: int | None = None,
    tls: list[tuple[str, str]] | None = None,
    redirect_http: str | None = None,
    admin_tls: bool = False,
    siblings: Sequence[str] = (),
) -> list[str]:
    """argv that starts the router process."""
    argv = [sys.executable, "-m", "zerodown.routers.proxy", "--listen", listen]
    if preview_listen:
        argv += ["--preview-listen", preview_listen]
    argv += ["--admin-socket", admin_socket, "--state-file", state_file]
    if admin_listen:
        argv += ["--admin-listen", admin_listen]
    if admin_token_file:
        argv += ["--admin-token-file", admin_token_file]
    if header_timeout is not None:
        argv += ["--header-timeout", repr(float(header_timeout))]
    for cert, key in tls or ():
        argv += ["--tls-cert", cert, "--tls-key", key]
    if redirect_http:
        argv += ["--redirect-http", redirect_http]
    if admin_tls:
        argv.append("--admin-tls")
    for sibling in siblings:
        argv += ["--sibling-admin-socket", sibling]
    if take_over:
        argv.append("--take-over")
    if listen_fd is not None:
        argv += ["--listen-fd", str(listen_fd)]
    if preview_listen_fd is not None:
        argv += ["--preview-listen-fd", str(preview_listen_fd)]
    return argv


class ProxyRouter:
    """Talks to one router process over its admin unix socket."""

    def __init__(self, admin_socket: str, *, timeout: float = 10.0) -> None:
        self.admin_socket = admin_socket
        self._http = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=admin_socket),
            base_url="http://router",
            timeout=timeout,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ProxyRouter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kw)
        except httpx.TransportError as e:
            raise TransientDriverError(
                f"router admin socket {self.admin_socket} unreachable ({e!r}); "
                "is the router process running?"
            ) from e

    async def _get_json(self, path: str, **params: Any) -> Any:
        r = await self._request("GET", path, params=params or None)
        if r.status_code != 200:
            raise TransientDriverError(f"router {path} answered {r.status_code}: {r.text[:200]}")
        return r.json()

    async def apply(self, table: RouteTable) -> None:
        r = await self._request("PUT", "/routes", json=table.to_json())
        if r.status_code == 200:
            return
        try:
            message = r.json().get("error", r.text)
        except ValueError:
            message = r.text
        if r.status_code in (400, 409):
            raise PermanentDriverError(f"router refused route table: {message}")
        raise TransientDriverError(f"router answered {r.status_code} to PUT /routes: {message}")

    async def table(self) -> RouteTable:
        return RouteTable.from_json(await self._get_json("/routes"))

    async def stats(self) -> dict[str, ReleaseStats]:
        data = await self._get_json("/stats")
        return {name: ReleaseStats.from_json(s) for name, s in data["releases"].items()}

    async def backends(self) -> dict[str, BackendLoad]:
        data = await self._get_json("/stats")
        return {
            address: BackendLoad(
                release=str(b["release"]),
                inflight=int(b["inflight"]),
                requests=int(b["requests"]),
                tunnels=int(b.get("tunnels", 0)),  # a router of an older zerodown has none
            )
            for address, b in data["backends"].items()
        }

    async def close_tunnels(self, address: str) -> int:
        """Close the upgraded connections open on `address`; how many there were."""
        r = await self._request("POST", "/tunnels/close", params={"backend": address})
        if r.status_code == 404:
            return 0  # a router of an older zerodown: it has no tunnels to close
        if r.status_code != 200:
            raise TransientDriverError(f"router /tunnels/close answered {r.status_code}: {r.text}")
        return int(r.json()["closed"])

    async def _post_json(self, path: str, **params: Any) -> dict[str, Any]:
        r = await self._request("POST", path, params=params or None)
        if r.status_code != 200:
            raise TransientDriverError(f"router {path} answered {r.status_code}: {r.text[:200]}")
        return dict(r.json())

    async def hold(self, seconds: float) -> dict[str, Any]:
        """Queue new requests for at most `seconds` (503 + Retry-After after that)."""
        return await self._post_json("/hold", max=repr(float(seconds)))

    async def release(self) -> dict[str, Any]:
        """Route the held requests, in order."""
        return await self._post_json("/release")

    async def verify(self, table: RouteTable) -> bool | None:
        """True when the router runs this table (same routing and generation); None: unknown."""
        try:
            current = await self.table()
        except TransientDriverError:
            return None
        return current.generation == table.generation and current.same_routing(table)

    async def samples(self, release: str, since: float) -> list[tuple[float, float, int]]:
        data = await self._get_json("/samples", release=release, since=repr(float(since)))
        return [(float(ts), float(lat), int(st)) for ts, lat, st in data]

    async def metrics(self) -> str:
        r = await self._request("GET", "/metrics")
        return r.text

    async def health(self) -> dict[str, Any] | None:
        """What /healthz says (pid, version, generation); None when the router cannot be reached."""
        try:
            r = await self._http.get("/healthz")
        except httpx.TransportError:
            return None
        return dict(r.json()) if r.status_code == 200 else None

    async def healthy(self) -> bool:
        try:
            r = await self._http.get("/healthz")
        except httpx.TransportError:
            return False
        return r.status_code == 200
