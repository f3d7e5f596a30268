"""`caution:`: how a rollout becomes more careful by itself when its risk is higher.

    caution:
      irreversible:              # the rollout starts a migration whose contract cannot be undone
        manual_contract: true    # its contract waits for `zerodown migrate complete`
        pause_factor: 3          # a canary's timed pauses last three times as long
        analysis_every_step: true  # each canary weight must pass the background analysis

The article's rule: "if the migration is not reversible, the deployment is not reversible, and you
need more caution (extended canary, manual verification, feature flags)". A migration is
irreversible when its contract drops data: drop_column, drop_table, an alter_column whose type
change narrows (or cannot be told not to), and raw_sql marked `irreversible: true` or run at
complete (zerodown.migrations.risk decides). Every default is on: being careful is the default.
"""

from __future__ import annotations

from pydantic import Field

from zerodown.spec.types import StrictModel

MAX_PAUSE_FACTOR = 100.0


class IrreversibleCaution(StrictModel):
    manual_contract: bool = Field(
        True,
        description="the contract waits for `zerodown migrate complete` (never by quiet_period "
        "or the next deploy)",
    )
    pause_factor: float = Field(
        2.0, ge=1.0, le=MAX_PAUSE_FACTOR, description="canary: timed pauses last this many times"
    )
    analysis_every_step: bool = Field(
        True,
        description="canary: after each weight, a run of the background analysis (each metric "
        "`count` times, once when unbounded) must pass before the next step",
    )


class CautionSpec(StrictModel):
    irreversible: IrreversibleCaution = Field(default_factory=IrreversibleCaution)
