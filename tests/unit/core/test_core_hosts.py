"""Several hosts in the pure core: placement spread evenly, max_unavailable per host as well as
overall (a deploy never empties a host), a host that stops answering replaced after the grace
period, and back in use once it answers (issue 14)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from sim import World

from zerodown.core.decide import decide
from zerodown.core.hosts import HostView, place
from zerodown.core.model import (
    ApplyRoutes,
    Decision,
    Instance,
    Launch,
    Record,
    Retire,
    RolloutPhase,
)
from zerodown.spec.model import Spec

ADDRESSES = {"web1": "10.0.0.1", "web2": "10.0.0.2", "web3": "10.0.0.3"}


def spec(instances: int = 3, strategy: dict[str, object] | None = None) -> Spec:
    return Spec.model_validate(
        {
            "service": "shop",
            "instances": instances,
            "run": {"command": ["app", "{port}", "{host}"]},
            "hosts": [{"name": n, "ssh": f"root@{a}"} for n, a in ADDRESSES.items()],
            "ssh": {"host_grace": "5s"},
            "strategy": strategy or {"rolling": {"max_surge": 1, "max_unavailable": 0}},
        }
    )


@dataclass(repr=False)
class HostWorld(World):
    down: dict[str, float] = field(default_factory=dict)  # host -> since

    def views(self) -> list[HostView]:
        return [
            HostView(
                n, a, n not in self.down, self.down.get(n), "no route to host" * (n in self.down)
            )
            for n, a in ADDRESSES.items()
        ]

    def reconcile(self) -> Decision:
        before, seen = self.status, dict(self.instances)
        decision = decide(
            self.spec, self.status, list(self.instances.values()), self.now, self.views()
        )
        self.status = decision.status
        for action in decision.actions:
            if isinstance(action, Record):
                self.records.append(action)
            elif isinstance(action, ApplyRoutes):
                self.tables.append(action.table)
            elif isinstance(action, Retire):
                del self.instances[action.instance]
            elif isinstance(action, Launch):
                assert len(action.hosts) == action.count
                for host in action.hosts:
                    assert host not in self.down, f"launched on {host}, which is down"
                    self.counter += 1
                    iid = f"{action.release}-{self.counter}"
                    self.launched.append((self.now, action.release))
                    self.instances[iid] = Instance(
                        id=iid,
                        release=action.release,
                        address=f"{ADDRESSES[host]}:{9000 + self.counter}",
                        launched_at=self.now,
                    )
        self.check_rules(before, seen, decision)
        return decision

    def per_host(self, release: str | None = None, serving: bool = False) -> Counter[str]:
        hosts = {a: n for n, a in ADDRESSES.items()}
        return Counter(
            hosts[i.address.rpartition(":")[0]]
            for i in self.instances.values()
            if (release is None or i.release == release) and (i.serving or not serving)
        )


def started(s: Spec) -> HostWorld:
    world = HostWorld(spec=s)
    world.deploy("v1")
    world.run(10)
    assert world.status.stable == "v1"
    return world


def test_instances_spread_evenly_and_a_rolling_deploy_never_empties_a_host() -> None:
    world = started(spec(3))
    assert world.per_host("v1") == {"web1": 1, "web2": 1, "web3": 1}
    world.deploy("v2")
    for _ in range(60):
        world.tick(0.5)
        # max_unavailable 0 per host: each host keeps a serving instance throughout
        serving = world.per_host(serving=True)
        assert all(serving[h] >= 1 for h in ADDRESSES), serving
    assert world.status.stable == "v2"
    assert world.per_host("v2") == {"web1": 1, "web2": 1, "web3": 1}


def test_max_unavailable_holds_per_host_as_well_as_overall() -> None:
    world = started(spec(6, {"rolling": {"max_surge": 2, "max_unavailable": 2}}))
    assert world.per_host("v1") == {"web1": 2, "web2": 2, "web3": 2}
    world.deploy("v2")
    for _ in range(80):
        world.tick(0.5)
        serving = world.per_host(serving=True)
        assert sum(serving.values()) >= 4
        assert all(serving[h] >= 1 for h in ADDRESSES), serving  # never emptied
    assert world.per_host("v2") == {"web1": 2, "web2": 2, "web3": 2}


def test_a_host_that_stops_answering_is_replaced_after_the_grace_then_used_again() -> None:
    world = started(spec(3))
    world.down["web2"] = world.now
    world.tick(0.5)
    routed = {b.address for p in world.applied.pools for b in p.backends}
    assert not any(a.startswith("10.0.0.2:") for a in routed)  # out of the routes at once
    assert world.per_host("v1")["web2"] == 1  # not replaced within the grace
    world.run(6)
    assert world.per_host("v1") == {"web1": 2, "web3": 1} or world.per_host("v1") == {
        "web1": 1,
        "web3": 2,
    }
    retired = [r.message for r in world.records if r.kind == "retire"]
    assert any("host web2 has not answered for" in m and "replaced" in m for m in retired)
    del world.down["web2"]
    world.run(10)  # back in use: one instance moves back to it, capacity kept all along
    assert world.per_host("v1") == {"web1": 1, "web2": 1, "web3": 1}
    assert len(world.launched) == 5  # 3, the replacement, the move back
    world.deploy("v2")
    world.run(20)
    assert world.status.rollout is not None
    assert world.status.rollout.phase is RolloutPhase.COMPLETED
    assert world.per_host("v2") == {"web1": 1, "web2": 1, "web3": 1}  # back in use


def test_a_failure_on_a_down_host_does_not_fail_the_rollout() -> None:
    world = started(spec(3))
    world.deploy("v2")
    world.run_until(lambda: bool(world.of("v2")))
    world.tick(0.5)
    world.tick(0.5)
    new = world.of("v2")[0]
    host = next(n for n, a in ADDRESSES.items() if world.instances[new].address.startswith(a))
    world.down[host] = world.now
    world.fail_instance(new, "liveness probe failed 3 times: timed out")
    world.tick(0.5)
    assert world.status.rollout is not None and world.status.rollout.active
    del world.down[host]
    world.run(30)
    assert world.status.stable == "v2"


def test_place_fills_the_host_furthest_below_its_share() -> None:
    views = [HostView(n, a) for n, a in ADDRESSES.items()]
    old = [
        Instance(id=f"a{k}", release="v1", address=f"{ADDRESSES[h]}:1{k}", launched_at=0)
        for k, h in enumerate(["web1", "web1", "web2", "web3"])
    ]
    assert place("v2", 4, total=4, hosts=views, live=old) == ["web1", "web2", "web3", "web1"]
    down = [replace(views[0], up=False, down_since=0.0), *views[1:]]
    assert place("v2", 2, total=4, hosts=down, live=old) == ["web2", "web3"]
