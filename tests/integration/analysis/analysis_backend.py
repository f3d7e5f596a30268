"""A release for the analysis tests: `python analysis_backend.py PORT FAIL_EVERY DELAY_MS`.

Plain ASGI under uvicorn on 127.0.0.1. Every FAIL_EVERY-th request answers 500 (0 = never); every
answer waits DELAY_MS first, so a "slow release" is a real one.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import uvicorn

PORT, FAIL_EVERY, DELAY = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000
served = 0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global served
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    served += 1
    failing = FAIL_EVERY > 0 and served % FAIL_EVERY == 0
    if DELAY:
        await asyncio.sleep(DELAY)
    status = 500 if failing else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"fail" if failing else b"ok"})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning", access_log=False)
