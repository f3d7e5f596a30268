"""What the local platform guarantees beyond the Platform contract (tests/contract/drivers): a
launch the kernel refuses says what to change; a handle is a pid with its start time, never a
pid alone; an exec probe sees the instance's own directory and environment, not its markers."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from zerodown.core.errors import PermanentDriverError
from zerodown.platforms.local import LocalPlatform, Process
from zerodown.spec.model import RunSpec

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_an_environment_too_large_for_the_kernel_says_what_to_make_smaller(
    tmp_path: Path,
) -> None:
    platform = LocalPlatform(state_dir=tmp_path / ".zerodown", spec_dir=tmp_path)
    huge = {"HUGE": "x" * 300_000}  # over the kernel's 128 KiB per string: E2BIG from execve
    with pytest.raises(PermanentDriverError, match="too large") as error:
        asyncio.run(
            platform.launch(
                instance_id="shop-v1-aaaaaa",
                release="v1",
                run=RunSpec(command=SLEEPER),
                env=huge,
                taken=(),
            )
        )
    assert "make run.env and run.command smaller" in str(error.value)


@pytest.mark.parametrize("handle", ["1234", "1234:0", "0:5", "x:y", ":", "1234:5:6", ""])
def test_a_handle_without_a_start_time_is_refused(handle: str) -> None:
    with pytest.raises(PermanentDriverError, match="not a local process handle"):
        Process.parse(handle)


def test_exec_runs_in_the_instance_s_directory_with_its_environment(tmp_path: Path) -> None:
    workdir = tmp_path / "app"
    workdir.mkdir()
    platform = LocalPlatform(state_dir=tmp_path / ".zerodown", spec_dir=tmp_path)

    async def scenario() -> str:
        placed = await platform.launch(
            instance_id="shop-v1-aaaaaa",
            release="v1",
            run=RunSpec(command=SLEEPER, workdir="app", env={"GREETING": "hi {version}"}),
            env={"EXTRA": "1"},
            taken=(),
        )
        try:
            result = await platform.exec(
                instance_id="shop-v1-aaaaaa",
                handle=placed.handle,
                argv=["sh", "-c", 'echo "$PWD $GREETING $EXTRA $PORT [$ZERODOWN_INSTANCE]"'],
                timeout=5,
            )
            assert result.code == 0
            return f"{result.output} {placed.address}"
        finally:
            await platform.stop(
                instance_id="shop-v1-aaaaaa", handle=placed.handle, stop_signal="SIGTERM", grace=5
            )

    output = asyncio.run(scenario())
    said, address = output.rsplit(" ", 1)
    assert said == f"{workdir} hi v1 1 {address.rpartition(':')[2]} []"


def test_exec_that_outlives_its_timeout_is_killed(tmp_path: Path) -> None:
    platform = LocalPlatform(state_dir=tmp_path / ".zerodown", spec_dir=tmp_path)

    async def scenario() -> None:
        placed = await platform.launch(
            instance_id="shop-v1-aaaaaa",
            release="v1",
            run=RunSpec(command=SLEEPER),
            env={},
            taken=(),
        )
        try:
            with pytest.raises(TimeoutError):
                await platform.exec(
                    instance_id="shop-v1-aaaaaa",
                    handle=placed.handle,
                    argv=["sleep", "30"],
                    timeout=0.2,
                )
        finally:
            await platform.stop(
                instance_id="shop-v1-aaaaaa", handle=placed.handle, stop_signal="SIGTERM", grace=5
            )

    asyncio.run(scenario())
