"""The controller process: `python -m zerodown.api -f zerodown.yaml`.

Serves the API on a free loopback port (written to .zerodown/controller.json with its pid), runs
the reconcile loop, and exits after `zerodown down` has stopped every instance and the router.

The router is stopped only when the engine has finished `zerodown down`. If the engine ever ended
otherwise (it catches every error of a pass, so only a bug in the loop itself could do that), the
controller exits with status 1 and leaves the router and the instances serving, as after a
`kill -9`: the next `zerodown up` resumes.

Logs go to stdout (the CLI points it at .zerodown/logs/controller.log), as text or, with
`--log-format json` (or ZERODOWN_LOG_FORMAT=json), one JSON object per line.
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

from zerodown import logs
from zerodown.api.app import make_app
from zerodown.api.controller import Controller
from zerodown.control.client import controller_pid, controller_url
from zerodown.core.errors import ZerodownError
from zerodown.paths import Paths
from zerodown.spec.load import load_spec

ROUTER_STOP_GRACE = 10.0  # seconds in-flight requests get when `down` stops the router


async def serve(paths: Paths) -> None:
    spec = load_spec(paths.spec)
    controller = Controller(paths, spec)
    url = ""  # this controller's API, once it listens (standbys are listed with theirs)
    controller.elect(lambda: url)
    app = make_app(controller, paths.token())
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,  # any free port: the one bound is written to controller.json
            log_level="warning",
            log_config=None,  # uvicorn's loggers go through ours (text or JSON)
            lifespan="off",
            # open SDK change streams must not hold `zerodown down` for long
            timeout_graceful_shutdown=3,
        )
    )
    log = logging.getLogger("zerodown.controller")

    def announce() -> None:
        """controller.json names the leader, where the CLI sends commands."""
        paths.controller_file.write_text(json.dumps({"pid": os.getpid(), "url": url}))

    api = asyncio.create_task(server.serve(), name="api")
    while not server.started and not api.done():
        await asyncio.sleep(0.02)
    if not server.started:
        await api  # it could not start (uvicorn exits): that is the controller's error
        raise ZerodownError("the controller's API did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    controller.claim()  # with its URL, for the standbys' list and the commands they refuse
    engine = asyncio.create_task(controller.run(on_lead=announce), name="engine")
    leadership = controller.leadership
    if leadership is None or leadership.acting or controller_url(paths) is None:
        announce()  # a standby does not hide a live leader from the CLI
    log.info(
        "controller %s on 127.0.0.1:%s (%s)",
        leadership.me if leadership else os.getpid(),
        port,
        leadership.role.value if leadership else "alone",
    )
    done, _ = await asyncio.wait({engine, api}, return_when=asyncio.FIRST_COMPLETED)
    finished_down = controller.engine.stopped.is_set()
    if finished_down:
        await controller.router.stop(grace=ROUTER_STOP_GRACE)
    elif engine in done:
        log.critical(
            "the reconcile loop ended unexpectedly; the router and the instances keep serving. "
            "Run `zerodown up` to start a new controller",
            exc_info=None if engine.cancelled() else engine.exception(),
        )
    server.should_exit = True
    await controller.engine.shutdown()
    engine.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await engine
    await api
    if leadership is not None:
        leadership.release()  # a standby takes over at once, not after the lease
    await controller.aclose()
    if controller_pid(paths) == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            paths.controller_file.unlink()
    if api in done and not api.cancelled() and api.exception() is not None:
        raise api.exception()  # type: ignore[misc]
    if engine in done and not finished_down:
        sys.exit(1)


def main() -> None:
    parser = argparse.ArgumentParser(prog="zerodown-controller")
    parser.add_argument("-f", "--file", default="zerodown.yaml")
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=os.environ.get("ZERODOWN_LOG_FORMAT", "text"),
        help="text (default) or json: one object per line with ts, level, logger, message",
    )
    args = parser.parse_args()
    if args.log_format not in logs.FORMATS:
        parser.error(f"ZERODOWN_LOG_FORMAT must be one of {', '.join(logs.FORMATS)}")
    logs.setup(args.log_format)
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
