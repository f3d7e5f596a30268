"""`zerodown migrate …`: expand-contract PostgreSQL migrations from the command line.

Every command takes `--database URL` (default: $DATABASE_URL). A mistake prints one line saying
what to fix and exits 2; lint exits 1 when it finds something.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from zerodown.core.errors import ZerodownError

migrate_app = typer.Typer(
    name="migrate",
    help="Expand-contract PostgreSQL migrations: plan, start, complete, rollback, status, lint.",
    no_args_is_help=True,
    add_completion=False,
)

T = TypeVar("T")

Database = Annotated[
    str,
    typer.Option(
        "--database",
        envvar="DATABASE_URL",
        show_envvar=True,
        help="PostgreSQL URL of the target database.",
    ),
]
BaseSchema = Annotated[str, typer.Option("--schema", help="Base schema holding the tables.")]
LockTimeout = Annotated[
    str, typer.Option("--lock-timeout", help="Longest wait for a lock per DDL statement.")
]
File = Annotated[Path, typer.Argument(help="Migration file (.yaml, .yml or .json).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except ZerodownError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted; run the same command again to resume")


def _options(schema: str, lock_timeout: str = "500ms", batch_size: int | None = None) -> Any:
    from zerodown.migrations.executor import Options
    from zerodown.spec.types import parse_duration

    try:
        timeout = parse_duration(lock_timeout)
    except ValueError as e:
        _fail(f"--lock-timeout: {e}")
    if batch_size is not None and batch_size < 1:
        _fail("--batch-size must be at least 1")
    return Options(base_schema=schema, lock_timeout=timeout, batch_size=batch_size)


def _progress(message: str) -> None:
    typer.echo(message, err=True)


@migrate_app.command()
def plan(
    file: File,
    database: Database = "",
    schema: BaseSchema = "public",
    as_json: AsJson = False,
) -> None:
    """Print the SQL each phase will run, and the locks each statement takes."""
    from zerodown.migrations import api

    result = _run(lambda: api.plan(database, file, options=_options(schema)))
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.render())


@migrate_app.command()
def start(
    file: File,
    database: Database = "",
    schema: BaseSchema = "public",
    service: Annotated[str | None, typer.Option(help="Service the new release belongs to.")] = None,
    version: Annotated[str | None, typer.Option(help="Version of the new release.")] = None,
    lock_timeout: LockTimeout = "500ms",
    batch_size: Annotated[
        int | None,
        typer.Option(
            help="Rows per backfill batch; by default each batch is sized to hold its row"
            " locks about 100 ms, the backfill rests as long as it worked, and it slows down"
            " when anyone waited on it."
        ),
    ] = None,
) -> None:
    """Expand: create the new version schema of views, triggers, and backfill."""
    from zerodown.migrations import api

    options = _options(schema, lock_timeout, batch_size)
    name = _run(
        lambda: api.start(
            database, file, service=service, version=version, options=options, log=_progress
        )
    )
    typer.echo(name)
    if api.is_mysql_url(database):
        typer.echo(f"swapped: every version now uses the new shape in {name}", err=True)
    else:
        typer.echo(f"new version: set ZERODOWN_DB_SCHEMA={name} (search_path)", err=True)


@migrate_app.command()
def complete(
    database: Database = "", schema: BaseSchema = "public", lock_timeout: LockTimeout = "500ms"
) -> None:
    """Contract: drop what only the old version used (run once the old version is gone)."""
    from zerodown.migrations import api

    options = _options(schema, lock_timeout)
    typer.echo(_run(lambda: api.complete(database, options=options, log=_progress)))


@migrate_app.command()
def rollback(
    database: Database = "", schema: BaseSchema = "public", lock_timeout: LockTimeout = "500ms"
) -> None:
    """Undo a started migration; the old version loses nothing."""
    from zerodown.migrations import api

    options = _options(schema, lock_timeout)
    typer.echo(_run(lambda: api.rollback(database, options=options, log=_progress)))


@migrate_app.command()
def status(database: Database = "", schema: BaseSchema = "public", as_json: AsJson = False) -> None:
    """The active migration and its phase, recent history, and each release's schema."""
    from zerodown.migrations import api

    result = _run(lambda: api.status(database, options=_options(schema)))
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    active = result["active"]
    typer.echo(f"base schema:    {result['base_schema']}")
    typer.echo(f"current schema: {result['current_schema']}")
    if active:
        typer.echo(
            f"active:         {active['name']} ({active['phase']}) -> {active['version_schema']}"
            + ("  UNSAFE (raw SQL)" if active["unsafe"] else "")
        )
        for b in active.get("backfills", []):
            state = "done" if b["done"] else f"at {b['cursor']}"
            typer.echo(f"  backfill {b['table']}: {b['rows']} rows, {state}")
    else:
        typer.echo("active:         none")
    for row in result["history"]:
        typer.echo(f"  {row['started_at'][:19]}  {row['phase']:<11} {row['name']}")
    for v in result["versions"]:
        typer.echo(f"  release {v['service']}:{v['version']} -> {v['schema']}")


@migrate_app.command()
def lint(
    file: Annotated[Path, typer.Argument(help="SQL file, or a migration file (its raw_sql).")],
    as_json: AsJson = False,
) -> None:
    """Find unsafe SQL: squawk's rules plus zerodown's own checks. Exits 1 on findings."""
    from zerodown.migrations.lint import lint_file

    findings = _run(lambda: lint_file(file))
    if as_json:
        typer.echo(json.dumps([f.to_dict() for f in findings], indent=2))
    else:
        for f in findings:
            typer.echo(f.render())
        typer.echo(f"{len(findings)} finding(s)" if findings else "no findings", err=True)
    if findings:
        raise typer.Exit(1)


@migrate_app.command("json-schema")
def json_schema_cmd() -> None:
    """Print the JSON Schema of migration files (for editor completion)."""
    from zerodown.migrations.model import json_schema

    typer.echo(json.dumps(json_schema(), indent=2))
