"""`zerodown`: thin commands that call the controller API and render what it says."""

from __future__ import annotations

import json
import time
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape

from zerodown.cli.export import export_app
from zerodown.cli.flags import flags_app, set_connection_defaults
from zerodown.cli.keys import keys_app
from zerodown.cli.migrate import migrate_app
from zerodown.cli.render import controller_health, esc, history_view, status_view
from zerodown.control.client import ApiError, Client, NotRunning, controller_url, pid_alive
from zerodown.control.offline import has_release, left_running
from zerodown.control.process import shut_down, start_controller, why_it_stopped
from zerodown.core.errors import SpecError, ZerodownError
from zerodown.paths import Paths
from zerodown.spec.load import json_schema, load_spec
from zerodown.spec.model import Spec
from zerodown.spec.types import MAX_DURATION, check_version, format_duration, parse_duration

app = typer.Typer(
    name="zerodown",
    help="Deploy a new version of a web service without a single failed request.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(migrate_app, name="migrate")
app.add_typer(keys_app, name="keys")
app.add_typer(flags_app, name="flags")
app.add_typer(export_app, name="export")
console = Console()
err = Console(stderr=True)


def _running_controller() -> tuple[str | None, str | None]:
    """`zerodown flags` talks to the controller of ./zerodown.yaml unless told otherwise."""
    paths = Paths.for_spec("zerodown.yaml")
    url = controller_url(paths)
    return url, paths.token() if paths.token_file.exists() else None


set_connection_defaults(_running_controller)

SpecFile = Annotated[
    Path, typer.Option("-f", "--file", help="the spec file; state lives beside it in .zerodown/")
]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]
Wait = Annotated[bool, typer.Option("--wait", help="follow the rollout until it ends")]


def _duration(value: Any) -> float:
    """A duration on the command line is written as in the spec: 20s, 2m, 500ms (or seconds)."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    if seconds > MAX_DURATION:
        raise typer.BadParameter(f"{value} is too long; use at most {MAX_DURATION / 86400:g}d")
    return seconds


def timeout_option(default: float) -> Any:
    return typer.Option(
        default,
        "--timeout",
        parser=_duration,
        metavar="DURATION",
        show_default=format_duration(default),
        help="give up waiting after this long: 90s, 2m, 500ms",
    )


# Exit codes, so a script can tell what happened.
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_FAILED, EXIT_ABORTED, EXIT_PAUSED_TIMEOUT, EXIT_SUPERSEDED = 3, 4, 5, 6
FINAL = {
    "completed": EXIT_OK,
    "failed": EXIT_FAILED,
    "aborted": EXIT_ABORTED,
    "superseded": EXIT_SUPERSEDED,
}


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def valid_version(version: str) -> str:
    """Checked before anything runs: a bad version records nothing and starts nothing."""
    try:
        return check_version(version)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)


def run_guarded(fn: Any) -> Any:
    try:
        return fn()
    except SpecError as exc:
        fail(str(exc), EXIT_USAGE)
    except NotRunning as exc:
        fail(str(exc))
    except ApiError as exc:
        fail(str(exc), EXIT_USAGE if exc.status in (400, 409, 422) else EXIT_ERROR)
    except ZerodownError as exc:
        fail(str(exc))


def spec_dict(file: Path) -> dict[str, Any]:
    spec = load_spec(file)
    return spec.model_dump(mode="json", exclude_defaults=False)


@app.command()
def init(
    file: SpecFile = Path("zerodown.yaml"), force: bool = typer.Option(False, "--force")
) -> None:
    """Write a commented zerodown.yaml and the sample app.py beside it."""
    if file.exists() and not force:
        fail(f"{file} exists; pass --force to overwrite it", EXIT_USAGE)
    demo = resources.files("zerodown.demo")
    file.write_text(demo.joinpath("zerodown.yaml").read_text())
    app_py = file.parent / "app.py"
    if not app_py.exists():
        app_py.write_text(demo.joinpath("app.py").read_text())
    console.print(f"wrote {esc(file)} and {esc(app_py)}. Next: [bold]zerodown up --version v1[/]")


@app.command()
def schema() -> None:
    """Print the JSON Schema of zerodown.yaml."""
    print(json_schema())


class LogFormat(StrEnum):
    text = "text"
    json = "json"


@app.command()
def up(
    file: SpecFile = Path("zerodown.yaml"),
    version: Annotated[
        str | None, typer.Option("--version", help="the release to start with")
    ] = None,
    timeout: float = timeout_option(120.0),
    log_format: Annotated[
        LogFormat | None,
        typer.Option("--log-format", help="the controller's log lines: text (default) or json"),
    ] = None,
) -> None:
    """Start the router and the controller in the background and launch the service."""
    if version is not None:
        valid_version(version)

    def go() -> int:
        spec = load_spec(file)
        paths = Paths.for_spec(file)
        started = None
        if controller_url(paths) is None:
            if version is None and not has_release(paths, spec):
                fail(NOTHING_DEPLOYED, EXIT_USAGE)
            started = start_controller(paths, log_format=log_format.value if log_format else None)
        try:
            code = _bring_up(paths, spec, version, timeout=timeout)
        except NotRunning:
            if started is not None and not pid_alive(started):
                raise NotRunning(f"the controller stopped: {why_it_stopped(paths)}") from None
            raise
        if code == EXIT_OK:
            scheme = "https" if spec.router.tls else "http"
            served = _first_answer(f"{scheme}://{spec.router.listen}/", timeout=10)
            console.print(f"[green]serving[/] on http://{esc(spec.router.listen)} ({esc(served)})")
        return code

    raise typer.Exit(run_guarded(go))


NOTHING_DEPLOYED = "nothing is deployed yet: pass --version, e.g. `zerodown up --version v1`"


def _bring_up(paths: Paths, spec: Spec, version: str | None, *, timeout: float) -> int:
    with Client(paths) as client:
        status = client.get("/api/status")["status"]
        rollout = status["rollout"]
        under_way = rollout is not None and rollout["phase"] in ("progressing", "paused")
        if status["stable"] is None and not under_way:
            if version is None:
                fail(NOTHING_DEPLOYED, EXIT_USAGE)
            body = {"version": version, "spec": spec.model_dump(mode="json"), "who": "zerodown up"}
            client.post("/api/deploy", body)
        elif version is not None and version not in (
            status["stable"],
            rollout and rollout["version"],
        ):
            console.print(
                f"[yellow]{esc(status['stable'])} is deployed; use "
                f"`zerodown deploy {esc(version)}` to change it[/]"
            )
        return follow(client, timeout=timeout, until_serving=True)


def _first_answer(url: str, *, timeout: float) -> str:
    """`up` returns once a request through the router gets an answer from the service."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            # Whether the router answers, on loopback: its certificate's names are not the point.
            response = httpx.get(url, timeout=2, verify=False)
            if response.status_code < 500 or time.monotonic() > deadline:
                return f"GET / → {response.status_code}"
        except httpx.TransportError as exc:
            if time.monotonic() > deadline:
                fail(f"the router does not answer on {url}: {exc}")
        time.sleep(0.1)


@app.command()
def deploy(
    version: str,
    file: SpecFile = Path("zerodown.yaml"),
    wait: Wait = False,
    strategy: Annotated[
        str | None, typer.Option("--strategy", help="rolling, blue-green or canary, this once")
    ] = None,
    timeout: float = timeout_option(1800.0),
    no_lint: Annotated[
        bool, typer.Option("--no-lint", help="deploy even when `zerodown lint` finds errors")
    ] = False,
) -> None:
    """Roll out VERSION. Deploying the version already rolling out attaches to it."""
    valid_version(version)

    def go() -> int:
        spec = spec_dict(file)
        if not no_lint:
            _lint_before_deploy(file)
        with Client(Paths.for_spec(file)) as client:
            seen = max((e["id"] for e in client.get("/api/events", limit=1)), default=0)
            result = client.post(
                "/api/deploy", {"version": version, "spec": spec, "strategy": strategy}
            )
            if result.get("unchanged"):
                console.print(f"{esc(version)} is already serving; nothing to do")
                return EXIT_OK
            verb = "attached to" if result.get("attached") else "started"
            console.print(f"{verb} revision {result['revision']}: {esc(version)}")
            return follow(client, timeout=timeout, after=seen) if wait else EXIT_OK

    raise typer.Exit(run_guarded(go))


def _lint_before_deploy(file: Path) -> None:
    """`zerodown lint` first: errors refuse the deploy (exit 2), warnings are shown."""
    from zerodown.cli.plan import lint_file, render_findings

    findings = [f for f in lint_file(file) if f.severity != "note"]
    if findings:
        err.print(render_findings(findings, str(file)), markup=False, highlight=False)
    if any(f.severity == "error" for f in findings):
        fail("lint found errors: fix them, or deploy with --no-lint", EXIT_USAGE)


def follow(client: Client, *, timeout: float, until_serving: bool = False, after: int = 0) -> int:
    """Live progress until the rollout ends; the exit code says how it ended.

    With `until_serving` (`zerodown up`), a service that serves is success even when its last
    rollout was aborted or failed: the note says so, the exit code is 0."""
    deadline = time.monotonic() + timeout
    last_event, last_error = after, None
    interactive = console.is_terminal
    live = Live(console=console, auto_refresh=False) if interactive else None
    if live:
        live.start()
    try:
        while True:
            state = client.get("/api/status")
            for event in state["events"]:
                if event["id"] > last_event:
                    last_event = event["id"]
                    if not interactive:
                        print(f"  {event['kind']:>9}  {event['message']}", flush=True)
            if live:
                live.update(status_view(state), refresh=True)
            else:
                last_error = _print_controller_error(state, last_error)
            # The status is saved before its routes are applied: what it says is only so once
            # the router runs its table (false for a moment while nginx or HAProxy reloads).
            code = (
                None
                if state.get("routes_applied") is False
                else _ended(state["status"], until_serving=until_serving)
            )
            if code is not None:
                return code
            if time.monotonic() > deadline:
                rollout = state["status"]["rollout"]
                phase = rollout["phase"] if rollout else "completed"
                why = rollout["pause_reason"] if rollout and phase == "paused" else phase
                if state.get("routes_applied") is False:
                    why += " (the router does not run its route table yet)"
                err.print(f"[yellow]stopped waiting after {timeout:g}s:[/] {esc(why)}")
                return EXIT_PAUSED_TIMEOUT
            time.sleep(0.3)
    finally:
        if live:
            live.stop()


def _ended(status: dict[str, Any], *, until_serving: bool) -> int | None:
    """The exit code once the rollout (or, for `up`, the wait for a serving release) is over."""
    rollout = status["rollout"]
    phase = rollout["phase"] if rollout else "completed"
    if until_serving and status["stable"] and phase != "progressing":
        if rollout and phase in ("aborted", "failed"):
            err.print(
                f"[yellow]note:[/] the last rollout (revision {rollout['revision']}, "
                f"{esc(rollout['version'])}) {phase}: {esc(rollout['reason'])}; "
                f"{esc(status['stable'])} serves"
            )
        return EXIT_OK
    if phase in FINAL and not (until_serving and phase == "completed"):
        if rollout and phase != "completed":
            err.print(f"[red]rollout {phase}:[/] {esc(rollout['reason'])}")
        return FINAL[phase]
    return None


def _print_controller_error(state: dict[str, Any], shown: float | None) -> float | None:
    """Without a live view, each new controller error is printed once, as it happens."""
    error = (state.get("controller") or {}).get("last_error")
    if not error or error.get("at") == shown:
        return shown
    line = controller_health(state)
    if line:
        err.print(line, highlight=False, soft_wrap=True)
    return float(error["at"])


@app.command()
def status(
    file: SpecFile = Path("zerodown.yaml"),
    as_json: Json = False,
    watch: Annotated[bool, typer.Option("--watch", help="keep refreshing")] = False,
) -> None:
    """Releases, instances, routing, the rollout and its last decision with the reason."""

    def go() -> int:
        with Client(Paths.for_spec(file)) as client:
            if watch:
                with Live(console=console, auto_refresh=False) as live:
                    try:
                        while True:
                            live.update(status_view(client.get("/api/status")), refresh=True)
                            time.sleep(0.5)
                    except KeyboardInterrupt:
                        return EXIT_OK
            state = client.get("/api/status")
            state["dashboard"] = str(client.http.base_url).rstrip("/") + "/"
        if as_json:
            print(json.dumps(state, indent=2))
        else:
            console.print(status_view(state))
        return EXIT_OK

    raise typer.Exit(run_guarded(go))


@app.command()
def history(file: SpecFile = Path("zerodown.yaml"), as_json: Json = False) -> None:
    """Revisions: number, version, when, outcome."""

    def go() -> int:
        with Client(Paths.for_spec(file)) as client:
            revisions = client.get("/api/history")
        if as_json:
            print(json.dumps(revisions, indent=2))
        else:
            console.print(history_view(revisions))
        return EXIT_OK

    raise typer.Exit(run_guarded(go))


@app.command()
def rollback(
    file: SpecFile = Path("zerodown.yaml"),
    to: Annotated[
        int | None, typer.Option("--to", help="revision number (default: the previous good one)")
    ] = None,
    wait: Wait = False,
    timeout: float = timeout_option(1800.0),
    force: Annotated[
        bool, typer.Option("--force", help="even past a completed (contracted) migration")
    ] = False,
) -> None:
    """Go back to an earlier revision (during a rollout: abort it)."""

    def go() -> int:
        with Client(Paths.for_spec(file)) as client:
            seen = max((e["id"] for e in client.get("/api/events", limit=1)), default=0)
            result = client.post("/api/rollback", {"to": to, "force": force})
            if result.get("aborted"):
                console.print(
                    f"aborted the rollout of revision {result['revision']}; traffic is on the stable release"
                )
                return EXIT_OK
            console.print(f"rolling back: revision {result['revision']}")
            if not wait:
                return EXIT_OK
            return follow(client, timeout=timeout, after=seen)

    raise typer.Exit(run_guarded(go))


def _simple(path: str, done: str, **body: Any) -> Any:
    def command(file: SpecFile = Path("zerodown.yaml")) -> None:
        def go() -> int:
            with Client(Paths.for_spec(file)) as client:
                client.post(path, {"who": "cli", **body})
            console.print(done)
            return EXIT_OK

        raise typer.Exit(run_guarded(go))

    return command


@app.command()
def promote(
    file: SpecFile = Path("zerodown.yaml"),
    full: Annotated[bool, typer.Option("--full", help="skip the remaining steps")] = False,
) -> None:
    """Move the rollout to its next step (or, with --full, past all of them)."""

    def go() -> int:
        with Client(Paths.for_spec(file)) as client:
            client.post("/api/promote", {"who": "cli", "full": full})
        console.print("promoted")
        return EXIT_OK

    raise typer.Exit(run_guarded(go))


app.command(name="abort", help="Send all traffic back to the stable release at once.")(
    _simple("/api/abort", "aborted: traffic is on the stable release")
)
app.command(name="pause", help="Hold the rollout at its current step.")(
    _simple("/api/pause", "paused")
)
app.command(name="resume", help="Continue a paused rollout.")(_simple("/api/resume", "resumed"))
app.command(name="retry", help="Run an aborted or failed rollout again from its first step.")(
    _simple("/api/retry", "retrying from the first step")
)


@app.command()
def down(file: SpecFile = Path("zerodown.yaml"), timeout: float = timeout_option(120.0)) -> None:
    """Drain and stop every instance, the router and the controller."""

    def go() -> int:
        paths = Paths.for_spec(file)
        if controller_url(paths) is None:
            left = left_running(paths, _spec_of(file))
            if not left:
                console.print("nothing is running")
                return EXIT_OK
            # The controller died and left the router or instances running: a new controller
            # adopts them, then stops them in order.
            console.print(f"the controller is not running; starting it to stop {', '.join(left)}")
            start_controller(paths)
        shut_down(paths, who="zerodown down", timeout=timeout)
        console.print("stopped")
        return EXIT_OK

    raise typer.Exit(run_guarded(go))


def _spec_of(file: Path) -> Spec | None:
    try:
        return load_spec(file)
    except SpecError:
        return None  # `down` still stops the router


@app.command()
def demo(keep: Annotated[bool, typer.Option("--keep", help="keep the workspace")] = False) -> None:
    """A one-command tour: canary v2 promoted, faulty v3 aborted, under steady traffic."""
    from zerodown.demo.tour import run_demo

    raise typer.Exit(run_guarded(lambda: run_demo(keep=keep)))


from zerodown.cli.plan import lint_command, plan_command  # noqa: E402 (they import this module)

app.command(name="plan")(plan_command)
app.command(name="lint")(lint_command)

from zerodown.cli.router_ops import register_router_commands  # noqa: E402 (needs run_guarded)

register_router_commands(app, run_guarded)  # router restart, hold, release


def main() -> None:
    app()


if __name__ == "__main__":
    main()
