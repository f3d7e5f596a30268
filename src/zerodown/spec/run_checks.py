"""Which `run` fields go with which platform: the local platform runs `run.command` as a process
and knows nothing of images; the container platform runs `run.image`. A field that the chosen
platform would ignore is an error, not a surprise at deploy time."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # model.py imports this module
    from zerodown.spec.model import RunSpec

CONTAINER = "container"
CONTAINER_ONLY = ("image", "port", "volumes", "network")
RUN_DEFAULTS: dict[str, object] = {"image": None, "port": None, "volumes": [], "network": "host"}
VOLUME_MODES = ("ro", "rw")

Problem = tuple[tuple[str | int, ...], str]
"""(the field under `run`, what to fix)"""


def run_problems(kind: str, run: RunSpec, *, on_hosts: bool = False) -> list[Problem]:
    if kind == CONTAINER:
        found = _container_problems(run) + (_host_volume_problems(run) if on_hosts else [])
        return found + (_artifact_problems(kind, run.artifact) if run.artifact else [])
    problems: list[Problem] = []
    if not run.command:
        problems.append((("command",), "this field is required: the argv to run"))
    if run.artifact is not None:
        problems.extend(_artifact_problems(kind, run.artifact))
    if kind in ("local", "ssh"):  # ssh: processes on several hosts (spec/hosts.py)
        for name in CONTAINER_ONLY:
            # by value, not by fields set: a spec dumped with its defaults must load again
            if getattr(run, name) != RUN_DEFAULTS[name]:
                problems.append(
                    (
                        (name,),
                        f"run.{name} is for `platform: {{kind: container}}`; the {kind} platform"
                        " runs run.command as a process: remove it, or set the platform kind"
                        + (" (containers on hosts: platform: {kind: container})" * (kind == "ssh")),
                    )
                )
    return problems


ARCHIVES = (".tar.gz", ".tgz", ".tar", ".zip")


def _artifact_problems(kind: str, artifact: str) -> list[Problem]:
    if kind != "ssh":
        return [
            (
                ("artifact",),
                "run.artifact is shipped to hosts: it goes with `hosts:` (processes on several"
                " hosts); here run.workdir is where the release is",
            )
        ]
    if not artifact.endswith(ARCHIVES):
        return [(("artifact",), f"{artifact!r} is not one of {', '.join(ARCHIVES)}")]
    return []


def _container_problems(run: RunSpec) -> list[Problem]:
    problems: list[Problem] = []
    if not run.image:
        problems.append(
            (
                ("image",),
                "this field is required with `platform: {kind: container}`: the image to run,"
                ' e.g. "registry.example/shop:{version}"',
            )
        )
    elif any(c.isspace() for c in run.image) or run.image != run.image.strip("/:@"):
        problems.append((("image",), f"{run.image!r} is not an image reference"))
    if run.network == "bridge" and run.port is None:
        problems.append(
            (
                ("port",),
                "with network: bridge, set run.port: the port the app listens on inside the"
                " container (zerodown publishes it on a free port of 127.0.0.1)",
            )
        )
    if run.network == "host" and run.port is not None:
        problems.append(
            (
                ("port",),
                "with network: host, zerodown picks each instance's port and passes it as {port}"
                " and PORT: remove run.port, or use network: bridge",
            )
        )
    if run.workdir != "." and not run.workdir.startswith("/"):
        problems.append(
            (("workdir",), "in a container, workdir is a path inside it: start it with '/'")
        )
    for n, volume in enumerate(run.volumes):
        why = _volume_problem(volume)
        if why:
            problems.append((("volumes", n), why))
    return problems


def _volume_problem(volume: str) -> str | None:
    parts = volume.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        return f"{volume!r}: write a volume as SOURCE:DEST or SOURCE:DEST:ro"
    if not parts[1].startswith("/"):
        return f"{volume!r}: DEST is a path inside the container: start it with '/'"
    if len(parts) == 3 and parts[2] not in VOLUME_MODES:
        return f"{volume!r}: the mode is ro or rw, not {parts[2]!r}"
    return None


def _host_volume_problems(run: RunSpec) -> list[Problem]:
    """On hosts, a volume's source is on each host: a path beside the spec means nothing there."""
    problems: list[Problem] = []
    for n, volume in enumerate(run.volumes):
        source = volume.split(":")[0]
        if source.startswith((".", "~")) or ("/" in source and not source.startswith("/")):
            problems.append(
                (
                    ("volumes", n),
                    f"{volume!r}: with hosts:, SOURCE is a directory on each host: give an"
                    " absolute path (or a named volume); nothing is copied from this machine",
                )
            )
    return problems
