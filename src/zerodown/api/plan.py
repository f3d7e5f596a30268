"""GET /api/plan: the rollback plan of the current rollout (or, with none under way, of the next
deploy), for the dashboard; the same computation as `zerodown plan` (core.rollback_plan)."""

from __future__ import annotations

from typing import Any

from zerodown.api.controller import Controller
from zerodown.core import caution
from zerodown.core.errors import SpecError
from zerodown.core.model import CheckState, Rollout
from zerodown.core.rollback_plan import MigrationOutlook, compute
from zerodown.migrations.outlook import migration_outlook


def plan_of(controller: Controller) -> dict[str, Any]:
    status = controller.status()
    spec = controller.engine.current_spec(status) or controller.spec
    rollout = status.rollout
    active = rollout is not None and rollout.active
    stable = status.stable
    if active and rollout is not None:
        outlook = _under_way(rollout)
    else:
        try:
            revisions = controller.store.revisions(controller.service)
            outlook = migration_outlook(
                spec, controller.paths.spec_dir, revisions, stable, stored=True
            )
        except SpecError:  # the migrations directory is gone: the plan goes without it
            outlook = None
    plan = compute(
        spec,
        version=rollout.version if active and rollout is not None else None,
        stable=stable,
        first=stable is None,
        migrations=outlook,
        strategy=rollout.strategy if active and rollout is not None else None,
    )
    doc = plan.to_json()
    doc["current"] = active
    return doc


def _under_way(rollout: Rollout) -> MigrationOutlook | None:
    """What the rollout's own migration check found: the migration it started and its risk."""
    migrate = rollout.checks.get("migrate")
    if migrate is None or migrate.state is not CheckState.PASSED:
        return None
    started = migrate.detail.get("migration") if migrate.detail.get("started") else None
    return MigrationOutlook(
        to_start=str(started) if started else None,
        start_reasons=caution.reasons(rollout),
        source="the rollout's migration check",
    )
