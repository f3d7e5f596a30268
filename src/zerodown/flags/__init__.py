"""Feature flags: model and Unleash-exact evaluation (pure: model, evaluate, stale, steps,
unleash, ofrep), stores (stores/), the HTTP API router (api), the Python SDK (client), an
OpenFeature provider (openfeature) and ASGI/WSGI middleware (middleware). See docs/flags.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zerodown.lazy import exports

if TYPE_CHECKING:
    from zerodown.flags.client import FlagClient, FlagClientError
    from zerodown.flags.evaluate import EvalContext, Evaluation, evaluate, is_enabled
    from zerodown.flags.middleware import FlagsASGIMiddleware, FlagsWSGIMiddleware
    from zerodown.flags.model import Flag
    from zerodown.flags.openfeature import ZerodownProvider

# Public name -> the module that defines it, imported on first use (zerodown.lazy).
_WHERE = {
    "FlagClient": "zerodown.flags.client",
    "FlagClientError": "zerodown.flags.client",
    "EvalContext": "zerodown.flags.evaluate",
    "Evaluation": "zerodown.flags.evaluate",
    "evaluate": "zerodown.flags.evaluate",
    "is_enabled": "zerodown.flags.evaluate",
    "FlagsASGIMiddleware": "zerodown.flags.middleware",
    "FlagsWSGIMiddleware": "zerodown.flags.middleware",
    "Flag": "zerodown.flags.model",
    "ZerodownProvider": "zerodown.flags.openfeature",
}

__all__ = [
    "EvalContext",
    "Evaluation",
    "Flag",
    "FlagClient",
    "FlagClientError",
    "FlagsASGIMiddleware",
    "FlagsWSGIMiddleware",
    "ZerodownProvider",
    "evaluate",
    "is_enabled",
]

__getattr__, __dir__ = exports(__name__, _WHERE)
