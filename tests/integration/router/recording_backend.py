"""A recording HTTP/1.1 backend for the smuggling tests: raw sockets, a strict parser, a log.

It runs in threads of the test process and logs every request it parsed (method, target,
headers as received, body after de-chunking, and which connection it came on). Anything it
cannot parse strictly (bare LF, a bad request line, Content-Length with Transfer-Encoding, a
transfer coding other than chunked, a bad chunk) is logged as a problem and the connection is
closed: the router must never send such a thing.

Each request is answered `200` with the body `METHOD TARGET`, so a client can tell whether the
response it got is its own. Special targets:
  /slow...        answered after 0.5 s (the request a smuggler would want to queue)
  /extra...       the response is followed, in the same write, by a second unrequested one
  /late-extra...  unrequested bytes follow 0.2 s after the response, while the connection idles
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass

_REQUEST_LINE = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.1")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*")
STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"


@dataclass(frozen=True)
class Seen:
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    conn: int  # the backend connection it arrived on (1, 2, ...)

    def values(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]


class Malformed(Exception):
    pass


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            if not self._more():
                raise EOFError
        line, self.buf = self.buf.split(b"\n", 1)
        if not line.endswith(b"\r") or b"\r" in line[:-1]:
            raise Malformed(f"line not ended by CRLF: {line[:80]!r}")
        return line[:-1]

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise Malformed("connection closed inside a body")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data


class RecordingBackend:
    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        self.ended: set[int] = set()  # connections the router closed (or that failed)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def since(self, n: int) -> list[Seen]:
        with self.lock:
            return self.seen[n:]

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        with self.lock:
            for c in self.conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()

    def _accept(self) -> None:
        n = 0
        while not self.closed:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            n += 1
            with self.lock:
                self.conns.append(sock)
            threading.Thread(target=self._serve, args=(sock, n), daemon=True).start()

    def _serve(self, sock: socket.socket, conn: int) -> None:
        reader = _Reader(sock)
        try:
            while True:
                seen = self._read_request(reader, conn)
                with self.lock:
                    self.seen.append(seen)
                self._answer(sock, seen)
        except EOFError:
            pass
        except Malformed as e:
            with self.lock:
                self.problems.append(f"connection {conn}: {e}")
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sock.close()
            with self.lock:
                self.ended.add(conn)

    def _read_request(self, reader: _Reader, conn: int) -> Seen:
        line = reader.line()
        m = _REQUEST_LINE.fullmatch(line)
        if m is None:
            raise Malformed(f"bad request line {line[:80]!r}")
        headers: list[tuple[str, str]] = []
        while True:
            line = reader.line()
            if not line:
                break
            f = _FIELD.fullmatch(line)
            if f is None or any((b < 0x20 and b != 0x09) or b == 0x7F for b in f.group(2)):
                raise Malformed(f"bad header line {line[:80]!r}")
            headers.append((f.group(1).decode(), f.group(2).decode("latin-1")))
        names = [n.lower() for n, _ in headers]
        te = [v for n, v in headers if n.lower() == "transfer-encoding"]
        cl = [v for n, v in headers if n.lower() == "content-length"]
        if te and cl:
            raise Malformed("Content-Length and Transfer-Encoding together")
        if names.count("host") != 1:
            raise Malformed(f"{names.count('host')} Host headers")
        if te:
            if te != ["chunked"]:
                raise Malformed(f"Transfer-Encoding {te}")
            body = self._chunked(reader)
        elif cl:
            if len(cl) != 1 or not cl[0].isdigit():
                raise Malformed(f"Content-Length {cl}")
            body = reader.exactly(int(cl[0]))
        else:
            body = b""
        return Seen(m.group(1).decode(), m.group(2).decode(), tuple(headers), body, conn)

    @staticmethod
    def _chunked(reader: _Reader) -> bytes:
        body = b""
        while True:
            size_line = reader.line()
            if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size_line):
                raise Malformed(f"bad chunk size line {size_line[:80]!r}")
            size = int(size_line, 16)
            if size == 0:
                break
            body += reader.exactly(size)
            if reader.exactly(2) != b"\r\n":
                raise Malformed("chunk data not followed by CRLF")
        while reader.line():  # trailer fields
            pass
        return body

    @staticmethod
    def _answer(sock: socket.socket, seen: Seen) -> None:
        body = f"{seen.method} {seen.target}".encode()
        if seen.target.startswith("/slow"):
            time.sleep(0.5)
        response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % (
            len(body)
        )
        if seen.method != "HEAD":
            response += body
        if seen.target.startswith("/extra"):
            response += STRAY
        sock.sendall(response)
        if seen.target.startswith("/late-extra"):
            time.sleep(0.2)
            sock.sendall(STRAY)
