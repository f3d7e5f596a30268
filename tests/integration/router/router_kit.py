"""Helpers of the router tests: real router and backend processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from support.services import free_port, port_open
from zerodown.core.routes import Backend, Pool, RouteTable
from zerodown.routers.proxy.client import router_command

HERE = Path(__file__).parent


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


@dataclass
class BackendProc:
    name: str
    port: int
    proc: subprocess.Popen[bytes] | None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def backend(self) -> Backend:
        return Backend(self.address, f"{self.name}-{self.port}")

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@dataclass
class RouterProc:
    port: int
    preview_port: int
    admin_socket: Path
    state_file: Path
    proc: subprocess.Popen[bytes]
    admin_port: int | None = None
    token: str | None = None
    log_path: Path | None = None
    _admin: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def preview_url(self) -> str:
        return f"http://127.0.0.1:{self.preview_port}"

    def admin(self) -> httpx.Client:
        if self._admin is None:
            self._admin = httpx.Client(
                transport=httpx.HTTPTransport(uds=str(self.admin_socket)),
                base_url="http://router",
                timeout=10,
                trust_env=False,
            )
        return self._admin

    def apply(self, table: RouteTable) -> None:
        r = self.admin().put("/routes", json=table.to_json())
        assert r.status_code == 200, r.text

    def stats(self) -> dict[str, Any]:
        r = self.admin().get("/stats")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.close_admin()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path else ""


def start_backend(
    name: str, port: int | None = None, script: str = "backend_app.py"
) -> BackendProc:
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / script), str(port), name],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    b = BackendProc(name, port, proc)
    try:
        wait_for(lambda: port_open("127.0.0.1", port), f"backend {name} on port {port}")
    except AssertionError:
        b.kill()
        raise
    return b


def dead_backend() -> BackendProc:
    """An address where nothing listens: connecting is refused."""
    return BackendProc("dead", free_port(), None)


def start_router(
    tmp: Path,
    *,
    state_file: Path | None = None,
    admin_listen: bool = False,
    header_timeout: float | None = None,
    extra: tuple[str, ...] = (),
) -> RouterProc:
    port, preview_port = free_port(), free_port()
    admin_socket = tmp / f"admin-{port}.sock"
    state_file = state_file or tmp / "state.json"
    admin_port = token = token_file = None
    if admin_listen:
        admin_port = free_port()
        token = "s3cret-token"
        token_file = tmp / "token"
        token_file.write_text(token + "\n")
    argv = router_command(
        listen=f"127.0.0.1:{port}",
        preview_listen=f"127.0.0.1:{preview_port}",
        admin_socket=str(admin_socket),
        state_file=str(state_file),
        admin_listen=f"127.0.0.1:{admin_port}" if admin_port else None,
        admin_token_file=str(token_file) if token_file else None,
        header_timeout=header_timeout,
    )
    log_path = tmp / f"router-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([*argv, *extra], stdout=log, stderr=subprocess.STDOUT)
    r = RouterProc(port, preview_port, admin_socket, state_file, proc, admin_port, token, log_path)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"router exited with {proc.returncode}:\n{r.log()}")
        if not admin_socket.exists():
            return False
        try:
            return r.admin().get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, "the router's admin socket")
        wait_for(lambda: port_open("127.0.0.1", port), "the router's listener")
    except AssertionError:
        r.stop(signal.SIGKILL)
        raise
    return r


def table(generation: int, *pools: tuple[str, int, list[BackendProc]], **kw: Any) -> RouteTable:
    return RouteTable(
        generation=generation,
        pools=tuple(Pool(name, w, tuple(b.backend() for b in bs)) for name, w, bs in pools),
        **kw,
    )


def raw_http(port: int, data: bytes, *, timeout: float = 5.0, until_close: bool = True) -> bytes:
    """Send raw bytes to 127.0.0.1:port and read the answer until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        with contextlib.suppress(TimeoutError):
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if not until_close:
                    break
        return b"".join(chunks)


def name_of(response: httpx.Response) -> str:
    return str(json.loads(response.content)["name"])


def established_to(port: int) -> int:
    """TCP connections on this machine, in state ESTABLISHED, whose remote port is `port`."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None


class ResponseReader:
    """Reads the router's responses from a raw socket (it always frames bodies; HEAD aside)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""
        self.eof = False

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise EOFError
        self.buf += data

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self, *, head: bool = False) -> Response:
        """The next response; EOFError when the router closed the connection before it."""
        status = int(self._line().split(b" ", 2)[1])
        headers = []
        while line := self._line():
            name, value = line.split(b":", 1)
            headers.append((name.decode(), value.strip().decode("latin-1")))
        r = Response(status, headers, b"")
        if head or status < 200 or status in (204, 304):
            return r
        te = r.header("transfer-encoding") or ""
        if te.rsplit(",", 1)[-1].strip().lower() == "chunked":  # `gzip, chunked` is chunked too
            while size := int(self._line().split(b";")[0], 16):
                r.body += self._take(size)
                self._take(2)
            while self._line():
                pass
        else:
            r.body = self._take(int(r.header("content-length") or 0))
        return r

    def closed(self) -> bool:
        """True when the router closes the connection with nothing more to read."""
        if self.buf:
            return False
        try:
            self._more()
        except EOFError:
            return True
        except ConnectionResetError:
            return True
        return False
