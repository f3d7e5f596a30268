"""Flag changes as rollout steps: apply, and revert exactly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from zerodown.flags.model import (
    Constraint,
    DefaultStrategy,
    Flag,
    GradualRolloutStrategy,
    Operator,
    UserIdsStrategy,
)
from zerodown.flags.steps import (
    FlagChange,
    SetFlagStep,
    apply_flag_change,
    apply_with_revert,
    parse_percent,
    revert_flag_change,
    still_as_changed,
)

PROD = Constraint(context_name="environment", operator=Operator.IN, values=("prod",))


@pytest.mark.parametrize(
    ("text", "percent"), [("10%", 10), ("10", 10), (25, 25), ("0%", 0), (" 100 % ", 100)]
)
def test_parse_percent(text: object, percent: int) -> None:
    assert parse_percent(text) == percent


@pytest.mark.parametrize("text", ["ten", "101%", "-1%", "2.5%"])
def test_parse_percent_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="rollout"):
        parse_percent(text)


def test_set_flag_step_model() -> None:
    step = SetFlagStep.model_validate({"key": "new-checkout", "rollout": "10%"})
    assert step.rollout == 10 and step.enabled is None
    assert SetFlagStep.model_validate({"key": "k", "enabled": False}).enabled is False
    with pytest.raises(ValidationError, match="give `rollout`"):
        SetFlagStep.model_validate({"key": "k"})
    with pytest.raises(ValidationError, match="whole percentage"):
        SetFlagStep.model_validate({"key": "k", "rollout": "150%"})
    with pytest.raises(ValidationError):
        SetFlagStep.model_validate({"key": "k", "rollout": "1%", "extra": 1})


def test_rollout_sets_the_first_gradual_strategy_and_turns_on() -> None:
    flag = Flag(
        key="f",
        strategies=(UserIdsStrategy(user_ids=("1",)), GradualRolloutStrategy(rollout=5)),
    )
    after = apply_flag_change(flag, FlagChange(rollout=30))
    assert after.enabled
    assert after.strategies[0] == flag.strategies[0]
    assert after.strategies[1] == GradualRolloutStrategy(rollout=30)


def test_rollout_replaces_unconditional_default_strategy() -> None:
    flag = Flag(
        key="f",
        enabled=True,
        strategies=(DefaultStrategy(), DefaultStrategy(constraints=(PROD,))),
    )
    after = apply_flag_change(flag, FlagChange(rollout=10))
    assert after.strategies == (
        DefaultStrategy(constraints=(PROD,)),
        GradualRolloutStrategy(rollout=10),
    )


def test_enabled_wins() -> None:
    after = apply_flag_change(Flag(key="f", enabled=True), FlagChange(rollout=50, enabled=False))
    assert not after.enabled and after.strategies[0].rollout == 50  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change", [FlagChange(rollout=10), FlagChange(enabled=True), FlagChange(enabled=False)]
)
def test_revert_restores_exactly(change: FlagChange) -> None:
    before = Flag(
        key="f",
        enabled=False,
        description="d",
        strategies=(DefaultStrategy(constraints=(PROD,)), DefaultStrategy()),
    )
    after, revert = apply_with_revert(before, change)
    assert still_as_changed(after, revert)
    assert revert_flag_change(after, revert) == before


def test_a_chain_of_changes_reverts_newest_first() -> None:
    flag = Flag(key="f")
    reverts = []
    for percent in (10, 25, 50):
        flag, r = apply_with_revert(flag, FlagChange(rollout=percent))
        reverts.append(r)
    edited = flag.model_copy(update={"description": "edited meanwhile"})
    assert still_as_changed(edited, reverts[-1])
    for r in reversed(reverts):
        edited = revert_flag_change(edited, r)
    assert (edited.enabled, edited.strategies, edited.description) == (
        False,
        (),
        "edited meanwhile",
    )


def test_still_as_changed_detects_a_later_hand_change() -> None:
    after, revert = apply_with_revert(Flag(key="f"), FlagChange(rollout=10))
    by_hand = apply_flag_change(after, FlagChange(rollout=80))
    assert not still_as_changed(by_hand, revert)


def test_keyword_form_and_step_as_change() -> None:
    flag = Flag(key="f")
    assert apply_flag_change(flag, rollout="10%") == apply_flag_change(flag, FlagChange(rollout=10))
    assert apply_flag_change(flag, enabled=True).enabled
    step = SetFlagStep(key="f", rollout=20)  # type: ignore[arg-type]
    assert apply_flag_change(flag, step).strategies == (GradualRolloutStrategy(rollout=20),)
    with pytest.raises(ValidationError):
        apply_flag_change(flag)


@pytest.mark.parametrize("enabled", [1, 0, "true", "yes"])
def test_a_set_flag_step_takes_only_true_or_false(enabled: object) -> None:
    with pytest.raises(ValidationError, match="enabled"):
        SetFlagStep.model_validate({"key": "new-checkout", "enabled": enabled})
