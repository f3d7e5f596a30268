"""The pipeline around a rollout, as gates the strategies pass through:

  prepared            gate, then the database migration (expand), before any new instance starts
  cleared_for_traffic compatibility checks, then smoke tests against the new release, before it
                      gets a single real request
  analysis            an analysis run: successful goes on, failed aborts at once, inconclusive
                      pauses for a person
  promoted            smoke tests through the router after the last promotion
  clean_up            after an abort or failure: flag changes reverted, the migration rolled back
  contract_when_quiet after a completed rollout, with `migrations.quiet_period`: contract once
                      no connection of the old version was seen for that long (never when the
                      contract cannot be undone and `caution.irreversible.manual_contract`)

Each gate asks for checks through `plan.need`; the engine runs every check the status holds as
running and writes back its outcome. A rollback goes to a release that already served, so it
skips the gates and goes as fast as its strategy allows.
"""

from __future__ import annotations

from zerodown.core import caution
from zerodown.core.model import CheckState, InstancePhase, RolloutPhase
from zerodown.core.plan import Plan
from zerodown.spec.model import Spec


def _in_order(plan: Plan, wanted: list[tuple[str, str]], what: str) -> bool:
    """True once every check passed; a failure fails the rollout with the check's reason."""
    for key, kind in wanted:
        check = plan.need(key, kind)
        if check is None or check.state is CheckState.RUNNING:
            return False
        if check.state is not CheckState.PASSED:
            plan.fail(f"{key} failed {what}: {check.reason}")
            return False
    return True


def prepared(plan: Plan, spec: Spec) -> bool:
    rollout = plan.status.rollout
    if rollout is None or rollout.rollback:
        return True
    wanted = [("gate", "gate")] if spec.gate is not None else []
    wanted += [("migrate", "migrate")] if spec.migrations is not None else []
    return _in_order(plan, wanted, "before any instance started")


def cleared_for_traffic(plan: Plan, spec: Spec, *, all_ready: bool = False) -> bool:
    rollout = plan.status.rollout
    if rollout is None or rollout.rollback:
        return True
    wanted = [("compat", "compat")] if spec.compat is not None else []
    wanted += [("smoke:pre", "smoke-pre")] if spec.smoke is not None else []
    if not wanted:
        return True
    serving = [i for i in plan.live(rollout.version) if i.serving]
    if not serving or (all_ready and len(serving) < spec.instances):
        return False
    if plan.status.stable is None:
        wanted = [w for w in wanted if w[0] != "compat"]  # nothing older to be compatible with
    return _in_order(plan, wanted, "before the release got traffic")


def analysis(plan: Plan, key: str) -> bool:
    """True when the analysis `key` passed; aborts or pauses the rollout as its outcome says."""
    check = plan.need(key, "analysis")
    if check is None or check.state is CheckState.RUNNING:
        return False
    if check.state is CheckState.PASSED:
        return True
    if check.state is CheckState.INCONCLUSIVE:
        plan.pause(f"{key} inconclusive: {check.reason}; `zerodown promote` or `zerodown abort`")
        return False
    plan.fail(f"{key}: {check.reason}", phase=RolloutPhase.ABORTED)
    return False


def background_analysis(plan: Plan, spec: Spec) -> None:
    """The canary's analysis across steps, from its starting step on."""
    canary = spec.strategy.canary
    rollout = plan.status.rollout
    if canary is None or canary.analysis is None or rollout is None or rollout.rollback:
        return
    if rollout.step >= (canary.analysis.starting_step or 0):
        check = plan.check("analysis:background")
        if check is None or check.state is not CheckState.PASSED:
            analysis(plan, "analysis:background")


def promoted(plan: Plan, spec: Spec) -> bool:
    rollout = plan.status.rollout
    if spec.smoke is None or rollout is None or rollout.rollback:
        return True
    check = plan.need("smoke:post", "smoke-post")
    if check is None or check.state is CheckState.RUNNING:
        return False
    if check.state is not CheckState.PASSED:
        plan.fail(f"smoke tests after promotion failed: {check.reason}", phase=RolloutPhase.ABORTED)
        return False
    return True


def contract_when_quiet(plan: Plan, spec: Spec) -> None:
    """With `migrations.quiet_period`, a completed rollout contracts its migration by itself once
    the old version's connections have stayed away that long (the engine watches them)."""
    rollout = plan.status.rollout
    migrate = rollout.checks.get("migrate") if rollout is not None else None
    if (
        rollout is not None
        and rollout.phase is RolloutPhase.COMPLETED
        and spec.migrations is not None
        and spec.migrations.quiet_period is not None
        and not (caution.reasons(rollout) and spec.caution.irreversible.manual_contract)
        and migrate is not None
        and migrate.detail.get("started")
        and all(i.release == rollout.version for i in plan.live())
    ):
        plan.need("migrate:contract", "migrate-contract")


def clean_up(plan: Plan) -> None:
    """Undo what an aborted or failed rollout changed outside the instances."""
    rollout = plan.status.rollout
    if rollout is None or rollout.phase not in (RolloutPhase.ABORTED, RolloutPhase.FAILED):
        return
    flags_changed = any(
        c.kind == "set-flag" and c.state is CheckState.PASSED for c in rollout.checks.values()
    )
    if flags_changed:
        plan.need("flags:revert", "revert-flags")
    migrate = rollout.checks.get("migrate")
    still_running = any(
        i.release == rollout.version and i.phase is not InstancePhase.STOPPED
        for i in plan.instances
    )
    if (
        migrate is not None
        and migrate.state is CheckState.PASSED
        and migrate.detail.get("started")
        and not still_running
    ):
        plan.need("migrate:rollback", "migrate-rollback")
