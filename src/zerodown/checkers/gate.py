"""The test gate: a command that must pass before any new instance starts."""

from __future__ import annotations

import os.path
from collections.abc import Mapping
from dataclasses import dataclass

from zerodown.checkers.proc import run_command
from zerodown.spec.gates import GateSpec
from zerodown.spec.types import format_duration


@dataclass(frozen=True, slots=True)
class GateResult:
    passed: bool
    exit_code: int | None
    duration: float
    reason: str  # shown in status and history: why the deploy was refused

    def to_json(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "exit_code": self.exit_code,
            "duration": round(self.duration, 3),
            "reason": self.reason,
        }


async def run_gate(
    spec: GateSpec, *, base_dir: str = ".", env: Mapping[str, str] | None = None
) -> GateResult:
    """Run the gate command in `base_dir / spec.workdir`; never raises for a failing command."""
    cwd = os.path.join(base_dir, spec.workdir)
    shown = " ".join(spec.command)
    try:
        result = await run_command(
            spec.command, timeout=spec.timeout, cwd=cwd, env={**spec.env, **(env or {})}
        )
    except OSError as exc:
        return GateResult(
            False,
            None,
            0.0,
            f"gate `{shown}` could not start: {exc.strerror or exc}; fix gate.command",
        )
    if result.timed_out:
        return GateResult(
            False,
            None,
            result.duration,
            f"gate `{shown}` did not finish within {format_duration(spec.timeout)} and was "
            f"killed; last output: {result.tail()}",
        )
    if result.exit_code != 0:
        return GateResult(
            False,
            result.exit_code,
            result.duration,
            f"gate `{shown}` failed (exit {result.exit_code}): {result.tail()}",
        )
    return GateResult(True, 0, result.duration, f"gate `{shown}` passed in {result.duration:.1f}s")
