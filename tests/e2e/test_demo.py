"""`zerodown demo` itself: exits 0, in under 90 seconds, and leaves no process behind."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "zerodown.cli.main", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert "zerodown demo" in result.stdout and "error-rate" in result.stdout
    assert elapsed < 90
    leftovers = subprocess.run(["pgrep", "-f", "zerodown-demo-"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""
