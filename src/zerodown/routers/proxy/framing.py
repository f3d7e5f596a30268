"""How a request head must look before the router forwards it (RFC 9112), and its limits.

The router never passes the client's framing bytes on: it forwards a body either with the
Content-Length it validated here or re-encoded as chunked, and it writes the request line and
Host itself. Whatever two parsers could read differently (the router's and a backend's) is
refused here, before anything reaches a backend:

- Content-Length: one header, digits only (no sign, list, or second header) → else 400.
- Transfer-Encoding: only in HTTP/1.1, never with Content-Length, and its codings are exactly
  `chunked` (case and empty list elements aside). Another final coding (or `chunked` twice) is
  400 (RFC 9112 6.3: the length cannot be determined); `chunked` after another coding such as
  `gzip, chunked` is 501 (RFC 9112 6.1: a coding the router does not implement).
- Host: exactly one in HTTP/1.1 (RFC 9112 3.2), with a plain authority as its value.
- The target is origin-form (`/path?query`), `*` for OPTIONS, or absolute-form, which is
  rewritten to origin-form with Host taken from it (400 when the two disagree); no `#fragment`.
- No header name that only differs from one the router writes by `_` for `-` (400).
- HTTP/1.0 and 1.1 only: HTTP/0.9 and HTTP/2 (a prior-knowledge preface) get 505.
- Sizes: the target (414), the header fields and their count (431).

The parser (httptools/llhttp in its strict default) already refuses obs-fold, bare CR or LF,
NUL and control bytes in names, values and the target; these rules cover what it lets through.

A response's Transfer-Encoding is judged by `response_codings`: codings other than chunked are
kept for the client to undo, never dropped; `chunked` applied twice or under another coding is
a 502.
"""

from __future__ import annotations

TARGET_LIMIT = 8 * 1024  # request target bytes; more → 414
HEADERS_LIMIT = 32 * 1024  # header (and trailer) bytes of one request; more → 431
MAX_HEADERS = 100  # header fields of one request; more → 431

# Connection can name a header as hop-by-hop; these describe the message and are never removed.
FRAMING = frozenset({b"content-length", b"transfer-encoding", b"host"})

# Headers the router writes itself. A name that differs from one of them only by `_` for `-`
# (`Content_Length`) is refused: CGI-style servers read both as the same variable.
ROUTER_OWNED = frozenset(
    {b"content-length", b"transfer-encoding", b"x-forwarded-for", b"x-forwarded-proto"}
)


def lookalike(lname: bytes) -> bool:
    return b"_" in lname and lname.replace(b"_", b"-") in ROUTER_OWNED


# Bytes allowed in a Host value: an RFC 3986 reg-name or IP literal and a port. The comma (a
# sub-delim) is left out: `Host: a, b` reads as two hosts to some servers.
_HOST_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%!$&'()*+;=:[]"


class Refused(Exception):
    """The request is refused with this status; the connection is closed after the answer."""

    def __init__(self, status: int, message: bytes) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message


def content_length(value: bytes) -> int:
    v = value.strip(b" \t")
    if not v.isdigit() or len(v) > 18:  # bytes.isdigit: ASCII digits only, so no sign
        raise Refused(400, b"invalid Content-Length: %s" % value[:40])
    return int(v)


def is_chunked(te: bytes, *, http11: bool, has_length: bool) -> bool:
    """Check a request's Transfer-Encoding value(s); True when the body is chunked."""
    if has_length:
        raise Refused(400, b"Content-Length and Transfer-Encoding together")
    if not http11:
        raise Refused(400, b"Transfer-Encoding in an HTTP/1.0 request")
    if te == b"chunked":
        return True
    codings = [c for c in (c.strip(b" \t").lower() for c in te.split(b",")) if c]
    if not codings or codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
        raise Refused(400, b"Transfer-Encoding must end with a single chunked")
    if len(codings) > 1:
        raise Refused(501, b"only Transfer-Encoding: chunked is implemented")
    return True


def response_codings(te: bytes) -> tuple[bytes, bool]:
    """Judge a response's Transfer-Encoding (RFC 9112 6.1, 6.3): the codings other than chunked,
    which the client must still undo (`, `-joined, b"" for none; `identity` means none), and
    whether the body is chunked (else it runs until the backend closes). Empty, or `chunked`
    anywhere but once at the end (applied twice, or under another coding), is a 502."""
    codings = [c for c in (c.strip(b" \t").lower() for c in te.split(b",")) if c]
    chunked = bool(codings) and codings[-1] == b"chunked"
    if chunked:
        codings.pop()
    elif not codings:
        raise Refused(502, b"backend sent an empty Transfer-Encoding")
    if b"chunked" in codings:
        raise Refused(502, b"backend sent Transfer-Encoding with chunked not once and last")
    return b", ".join(c for c in codings if c != b"identity"), chunked


def valid_host(value: bytes) -> bool:
    return not value.translate(None, _HOST_BYTES)


def _authority_key(authority: bytes, default_port: bytes) -> bytes:
    a = authority.lower()
    return a[: -len(default_port)] if a.endswith(default_port) else a


def origin_form(method: bytes, url: bytes, host: bytes | None) -> tuple[bytes, bytes | None]:
    """The target the backend gets and the Host it goes with (only for a non-`/` target)."""
    if url == b"*" and method == b"OPTIONS":
        return url, host
    start = url[:8].lower()
    if start.startswith(b"http://"):
        rest, default_port = url[7:], b":80"
    elif start.startswith(b"https://"):
        rest, default_port = url[8:], b":443"
    else:
        raise Refused(400, b"the request target must be /path or http://host/path")
    end = len(rest)
    for sep in (b"/", b"?"):
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    authority, path = rest[:end], rest[end:]
    if not authority or b"@" in authority or not valid_host(authority):
        raise Refused(400, b"invalid host in the request target")
    if host is not None and _authority_key(host, default_port) != _authority_key(
        authority, default_port
    ):
        raise Refused(400, b"the request target and Host name different hosts")
    if not path.startswith(b"/"):
        path = b"/" + path
    return path, authority
