"""`zerodown keys …`: the JWT signing keyring in a directory (default `.zerodown/keys`).

Registered by the main CLI with `app.add_typer(keys_app, name="keys")`. Works on the directory
directly (no controller needed): key material never crosses the API.
"""

from __future__ import annotations

import json
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from zerodown.keys.model import KeyringError, Policy, timeline, utc
from zerodown.keys.storage import KeyringDir, jwks
from zerodown.paths import Paths
from zerodown.spec.types import format_duration, parse_duration

keys_app = typer.Typer(
    help="JWT signing keys: a new key is published before it signs, an old one after it stops.",
    no_args_is_help=True,
)

_out = Console()


class Alg(StrEnum):
    EdDSA = "EdDSA"
    ES256 = "ES256"
    RS256 = "RS256"


DirOption = Annotated[
    Path | None,
    typer.Option("--dir", help="Keyring directory [default: .zerodown/keys beside -f FILE]."),
]
SpecOption = Annotated[
    Path, typer.Option("-f", "--file", help="zerodown.yaml; its keyring is the one served")
]


def _keyring(directory: Path | None, spec: Path) -> KeyringDir:
    """The keyring the controller of -f FILE serves, unless --dir names another."""
    return KeyringDir(directory or Paths.for_spec(spec).state / "keys")


def _fail(message: str) -> NoReturn:
    # Plain echo, not rich: a wrapped message would break copy-paste of the command it names.
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _duration(option: str, value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        _fail(f"{option}: {exc}")


def _when(t: float | None) -> str:
    return "-" if t is None else utc(t)


def _short(t: float | None) -> str:
    # The table must fit 80 columns: month-day and time; `--json` has the exact instants.
    return "-" if t is None else utc(t)[5:-4]


@keys_app.command()
def init(
    alg: Annotated[Alg, typer.Option("--alg", help="Signature algorithm.")] = Alg.EdDSA,
    jwks_cache: Annotated[
        str, typer.Option(help="Longest time verifiers cache the JWKS (a new key waits this long).")
    ] = "5m",
    max_token_lifetime: Annotated[
        str, typer.Option(help="Longest lifetime of a token signed from this keyring.")
    ] = "1h",
    clock_skew: Annotated[str, typer.Option(help="Verifiers' clock leeway.")] = "1m",
    dir: DirOption = None,
    file: SpecOption = Path("zerodown.yaml"),
) -> None:
    """Create the keyring with its first, active key."""
    try:
        policy = Policy(
            jwks_cache_ttl=_duration("--jwks-cache", jwks_cache),
            max_token_lifetime=_duration("--max-token-lifetime", max_token_lifetime),
            clock_skew=_duration("--clock-skew", clock_skew),
        )
        keyring = _keyring(dir, file)
        ring = keyring.init(alg=alg.value, policy=policy, now=time.time())
    except (KeyringError, OSError) as exc:
        _fail(str(exc))
    key = ring.keys[0]
    typer.echo(f"created keyring in {keyring.path}/ with active {key.alg} key {key.kid}")


@keys_app.command()
def rotate(
    alg: Annotated[
        Alg | None,
        typer.Option("--alg", help="Algorithm of the new key (default: the active one's)."),
    ] = None,
    dir: DirOption = None,
    file: SpecOption = Path("zerodown.yaml"),
) -> None:
    """Add the next key: published now, signing once verifiers' JWKS caches have expired."""
    now = time.time()
    try:
        ring = _keyring(dir, file).rotate(now=now, alg=alg.value if alg else None)
    except (KeyringError, OSError) as exc:
        _fail(str(exc))
    new = ring.keys[-1]
    wait = format_duration(max(0.0, new.activates_at - now))
    typer.echo(
        f"published {new.alg} key {new.kid}; it signs from {_when(new.activates_at)} (in {wait})"
    )


@keys_app.command("list")
def list_keys(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    dir: DirOption = None,
    file: SpecOption = Path("zerodown.yaml"),
) -> None:
    """Every key: kid, state (next, active, retiring, retired) and when it changes."""
    now = time.time()
    try:
        ring, _ = _keyring(dir, file).refresh(now)
    except (KeyringError, OSError) as exc:
        _fail(str(exc))
    rows = timeline(ring, now)
    if as_json:
        doc = [
            {
                "kid": t.kid,
                "alg": t.alg,
                "state": t.state.value,
                "published_at": t.published_at,
                "activates_at": t.activates_at,
                "deactivates_at": t.deactivates_at,
                "retires_at": t.retires_at,
            }
            for t in rows
        ]
        typer.echo(json.dumps(doc, indent=2))
        return
    table = Table(
        "kid",
        "alg",
        "state",
        "signs from",
        "signs until",
        "unpublished",
        box=box.SIMPLE,
        caption="UTC; exact times and full kids: keys list --json",
    )
    for t in rows:
        table.add_row(
            t.kid[:8] + "…",
            t.alg,
            t.state.value,
            _short(t.activates_at),
            _short(t.deactivates_at),
            _short(t.retires_at),
        )
    _out.print(table)


@keys_app.command("jwks")
def jwks_cmd(dir: DirOption = None, file: SpecOption = Path("zerodown.yaml")) -> None:
    """Print the public JWK set (what /.well-known/jwks.json serves)."""
    try:
        ring = _keyring(dir, file).load()
    except (KeyringError, OSError) as exc:
        _fail(str(exc))
    typer.echo(json.dumps(jwks(ring, time.time()), indent=2))
