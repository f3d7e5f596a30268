"""`flag_guards:`: a flag whose rollout is watched by analysis, and killed on a regression.

The router counts requests per flag variant from the `X-Zerodown-Flags: key=variant,...` response
header that the flag middleware adds, as if each variant were a release named
`flag:<key>=<variant>`. A guard's analysis compares the `on` variant (the canary) against `off`
(the baseline) with the same templates and providers as a rollout's.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from zerodown.spec.analysis import AnalysisRef
from zerodown.spec.types import StrictModel


class FlagGuardSpec(StrictModel):
    flag: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="the flag's key")
    analysis: AnalysisRef
    on: str = Field("on", description="the variant under watch (the canary)")
    off: str = Field("off", description="the variant it is compared against (the baseline)")

    @model_validator(mode="before")
    @classmethod
    def _yaml_booleans(cls, data: Any) -> Any:
        """YAML 1.1 reads a bare `on:` / `off:` as true / false; take them as meant."""
        if not isinstance(data, dict):
            return data
        names = {True: "on", False: "off"}
        return {
            names.get(k, k) if isinstance(k, bool) else k: names[v] if isinstance(v, bool) else v
            for k, v in data.items()
        }
