"""A real HTTP server on 127.0.0.1 whose answers a test sets (web, smoke and webhook tests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Html(str):
    """A body served as text/html (a page for a browser), not text/plain."""


Answer = tuple[int, str | bytes | dict[str, Any] | list[Any]]


@dataclass
class Site:
    """Routes (method, path) to a function of the request body that returns (status, body)."""

    port: int = 0
    routes: dict[tuple[str, str], Callable[[bytes], Answer]] = field(default_factory=dict)
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, method: str, path: str, answer: Callable[[bytes], Answer] | Answer) -> None:
        self.routes[(method, path)] = answer if callable(answer) else (lambda _body: answer)


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            with site.lock:
                site.requests.append((self.command, self.path, body))
            answer = site.routes.get((self.command, path))
            status, content = answer(body) if answer else (404, "no such route")
            if isinstance(content, dict | list):
                data, kind = json.dumps(content).encode(), "application/json"
            elif isinstance(content, Html):
                data, kind = content.encode(), "text/html; charset=utf-8"
            elif isinstance(content, str):
                data, kind = content.encode(), "text/plain"
            else:
                data, kind = content, "application/octet-stream"
            try:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test): nothing to answer

        do_GET = do_POST = do_PUT = do_DELETE = _serve

    return Handler


@contextmanager
def serve_site() -> Iterator[Site]:
    s = Site()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(s))
    server.daemon_threads = True
    s.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield s
    server.shutdown()
    server.server_close()
    thread.join(5)
