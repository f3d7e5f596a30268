"""The controller process: `python -m zerodown.api -f zerodown.yaml`.

Serves the API on a free loopback port (written to .zerodown/controller.json with its pid), runs
the reconcile loop, and exits after `zerodown down` has stopped every instance and the router.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys

import uvicorn

from zerodown.api.app import make_app
from zerodown.api.controller import Controller
from zerodown.core.errors import ZerodownError
from zerodown.paths import Paths
from zerodown.platforms.local import free_port
from zerodown.spec.load import load_spec


async def serve(paths: Paths) -> None:
    spec = load_spec(paths.spec)
    controller = Controller(paths, spec)
    controller.resume_after_down()
    port = free_port()
    app = make_app(controller, paths.token())
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            # open SDK change streams must not hold `zerodown down` for long
            timeout_graceful_shutdown=3,
        )
    )
    engine = asyncio.create_task(controller.engine.run(), name="engine")
    api = asyncio.create_task(server.serve(), name="api")
    while not server.started and not api.done():
        await asyncio.sleep(0.02)
    paths.controller_file.write_text(
        json.dumps({"pid": os.getpid(), "url": f"http://127.0.0.1:{port}"})
    )
    logging.getLogger("zerodown.controller").info("controller on 127.0.0.1:%s", port)
    done, _ = await asyncio.wait({engine, api}, return_when=asyncio.FIRST_COMPLETED)
    if engine in done:
        await controller.stop_router()
    server.should_exit = True
    await controller.engine.shutdown()
    engine.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await engine
    await api
    await controller.router.aclose()
    controller.store.close()
    with contextlib.suppress(FileNotFoundError):
        paths.controller_file.unlink()
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def main() -> None:
    parser = argparse.ArgumentParser(prog="zerodown-controller")
    parser.add_argument("-f", "--file", default="zerodown.yaml")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    try:
        import uvloop
    except ImportError:
        uvloop = None  # type: ignore[assignment]
    try:
        coro = serve(Paths.for_spec(args.file))
        if uvloop is not None:
            uvloop.run(coro)
        else:
            asyncio.run(coro)
    except ZerodownError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
