"""What can be known of a service while no controller runs: what its state store holds, and
what it left running. `zerodown up` and `zerodown down` decide with it before they start one.

The store is the one the spec's `state.url` names, opened through `zerodown.drivers` as the
controller opens it (no driver is imported here). A store that cannot be opened where no
controller ever ran (no .zerodown/: a controller makes it before anything else) holds nothing of
this spec; anywhere else StoreUnavailable goes up to the caller with the store's own words.
"""

from __future__ import annotations

from zerodown import drivers
from zerodown.control.process import router_pid
from zerodown.core.errors import StoreUnavailable
from zerodown.core.model import Instance, ServiceStatus
from zerodown.paths import Paths
from zerodown.spec.model import Spec


def has_release(paths: Paths, spec: Spec) -> bool:
    """Whether the store of a stopped service holds something to start without --version (a
    stable release or a rollout under way). Read before a controller is started, so `up` on a
    new service without a version starts nothing."""
    stored = _stored(paths, spec)
    if stored is None:
        return False
    status, _ = stored
    return status.stable is not None or (status.rollout is not None and status.rollout.active)


def left_running(paths: Paths, spec: Spec | None) -> list[str]:
    """What still runs for a service whose controller is gone: its router, and the instances
    its store knows (the router alone when the spec cannot be read)."""
    router = router_pid(paths)
    left = [f"router (pid {router})"] if router is not None else []
    for pid_file in paths.router_worker_pids():  # router.workers: the others
        worker = router_pid(paths, pid_file)
        if worker is not None:
            left.append(f"router {pid_file.stem} (pid {worker})")
    stored = _stored(paths, spec) if spec is not None else None
    if stored is not None:
        # A handle is the platform's to read: whether each instance still runs is for the
        # controller to find out (it adopts it or forgets it, then stops what runs).
        left += [i.id for i in stored[1] if i.handle is not None and i.phase.value != "stopped"]
    return left


def _stored(paths: Paths, spec: Spec) -> tuple[ServiceStatus, list[Instance]] | None:
    """The service's status and instances in the store its spec names; None when no controller
    ever ran here and the store cannot be opened."""
    kind = drivers.store_kind(spec.state.url)
    try:
        store = drivers.stores.create(kind, drivers.DriverContext(spec=spec, paths=paths))
    except StoreUnavailable:
        if paths.state.exists():
            raise
        return None
    try:
        return store.status(spec.service), store.instances(spec.service)
    finally:
        store.close()
