"""Unleash JSON in and out: client-API documents, Unleash's export format, leniency as Unleash's
clients, and clear errors for shapes we cannot read."""

from __future__ import annotations

import pytest

from zerodown.flags.evaluate import EvalContext, evaluate
from zerodown.flags.model import (
    Constraint,
    DefaultStrategy,
    Dependency,
    Flag,
    FlagType,
    GradualRolloutStrategy,
    NeverStrategy,
    Operator,
    Payload,
    RemoteAddressStrategy,
    UserIdsStrategy,
    Variant,
    VariantOverride,
)
from zerodown.flags.unleash import UnleashFormatError, flags_from_unleash, flags_to_unleash


def test_round_trip_keeps_every_field_that_evaluation_uses() -> None:
    flags = [
        Flag(
            key="a",
            type=FlagType.EXPERIMENT,
            description="d",
            enabled=True,
            strategies=(
                UserIdsStrategy(user_ids=("1", "2")),
                GradualRolloutStrategy(
                    rollout=30,
                    stickiness="tenant",
                    group_id="g",
                    constraints=(
                        Constraint(
                            context_name="email",
                            operator=Operator.STR_ENDS_WITH,
                            values=("@x.io",),
                            case_insensitive=True,
                            inverted=True,
                        ),
                        Constraint(context_name="n", operator=Operator.NUM_GT, value="3"),
                    ),
                    variants=(Variant(name="s", weight=1),),
                ),
                RemoteAddressStrategy(addresses=("10.0.0.0/8",)),
                DefaultStrategy(),
            ),
            variants=(
                Variant(
                    name="v",
                    weight=3,
                    stickiness="userId",
                    payload=Payload(type="json", value="{}"),
                    overrides=(VariantOverride(context_name="userId", values=("7",)),),
                ),
            ),
            dependencies=(Dependency(feature="b", enabled=False, variants=()),),
        ),
        Flag(key="b"),
    ]
    back = flags_from_unleash(flags_to_unleash(flags))
    assert back == flags


def test_unleash_export_format() -> None:
    export = {
        "features": [
            {"name": "f", "type": "operational", "project": "default"},
            {"name": "g", "type": "release"},
        ],
        "featureStrategies": [
            {
                "name": "flexibleRollout",
                "featureName": "f",
                "parameters": {"rollout": "40", "stickiness": "default", "groupId": "f"},
                "constraints": [],
                "segments": [1],
            }
        ],
        "featureEnvironments": [
            {
                "name": "f",
                "featureName": "f",
                "environment": "production",
                "enabled": True,
                "variants": [{"name": "x", "weight": 1000}],
            },
            {"name": "g", "featureName": "g", "environment": "production", "enabled": False},
        ],
        "segments": [
            {"id": 1, "constraints": [{"contextName": "plan", "operator": "IN", "values": ["pro"]}]}
        ],
        "dependencies": [{"feature": "g", "dependencies": [{"feature": "f"}]}],
        "tagTypes": [],
    }
    f, g = flags_from_unleash(export)
    assert f.type is FlagType.OPERATIONAL and f.enabled
    s = f.strategies[0]
    assert isinstance(s, GradualRolloutStrategy) and s.rollout == 40
    assert s.constraints[0].values == ("pro",)
    assert [v.name for v in f.variants] == ["x"]
    assert not g.enabled and g.strategies == () and g.dependencies == (Dependency(feature="f"),)


def test_what_unleash_clients_cannot_run_is_never_on() -> None:
    state = {
        "features": [
            {
                "name": "custom",
                "enabled": True,
                "strategies": [{"name": "myCompanyStrategy", "parameters": {}}],
            },
            {
                "name": "bad-op",
                "enabled": True,
                "strategies": [
                    {
                        "name": "default",
                        "constraints": [{"contextName": "x", "operator": "NOPE", "values": []}],
                    }
                ],
            },
        ]
    }
    for flag in flags_from_unleash(state):
        assert isinstance(flag.strategies[0], NeverStrategy)
        assert not evaluate(flag, EvalContext(user_id="1")).enabled


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"nope": []}, "`features` must be a list"),
        ({"features": [{"enabled": True}]}, r"features\[0\]: needs a string `name`"),
        (
            {"features": [{"name": "v", "variants": [{"name": "a", "weight": "heavy"}]}]},
            "Unleash feature 'v'",
        ),
        ({"features": [{"name": "bad key"}]}, "Unleash feature 'bad key'"),
    ],
)
def test_shape_errors_name_the_feature(state: dict[str, object], message: str) -> None:
    with pytest.raises(UnleashFormatError, match=message):
        flags_from_unleash(state)
