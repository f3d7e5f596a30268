"""Flag evaluations per second: zerodown's SDK beside Unleash's Python SDK (`UnleashClient`),
both in-process, both from a bootstrap of the same flags, over the same contexts; then how fast a
kill (flag off through the API) reaches a streaming SDK client.

    python bench/flags_bench.py [--seconds 3] [--rounds 3] [--users 1000] [--kills 20]
                                [--redis URL] [--json out.json]

Each rate is measured --rounds times, alternating the SDKs; the median and the range are printed.

It also checks that both give the same answer for every (flag, context) pair, variants included.
The kill latency runs the flag API on uvicorn on 127.0.0.1 with a SQLite store (or Redis).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zerodown.flags.client import FlagClient
from zerodown.flags.evaluate import EvalContext
from zerodown.flags.model import (
    Constraint,
    DefaultStrategy,
    Flag,
    GradualRolloutStrategy,
    Operator,
    Payload,
    UserIdsStrategy,
    Variant,
)
from zerodown.flags.unleash import flags_to_unleash

FLAGS = [
    Flag(key="simple-on", enabled=True, strategies=(DefaultStrategy(),)),
    Flag(key="simple-off", enabled=False, strategies=(DefaultStrategy(),)),
    Flag(
        key="rollout-50",
        enabled=True,
        strategies=(GradualRolloutStrategy(rollout=50, stickiness="userId"),),
    ),
    Flag(
        key="constrained",
        enabled=True,
        strategies=(
            DefaultStrategy(
                constraints=(
                    Constraint(context_name="environment", operator=Operator.IN, values=("prod",)),
                    Constraint(
                        context_name="email",
                        operator=Operator.STR_ENDS_WITH,
                        values=("@example.com",),
                        case_insensitive=True,
                    ),
                )
            ),
        ),
    ),
    Flag(
        key="semver",
        enabled=True,
        strategies=(
            DefaultStrategy(
                constraints=(
                    Constraint(context_name="version", operator=Operator.SEMVER_GTE, value="2.1.0"),
                )
            ),
        ),
    ),
    Flag(
        key="user-list",
        enabled=True,
        strategies=(UserIdsStrategy(user_ids=tuple(str(i) for i in range(0, 1000, 7))),),
    ),
    Flag(
        key="variants",
        enabled=True,
        strategies=(DefaultStrategy(),),
        variants=(
            Variant(name="a", weight=50, payload=Payload(value="A")),
            Variant(name="b", weight=30),
            Variant(name="c", weight=20, stickiness="userId"),
        ),
    ),
]


def contexts(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        out.append(
            {
                "userId": str(i),
                "sessionId": f"s{i}",
                "environment": "prod" if i % 3 else "dev",
                "properties": {
                    "email": f"user{i}@{'EXAMPLE.com' if i % 2 else 'other.org'}",
                    "version": f"2.{i % 4}.0",
                },
            }
        )
    return out


def rate(fn: Callable[[], int], seconds: float) -> float:
    fn()  # warm up caches
    gc.collect()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += fn()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20, help="flag changes to time; 0 to skip")
    parser.add_argument("--redis", default=None, help="run the kill timing on this Redis")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here (for bench/all)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    raw = contexts(args.users)
    ours_ctx = [EvalContext.from_mapping(c) for c in raw]
    keys = [f.key for f in FLAGS]
    unleash_doc = flags_to_unleash(FLAGS)
    ours = FlagClient(bootstrap={"version": 1, "flags": [f.to_json() for f in FLAGS]})

    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache

    cache_dir = tempfile.mkdtemp(prefix="zerodown-bench-unleash-")
    cache = FileCache("bench", directory=cache_dir)
    cache.bootstrap_from_dict(unleash_doc)
    unleash = UnleashClient(
        url="http://127.0.0.1:9/api",  # never contacted: fetch_toggles=False, no metrics
        app_name="zerodown-bench",
        disable_metrics=True,
        disable_registration=True,
        cache=cache,
    )
    unleash.initialize_client(fetch_toggles=False)
    try:
        # Same answers? (enabled and variant for every flag and context)
        mismatches = 0
        for c, oc in zip(raw, ours_ctx, strict=True):
            for k in keys:
                mine = ours.variant(k, oc)
                theirs = unleash.get_variant(k, c)
                if mine.enabled != unleash.is_enabled(k, c) or (
                    mine.variant_enabled and mine.variant != theirs["name"]
                ):
                    mismatches += 1
        pairs = len(raw) * len(keys)

        def ours_prebuilt() -> int:
            for oc in ours_ctx:
                for k in keys:
                    ours.is_enabled(k, oc)
            return pairs

        def ours_from_dict() -> int:
            for c in raw:
                oc = EvalContext.from_mapping(c)
                for k in keys:
                    ours.is_enabled(k, oc)
            return pairs

        def theirs_is_enabled() -> int:
            for c in raw:
                for k in keys:
                    unleash.is_enabled(k, c)
            return pairs

        def ours_variant() -> int:
            for oc in ours_ctx:
                ours.variant("variants", oc)
            return len(ours_ctx)

        def theirs_variant() -> int:
            for c in raw:
                unleash.get_variant("variants", c)
            return len(raw)

        cases = {
            "zerodown is_enabled (context built once)": ours_prebuilt,
            "zerodown is_enabled (context from a dict per request)": ours_from_dict,
            "UnleashClient is_enabled": theirs_is_enabled,
            "zerodown variant": ours_variant,
            "UnleashClient get_variant": theirs_variant,
        }
        results: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):  # rounds alternate, so a busy moment hits every case
            for name, fn in cases.items():
                results[name].append(rate(fn, args.seconds))
    finally:
        unleash.destroy()
        ours.close()

    import importlib.metadata as md

    print(
        f"python {platform.python_version()}, UnleashClient {md.version('UnleashClient')}, "
        f"{len(FLAGS)} flags x {args.users} contexts, {args.seconds:g} s each"
    )
    print(f"agreement: {pairs - mismatches}/{pairs} (flag, context) pairs give the same result")
    print(f"evaluations/s, median (range) over {args.rounds} rounds:")
    for name, values in results.items():
        print(
            f"  {name:55s} {statistics.median(values):>12,.0f}"
            f" ({min(values):,.0f}-{max(values):,.0f})"
        )
    summary: dict[str, Any] = {
        "agreement": [pairs - mismatches, pairs],
        "evaluations_per_s": {name: statistics.median(v) for name, v in results.items()},
        "range": {name: [min(v), max(v)] for name, v in results.items()},
    }
    if args.kills:
        summary["kill_ms"] = kill_latency(args.kills, args.redis)
    if args.json:
        args.json.write_text(json.dumps({"flags": summary}, indent=1))


def kill_latency(kills: int, redis_url: str | None) -> dict[str, float]:
    import socket
    import threading

    import httpx
    import uvicorn
    from fastapi import FastAPI

    from zerodown.flags.api import make_flags_router
    from zerodown.flags.stores import FlagStore

    store: FlagStore
    if redis_url:
        import uuid

        from zerodown.flags.stores.redis import RedisFlagStore

        store = RedisFlagStore(redis_url, prefix=f"bench:{uuid.uuid4().hex[:8]}:")
    else:
        from zerodown.flags.stores.sqlite import SqliteFlagStore

        store = SqliteFlagStore(tempfile.mkdtemp(prefix="zerodown-bench-flags-") + "/flags.db")
    app = FastAPI()
    app.include_router(make_flags_router(store, admin_token="bench"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": "Bearer bench"}
    latencies = []
    try:
        with httpx.Client(base_url=url, headers=headers) as admin:
            admin.post("/api/flags", json={"key": "k", "enabled": True}).raise_for_status()
            with FlagClient(url) as sdk:
                sdk.wait_until_ready(10)
                for i in range(kills):
                    want = i % 2 == 1
                    start = time.perf_counter()
                    admin.patch("/api/flags/k", json={"enabled": want}).raise_for_status()
                    while sdk.is_enabled("k") is not want:
                        if time.perf_counter() - start > 10:
                            raise SystemExit("a change did not reach the SDK within 10 s")
                        time.sleep(0.001)
                    latencies.append(time.perf_counter() - start)
    finally:
        server.should_exit = True
        thread.join(10)
        store.close()
    ms = sorted(x * 1000 for x in latencies)
    print(
        f"flag change → streaming SDK ({'Redis' if redis_url else 'SQLite'} store), {kills} changes:"
        f" median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms"
        " (from the PATCH request to the SDK answering the new value)"
    )
    return {"median": statistics.median(ms), "max": ms[-1]}


if __name__ == "__main__":
    main()
