"""`zerodown flags …`: feature flags through the controller's HTTP API.

Registered by the main CLI with `app.add_typer(flags_app, name="flags")`. The controller's URL
and token come from `--url` / `--token` (or $ZERODOWN_URL / $ZERODOWN_TOKEN). The audit log
records the actor as $USER.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

flags_app = typer.Typer(
    help="Feature flags: gradual rollouts, kill switches, stale-flag report, OpenFeature.",
    no_args_is_help=True,
)

_out = Console()

Url = Annotated[
    str,
    typer.Option("--url", envvar="ZERODOWN_URL", help="Controller URL, e.g. http://127.0.0.1:7070"),
]
Token = Annotated[
    str, typer.Option("--token", envvar="ZERODOWN_TOKEN", help="Controller admin token.")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


ConnectionDefaults = Callable[[], tuple[str | None, str | None]]
_defaults: ConnectionDefaults | None = None


def set_connection_defaults(fn: ConnectionDefaults) -> None:
    """Where the controller is when neither --url/--token nor the environment say: the main CLI
    sets this to read the running controller's URL and token (called only when needed)."""
    global _defaults
    _defaults = fn


def _connection(url: str, token: str) -> tuple[str, str]:
    if (not url or not token) and _defaults is not None:
        default_url, default_token = _defaults()
        url = url or default_url or ""
        token = token or default_token or ""
    return url, token


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _call(method: str, url: str, token: str, path: str, **kw: Any) -> Any:
    url, token = _connection(url, token)
    if not url:
        _fail("no controller URL: pass --url or set ZERODOWN_URL (is `zerodown up` running?)")
    headers = {"Authorization": f"Bearer {token}", "X-Zerodown-Actor": _actor()}
    try:
        with httpx.Client(base_url=url.rstrip("/"), timeout=30, trust_env=False) as http:
            r = http.request(method, path, headers=headers, **kw)
    except httpx.HTTPError as e:
        _fail(f"the controller at {url} does not answer ({e}); is `zerodown up` running?")
    if r.status_code == 401:
        _fail("the controller refused the token; pass --token or set ZERODOWN_TOKEN")
    if r.status_code >= 400:
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        if isinstance(detail, list):  # pydantic errors: name the field
            detail = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', [])[1:])}: {e.get('msg')}" for e in detail
            )
        _fail(str(detail))
    return r.json() if r.content else None


def _summary(flag: dict[str, Any]) -> str:
    if not flag["enabled"]:
        return "off"
    parts = []
    for s in flag["strategies"]:
        kind = s["kind"]
        text = {
            "default": "everyone",
            "user_ids": f"users {','.join(s.get('user_ids', []))}",
            "gradual_rollout": f"{s.get('rollout')}% by {s.get('stickiness', 'default')}",
            "remote_address": f"from {','.join(s.get('addresses', []))}",
            "never": f"never ({s.get('reason', '')})",
        }.get(kind, kind)
        if s.get("constraints"):
            text += f" if {len(s['constraints'])} constraint(s)"
        parts.append(text)
    return "on: " + ("; ".join(parts) if parts else "everyone")


def _row(*cells: Any) -> list[str]:
    """Table cells as text: a note like "[ops] ticket" is not rich markup."""
    return [escape(str(cell)) for cell in cells]


def _print_flags(flags: list[dict[str, Any]]) -> None:
    table = Table("key", "type", "state", "variants", "owner", "changed")
    for f in flags:
        table.add_row(
            *_row(
                f["key"],
                f["type"],
                _summary(f),
                ",".join(f"{v['name']}:{v['weight']}" for v in f.get("variants", [])) or "-",
                f.get("owner") or "-",
                (f.get("changed_at") or "-")[:19],
            )
        )
    _out.print(table)


def _print_flag(flag: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(flag, indent=2))
    else:
        _print_flags([flag])


@flags_app.command("list")
def list_flags(url: Url = "", token: Token = "", as_json: Json = False) -> None:
    """List every flag."""
    flags = _call("GET", url, token, "/api/flags")["flags"]
    if as_json:
        typer.echo(json.dumps(flags, indent=2))
    elif not flags:
        typer.echo("no flags yet; create one with `zerodown flags create KEY`")
    else:
        _print_flags(flags)


@flags_app.command("get")
def get_flag(key: str, url: Url = "", token: Token = "", as_json: Json = False) -> None:
    """Show one flag."""
    _print_flag(_call("GET", url, token, f"/api/flags/{key}"), as_json)


@flags_app.command("show", hidden=True)
def show_flag(key: str, url: Url = "", token: Token = "", as_json: Json = False) -> None:
    """Show one flag (same as get)."""
    get_flag(key, url, token, as_json)


@flags_app.command("create")
def create_flag(
    key: str,
    type: Annotated[
        str,
        typer.Option("--type", help="release, experiment, operational, kill-switch, permission"),
    ] = "release",
    description: Annotated[str, typer.Option("--description")] = "",
    owner: Annotated[str, typer.Option("--owner")] = "",
    enabled: Annotated[bool, typer.Option("--enabled/--disabled")] = False,
    rollout: Annotated[str | None, typer.Option("--rollout", help="e.g. 10%")] = None,
    url: Url = "",
    token: Token = "",
) -> None:
    """Create a flag (off unless --enabled or --rollout)."""
    body: dict[str, Any] = {
        "key": key,
        "type": type,
        "description": description,
        "owner": owner,
        "enabled": enabled,
    }
    _call("POST", url, token, "/api/flags", json=body)
    if rollout is not None:
        _call("PATCH", url, token, f"/api/flags/{key}", json={"rollout": rollout})
    typer.echo(f"created {key}")


@flags_app.command("set")
def set_flag(
    key: str,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled")] = None,
    rollout: Annotated[str | None, typer.Option("--rollout", help="e.g. 25%")] = None,
    note: Annotated[str, typer.Option("--note", help="Recorded in the audit log.")] = "",
    url: Url = "",
    token: Token = "",
) -> None:
    """Turn a flag on or off, or set its gradual rollout percentage."""
    if enabled is None and rollout is None:
        _fail("give --enabled, --disabled or --rollout N%")
    body = {"enabled": enabled, "rollout": rollout, "note": note}
    flag = _call("PATCH", url, token, f"/api/flags/{key}", json=body)
    typer.echo(f"{key}: {_summary(flag)}")


@flags_app.command("enable")
def enable(key: str, url: Url = "", token: Token = "") -> None:
    """Turn a flag on."""
    set_flag(key, True, None, "", url, token)


@flags_app.command("disable")
def disable(key: str, url: Url = "", token: Token = "") -> None:
    """Turn a flag off."""
    set_flag(key, False, None, "", url, token)


@flags_app.command("rollout")
def rollout(key: str, percent: str, url: Url = "", token: Token = "") -> None:
    """Set the gradual rollout percentage (and turn the flag on): `rollout KEY 25%`."""
    set_flag(key, None, percent, "", url, token)


@flags_app.command("kill")
def kill(
    key: str,
    reason: Annotated[str, typer.Option("--reason")] = "",
    url: Url = "",
    token: Token = "",
) -> None:
    """Turn a flag off everywhere now (SDKs following the stream see it within a second)."""
    set_flag(key, False, None, f"kill: {reason}" if reason else "kill", url, token)


@flags_app.command("delete")
def delete(key: str, url: Url = "", token: Token = "") -> None:
    """Delete a flag (the audit log keeps its last definition)."""
    _call("DELETE", url, token, f"/api/flags/{key}")
    typer.echo(f"deleted {key}")


@flags_app.command("stale")
def stale(
    unused_days: Annotated[int, typer.Option("--unused-days", min=1)] = 30,
    settled_days: Annotated[int, typer.Option("--settled-days", min=1)] = 30,
    url: Url = "",
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Flags past their type's lifetime, fully on/off for N days, or not evaluated for N days."""
    params = {"unused_days": unused_days, "settled_days": settled_days}
    report = _call("GET", url, token, "/api/flags/stale", params=params)["stale"]
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    if not report:
        typer.echo("no stale flags")
        return
    table = Table("key", "type", "owner", "why")
    for s in report:
        table.add_row(*_row(s["key"], s["type"], s["owner"] or "-", "; ".join(s["reasons"])))
    _out.print(table)


@flags_app.command("audit")
def audit(
    key: Annotated[str | None, typer.Argument()] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 20,
    url: Url = "",
    token: Token = "",
    as_json: Json = False,
) -> None:
    """Who changed which flag, when, from what to what."""
    params: dict[str, Any] = {"limit": limit}
    if key:
        params["key"] = key
    entries = _call("GET", url, token, "/api/flags/audit", params=params)["entries"]
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    table = Table("when", "who", "action", "key", "change", "note")
    for e in entries:
        before, after = e.get("before"), e.get("after")
        change = (
            f"{_summary(before) if before else '-'} → {_summary(after) if after else 'deleted'}"
        )
        table.add_row(
            *_row(e["at"][:19], e["actor"], e["action"], e["key"], change, e.get("note") or "")
        )
    _out.print(table)


@flags_app.command("export")
def export(
    format: Annotated[str, typer.Option("--format", help="zerodown or unleash")] = "zerodown",
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
    url: Url = "",
    token: Token = "",
) -> None:
    """Every flag as JSON (ours, or Unleash's client-API format)."""
    if format not in ("zerodown", "unleash"):
        _fail("--format: use zerodown or unleash")
    doc = _call("GET", url, token, "/api/flags/export", params={"format": format})
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    if output:
        output.write_text(text + "\n")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text)


@flags_app.command("import")
def import_flags(file: Path, url: Url = "", token: Token = "") -> None:
    """Create or replace flags from FILE (our export, or Unleash's export / client API JSON)."""
    try:
        doc = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        _fail(f"{file}: {e}")
    result = _call("POST", url, token, "/api/flags/import", json=doc)
    typer.echo(f"created {len(result['created'])}, updated {len(result['updated'])} from {file}")


@flags_app.command("env")
def env(
    url: Url = "",
    token: Token = "",
    read_token: Annotated[
        str | None, typer.Option("--read-token", help="The read-only token, if one is set.")
    ] = None,
) -> None:
    """OFREP_ENDPOINT=… and OFREP_HEADERS=… for an OpenFeature OFREP client (eval with `eval`)."""
    url, token = _connection(url, token)
    if not url:
        _fail("no controller URL: pass --url or set ZERODOWN_URL")
    typer.echo(f"export OFREP_ENDPOINT={url.rstrip('/')}")
    t = read_token or token
    if t:
        typer.echo(f"export OFREP_HEADERS='Authorization=Bearer {t}'")
