"""What `up` and `down` read before a controller runs comes from the store the spec's `state.url`
names, through the store registry: another SQLite file, or a plug-in's store (the fake one)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from zerodown_fake_drivers import FakeWorld

from zerodown import drivers
from zerodown.control.offline import has_release, left_running
from zerodown.core.errors import StoreUnavailable
from zerodown.core.model import Instance, InstancePhase, ServiceStatus
from zerodown.paths import Paths
from zerodown.spec.load import load_spec
from zerodown.spec.model import Spec

HEAD = "service: shop\nrun: {command: [app]}\n"


def spec_at(root: Path, state: str = "") -> tuple[Spec, Paths]:
    path = root / "zerodown.yaml"
    path.write_text(HEAD + state)
    return load_spec(path), Paths.for_spec(path)


def store_v1(spec: Spec, paths: Paths) -> None:
    """v1 stable with one instance, written through the store the spec names."""
    store = drivers.stores.create(
        drivers.store_kind(spec.state.url), drivers.DriverContext(spec=spec, paths=paths)
    )
    try:
        store.save(ServiceStatus("shop", stable="v1"))
        running = Instance("shop-v1-a", "v1", "127.0.0.1:1", 0.0, InstancePhase.RUNNING)
        store.put_instance("shop", replace(running, handle="1:1"))
    finally:
        store.close()


@pytest.fixture
def fake_worlds(tmp_path: Path) -> Iterator[None]:
    yield
    FakeWorld.at(tmp_path / ".zerodown").close()  # the fake store lives as long as its world


def test_a_sqlite_store_elsewhere_is_the_one_read(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    spec, paths = spec_at(tmp_path, "state: {url: 'sqlite:///db/state.db'}\n")
    assert not has_release(paths, spec)
    store_v1(spec, paths)
    assert has_release(paths, spec)
    assert left_running(paths, spec) == ["shop-v1-a"]
    assert not paths.state.exists()  # .zerodown/state.db was never read nor made


def test_a_plug_in_store_is_the_one_read(tmp_path: Path, fake_worlds: None) -> None:
    spec, paths = spec_at(tmp_path, "state: {url: 'fake://'}\n")
    store_v1(spec, paths)
    assert has_release(paths, spec)
    assert left_running(paths, spec) == ["shop-v1-a"]


def test_a_store_that_fails_says_so_once_a_controller_ran_here(
    tmp_path: Path, fake_worlds: None
) -> None:
    spec, paths = spec_at(tmp_path, "state: {url: 'fake://'}\n")
    paths.ensure()
    FakeWorld.at(paths.state).store_locked = True
    with pytest.raises(StoreUnavailable, match="database is locked"):
        has_release(paths, spec)
    with pytest.raises(StoreUnavailable, match="database is locked"):
        left_running(paths, spec)


def test_where_no_controller_ran_the_default_store_holds_nothing(tmp_path: Path) -> None:
    spec, paths = spec_at(tmp_path)
    assert not has_release(paths, spec)
    assert left_running(paths, spec) == []
    assert left_running(paths, None) == []
    assert not paths.state.exists()
