"""Running the real CLI and checking what it left running."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import zerodown as zerodown_package


def zerodown(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process, in `cwd`, running the same zerodown as this test."""
    source = str(Path(zerodown_package.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "zerodown.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


def processes_of(root: Path) -> list[str]:
    """Command lines of live processes started for the service in `root` (the controller and
    the router name files under it; instances run with their state directory in the env)."""
    marker = str(root.resolve()).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (marker in cmdline or marker + b"/.zerodown" in environ):
            found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def assert_nothing_started(root: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    state = root / ".zerodown"
    assert not (state / "controller.json").exists() and not (state / "router.pid").exists()
    assert processes_of(root) == []
