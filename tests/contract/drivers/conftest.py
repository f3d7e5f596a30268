"""Each driver of a port under the same contract suite: the platforms `local` (real processes),
`fake` and `container` (real containers on Podman: slow), the routers `builtin` (a real router process), `haproxy` (a real HAProxy) and `fake`. Every driver is
made through its registry, as the controller makes it."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from drivers_kit import PlatformUnderTest, RouterUnderTest, context
from zerodown_fake_drivers import FakeWorld

from support.container_hosts import host_engines, prepare_engine_dirs
from support.containers import VOLUMES, Engine
from support.hosts import host_lab
from support.routers import require_router
from support.services import free_port
from zerodown import drivers
from zerodown.core.errors import PermanentDriverError
from zerodown.core.ports import Platform
from zerodown.spec.hosts import HostSpec, SshSpec
from zerodown.spec.model import PlatformSpec, RunSpec


@pytest.fixture(
    params=[
        "local",
        "fake",
        pytest.param("container", marks=pytest.mark.slow),
        pytest.param("ssh", marks=pytest.mark.slow),
        pytest.param("container-hosts", marks=pytest.mark.slow),
    ]
)
def platform(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PlatformUnderTest]:
    if request.param == "container":
        yield from container_platform(request, tmp_path, monkeypatch)
        return
    if request.param == "ssh":  # one network-namespace host over SSH (support/hosts.py)
        with ssh_platform(tmp_path) as under_test:
            yield under_test
        return
    if request.param == "container-hosts":  # one namespace host with its own Podman service
        with container_hosts_platform(tmp_path) as under_test:
            yield under_test
        return
    ctx = context(tmp_path)
    made = drivers.platforms.create(request.param, ctx)
    world = FakeWorld.at(ctx.paths.state)
    sleeper = RunSpec(command=[sys.executable, "-c", "import time; time.sleep(60)"])

    def local_stale(handle: str) -> str:
        pid, _, ticks = handle.partition(":")
        return f"{pid}:{int(ticks) + 1}"  # the same pid, started at another time

    def cannot_start() -> RunSpec:
        if request.param == "fake":
            world.launch_error = PermanentDriverError("cannot start 'app': not found")
        return RunSpec(command=["/nonexistent/zerodown-app"])

    yield PlatformUnderTest(
        platform=made,
        run=sleeper,
        stale=local_stale if request.param == "local" else (lambda handle: handle + "-old"),
        cannot_start=cannot_start,
    )

    asyncio.run(stop_everything(made))
    world.close()


SLEEPER_HANDLING_SIGTERM = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); time.sleep(60)"


def container_platform(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[PlatformUnderTest]:
    """The container platform on Podman's service (support/containers.py), found through
    DOCKER_HOST as a user's would be."""
    engine: Engine = request.getfixturevalue("container_engine")
    monkeypatch.setenv("DOCKER_HOST", engine.docker_host)
    image = engine.image("contract")
    made = drivers.platforms.create("container", context(tmp_path))
    yield PlatformUnderTest(
        platform=made,
        run=RunSpec(
            image=image,
            # PID 1 of its container: it ignores SIGTERM unless it handles it
            command=["/usr/bin/python3", "-c", SLEEPER_HANDLING_SIGTERM],
            volumes=VOLUMES,
        ),
        stale=lambda handle: "f" * len(handle),  # another container's id
        cannot_start=lambda: RunSpec(
            image=image, command=["/nonexistent/zerodown-app"], volumes=VOLUMES
        ),
    )
    asyncio.run(stop_everything(made))
    assert not engine.ours(), "containers left behind"


async def stop_everything(made: Platform) -> None:
    for iid, placement in (await made.adopt()).items():
        await made.stop(instance_id=iid, handle=placement.handle, stop_signal="SIGKILL", grace=1)
    await made.aclose()


@contextlib.contextmanager
def ssh_platform(tmp_path: Path) -> Iterator[PlatformUnderTest]:
    with host_lab(1, hide=(tmp_path,)) as lab:
        base = context(tmp_path)
        spec = base.spec.model_copy(
            update={
                "hosts": [HostSpec.model_validate(h) for h in lab.spec()],
                "ssh": SshSpec.model_validate(lab.ssh_spec()),
                "platform": PlatformSpec(kind="ssh"),
            }
        )
        made = drivers.platforms.create("ssh", drivers.DriverContext(spec=spec, paths=base.paths))

        def stale(handle: str) -> str:
            host, pid, ticks = handle.split(":")
            return f"{host}:{pid}:{int(ticks) + 1}"  # the same pid, started at another time

        yield PlatformUnderTest(
            platform=made,
            run=RunSpec(command=["python3", "-c", "import time; time.sleep(60)"]),
            stale=stale,
            cannot_start=lambda: RunSpec(command=["/nonexistent/zerodown-app"]),
        )
        asyncio.run(stop_everything(made))


@pytest.fixture(params=["builtin", "fake", pytest.param("haproxy", marks=pytest.mark.slow)])
def router(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RouterUnderTest]:
    require_router(request.param)  # haproxy: a real HAProxy, skipped (named) when not installed
    ctx = context(tmp_path)
    made = drivers.routers.create(request.param, ctx)
    yield RouterUnderTest(router=made, backend=lambda: f"127.0.0.1:{free_port()}")

    async def stop() -> None:
        await made.stop(grace=1)
        await made.aclose()

    asyncio.run(stop())
    FakeWorld.at(ctx.paths.state).close()


@contextlib.contextmanager
def container_hosts_platform(tmp_path: Path) -> Iterator[PlatformUnderTest]:
    hide = (tmp_path, *prepare_engine_dirs())
    with host_lab(1, hide=hide) as lab, host_engines(lab) as engines:
        image = engines.image("web1", "contract")
        base = context(tmp_path)
        spec = base.spec.model_copy(
            update={
                "hosts": [HostSpec.model_validate(h) for h in lab.spec()],
                "ssh": SshSpec.model_validate(lab.ssh_spec()),
                "platform": PlatformSpec(kind="container"),
            }
        )
        made = drivers.platforms.create(
            "container", drivers.DriverContext(spec=spec, paths=base.paths)
        )

        def stale(handle: str) -> str:
            host, _, container = handle.partition(":")
            return f"{host}:{'f' * len(container)}"  # another container's id

        yield PlatformUnderTest(
            platform=made,
            run=RunSpec(
                image=image,
                command=["/usr/bin/python3", "-c", SLEEPER_HANDLING_SIGTERM],
                volumes=VOLUMES,
            ),
            stale=stale,
            cannot_start=lambda: RunSpec(
                image=image, command=["/nonexistent/zerodown-app"], volumes=VOLUMES
            ),
        )
        asyncio.run(stop_everything(made))
        assert engines.releases("web1", running=False) == [], "containers left behind"
