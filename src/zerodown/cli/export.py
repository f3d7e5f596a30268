"""`zerodown export kubernetes`: the spec as Kubernetes + Argo Rollouts manifests, in files.

The exporter (zerodown.export.kubernetes) is pure; this command reads the spec and the names of
its migration files, writes one YAML file per manifest, and prints what did not carry over. A
mistake in the input (spec, image, version) prints one line and exits 2, writing nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from zerodown.core.errors import SpecError, ZerodownError
from zerodown.export.kubernetes import (
    DEFAULT_PROMETHEUS,
    Bundle,
    ExportOptions,
    MigrationFile,
    Traffic,
    export,
    to_yaml,
)
from zerodown.spec.load import load_spec
from zerodown.spec.model import Spec
from zerodown.spec.types import check_version

export_app = typer.Typer(
    name="export",
    help="Write the spec for another system: `zerodown export kubernetes`.",
    no_args_is_help=True,
    add_completion=False,
)


@export_app.callback()
def _group() -> None:
    """Write the spec for another system (one sub-command per target)."""


console = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# a repository reference: lower-case path components, an optional registry host[:port] first
_REPOSITORY = re.compile(
    r"^(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$"
)


def _fail(message: str) -> NoReturn:
    err.print(f"[red]error:[/] {escape(message)}")
    raise typer.Exit(2)


def _image(value: str) -> str:
    if "@" in value or ":" in value.rsplit("/", 1)[-1]:
        _fail(
            f"--image {value!r}: give the repository without a tag or digest "
            "(registry.example/shop); the tag is --version"
        )
    if not _REPOSITORY.fullmatch(value):
        _fail(f"--image {value!r} is not an image repository; write it like registry.example/shop")
    return value


def _migrations(spec: Spec, spec_file: Path) -> tuple[MigrationFile, ...]:
    if spec.migrations is None:
        return ()
    from zerodown.migrations.api import migration_files
    from zerodown.migrations.model import load_migration
    from zerodown.migrations.planner import version_schema_name

    directory = spec_file.parent / spec.migrations.dir
    files = []
    for path in migration_files(directory):
        name = load_migration(path).name or path.stem
        relative = (Path(spec.migrations.dir) / path.name).as_posix()
        files.append(MigrationFile(relative, version_schema_name("public", name)))
    return tuple(files)


@export_app.command()
def kubernetes(
    image: Annotated[
        str, typer.Option("--image", help="the image repository, without a tag", show_default=False)
    ],
    version: Annotated[
        str,
        typer.Option("--version", help="the release: image tag and {version}", show_default=False),
    ],
    file: Annotated[Path, typer.Option("-f", "--file", help="the spec file")] = Path(
        "zerodown.yaml"
    ),
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="directory for the files [default: kubernetes/ beside the spec]"
        ),
    ] = None,
    traffic: Annotated[
        Traffic, typer.Option("--traffic", help="the traffic router Argo Rollouts drives")
    ] = Traffic.NGINX,
    namespace: Annotated[str, typer.Option("--namespace", help="where the objects go")] = "default",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="the container port: {port} and PORT")
    ] = 8080,
    prometheus: Annotated[
        str, typer.Option("--prometheus", help="Prometheus for the router provider's queries")
    ] = DEFAULT_PROMETHEUS,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable summary")] = False,
) -> None:
    """Kubernetes + Argo Rollouts manifests: Rollout, Services, Ingress, AnalysisTemplates,
    the migration Job; and what has no counterpart there."""
    try:
        check_version(version)
    except ValueError as exc:
        _fail(f"--version: {exc}")
    if "+" in version:
        _fail(f"--version {version!r}: an image tag cannot hold '+'; use another separator")
    if not re.fullmatch(r"^https?://\S+$", prometheus):
        _fail(f"--prometheus {prometheus!r} is not a URL; write it like http://prometheus:9090")
    try:
        spec = load_spec(file)
        options = ExportOptions(
            image=_image(image),
            version=version,
            traffic=traffic,
            namespace=namespace,
            port=port,
            prometheus=prometheus,
            migrations=_migrations(spec, file),
        )
    except ZerodownError as exc:
        _fail(str(exc))
    try:
        bundle = export(spec, options)
    except SpecError as exc:  # the exporter does not know the file: say which one
        _fail(f"{file}: {exc}")
    directory = out if out is not None else file.parent / "kubernetes"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for manifest in bundle.manifests:
            (directory / manifest.filename).write_text(to_yaml(manifest))
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write to {escape(str(directory))}: {exc.strerror}")
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(_summary(bundle, directory), indent=2))
    else:
        _print(bundle, directory)


def _summary(bundle: Bundle, directory: Path) -> dict[str, object]:
    return {
        "directory": str(directory),
        "files": [m.filename for m in bundle.manifests],
        "facts": bundle.facts,
        "notes": [
            {"path": n.path, "message": n.message, "file": n.file, "dropped": n.dropped}
            for n in bundle.notes
        ],
    }


def _print(bundle: Bundle, directory: Path) -> None:
    console.print(f"wrote {len(bundle.manifests)} files to {escape(str(directory))}/")
    for fact in bundle.facts:
        console.print(f"  {escape(fact)}")
    dropped = [n for n in bundle.notes if n.dropped]
    changed = [n for n in bundle.notes if not n.dropped]
    if dropped:
        console.print(
            f"\n[yellow]no counterpart in Kubernetes / Argo Rollouts ({len(dropped)}):[/]"
        )
        for note in dropped:
            console.print(f"  {escape(note.path)}: {escape(note.message)}")
    if changed:
        console.print(f"\n[cyan]carried over with a difference ({len(changed)}):[/]")
        for note in changed:
            console.print(f"  {escape(note.path)}: {escape(note.message)}")
    console.print(
        "\nthe same notes are comments at the top of each file; apply with "
        f"`kubectl apply -f {escape(str(directory))}/` (the migration Job first, if any)"
    )
