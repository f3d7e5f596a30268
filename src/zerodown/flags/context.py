"""The evaluation context of the current request, and the variants it used.

The middleware sets both for each request; the SDK reads the context when a call gives none and
writes each flag's variant into the request's record, which the middleware turns into the
`X-Zerodown-Flags` response header.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

from zerodown.flags.evaluate import EvalContext

current_context: ContextVar[EvalContext | None] = ContextVar("zerodown_flag_context", default=None)
request_variants: ContextVar[dict[str, str] | None] = ContextVar(
    "zerodown_flag_variants", default=None
)


def use_context(ctx: EvalContext) -> Token[EvalContext | None]:
    return current_context.set(ctx)


def record_variant(key: str, variant: str) -> None:
    used = request_variants.get()
    if used is not None:
        used[key] = variant


def header_value(used: dict[str, str]) -> str:
    """`key=variant,key=variant`, sorted; keys and variants are already free of `,` and `=`
    (flag keys by their pattern; variant names are percent-encoded here if need be)."""
    from urllib.parse import quote

    return ",".join(
        f"{quote(k, safe='.-_:~')}={quote(v, safe='.-_:~')}" for k, v in sorted(used.items())
    )
