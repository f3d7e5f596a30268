"""Kubernetes' spelling of zerodown's values: whole seconds, Go durations, DNS names."""

from __future__ import annotations

import math
import re


def whole_seconds(seconds: float, *, at_least: int = 0) -> int:
    """Kubernetes counts probe and grace times in whole seconds: round up, never shorter."""
    return max(at_least, math.ceil(round(seconds, 6)))


def is_whole(seconds: float, *, at_least: int = 0) -> bool:
    return whole_seconds(seconds, at_least=at_least) == seconds


def go_duration(seconds: float) -> str:
    """A duration Argo Rollouts parses (Go's time.ParseDuration): 30s, 2m, 1h, 500ms."""
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    for unit, size in (("h", 3600), ("m", 60)):
        if whole and whole % size == 0:
            return f"{whole // size}{unit}"
    return f"{whole}s"


def dns_label(text: str) -> str:
    """A name Kubernetes accepts for an object (RFC 1123 label): health_v2 → health-v2."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return label[:63].rstrip("-") or "x"
