"""Which migrations a deploy would contract and start, read from the migration files and the
database schemas the state store's revisions used; the database itself is not read, so `plan`
works with no database reachable (and says where its knowledge came from)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zerodown.core.model import Revision
from zerodown.core.rollback_plan import MigrationOutlook
from zerodown.spec.model import Spec

from .executor import Options
from .model import load_migration
from .planner import version_schema_name
from .risk import assess


def migration_outlook(
    spec: Spec, spec_dir: Path, revisions: Sequence[Revision], stable: str | None, *, stored: bool
) -> MigrationOutlook | None:
    """Which migration the deploy would contract and which it would start, from the files and
    the schemas the store's revisions used (the database is not read)."""
    if spec.migrations is None:
        return None
    from .api import migration_files  # the one place that orders the files

    files = migration_files(spec_dir / spec.migrations.dir)
    loaded = [load_migration(f) for f in files]
    risks = assess(loaded, [f.stem for f in files])
    names = [r.migration for r in risks]
    schemas = [version_schema_name(Options().base_schema, n) for n in names]
    used = {r.db_schema for r in revisions if r.db_schema}
    started = [i for i, s in enumerate(schemas) if s in used]
    last = max(started, default=-1)
    on_stable = [r for r in revisions if r.version == stable and r.db_schema]
    stable_schema = on_stable[-1].db_schema if on_stable else None
    contract = last if last >= 0 and stable_schema == schemas[last] else None
    start = last + 1 if last + 1 < len(names) else None
    older = tuple(
        r.number
        for r in revisions
        if contract is not None and r.db_schema and r.db_schema != schemas[contract]
    )
    source = (
        "the migration files and the schemas in the state store (the database is not read)"
        if stored
        else "the migration files alone: no state store yet, so none is taken as run"
    )
    return MigrationOutlook(
        to_contract=names[contract] if contract is not None else None,
        contract_reasons=risks[contract].reasons if contract is not None else (),
        to_start=names[start] if start is not None else None,
        start_reasons=risks[start].reasons if start is not None else (),
        older_schemas=older,
        source=source,
    )
