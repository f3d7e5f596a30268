"""The sample service: a small HTTP/1.1 server on the standard library only, so `python3 app.py`
runs it anywhere. Started as `python3 app.py PORT VERSION`.

  GET /          200 "ok VERSION"        (X-Version header on every response)
  GET /healthz   200 while alive          GET /ready  200 while ready
  GET /slow?ms=N answers after N ms       POST /upload  answers the byte count it read
  GET /sse       five server-sent events
  POST /admin/ready?on=0|1, /admin/live?on=0|1   flip this instance's readiness or liveness
  POST /admin/hang?on=0|1    its probe endpoints (/healthz, /ready) stop answering, or answer
  POST /admin/slow?ms=N      every other answer comes N ms late (0: back to normal)

Faults for demos and tests come from $ZD_APP_FAULTS, JSON keyed by version, for example
{"v3": {"fail_rate": 0.2}, "v4": {"latency_ms": 300}, "v9": {"never_healthy": true}}.
SIGTERM: stop accepting, finish the requests in flight, exit 0.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys

PORT = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "8000"))
VERSION = sys.argv[2] if len(sys.argv) > 2 else os.environ.get("APP_VERSION", "dev")
# In a container on a bridge network, 0.0.0.0: its 127.0.0.1 is its own, unreachable from outside
HOST = os.environ.get("APP_HOST", "127.0.0.1")
FAULTS = json.loads(os.environ.get("ZD_APP_FAULTS") or "{}").get(VERSION, {})
FAIL_RATE = float(FAULTS.get("fail_rate", 0))
LATENCY = float(FAULTS.get("latency_ms", 0)) / 1000
NEVER_HEALTHY = bool(FAULTS.get("never_healthy", False))
STARTUP_DELAY = float(FAULTS.get("startup_delay_ms", 0)) / 1000

inflight = 0
closing = False
ready_switch = True  # flipped by POST /admin/ready, to show probes taking an instance out
live_switch = True
hang_probes = False  # POST /admin/hang: a probe endpoint that hangs (the chaos rehearsal)
slow_ms = 0.0  # POST /admin/slow: a slow backend
connections: set[asyncio.StreamWriter] = set()


def response(status: int, body: bytes, ctype: str = "text/plain") -> bytes:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 503: "Unavailable"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'OK')}\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nX-Version: {VERSION}\r\n"
    )
    if closing:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


async def handle(method: str, target: str, body: bytes, writer: asyncio.StreamWriter) -> None:
    global ready_switch, live_switch, hang_probes, slow_ms
    path, _, query = target.partition("?")
    params = dict(p.partition("=")[::2] for p in query.split("&") if p)
    if path == "/admin/hang" and method == "POST":
        hang_probes = params.get("on", "1") == "1"
        writer.write(response(200, f"probes {'hang' if hang_probes else 'answer'}\n".encode()))
        return
    if path == "/admin/slow" and method == "POST":
        slow_ms = float(params.get("ms", "0"))
        writer.write(response(200, f"slow {slow_ms:g} ms\n".encode()))
        return
    if path in ("/healthz", "/ready"):
        while hang_probes:  # the probe times out; it answers again once released
            await asyncio.sleep(0.05)
    elif slow_ms:
        await asyncio.sleep(slow_ms / 1000)
    if path in ("/admin/ready", "/admin/live") and method == "POST":
        on = params.get("on", "1") == "1"
        if path == "/admin/ready":
            ready_switch = on
        else:
            live_switch = on
        writer.write(response(200, f"{path[7:]} {'on' if on else 'off'}\n".encode()))
        return
    if path == "/healthz":
        ok = not NEVER_HEALTHY and live_switch
        writer.write(response(200 if ok else 500, b"alive\n" if ok else b"unhealthy\n"))
        return
    if path == "/ready":
        ok = not NEVER_HEALTHY and not closing and ready_switch
        writer.write(response(200 if ok else 503, b"ready\n" if ok else b"not ready\n"))
        return
    if LATENCY:
        await asyncio.sleep(LATENCY)
    if path == "/slow":
        await asyncio.sleep(int(params.get("ms", "100")) / 1000)
    if path == "/sse":
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Version: {VERSION}\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        for n in range(5):
            event = f"data: {VERSION} {n}\n\n".encode()
            writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.write(b"0\r\n\r\n")
        return
    if FAIL_RATE and random.random() < FAIL_RATE:
        writer.write(response(500, f"injected failure {VERSION}\n".encode()))
        return
    if path == "/upload":
        writer.write(response(200, f"{len(body)}\n".encode()))
        return
    if path in ("/", "/me", "/api/me") or path.startswith("/slow"):
        writer.write(response(200, f"ok {VERSION}\n".encode()))
        return
    writer.write(response(404, b"not found\n"))


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global inflight
    connections.add(writer)
    try:
        while not closing:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = ([*lines[0].split(" "), "", ""])[:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            inflight += 1
            try:
                length = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(length) if length else b""
                await handle(method, target, body, writer)
                await writer.drain()
            finally:
                inflight -= 1
            if headers.get("connection", "").lower() == "close":
                return
    except ConnectionError:
        return
    finally:
        connections.discard(writer)
        writer.close()


async def main() -> None:
    global closing
    if STARTUP_DELAY:
        await asyncio.sleep(STARTUP_DELAY)
    server = await asyncio.start_server(serve_connection, HOST, PORT, backlog=1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    closing = True
    server.close()
    deadline = loop.time() + 30
    while inflight and loop.time() < deadline:
        await asyncio.sleep(0.01)
    for writer in list(connections):
        writer.close()
    # Let the idle keep-alive handlers see their connection close and end, so nothing is
    # left for asyncio.run to cancel on the way out.
    for _ in range(50):
        if not connections:
            break
        await asyncio.sleep(0.01)


if __name__ == "__main__":
    asyncio.run(main())
