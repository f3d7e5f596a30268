"""`python -m zerodown.routers.proxy`: run the built-in router.

python -m zerodown.routers.proxy --listen 127.0.0.1:8080 [--preview-listen 127.0.0.1:8081]
    --admin-socket PATH --state-file PATH [--admin-listen 127.0.0.1:PORT --admin-token-file PATH]
    [--header-timeout SECONDS] [--slow-clients-per-address N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path

from zerodown.routers.proxy.events import log
from zerodown.routers.proxy.server import (
    HEADER_TIMEOUT,
    SLOW_HEADS_PER_ADDRESS,
    Options,
    serve,
)
from zerodown.routers.proxy.statefile import StateFileError, load_state
from zerodown.routers.proxy.tls import CertPair
from zerodown.routers.proxy.validate import parse_address


def _address(value: str) -> str:
    try:
        parse_address(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def parse_args(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m zerodown.routers.proxy",
        description="zerodown's built-in HTTP/1.1 router (data plane + admin API).",
    )
    p.add_argument(
        "--listen", type=_address, default="127.0.0.1:8080", help="host:port for clients"
    )
    p.add_argument("--preview-listen", type=_address, help="host:port serving the preview release")
    p.add_argument("--admin-socket", type=Path, required=True, help="unix socket of the admin API")
    p.add_argument("--state-file", type=Path, required=True, help="where the route table is kept")
    p.add_argument("--admin-listen", type=_address, help="host:port of a TCP admin API (metrics)")
    p.add_argument("--admin-token-file", type=Path, help="file holding the TCP admin bearer token")
    p.add_argument("--samples", type=int, default=20_000, help="recent samples kept per release")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish on SIGTERM")
    p.add_argument("--connect-timeout", type=float, default=3.0, help="seconds to connect upstream")
    p.add_argument(
        "--header-timeout",
        type=float,
        default=HEADER_TIMEOUT,
        help="seconds a client gets to send its request headers (then 408)",
    )
    p.add_argument(
        "--slow-clients-per-address",
        type=int,
        default=SLOW_HEADS_PER_ADDRESS,
        help="connections of one client address that may be part-way through their headers",
    )
    p.add_argument(
        "--take-over",
        action="store_true",
        help="take the listening sockets of the router running on --admin-socket (a restart "
        "that refuses no connection); it finishes its requests and exits",
    )
    p.add_argument(
        "--tls-cert",
        action="append",
        default=[],
        metavar="CERT",
        help="TLS on the client listeners: a PEM certificate (chain); repeat with --tls-key for "
        "more names (SNI picks)",
    )
    p.add_argument("--tls-key", action="append", default=[], metavar="KEY", help="its key")
    p.add_argument(
        "--admin-tls",
        action="store_true",
        help="serve --admin-listen over TLS too, with the --tls-cert certificates",
    )
    p.add_argument(
        "--redirect-http", type=_address, help="host:port answering plain HTTP with a redirect"
    )
    p.add_argument(
        "--standby",
        action="store_true",
        help="start up, then wait for a byte on stdin before serving (the driver keeps one ready "
        "to replace a router that dies); end of input: exit",
    )
    p.add_argument(
        "--sibling-admin-socket",
        action="append",
        default=[],
        type=Path,
        metavar="PATH",
        help="another worker's admin socket (router.workers): --admin-listen reads are merged",
    )
    p.add_argument("--listen-fd", type=int, help="serve clients on this inherited socket")
    p.add_argument("--preview-listen-fd", type=int, help="the same for --preview-listen")
    a = p.parse_args(argv)
    token = None
    if a.admin_listen:
        if a.admin_token_file is None:
            p.error("--admin-listen needs --admin-token-file (state changes over TCP need a token)")
        try:
            token = a.admin_token_file.read_text().strip()
        except OSError as e:
            p.error(f"--admin-token-file {a.admin_token_file}: {e.strerror}")
        if not token:
            p.error(
                f"--admin-token-file {a.admin_token_file}: the file is empty; put a token in it"
            )
    if len(a.tls_cert) != len(a.tls_key):
        p.error("each --tls-cert needs its --tls-key (given in the same order)")
    if a.admin_tls and not (a.tls_cert and a.admin_listen):
        p.error("--admin-tls needs --admin-listen and --tls-cert/--tls-key")
    if a.redirect_http and not a.tls_cert:
        p.error("--redirect-http redirects to TLS: give --tls-cert and --tls-key too")
    if a.samples < 1:
        p.error("--samples must be at least 1")
    if not 0 < a.header_timeout <= 3600:  # also refuses nan
        p.error("--header-timeout must be more than 0 and at most 3600 seconds")
    if a.slow_clients_per_address < 1:
        p.error("--slow-clients-per-address must be at least 1")
    return Options(
        listen=a.listen,
        preview_listen=a.preview_listen,
        admin_socket=a.admin_socket,
        state_file=a.state_file,
        admin_listen=a.admin_listen,
        admin_token=token,
        samples=a.samples,
        drain_timeout=a.drain_timeout,
        connect_timeout=a.connect_timeout,
        header_timeout=a.header_timeout,
        max_slow_heads=a.slow_clients_per_address,
        take_over=a.take_over,
        listen_fd=a.listen_fd,
        preview_listen_fd=a.preview_listen_fd,
        tls=tuple(CertPair(c, k) for c, k in zip(a.tls_cert, a.tls_key, strict=True)),
        redirect_http=a.redirect_http,
        standby=a.standby,
        admin_tls=a.admin_tls,
        siblings=tuple(a.sibling_admin_socket),
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts.standby:
        with contextlib.suppress(ImportError):  # imported before waiting: start-up it saves
            import uvloop
        # Everything is imported: serving starts in milliseconds once the driver says so.
        if not sys.stdin.buffer.read(1):
            return 0  # the driver is gone, or needs no standby any more
    try:
        table = load_state(opts.state_file)
    except StateFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        import uvloop
    except ImportError:
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(serve(opts, table))
    except StateFileError as e:  # read again when taking over
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        log("router.failed", error=str(e))
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
