"""TLS for the client listeners (standard library ssl): TLS 1.2 and up, ALPN http/1.1, one
certificate per name chosen by SNI, and certificate files re-read when they change on disk.

Each certificate gets its own SSLContext; the listener's context holds the first certificate
(for clients that send no SNI, or a name no certificate covers) and its SNI callback hands a
connection the context whose certificate names the server name (exact, then `*.` wildcard of
one label). `reload_if_changed` (the router's sweeper calls it every second) loads the files
again when their modification time, size or inode changed; while a new pair does not load (the
certificate was written before its key), the previous one keeps serving.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

from zerodown.routers.proxy.events import log


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: str
    key: str


def _context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])  # no h2: the router speaks HTTP/1.1
    return ctx


def cert_names(path: str) -> list[str]:
    """The DNS names (subjectAltName, else the subject's CN) a certificate file covers."""
    # The one reader of a certificate file in the standard library (private, stable since 3.4).
    decoded = ssl._ssl._test_decode_cert(path)  # type: ignore[attr-defined]
    names = [v.lower() for k, v in decoded.get("subjectAltName", ()) if k == "DNS"]
    if not names:
        for rdn in decoded.get("subject", ()):
            names += [v.lower() for k, v in rdn if k == "commonName"]
    return names


def _stamp(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Certificates:
    def __init__(self, pairs: list[CertPair]) -> None:
        if not pairs:
            raise ValueError("TLS needs at least one certificate")
        self.pairs = pairs
        self.server = _context()
        self.server.sni_callback = self._sni
        self.by_name: dict[str, ssl.SSLContext] = {}
        self.stamps: list[tuple[tuple[int, int, int], tuple[int, int, int]]] = []
        self.load()  # at start, a file that does not load is an error (raised)

    def load(self) -> None:
        stamps = [(_stamp(p.cert), _stamp(p.key)) for p in self.pairs]
        by_name: dict[str, ssl.SSLContext] = {}
        for pair in self.pairs:
            ctx = _context()
            ctx.load_cert_chain(pair.cert, pair.key)
            for name in cert_names(pair.cert):
                by_name.setdefault(name, ctx)  # the first certificate listing a name wins
        first = self.pairs[0]
        self.server.load_cert_chain(first.cert, first.key)  # new handshakes only
        self.by_name = by_name
        self.stamps = stamps

    def reload_if_changed(self) -> bool:
        try:
            stamps = [(_stamp(p.cert), _stamp(p.key)) for p in self.pairs]
        except OSError:
            return False  # being replaced: try again at the next sweep
        if stamps == self.stamps:
            return False
        try:
            self.load()
        except (OSError, ssl.SSLError, ValueError) as e:
            log("router.tls_reload_failed", error=str(e))
            return False
        log("router.tls_reloaded", certificates=[p.cert for p in self.pairs])
        return True

    def pick(self, server_name: str) -> ssl.SSLContext | None:
        name = server_name.lower()
        ctx = self.by_name.get(name)
        if ctx is None and "." in name:
            ctx = self.by_name.get("*." + name.split(".", 1)[1])
        return ctx

    def _sni(self, sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if server_name:
            ctx = self.pick(server_name)
            if ctx is not None:
                sslobj.context = ctx
