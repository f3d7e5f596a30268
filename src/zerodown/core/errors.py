"""The one error tree of zerodown.

Every error a user can see says what to do next. Drivers raise TransientDriverError for things
worth retrying (a refused connection, a busy database) and PermanentDriverError for things that
will not get better by themselves (a missing binary, a bad address).
"""

from __future__ import annotations


class ZerodownError(Exception):
    """Base of every error zerodown raises on purpose."""


class SpecError(ZerodownError):
    """The spec file is wrong: names the file, the line and the field."""

    def __init__(self, message: str, *, file: str = "", line: int | None = None, field: str = ""):
        self.file = file
        self.line = line
        self.field = field
        where = file + (f":{line}" if line else "")
        prefix = f"{where}: " if where else ""
        at = f"{field}: " if field else ""
        super().__init__(f"{prefix}{at}{message}")


class DriverError(ZerodownError):
    """A driver (platform, router, probe, store, metric provider) failed."""


class TransientDriverError(DriverError):
    """Worth retrying: the next reconcile pass may succeed."""


class PermanentDriverError(DriverError):
    """Will not succeed by retrying: the user has to change something."""


class StoreUnavailable(TransientDriverError):
    """The state store cannot be read or written now (locked by another process, disk full,
    database unreachable). The API answers 503; the engine records it and retries."""


class NotLeader(StoreUnavailable):
    """A write refused because this controller does not hold the service's leader lease (it is
    a standby, or a paused leader whose lease another controller has taken since): the write
    was fenced off in the store's own transaction. The controller steps down to standby."""


class StateError(ZerodownError):
    """The requested operation does not fit the current state (e.g. promote with no rollout)."""
