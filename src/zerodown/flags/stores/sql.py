"""What the SQL flag stores (SQLite, PostgreSQL) share: create, update and delete are the same
read-check-write under one transaction, with the change and its audit entry written together.
Each store brings its transaction, its locked read of the current definition, and its writes."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from zerodown.flags.model import Flag
from zerodown.flags.stores import (
    Clock,
    FlagExists,
    FlagNotFound,
    definition_json,
    stamped_for_create,
    stamped_for_update,
)

Conn = TypeVar("Conn")


class SqlFlagStore(Generic[Conn]):
    _clock: Clock

    def _tx(self) -> AbstractContextManager[Conn]:
        raise NotImplementedError

    def _old(self, conn: Conn, key: str) -> dict[str, Any] | None:
        """The stored definition of `key`, read so that no other writer can change it meanwhile."""
        raise NotImplementedError

    def _change(
        self,
        conn: Conn,
        *,
        actor: str,
        action: str,
        key: str,
        before: dict[str, Any] | None,
        after: dict[str, Any] | None,
        note: str,
    ) -> None:
        raise NotImplementedError

    def create_flag(self, flag: Flag, *, actor: str, note: str = "") -> Flag:
        stored = stamped_for_create(flag, self._clock())
        with self._tx() as conn:
            if self._old(conn, flag.key) is not None:
                raise FlagExists(flag.key)
            after = definition_json(stored)
            self._change(
                conn,
                actor=actor,
                action="create",
                key=flag.key,
                before=None,
                after=after,
                note=note,
            )
        return stored

    def update_flag(self, flag: Flag, *, actor: str, note: str = "") -> Flag:
        with self._tx() as conn:
            old = self._old(conn, flag.key)
            if old is None:
                raise FlagNotFound(flag.key)
            stored = stamped_for_update(Flag.model_validate(old), flag, self._clock())
            after = definition_json(stored)
            self._change(
                conn, actor=actor, action="update", key=flag.key, before=old, after=after, note=note
            )
        return stored

    def delete_flag(self, key: str, *, actor: str, note: str = "") -> None:
        with self._tx() as conn:
            old = self._old(conn, key)
            if old is None:
                raise FlagNotFound(key)
            self._change(
                conn, actor=actor, action="delete", key=key, before=old, after=None, note=note
            )
