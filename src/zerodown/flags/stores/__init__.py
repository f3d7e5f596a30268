"""Where flag definitions live: one FlagStore protocol, three drivers.

- SQLite (default): the controller's own file; readers poll a version number.
- Redis: one JSON document plus a pub/sub notification, so every reader wakes at once.
- PostgreSQL (psycopg): tables with a version row.

Every change writes the new definition, bumps the version and appends an audit entry (who, when,
before, after) in one transaction. `last_evaluated_at` is kept apart and does not bump the version,
so evaluations do not invalidate every SDK's cached copy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from zerodown.core.errors import StateError, ZerodownError
from zerodown.flags.model import Flag

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class FlagNotFound(StateError):
    def __init__(self, key: str):
        super().__init__(f"flag {key!r} does not exist; `zerodown flags list` shows the flags")
        self.key = key


class FlagExists(StateError):
    def __init__(self, key: str):
        super().__init__(f"flag {key!r} already exists; update it instead of creating it")
        self.key = key


class FlagStoreError(ZerodownError):
    """The store is unreachable or holds something we cannot read."""


class AuditEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    at: datetime
    actor: str
    action: Literal["create", "update", "delete"]
    key: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    note: str = ""


class FlagStore(Protocol):
    def list_flags(self) -> list[Flag]: ...

    def get_flag(self, key: str) -> Flag | None: ...

    def snapshot(self) -> tuple[int, list[Flag]]:
        """(version, flags) read together, for ETags."""
        ...

    def version(self) -> int: ...

    def create_flag(self, flag: Flag, *, actor: str, note: str = "") -> Flag: ...

    def update_flag(self, flag: Flag, *, actor: str, note: str = "") -> Flag: ...

    def delete_flag(self, key: str, *, actor: str, note: str = "") -> None: ...

    def audit(self, *, key: str | None = None, limit: int = 100) -> list[AuditEntry]:
        """Newest first."""
        ...

    def mark_evaluated(self, keys: Iterable[str], when: datetime) -> None: ...

    def wait_for_change(self, since: int, timeout: float) -> int:
        """Block until the version differs from `since` or `timeout` seconds pass; the version."""
        ...

    def close(self) -> None: ...


# --- the parts every driver shares (pure) ----------------------------------------------------


def stamped_for_create(flag: Flag, now: datetime) -> Flag:
    return flag.model_copy(
        update={"created_at": flag.created_at or now, "changed_at": now, "last_evaluated_at": None}
    )


def stamped_for_update(old: Flag, new: Flag, now: datetime) -> Flag:
    return new.model_copy(
        update={
            "created_at": old.created_at,
            "changed_at": now,
            "last_evaluated_at": old.last_evaluated_at,
        }
    )


def definition_json(flag: Flag) -> dict[str, Any]:
    """What is stored: the flag without its usage time (kept apart)."""
    doc = flag.to_json()
    doc.pop("last_evaluated_at", None)
    return doc


def with_usage(doc: dict[str, Any], last_evaluated: str | None) -> Flag:
    return Flag.model_validate({**doc, "last_evaluated_at": last_evaluated})


def open_store(url: str, **kw: Any) -> FlagStore:
    """`sqlite:///path/to.db` (or a bare path), `redis://…`, `postgresql://…`."""
    if url.startswith(("redis://", "rediss://", "unix://")):
        from zerodown.flags.stores.redis import RedisFlagStore

        return RedisFlagStore(url, **kw)
    if url.startswith(("postgres://", "postgresql://")):
        from zerodown.flags.stores.postgres import PostgresFlagStore

        return PostgresFlagStore(url, **kw)
    from zerodown.flags.stores.sqlite import SqliteFlagStore

    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url
    return SqliteFlagStore(path, **kw)
