"""Holding traffic: queued in order while held, routed on release, 503 + Retry-After past the
queue's bounds or its time."""

from __future__ import annotations

import threading

import httpx
import pytest
from router_kit import BackendProc, RouterProc, table, wait_for

from zerodown.routers.proxy.handover import handover_path, request_sockets


def test_hold_release_run_out_and_no_handover_meanwhile(
    router: RouterProc, backend_a: BackendProc
) -> None:
    router.apply(table(1, ("a", 1, [backend_a])))
    assert router.admin().post("/hold", params={"max": "30"}).json()["holding"] is True
    answers: list[tuple[int, int]] = []

    def ask(n: int) -> None:
        r = httpx.get(router.url + f"/n{n}", timeout=30)
        answers.append((n, r.status_code))

    threads = []
    for n in range(3):
        t = threading.Thread(target=ask, args=(n,))
        t.start()
        threads.append(t)
        wait_for(lambda n=n: router.stats()["hold"]["held"] == n + 1, f"request {n} held")
    assert answers == []
    r = router.admin().post("/release").json()
    assert r["released"] == 3 and r["holding"] is False
    for t in threads:
        t.join(10)
    assert sorted(answers) == [(n, 200) for n in range(3)]
    assert httpx.get(router.url + "/").status_code == 200  # flows again
    assert router.admin().post("/hold", params={"max": "0"}).status_code == 400

    # A hold that runs out answers what it held with 503 + Retry-After. The request is seen
    # held first, then a second call shortens the hold (a fixed short hold could run out before
    # the request arrives on a busy machine).
    router.admin().post("/hold", params={"max": "30"})
    late: list[httpx.Response] = []
    t = threading.Thread(target=lambda: late.append(httpx.get(router.url + "/", timeout=30)))
    t.start()
    wait_for(lambda: router.stats()["hold"]["held"] == 1, "the request held")
    router.admin().post("/hold", params={"max": "0.05"})
    t.join(10)
    (r,) = late
    assert (r.status_code, r.headers["retry-after"]) == (503, "1")
    assert "held this request as long as it could" in r.text
    assert httpx.get(router.url + "/").status_code == 200
    assert router.stats()["hold"]["refused_total"] == 1

    # No handover while holding: held requests cannot move to another process.
    router.admin().post("/hold", params={"max": "30"})
    with pytest.raises(OSError, match="holding traffic"):
        request_sockets(handover_path(router.admin_socket), b"take")
    router.admin().post("/release")
    assert httpx.get(router.url + "/").status_code == 200
