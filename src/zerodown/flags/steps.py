"""Flags as rollout steps, as data. Pure: no I/O.

A rollout step `- set_flag: {key: new-checkout, rollout: 10%}` becomes a SetFlagStep; the engine
reads the flag, calls `apply_flag_change`, stores the result and keeps the FlagRevert it got back.
When the rollout aborts or is rolled back it calls `revert_flag_change` for each FlagRevert, newest
first, so every flag change the rollout made is undone.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from zerodown.flags.model import (
    KEY_PATTERN,
    DefaultStrategy,
    Flag,
    GradualRolloutStrategy,
)


def parse_percent(value: Any, *, field: str = "rollout") -> int:
    """ "10%", "10", 10 → 10; anything else is an error naming the field."""
    text = str(value).strip()
    number = text[:-1].strip() if text.endswith("%") else text
    try:
        percent = float(number)
    except ValueError:
        raise ValueError(f"{field}: {value!r} is not a percentage like 10%") from None
    if not 0 <= percent <= 100 or percent != int(percent):
        raise ValueError(f"{field}: {value!r} must be a whole percentage from 0% to 100%")
    return int(percent)


class FlagChange(BaseModel):
    """Set the gradual rollout percentage, or turn the flag on or off (or both)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)  # `enabled: 1` is a typo

    rollout: int | None = Field(default=None, ge=0, le=100)
    enabled: bool | None = None

    @field_validator("rollout", mode="before")
    @classmethod
    def _percent(cls, v: Any) -> Any:
        return None if v is None else parse_percent(v)

    @model_validator(mode="after")
    def _something(self) -> FlagChange:
        if self.rollout is None and self.enabled is None:
            raise ValueError("give `rollout` (like 10%) or `enabled` (true or false)")
        return self


class SetFlagStep(FlagChange):
    """A rollout step: `set_flag: {key: new-checkout, rollout: 10%}` or `{key: x, enabled: false}`."""

    key: str = Field(pattern=KEY_PATTERN)

    def change(self) -> FlagChange:
        return FlagChange(rollout=self.rollout, enabled=self.enabled)


class FlagRevert(BaseModel):
    """What a change replaced, and what it wrote, so it can be undone (and so the engine can tell
    whether someone changed the flag again in between: `still_as_changed`)."""

    model_config = ConfigDict(frozen=True)

    key: str
    before_enabled: bool
    before_strategies: tuple[dict[str, Any], ...]
    after_enabled: bool
    after_strategies: tuple[dict[str, Any], ...]


def apply_flag_change(
    flag: Flag,
    change: FlagChange | None = None,
    *,
    rollout: int | str | None = None,
    enabled: bool | None = None,
) -> Flag:
    """The flag after `change` (a FlagChange or SetFlagStep, or the `rollout=` / `enabled=`
    keywords). A rollout percentage sets the first gradual rollout strategy (or adds one,
    dropping unconditional `default` strategies that would keep it at 100%) and turns the flag
    on; `enabled` turns it on or off and wins over the rollout's implied on."""
    if change is None:
        change = FlagChange.model_validate({"rollout": rollout, "enabled": enabled})
    strategies = list(flag.strategies)
    enabled = flag.enabled
    if change.rollout is not None:
        enabled = True
        for i, s in enumerate(strategies):
            if isinstance(s, GradualRolloutStrategy):
                strategies[i] = s.model_copy(update={"rollout": change.rollout})
                break
        else:
            strategies = [
                s for s in strategies if not (isinstance(s, DefaultStrategy) and not s.constraints)
            ]
            strategies.append(GradualRolloutStrategy(rollout=change.rollout))
    if change.enabled is not None:
        enabled = change.enabled
    return flag.model_copy(update={"enabled": enabled, "strategies": tuple(strategies)})


def _dump(flag: Flag) -> tuple[dict[str, Any], ...]:
    return tuple(s.model_dump(mode="json") for s in flag.strategies)


def flag_revert(before: Flag, after: Flag) -> FlagRevert:
    return FlagRevert(
        key=before.key,
        before_enabled=before.enabled,
        before_strategies=_dump(before),
        after_enabled=after.enabled,
        after_strategies=_dump(after),
    )


def apply_with_revert(flag: Flag, change: FlagChange) -> tuple[Flag, FlagRevert]:
    after = apply_flag_change(flag, change)
    return after, flag_revert(flag, after)


def still_as_changed(current: Flag, revert: FlagRevert) -> bool:
    return current.enabled == revert.after_enabled and _dump(current) == revert.after_strategies


def revert_flag_change(current: Flag, revert: FlagRevert) -> Flag:
    """The flag with enabled and strategies as they were before the change; other fields (its
    description, variants, owner) stay as they are now."""
    restored = Flag.model_validate(
        {**current.model_dump(mode="json"), "strategies": list(revert.before_strategies)}
    )
    return restored.model_copy(update={"enabled": revert.before_enabled})
