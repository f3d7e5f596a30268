"""TLS on the client listener: TLS 1.2+, ALPN http/1.1, SNI among certificates, a certificate
replaced on disk served without a restart, plain HTTP redirected; a real client (httpx, ssl)
against a CA the test makes (trustme)."""

from __future__ import annotations

import json
import socket
import ssl
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from router_kit import BackendProc, RouterProc, start_router, table, wait_for
from websockets.sync.client import connect

from support.services import free_port


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def write_pair(ca: trustme.CA, where: Path, *names: str) -> tuple[Path, Path]:
    cert = ca.issue_cert(*names)
    cert_path, key_path = where.with_suffix(".crt"), where.with_suffix(".key")
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    return cert_path, key_path


def peer_cert(port: int, ca: trustme.CA, server_name: str) -> tuple[dict[str, object], str | None]:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with raw, ctx.wrap_socket(raw, server_hostname=server_name) as tls:
        return tls.getpeercert(), tls.selected_alpn_protocol()  # type: ignore[return-value]


def serial(port: int, ca: trustme.CA, server_name: str) -> str:
    return str(peer_cert(port, ca, server_name)[0]["serialNumber"])


@pytest.fixture
def tls_router(
    tmp_path: Path, ca: trustme.CA, backend_a: BackendProc
) -> Iterator[tuple[RouterProc, int, list[tuple[Path, Path]]]]:
    pairs = [
        write_pair(ca, tmp_path / "main", "localhost"),
        write_pair(ca, tmp_path / "other", "other.test", "*.wild.test"),
    ]
    redirect_port = free_port()
    extra: list[str] = []
    for cert, key in pairs:
        extra += ["--tls-cert", str(cert), "--tls-key", str(key)]
    extra += ["--redirect-http", f"127.0.0.1:{redirect_port}", "--admin-tls"]
    router = start_router(tmp_path, admin_listen=True, extra=tuple(extra))
    router.apply(table(1, ("a", 1, [backend_a])))
    yield router, redirect_port, pairs
    router.stop()


@pytest.mark.slow
def test_tls_sni_alpn_redirect_and_reload(
    tls_router: tuple[RouterProc, int, list[tuple[Path, Path]]], ca: trustme.CA, tmp_path: Path
) -> None:
    router, redirect_port, pairs = tls_router
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    r = httpx.get(f"https://localhost:{router.port}/x", verify=ctx)
    assert r.status_code == 200 and r.http_version == "HTTP/1.1"
    seen = json.loads(r.content)["headers"]
    assert seen["x-forwarded-proto"] == "https"

    with connect(f"wss://localhost:{router.port}/ws", ssl=ctx, open_timeout=5) as ws:
        assert ws.recv(timeout=5) == "a"  # a WebSocket over TLS: the tunnel is the same
        ws.send("over tls")
        assert ws.recv(timeout=5) == "over tls"

    cert, alpn = peer_cert(router.port, ca, "other.test")
    assert alpn == "http/1.1"
    assert ("DNS", "other.test") in cert["subjectAltName"]  # type: ignore[operator]
    cert, _ = peer_cert(router.port, ca, "api.wild.test")
    assert ("DNS", "*.wild.test") in cert["subjectAltName"]  # type: ignore[operator]
    cert, _ = peer_cert(router.port, ca, "localhost")
    assert ("DNS", "localhost") in cert["subjectAltName"]  # type: ignore[operator]

    # Older than TLS 1.2 is refused.
    old = ssl.create_default_context()
    ca.configure_trust(old)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("ALL:@SECLEVEL=0")
    with pytest.raises((ssl.SSLError, OSError)):
        peer_cert_with(router.port, old)

    # The TCP admin API over TLS too (--admin-tls): reads open, changes need the token.
    admin = f"https://localhost:{router.admin_port}"
    assert httpx.get(admin + "/metrics", verify=ctx).status_code == 200
    assert httpx.post(admin + "/release", verify=ctx).status_code == 401

    # Plain HTTP on the redirect listener: 308 to https, same path.
    r = httpx.get(f"http://localhost:{redirect_port}/a/b?c=1")
    assert r.status_code == 308
    assert r.headers["location"] == f"https://localhost:{router.port}/a/b?c=1"

    # A certificate replaced on disk is served to new connections, without a restart.
    before = serial(router.port, ca, "localhost")
    fresh_cert, fresh_key = write_pair(ca, tmp_path / "fresh", "localhost")
    fresh_key.replace(pairs[0][1])
    fresh_cert.replace(pairs[0][0])
    wait_for(lambda: serial(router.port, ca, "localhost") != before, "the new certificate")
    assert httpx.get(f"https://localhost:{router.port}/", verify=ctx).status_code == 200
    assert router.proc.poll() is None


def peer_cert_with(port: int, ctx: ssl.SSLContext) -> None:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with raw, ctx.wrap_socket(raw, server_hostname="localhost"):
        pass
