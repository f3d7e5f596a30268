"""`zerodown router restart`, `zerodown hold [--max 30s]`, `zerodown release`: the router's own
operations, through the controller API (which needs the admin token in .zerodown/token).

Registered by the main CLI with `register_router_commands(app, run_guarded)`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from zerodown.control.client import Client
from zerodown.paths import Paths
from zerodown.spec.types import format_duration, parse_duration

router_app = typer.Typer(help="The router's process.", no_args_is_help=True)
_out = Console()

SpecFile = Annotated[
    Path, typer.Option("-f", "--file", help="the spec file; state lives beside it in .zerodown/")
]
MAX_HOLD = 3600.0


def _hold_duration(value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if not 0 < seconds <= MAX_HOLD:
        raise typer.BadParameter(f"{value}: a hold lasts more than 0 and at most 1h")
    return seconds


def register_router_commands(app: typer.Typer, guarded: Callable[[Callable[[], int]], int]) -> None:
    def post(file: Path, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with Client(Paths.for_spec(file)) as client:
            return dict(client.post(path, body))

    @router_app.command("restart")
    def restart(file: SpecFile = Path("zerodown.yaml")) -> None:
        """Replace the router process by a new one (e.g. after upgrading zerodown): the new one
        takes the listening sockets over, the old one finishes its requests; none is refused."""

        def go() -> int:
            r = post(file, "/api/router/restart", {})
            workers = r.get("workers") or [r]  # router.workers: each hands over its own
            for w in workers:
                _out.print(
                    f"router restarted: pid {w['old_pid']} handed its sockets to pid {w['pid']}; "
                    "the old one exits once its requests are answered"
                )
            return 0

        raise typer.Exit(guarded(go))

    @app.command("hold")
    def hold(
        file: SpecFile = Path("zerodown.yaml"),
        max_: Annotated[
            float,
            typer.Option(
                "--max",
                parser=_hold_duration,
                metavar="DURATION",
                show_default="30s",
                help="the longest a request waits; after that the held ones get 503 + Retry-After",
            ),
        ] = 30.0,
    ) -> None:
        """Hold new requests in the router (they wait, in order) until `zerodown release`."""

        def go() -> int:
            post(file, "/api/router/hold", {"max": max_})
            _out.print(
                f"holding new requests for at most {format_duration(max_)}: "
                "`zerodown release` sends them on, in order"
            )
            return 0

        raise typer.Exit(guarded(go))

    @app.command("release")
    def release(file: SpecFile = Path("zerodown.yaml")) -> None:
        """Send the held requests on, in order; new requests flow again."""

        def go() -> int:
            r = post(file, "/api/router/release", {})
            _out.print(f"released {r['released']} held request{'s' if r['released'] != 1 else ''}")
            return 0

        raise typer.Exit(guarded(go))

    app.add_typer(router_app, name="router")
