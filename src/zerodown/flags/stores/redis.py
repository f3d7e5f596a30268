"""Flag store in Redis: one JSON document (`{prefix}doc`: version + every definition), an audit
list, a usage sorted set, and a pub/sub channel that carries the new version after every change, so
every reader wakes at once instead of polling."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import redis

from zerodown.flags.model import Flag
from zerodown.flags.stores import (
    AuditEntry,
    Clock,
    FlagExists,
    FlagNotFound,
    FlagStoreError,
    definition_json,
    stamped_for_create,
    stamped_for_update,
    utc_now,
    with_usage,
)

AUDIT_KEEP = 10_000  # the audit list is capped so it cannot grow without bound


class RedisFlagStore:
    def __init__(self, url: str, *, prefix: str = "zerodown:flags:", clock: Clock = utc_now):
        self._clock = clock
        self._r = redis.Redis.from_url(url, decode_responses=True, socket_timeout=10)
        self._doc = f"{prefix}doc"
        self._audit = f"{prefix}audit"
        self._seq = f"{prefix}audit:seq"
        self._usage = f"{prefix}usage"
        self.channel = f"{prefix}changes"
        self._url = url

    def _load(self, raw: str | None) -> dict[str, Any]:
        if raw is None:
            return {"version": 0, "flags": {}}
        try:
            doc: dict[str, Any] = json.loads(raw)
        except json.JSONDecodeError as e:
            raise FlagStoreError(f"Redis key {self._doc} does not hold JSON: {e}") from e
        return doc

    def _call(self, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except redis.ConnectionError as e:
            raise FlagStoreError(f"cannot reach Redis at {self._url}: {e}") from e

    def snapshot(self) -> tuple[int, list[Flag]]:
        def read() -> tuple[str | None, dict[str, str]]:
            pipe = self._r.pipeline(transaction=True)
            pipe.get(self._doc)
            pipe.zrange(self._usage, 0, -1, withscores=True)
            raw, scored = pipe.execute()
            usage = {k: datetime.fromtimestamp(t, UTC).isoformat() for k, t in scored}
            return raw, usage

        raw, usage = self._call(read)
        doc = self._load(raw)
        flags = [with_usage(d, usage.get(k)) for k, d in sorted(doc["flags"].items())]
        return int(doc["version"]), flags

    def list_flags(self) -> list[Flag]:
        return self.snapshot()[1]

    def get_flag(self, key: str) -> Flag | None:
        for f in self.list_flags():
            if f.key == key:
                return f
        return None

    def version(self) -> int:
        return int(self._load(self._call(lambda: self._r.get(self._doc)))["version"])

    def _change(
        self,
        key: str,
        action: str,
        actor: str,
        note: str,
        make: Callable[[Flag | None], Flag | None],
    ) -> Flag | None:
        entry_id = int(self._call(lambda: self._r.incr(self._seq)))
        for _ in range(50):  # optimistic transaction: retry when another writer got in first
            try:
                with self._r.pipeline(transaction=True) as pipe:
                    pipe.watch(self._doc)  # type: ignore[no-untyped-call]
                    doc = self._load(pipe.get(self._doc))  # type: ignore[arg-type]
                    before = doc["flags"].get(key)
                    new = make(Flag.model_validate(before) if before else None)
                    after = definition_json(new) if new is not None else None
                    if after is None:
                        doc["flags"].pop(key, None)
                    else:
                        doc["flags"][key] = after
                    doc["version"] = int(doc["version"]) + 1
                    entry = AuditEntry(
                        id=entry_id,
                        at=self._clock(),
                        actor=actor,
                        action=action,
                        key=key,
                        before=before,
                        after=after,
                        note=note,
                    )
                    pipe.multi()
                    pipe.set(self._doc, json.dumps(doc))
                    if after is None:
                        pipe.zrem(self._usage, key)
                    pipe.lpush(self._audit, entry.model_dump_json())
                    pipe.ltrim(self._audit, 0, AUDIT_KEEP - 1)
                    pipe.publish(self.channel, str(doc["version"]))
                    pipe.execute()
                    return new
            except redis.WatchError:
                continue
            except redis.ConnectionError as e:
                raise FlagStoreError(f"cannot reach Redis at {self._url}: {e}") from e
        raise FlagStoreError(f"Redis key {self._doc}: too many concurrent writers, try again")

    def create_flag(self, flag: Flag, *, actor: str, note: str = "") -> Flag:
        now = self._clock()

        def make(old: Flag | None) -> Flag:
            if old is not None:
                raise FlagExists(flag.key)
            return stamped_for_create(flag, now)

        result = self._change(flag.key, "create", actor, note, make)
        assert result is not None
        return result

    def update_flag(self, flag: Flag, *, actor: str, note: str = "") -> Flag:
        now = self._clock()

        def make(old: Flag | None) -> Flag:
            if old is None:
                raise FlagNotFound(flag.key)
            return stamped_for_update(old, flag, now)

        result = self._change(flag.key, "update", actor, note, make)
        assert result is not None
        return result

    def delete_flag(self, key: str, *, actor: str, note: str = "") -> None:
        def make(old: Flag | None) -> None:
            if old is None:
                raise FlagNotFound(key)

        self._change(key, "delete", actor, note, make)

    def audit(self, *, key: str | None = None, limit: int = 100) -> list[AuditEntry]:
        raw = self._call(lambda: self._r.lrange(self._audit, 0, AUDIT_KEEP))
        out = []
        for item in raw:
            entry = AuditEntry.model_validate_json(item)
            if key is None or entry.key == key:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def mark_evaluated(self, keys: Iterable[str], when: datetime) -> None:
        # A sorted set scored by time: ZADD GT keeps the latest, atomically, across writers.
        known = {f.key for f in self.list_flags()}
        mapping = {k: when.timestamp() for k in keys if k in known}
        if mapping:
            self._call(lambda: self._r.zadd(self._usage, mapping, gt=True))

    def wait_for_change(self, since: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        pubsub = self._r.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            self._call(lambda: pubsub.subscribe(self.channel))
            # Subscribed first, then read: a change between the two is not missed.
            current = self.version()
            while current == since:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait = min(left, 1.0)
                message = self._call(lambda: pubsub.get_message(timeout=wait))  # noqa: B023
                if message is not None:
                    current = int(message["data"])
            return current
        finally:
            pubsub.close()

    def close(self) -> None:
        self._r.close()
