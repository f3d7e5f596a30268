"""An OpenFeature provider that evaluates locally with a FlagClient (no request per evaluation).

    from openfeature import api
    api.set_provider(ZerodownProvider(FlagClient(url, token=..., cache_path=...)))
    api.get_client().get_boolean_value("new-checkout", False, EvaluationContext("user-42"))

The targeting key is the user id; attributes `sessionId`, `environment`, ... and any other
attribute become context fields, as with OFREP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import FlagNotFoundError, TypeMismatchError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType, Reason
from openfeature.hook import Hook
from openfeature.provider import AbstractProvider, Metadata

from zerodown.flags.client import FlagClient
from zerodown.flags.context import current_context
from zerodown.flags.evaluate import EvalContext
from zerodown.flags.ofrep import flag_value

_TYPES: dict[str, type | tuple[type, ...]] = {
    "boolean": bool,
    "string": str,
    "integer": int,
    "float": (float, int),
    "object": (dict, list),
}


def to_eval_context(ctx: EvaluationContext | None) -> EvalContext | None:
    if ctx is None or (ctx.targeting_key is None and not ctx.attributes):
        return None
    data: dict[str, Any] = dict(ctx.attributes)
    if ctx.targeting_key is not None:
        data["targetingKey"] = ctx.targeting_key
    return EvalContext.from_mapping(data)


class ZerodownProvider(AbstractProvider):
    def __init__(self, client: FlagClient, *, close_client: bool = True):
        super().__init__()
        self.client = client
        self._close_client = close_client

    def get_metadata(self) -> Metadata:
        return Metadata(name="zerodown (local evaluation)")

    def get_provider_hooks(self) -> list[Hook]:
        return []

    def shutdown(self) -> None:
        if self._close_client:
            self.client.close()

    def _resolve(
        self, kind: str, key: str, default: Any, ctx: EvaluationContext | None
    ) -> FlagResolutionDetails[Any]:
        flag = self.client.get_flag(key)
        if flag is None:
            raise FlagNotFoundError(f"flag {key!r} does not exist")
        eval_ctx = to_eval_context(ctx) or current_context.get()
        result = self.client.evaluate(key, eval_ctx)
        assert result is not None
        has_value, value, variant = flag_value(flag, result)
        value_out: Any = value
        meta = {"enabled": result.enabled, "flagType": flag.type.value}
        if not has_value:
            return FlagResolutionDetails(
                value=default,
                reason=Reason(result.reason.value),
                variant=variant,
                flag_metadata=meta,
            )
        wanted = _TYPES[kind]
        if (isinstance(value, bool) and kind != "boolean") or not isinstance(value, wanted):
            raise TypeMismatchError(f"flag {key!r} is {type(value).__name__}, not {kind}")
        if kind == "float":
            value_out = float(value_out)
        return FlagResolutionDetails(
            value=value_out, reason=Reason(result.reason.value), variant=variant, flag_metadata=meta
        )

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve("boolean", flag_key, default_value, evaluation_context)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve("string", flag_key, default_value, evaluation_context)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve("integer", flag_key, default_value, evaluation_context)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve("float", flag_key, default_value, evaluation_context)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve("object", flag_key, default_value, evaluation_context)
