"""A little backend for the router tests: `python backend_app.py PORT NAME`.

Plain ASGI under uvicorn (a real HTTP server process on 127.0.0.1):
  GET  /            → {"name": NAME, "headers": {...}, "path": ...}
  POST /upload?delay=S → waits S s, streams the body, answers {"bytes": n, "sha256": hex}
  POST /echo        → sends each body piece back as soon as it arrives
  GET  /sse?n=N     → N server-sent events, 50 ms apart
  GET  /slow?s=S    → answers after S seconds
  GET  /big?n=N     → N bytes, streamed in 64 KiB pieces without Content-Length
  GET  /hop         → a response carrying hop-by-hop headers the router must strip
  GET  /status?code=C → answers with that status
  WebSocket /ws     → sends NAME, then echoes; /ws/close: sends NAME, then closes
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from typing import Any
from urllib.parse import parse_qs

import uvicorn

NAME = sys.argv[2] if len(sys.argv) > 2 else "backend"


async def _send_json(send: Any, data: Any, status: int = 200) -> None:
    body = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"x-backend", NAME.encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """/ws: says its name first, then echoes every message; /ws/close: the backend closes
    first, after its greeting."""
    msg = await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": NAME})
    if scope["path"] == "/ws/close":
        await send({"type": "websocket.close", "code": 1000})
        return
    while True:
        msg = await receive()
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            await send({"type": "websocket.send", "text": msg["text"]})
        else:
            await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _websocket(scope, receive, send)
        return
    path = scope["path"]
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    headers: dict[str, str] = {}
    for k, v in scope["headers"]:
        name = k.decode()
        headers[name] = headers[name] + "," + v.decode() if name in headers else v.decode()
    if path == "/upload":
        await asyncio.sleep(float(query.get("delay", "0")))  # uvicorn stops reading meanwhile
        h = hashlib.sha256()
        n = 0
        while True:
            msg = await receive()
            chunk = msg.get("body", b"")
            n += len(chunk)
            h.update(chunk)
            if not msg.get("more_body"):
                break
        await _send_json(send, {"name": NAME, "bytes": n, "sha256": h.hexdigest()})
    elif path == "/sse":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream"),
                    (b"cache-control", b"no-cache"),
                ],
            }
        )
        for i in range(int(query.get("n", "5"))):
            await send(
                {"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True}
            )
            await asyncio.sleep(float(query.get("every", "0.05")))
        await send({"type": "http.response.body", "body": b""})
    elif path == "/echo":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:
            msg = await receive()
            if msg.get("body"):
                await send({"type": "http.response.body", "body": msg["body"], "more_body": True})
            if not msg.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b""})
    elif path == "/slow":
        await asyncio.sleep(float(query.get("s", "1")))
        await _send_json(send, {"name": NAME, "slept": float(query.get("s", "1"))})
    elif path == "/big":
        n = int(query.get("n", "1000000"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        piece = b"x" * 65536
        while n > 0:
            await send({"type": "http.response.body", "body": piece[:n], "more_body": True})
            n -= len(piece)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/hop":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"connection", b"x-private"),
                    (b"x-private", b"secret"),
                    (b"keep-alive", b"timeout=5"),
                    (b"proxy-authenticate", b"Basic"),
                    (b"x-kept", b"yes"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(headers).encode()})
    elif path == "/status":
        await _send_json(send, {"name": NAME}, status=int(query.get("code", "200")))
    else:
        while (await receive()).get("more_body"):
            pass
        peer_port = scope["client"][1] if scope.get("client") else 0
        await _send_json(
            send,
            {"name": NAME, "path": path, "headers": headers, "peer_port": peer_port},
        )


if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        http="httptools",
        lifespan="on",
        access_log=False,
    )
