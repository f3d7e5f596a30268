"""`zerodown up` and `deploy` wait until the router runs the status's route table."""

from __future__ import annotations

from typing import Any

from zerodown.cli import main


class Answers:
    """A client whose GET /api/status answers each state in turn (the last one again)."""

    def __init__(self, *states: dict[str, Any]) -> None:
        self.states = list(states)
        self.asked = 0

    def get(self, path: str, **_: Any) -> dict[str, Any]:
        assert path == "/api/status"
        state = self.states[min(self.asked, len(self.states) - 1)]
        self.asked += 1
        return state


def state(*, routes_applied: bool | None) -> dict[str, Any]:
    rollout = {"phase": "completed", "version": "v1", "revision": 1, "reason": ""}
    return {
        "status": {"stable": "v1", "rollout": rollout},
        "routes_applied": routes_applied,
        "events": [],
        "controller": {},
    }


def test_up_waits_while_the_router_does_not_run_the_stable_table() -> None:
    # The status is saved before its routes are applied: nginx reloads for a few hundred
    # milliseconds, answering with its old table (503 for a first release) meanwhile.
    client = Answers(state(routes_applied=False), state(routes_applied=True))
    code = main.follow(client, timeout=30, until_serving=True)  # type: ignore[arg-type]
    assert code == main.EXIT_OK
    assert client.asked == 2


def test_a_standby_answer_says_nothing_of_the_routes() -> None:
    client = Answers(state(routes_applied=None))
    assert main.follow(client, timeout=30, until_serving=True) == main.EXIT_OK  # type: ignore[arg-type]
    assert client.asked == 1


def test_deploy_reports_the_timeout_with_the_router_still_behind() -> None:
    client = Answers(state(routes_applied=False))
    code = main.follow(client, timeout=0, until_serving=False)  # type: ignore[arg-type]
    assert code == main.EXIT_PAUSED_TIMEOUT
