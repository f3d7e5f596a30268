"""SQL actions as data: what an operation asks the executor to run, and the locks it takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zerodown.core.errors import ZerodownError

from .schema import Schema

if TYPE_CHECKING:
    from .triggers import TriggerSpec


class MigrationError(ZerodownError):
    """A migration cannot be planned or run; the message says what to change."""


class MigrationValidationError(MigrationError):
    """An operation does not fit the schema it would run against (missing table, column…)."""


@dataclass(frozen=True)
class DBAction:
    """One SQL statement.

    `transactional=False` marks statements PostgreSQL refuses inside a transaction block
    (CREATE/DROP INDEX CONCURRENTLY); the executor runs them alone, with invalid-index clean-up.
    `skip_if` is a query returning one boolean: when true the statement has already been applied
    (so a start that crashed half way can simply be run again).
    """

    sql: str
    locks: str
    transactional: bool = True
    skip_if: str | None = None
    index: str | None = None  # set for CREATE INDEX CONCURRENTLY: the index to check for validity
    note: str = ""


@dataclass(frozen=True)
class Backfill:
    """Touch every row that existed when the triggers went in, in batches by primary key."""

    table: str  # physical, unqualified
    pk: tuple[tuple[str, str], ...]  # (physical column, type)
    # (physical column, SQL over physical columns) the backfill sets itself, the triggers
    # skipped (triggers.direct_fills); empty: it touches each row and the triggers fill them
    fills: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class StartResult:
    """What an operation does at start: DDL before the backfill, the backfill, DDL after it,
    and the schema as the new app version sees it."""

    schema: Schema
    actions: tuple[DBAction, ...] = ()
    backfills: tuple[Backfill, ...] = ()
    after_backfill: tuple[DBAction, ...] = ()
    triggers: tuple[TriggerSpec, ...] = ()
    unsafe: bool = False
    notes: tuple[str, ...] = field(default=())
