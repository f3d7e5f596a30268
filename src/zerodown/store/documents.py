"""What both state stores keep the same way: a service's status, instances, revisions and
decision log, as JSON documents of the core's frozen dataclasses in a few indexed columns.

The SQL here is what SQLite and PostgreSQL both accept: `?` placeholders (the PostgreSQL store
turns them into psycopg's `%s`) and bare table names (the PostgreSQL store's session has
`search_path` set to its `zerodown` schema). Each store supplies the two primitives, `_rows`
(a read) and `_write` (statements in one fenced transaction); what differs between the two
databases (connections, timeouts, the leader lease on each one's clock) stays in its own module.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from zerodown.core.model import Event, EventRow, Instance, Revision, Rollout, ServiceStatus

Statement = tuple[str, tuple[Any, ...]]


class DocumentStore(ABC):
    @abstractmethod
    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """The rows a read returns."""

    @abstractmethod
    def _write(self, statements: list[Statement]) -> list[tuple[Any, ...]]:
        """Run the statements in one transaction, after checking this controller still leads;
        the rows the last one returns (RETURNING)."""

    # status -------------------------------------------------------------------------------

    def status(self, service: str) -> ServiceStatus:
        rows = self._rows("SELECT doc FROM status WHERE service = ?", service)
        return ServiceStatus.from_json(json.loads(rows[0][0])) if rows else ServiceStatus(service)

    def save(self, status: ServiceStatus, events: Sequence[EventRow] = ()) -> None:
        """The status, its rollout's revision row and the decision records, in one transaction."""
        statements: list[Statement] = [
            (
                "INSERT INTO status (service, doc) VALUES (?, ?)"
                " ON CONFLICT (service) DO UPDATE SET doc = excluded.doc",
                (status.service, json.dumps(status.to_json())),
            )
        ]
        if status.rollout is not None:
            statements.append(_revision_update(status.service, status.rollout))
        self._write(statements + _event_inserts(status.service, events))

    def add_events(self, service: str, events: Sequence[EventRow]) -> None:
        """Decision-log entries that change no status (errors, probe reports, flag guards)."""
        self._write(_event_inserts(service, events))

    # instances ----------------------------------------------------------------------------

    def instances(self, service: str) -> list[Instance]:
        rows = self._rows("SELECT doc FROM instances WHERE service = ? ORDER BY id", service)
        return [Instance.from_json(json.loads(doc)) for (doc,) in rows]

    def put_instance(self, service: str, instance: Instance) -> None:
        self._write(
            [
                (
                    "INSERT INTO instances (id, service, doc) VALUES (?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
                    (instance.id, service, json.dumps(instance.to_json())),
                )
            ]
        )

    def delete_instance(self, instance_id: str) -> None:
        self._write([("DELETE FROM instances WHERE id = ?", (instance_id,))])

    # revisions and events -----------------------------------------------------------------

    def add_revision(
        self, service: str, *, version: str, strategy: str, spec: dict[str, Any], now: float
    ) -> int:
        # One statement numbers and inserts, so the number is taken inside the write's lock.
        ((number,),) = self._write(
            [
                (
                    "INSERT INTO revisions (service, number, version, strategy, spec,"
                    " created_at, outcome) SELECT ?, COALESCE(MAX(number), 0) + 1, ?, ?, ?, ?,"
                    " 'progressing' FROM revisions WHERE service = ? RETURNING number",
                    (service, version, strategy, json.dumps(spec), now, service),
                )
            ]
        )
        return int(number)

    def revisions(self, service: str) -> list[Revision]:
        rows = self._rows(
            "SELECT number, version, strategy, spec, created_at, finished_at, outcome, reason,"
            " db_schema FROM revisions WHERE service = ? ORDER BY number",
            service,
        )
        return [
            Revision(int(n), v, s, json.loads(spec), c, f, o, r, d)
            for n, v, s, spec, c, f, o, r, d in rows
        ]

    def revision(self, service: str, number: int) -> Revision | None:
        return next((r for r in self.revisions(service) if r.number == number), None)

    def set_revision_schema(self, service: str, number: int, schema: str) -> None:
        self._write(
            [
                (
                    "UPDATE revisions SET db_schema = ? WHERE service = ? AND number = ?",
                    (schema, service, number),
                )
            ]
        )

    def end_revision(self, service: str, rollout: Rollout) -> None:
        self._write([_revision_update(service, rollout)])

    def events(self, service: str, *, after: int = 0, limit: int = 200) -> list[Event]:
        rows = self._rows(
            "SELECT id, at, revision, kind, message FROM events WHERE service = ? AND id > ?"
            " ORDER BY id DESC LIMIT ?",
            service,
            after,
            limit,
        )
        return [Event(int(i), at, rev, kind, msg) for i, at, rev, kind, msg in reversed(rows)]


def _event_inserts(service: str, events: Sequence[EventRow]) -> list[Statement]:
    return [
        (
            "INSERT INTO events (service, at, revision, kind, message) VALUES (?, ?, ?, ?, ?)",
            (service, at, rev, kind, message),
        )
        for at, rev, kind, message in events
    ]


def _revision_update(service: str, rollout: Rollout) -> Statement:
    return (
        "UPDATE revisions SET outcome = ?, reason = ?, finished_at = ?"
        " WHERE service = ? AND number = ?",
        (rollout.phase.value, rollout.reason, rollout.finished_at, service, rollout.revision),
    )
