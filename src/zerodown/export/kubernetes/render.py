"""A Manifest as YAML text: its comments, then one document per object. Pure (no files)."""

from __future__ import annotations

import textwrap

import yaml

from zerodown.export.kubernetes.model import Manifest

HEADER = "Written by `zerodown export kubernetes`; regenerate rather than edit."


def to_yaml(manifest: Manifest) -> str:
    lines = [f"# {HEADER}"]
    for comment in manifest.comments:
        wrapped = textwrap.wrap(
            comment, 96, subsequent_indent="    ", break_on_hyphens=False, break_long_words=False
        ) or [""]
        lines += [f"# {line}".rstrip() for line in wrapped]
    documents = [
        yaml.safe_dump(
            obj, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True
        )
        for obj in manifest.objects
    ]
    return "\n".join(lines) + "\n" + "---\n".join(documents)
