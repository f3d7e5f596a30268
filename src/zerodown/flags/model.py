"""The feature flag model: what a flag is, as data. Pure: no I/O, no clock.

The shape follows Unleash's (strategies, constraints, variants, stickiness, group ids) so that a
team moving from Unleash keeps the same users in the same buckets; `flags.unleash` converts
Unleash's JSON to and from this model.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Keys travel in URL paths, headers (`X-Zerodown-Flags: key=variant,...`) and Redis keys: no
# spaces, separators or URL specials. Unicode letters are fine (Unleash allows them).
KEY_PATTERN = r"^[^\s,;=/?#%\"'\\]{1,200}$"
_KEY_RE = re.compile(KEY_PATTERN)


class FlagType(StrEnum):
    RELEASE = "release"
    EXPERIMENT = "experiment"
    OPERATIONAL = "operational"
    KILL_SWITCH = "kill-switch"
    PERMISSION = "permission"

    @property
    def expected_lifetime(self) -> timedelta | None:
        """How long a flag of this type is expected to live; None = forever (Unleash's table)."""
        return _LIFETIMES[self]


_LIFETIMES: dict[FlagType, timedelta | None] = {
    FlagType.RELEASE: timedelta(days=40),
    FlagType.EXPERIMENT: timedelta(days=40),
    FlagType.OPERATIONAL: timedelta(days=7),
    FlagType.KILL_SWITCH: None,
    FlagType.PERMISSION: None,
}


class Operator(StrEnum):
    IN = "IN"
    NOT_IN = "NOT_IN"
    STR_CONTAINS = "STR_CONTAINS"
    STR_STARTS_WITH = "STR_STARTS_WITH"
    STR_ENDS_WITH = "STR_ENDS_WITH"
    NUM_EQ = "NUM_EQ"
    NUM_GT = "NUM_GT"
    NUM_GTE = "NUM_GTE"
    NUM_LT = "NUM_LT"
    NUM_LTE = "NUM_LTE"
    DATE_AFTER = "DATE_AFTER"
    DATE_BEFORE = "DATE_BEFORE"
    SEMVER_EQ = "SEMVER_EQ"
    SEMVER_GT = "SEMVER_GT"
    SEMVER_GTE = "SEMVER_GTE"
    SEMVER_LT = "SEMVER_LT"
    SEMVER_LTE = "SEMVER_LTE"
    REGEX = "REGEX"
    IN_CIDR = "IN_CIDR"  # the context value is an IP inside one of `values` (IPs or CIDRs)


# Operators that compare against one `value`; the others take a list of `values`.
SINGLE_VALUE_OPERATORS = frozenset(
    {
        Operator.NUM_EQ,
        Operator.NUM_GT,
        Operator.NUM_GTE,
        Operator.NUM_LT,
        Operator.NUM_LTE,
        Operator.DATE_AFTER,
        Operator.DATE_BEFORE,
        Operator.SEMVER_EQ,
        Operator.SEMVER_GT,
        Operator.SEMVER_GTE,
        Operator.SEMVER_LT,
        Operator.SEMVER_LTE,
        Operator.REGEX,
    }
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Constraint(_Frozen):
    """`context_name OPERATOR value(s)`; all constraints of a strategy must hold."""

    context_name: str = Field(min_length=1)
    operator: Operator
    values: tuple[str, ...] = ()
    value: str | None = None
    case_insensitive: bool = False
    inverted: bool = False

    @model_validator(mode="after")
    def _needs_a_value(self) -> Constraint:
        if self.operator in SINGLE_VALUE_OPERATORS and self.value is None:
            raise ValueError(f"operator {self.operator} needs `value` (one value), not `values`")
        return self


class Payload(_Frozen):
    type: Literal["string", "json", "csv", "number"] = "string"
    value: str


class VariantOverride(_Frozen):
    """Pin a variant to listed values of a context field (e.g. userId 17 always gets `blue`)."""

    context_name: str
    values: tuple[str, ...]


class Variant(_Frozen):
    name: str = Field(min_length=1)
    weight: int = Field(ge=0, le=100_000)
    stickiness: str = "default"
    payload: Payload | None = None
    overrides: tuple[VariantOverride, ...] = ()


class DefaultStrategy(_Frozen):
    """On for everyone (who passes the constraints)."""

    kind: Literal["default"] = "default"
    constraints: tuple[Constraint, ...] = ()
    variants: tuple[Variant, ...] = ()


class UserIdsStrategy(_Frozen):
    """On for the listed user ids."""

    kind: Literal["user_ids"] = "user_ids"
    user_ids: tuple[str, ...]
    constraints: tuple[Constraint, ...] = ()
    variants: tuple[Variant, ...] = ()


class RemoteAddressStrategy(_Frozen):
    """On for requests from the listed IPs or CIDR ranges (entries that are not addresses are
    ignored, as Unleash's clients do)."""

    kind: Literal["remote_address"] = "remote_address"
    addresses: tuple[str, ...]
    constraints: tuple[Constraint, ...] = ()
    variants: tuple[Variant, ...] = ()


class GradualRolloutStrategy(_Frozen):
    """On for `rollout` percent of the population, bucketed by `stickiness`.

    stickiness: "default" (userId, else sessionId, else random), "userId", "sessionId", "random",
    or any context field. group_id defaults to the flag key, so two flags at 10% reach different
    users unless they share a group id on purpose.
    """

    kind: Literal["gradual_rollout"] = "gradual_rollout"
    rollout: int = Field(ge=0, le=100)
    stickiness: str = "default"
    group_id: str | None = None
    constraints: tuple[Constraint, ...] = ()
    variants: tuple[Variant, ...] = ()


class NeverStrategy(_Frozen):
    """A strategy this evaluator cannot run (an imported custom strategy, an unknown operator or
    a missing segment). Like Unleash's clients, it is never on; `reason` says why."""

    kind: Literal["never"] = "never"
    reason: str
    constraints: tuple[Constraint, ...] = ()
    variants: tuple[Variant, ...] = ()


Strategy = Annotated[
    DefaultStrategy
    | UserIdsStrategy
    | GradualRolloutStrategy
    | RemoteAddressStrategy
    | NeverStrategy,
    Field(discriminator="kind"),
]


class Dependency(_Frozen):
    """This flag is on only if flag `feature` is on (or off, with enabled=False), and, when
    `variants` is given, the parent's variant is one of them."""

    feature: str
    enabled: bool = True
    variants: tuple[str, ...] = ()


class Flag(_Frozen):
    key: str = Field(pattern=KEY_PATTERN)
    type: FlagType = FlagType.RELEASE
    description: str = ""
    owner: str = ""
    enabled: bool = False
    strategies: tuple[Strategy, ...] = ()
    variants: tuple[Variant, ...] = ()
    dependencies: tuple[Dependency, ...] = ()
    created_at: datetime | None = None
    changed_at: datetime | None = None
    last_evaluated_at: datetime | None = None

    @field_validator("variants")
    @classmethod
    def _unique_variant_names(cls, variants: tuple[Variant, ...]) -> tuple[Variant, ...]:
        names = [v.name for v in variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"variant names must be unique; repeated: {', '.join(dupes)}")
        return variants

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def valid_key(key: str) -> bool:
    return bool(_KEY_RE.match(key))
