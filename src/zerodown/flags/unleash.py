"""Unleash's JSON (client API `/api/client/features`, and its export) to and from our model.

Import is lenient where Unleash's clients are lenient: a strategy we cannot run (a custom strategy,
an unknown operator, a missing segment) becomes a NeverStrategy that is never on, which is what
Unleash's clients do with it. A shape error (no name, a weight that is not a number) raises
UnleashFormatError naming the feature and the field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from zerodown.core.errors import ZerodownError
from zerodown.flags.model import (
    SINGLE_VALUE_OPERATORS,
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

_OPERATORS = {op.value for op in Operator}
_STICKINESS_OF = {
    "gradualRolloutUserId": "userId",
    "gradualRolloutSessionId": "sessionId",
    "gradualRolloutRandom": "random",
}


class UnleashFormatError(ZerodownError):
    """Unleash JSON we cannot read; the message names the feature and the field."""


class _Unsupported(Exception):
    pass


def flags_from_unleash(state: Mapping[str, Any]) -> list[Flag]:
    """All features of an Unleash client-API document (`{"features": [...], "segments": [...]}`)
    or of an Unleash export (`{"features": [...], "featureStrategies": [...], ...}`)."""
    features = state.get("features")
    if not isinstance(features, list):
        raise UnleashFormatError("Unleash JSON: `features` must be a list")
    segments = {s["id"]: s.get("constraints", []) for s in state.get("segments") or [] if "id" in s}
    # An export (`/api/admin/features-batch/export`, one environment) spreads a feature over
    # `featureStrategies`, `featureEnvironments` (enabled, variants) and `dependencies`.
    export_strategies: dict[str, list[dict[str, Any]]] = {}
    for s in state.get("featureStrategies") or []:
        export_strategies.setdefault(s.get("featureName", ""), []).append(s)
    environments: dict[str, list[Mapping[str, Any]]] = {}
    for e in state.get("featureEnvironments") or []:
        environments.setdefault(e.get("featureName", ""), []).append(e)
    dependencies = {
        d.get("feature", ""): d.get("dependencies") or [] for d in state.get("dependencies") or []
    }
    flags = []
    for i, feature in enumerate(features):
        if not isinstance(feature, Mapping) or not isinstance(feature.get("name"), str):
            raise UnleashFormatError(f"Unleash JSON: features[{i}]: needs a string `name`")
        name = feature["name"]
        extra: dict[str, Any] = {}
        if "strategies" not in feature:
            extra["strategies"] = export_strategies.get(name, [])
        if name in environments:
            envs = environments[name]
            extra["enabled"] = feature.get("enabled", any(e.get("enabled") for e in envs))
            if not feature.get("variants"):
                extra["variants"] = next((e["variants"] for e in envs if e.get("variants")), [])
        if "dependencies" not in feature and name in dependencies:
            extra["dependencies"] = dependencies[name]
        flags.append(flag_from_unleash({**feature, **extra}, segments))
    return flags


def flag_from_unleash(
    feature: Mapping[str, Any], segments: Mapping[int, Sequence[Mapping[str, Any]]] | None = None
) -> Flag:
    name = feature.get("name", "?")
    try:
        ftype = feature.get("type") or "release"
        return Flag(
            key=name,
            type=FlagType(ftype) if ftype in FlagType._value2member_map_ else FlagType.RELEASE,
            description=feature.get("description") or "",
            enabled=bool(feature.get("enabled", False)),
            strategies=tuple(
                _strategy(s, name, segments or {}) for s in feature.get("strategies") or []
            ),
            variants=tuple(_variant(v) for v in feature.get("variants") or []),
            dependencies=tuple(
                Dependency(
                    feature=d["feature"],
                    enabled=d.get("enabled", True),
                    variants=tuple(d.get("variants") or ()),
                )
                for d in feature.get("dependencies") or []
            ),
        )
    except (ValidationError, KeyError, TypeError, ValueError) as e:
        raise UnleashFormatError(f"Unleash feature {name!r}: {e}") from None


def _strategy(
    s: Mapping[str, Any], flag_key: str, segments: Mapping[int, Sequence[Mapping[str, Any]]]
) -> Any:
    name = s.get("name", "")
    params = s.get("parameters") or {}
    variants = tuple(_variant(v) for v in s.get("variants") or [])
    try:
        raw_constraints = list(s.get("constraints") or [])
        for seg in s.get("segments") or []:
            if seg not in segments:
                raise _Unsupported(f"segment {seg} does not exist")
            raw_constraints.extend(segments[seg])
        constraints = tuple(_constraint(c) for c in raw_constraints)
        if name == "default":
            return DefaultStrategy(constraints=constraints, variants=variants)
        if name == "userWithId":
            ids = tuple(u.strip() for u in str(params.get("userIds", "")).split(",") if u.strip())
            return UserIdsStrategy(user_ids=ids, constraints=constraints, variants=variants)
        if name == "remoteAddress":
            ips = tuple(a.strip() for a in str(params.get("IPs", "")).split(",") if a.strip())
            return RemoteAddressStrategy(addresses=ips, constraints=constraints, variants=variants)
        if name in _STICKINESS_OF or name == "flexibleRollout":
            rollout = params.get("rollout", params.get("percentage", 100))
            stickiness = params.get("stickiness") or _STICKINESS_OF.get(name, "default")
            return GradualRolloutStrategy(
                rollout=_percent(rollout),
                stickiness=stickiness,
                group_id=params.get("groupId") or flag_key,
                constraints=constraints,
                variants=variants,
            )
        raise _Unsupported(f"strategy {name!r} is not supported")
    except _Unsupported as e:
        return NeverStrategy(reason=str(e), variants=variants)


def _percent(value: object) -> int:
    try:
        number = round(float(str(value)))
    except ValueError:
        raise _Unsupported(f"rollout {value!r} is not a number") from None
    return max(0, min(100, number))


def _constraint(c: Mapping[str, Any]) -> Constraint:
    op = c.get("operator")
    if op not in _OPERATORS:
        raise _Unsupported(f"constraint operator {op!r} is not supported")
    values = tuple(str(v) for v in c.get("values") or ())
    value = c.get("value")
    if value is None and Operator(op) in SINGLE_VALUE_OPERATORS:
        if not values:
            raise _Unsupported(f"constraint {op} on {c.get('contextName')!r} has no value")
        value = values[0]
    return Constraint(
        context_name=c["contextName"],
        operator=Operator(op),
        values=values,
        value=None if value is None else str(value),
        case_insensitive=bool(c.get("caseInsensitive", False)),
        inverted=bool(c.get("inverted", False)),
    )


def _variant(v: Mapping[str, Any]) -> Variant:
    payload = v.get("payload")
    return Variant(
        name=v["name"],
        weight=int(v.get("weight", 0)),
        stickiness=v.get("stickiness") or "default",
        payload=Payload(type=payload.get("type", "string"), value=str(payload.get("value", "")))
        if payload
        else None,
        overrides=tuple(
            VariantOverride(context_name=o["contextName"], values=tuple(o.get("values") or ()))
            for o in v.get("overrides") or []
        ),
    )


# --- export ----------------------------------------------------------------------------------


def flags_to_unleash(flags: Sequence[Flag]) -> dict[str, Any]:
    """An Unleash client-API document (`version: 2`), readable by Unleash's SDKs as a bootstrap."""
    return {"version": 2, "features": [flag_to_unleash(f) for f in flags], "segments": []}


def flag_to_unleash(flag: Flag) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": flag.key,
        "type": flag.type.value,
        "description": flag.description,
        "enabled": flag.enabled,
        "stale": False,
        "impressionData": False,
        "project": "default",
        "strategies": [_strategy_to_unleash(s) for s in flag.strategies],
        "variants": [_variant_to_unleash(v) for v in flag.variants],
    }
    if flag.dependencies:
        out["dependencies"] = [
            {"feature": d.feature, "enabled": d.enabled, "variants": list(d.variants)}
            for d in flag.dependencies
        ]
    return out


def _strategy_to_unleash(s: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "constraints": [_constraint_to_unleash(c) for c in s.constraints],
        "variants": [_variant_to_unleash(v) for v in s.variants],
    }
    if isinstance(s, DefaultStrategy):
        out.update(name="default", parameters={})
    elif isinstance(s, UserIdsStrategy):
        out.update(name="userWithId", parameters={"userIds": ",".join(s.user_ids)})
    elif isinstance(s, GradualRolloutStrategy):
        params = {"rollout": str(s.rollout), "stickiness": s.stickiness}
        if s.group_id:
            params["groupId"] = s.group_id
        out.update(name="flexibleRollout", parameters=params)
    elif isinstance(s, RemoteAddressStrategy):
        out.update(name="remoteAddress", parameters={"IPs": ",".join(s.addresses)})
    else:
        # Unleash's clients treat an unknown strategy as off, as we do.
        out.update(name="zerodown-never", parameters={"reason": s.reason})
    return out


def _constraint_to_unleash(c: Constraint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "contextName": c.context_name,
        "operator": c.operator.value,
        "caseInsensitive": c.case_insensitive,
        "inverted": c.inverted,
    }
    if c.operator in SINGLE_VALUE_OPERATORS:
        out["value"] = c.value
    else:
        out["values"] = list(c.values)
    return out


def _variant_to_unleash(v: Variant) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": v.name,
        "weight": v.weight,
        "weightType": "variable",
        "stickiness": v.stickiness,
        "overrides": [
            {"contextName": o.context_name, "values": list(o.values)} for o in v.overrides
        ],
    }
    if v.payload is not None:
        out["payload"] = {"type": v.payload.type, "value": v.payload.value}
    return out
