"""The database a spec's migrations run against: `migrations.database`, where `${VAR}` is read
from the controller's environment (so that passwords stay out of the spec file)."""

from __future__ import annotations

import os
import string
from collections.abc import Mapping

from zerodown.core.errors import SpecError


def database_url(template: str, environ: Mapping[str, str] | None = None) -> str:
    try:
        return string.Template(template).substitute(os.environ if environ is None else environ)
    except KeyError as exc:
        raise SpecError(
            f"uses ${exc.args[0]}, which is not set in the controller's environment",
            field="migrations.database",
        ) from None
    except ValueError as exc:  # a `$` that starts no name: say where, not what Template thinks
        raise SpecError(f"{exc}; write $$ for a literal $", field="migrations.database") from None
