"""A command as a metric provider: its exit code, or a number it prints.

The last non-empty line of stdout, if it is a number, is the result (a non-zero exit is then an
error measurement). Otherwise the exit code is the result: with no condition, 0 passes and
anything else fails; conditions can test it ("result == 0"). The environment carries
ZERODOWN_SERVICE, ZERODOWN_CANARY and ZERODOWN_STABLE; {canary}, {stable}, {service} are
substituted in the argv.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time

from zerodown.core.analysis.context import AnalysisContext
from zerodown.core.analysis.evaluate import Observed, measurement
from zerodown.core.analysis.model import Measurement, Phase, error
from zerodown.metrics.base import tail
from zerodown.spec.analysis import MetricSpec, ProviderChoice


class CommandProvider:
    async def measure(self, metric: MetricSpec, ctx: AnalysisContext) -> Measurement:
        started = time.time()
        assert isinstance(metric.provider, ProviderChoice) and metric.provider.command
        argv = [ctx.substitute(a) for a in metric.provider.command]
        env = {
            **os.environ,
            "ZERODOWN_SERVICE": ctx.service,
            "ZERODOWN_CANARY": ctx.canary,
            "ZERODOWN_STABLE": ctx.stable or "",
        }
        try:
            code, out, err = await run(argv, env=env)
        except OSError as exc:
            return error(started, time.time(), f"cannot run {argv[0]!r}: {exc.strerror or exc}")
        finished = time.time()
        number = _last_number(out)
        if number is not None:
            if code != 0:
                return error(started, finished, f"exited {code}: {tail(err or out)}")
            return measurement(
                metric, Observed(value=number), started_at=started, finished_at=finished
            )
        if metric.failure_condition is None and metric.success_condition is None:
            phase = Phase.SUCCESSFUL if code == 0 else Phase.FAILED
            detail = tail(err or out) or "no output"
            return Measurement(
                phase, started, finished, value=float(code), message=f"exited {code}: {detail}"
            )
        return measurement(
            metric, Observed(value=float(code)), started_at=started, finished_at=finished
        )


def _last_number(out: str) -> float | None:
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return float(lines[-1])
    except ValueError:
        return None


async def run(
    argv: list[str], *, env: dict[str, str] | None = None, cwd: str | None = None
) -> tuple[int, str, str]:
    """Run to completion; on cancellation (a timeout) kill its whole process group."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = await proc.communicate()
    except BaseException:
        # a timeout cancels us: the command and its children must not outlive the measurement
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")
