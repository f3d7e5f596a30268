"""Every field of zerodown.yaml either maps to Kubernetes / Argo Rollouts or is reported.

The walk goes through the spec's pydantic models (their annotations, recursively), so a field
added to the spec later fails here until it is classified in
zerodown/export/kubernetes/coverage.py; and a spec that sets every field without a counterpart
gets a note for each one.
"""

from __future__ import annotations

import os
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from zerodown.export.kubernetes import FIELDS, ExportOptions, Reported, export
from zerodown.export.kubernetes.coverage import markdown_table
from zerodown.spec.model import Spec

DOCS = Path(__file__).parents[3] / "docs" / "kubernetes.md"
START, END = "<!-- mapping table: start -->\n", "<!-- mapping table: end -->\n"


def _models(annotation: Any, suffix: str = "") -> Iterator[tuple[str, type[BaseModel]]]:
    """The models inside an annotation, with how their fields are reached (`[]` a list item,
    `.*` a map value)."""
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield suffix, annotation
    elif origin in (list, tuple, set, frozenset):
        for arg in get_args(annotation):
            yield from _models(arg, suffix + "[]")
    elif origin is dict:
        yield from _models(get_args(annotation)[1], suffix + ".*")
    elif origin in (Union, types.UnionType) or str(origin) == "typing.Annotated":
        for arg in get_args(annotation):
            yield from _models(arg, suffix)


def field_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        yield path
        if isinstance(FIELDS.get(path), Reported):
            continue  # its whole subtree goes with it
        for suffix, sub in _models(info.annotation):
            yield from field_paths(sub, f"{path}{suffix}.")


def test_every_spec_field_is_classified() -> None:
    paths = list(field_paths(Spec))
    missing = [p for p in paths if p not in FIELDS]
    assert not missing, (
        "spec fields without an entry in zerodown/export/kubernetes/coverage.py FIELDS "
        f"(say where each goes in Kubernetes, or why it is reported): {missing}"
    )
    stale = sorted(set(FIELDS) - set(paths))
    assert not stale, f"FIELDS names what is no longer a spec field: {stale}"
    assert len(paths) > 100  # the walk reached the nested models


EVERYTHING_UNMAPPABLE: dict[str, Any] = {
    "service": "shop",
    "run": {  # the container platform's fields: the exporter has its own options for them
        "command": ["app"],
        "image": "r.example/shop:{version}",
        "network": "bridge",
        "port": 8000,
        "volumes": ["/srv/uploads:/uploads"],
        "drain": {"requests": "5s", "upgraded": "1m"},
    },
    "router": {
        "kind": "builtin",
        "admin_listen": "127.0.0.1:9000",
        "header_timeout": "5s",
        "workers": 2,
        "tls": {"certificates": [{"cert": "site.crt", "key": "site.key"}]},
        "attach": {"admin_socket": "/run/haproxy/admin.sock", "backend": "shop"},
    },
    "platform": {"kind": "container"},
    "state": {"url": "sqlite:///.zerodown/state.db"},
    "api": {"read_token": "secret"},
    "gate": {"command": ["pytest"]},
    "smoke": {"checks": [{"name": "home", "request": "GET /"}]},
    "notify": [{"webhook": "http://127.0.0.1:9/hook"}],
    "migrations": {
        "database": "postgresql://db/x",
        "quiet_period": "1m",
        "alembic": "alembic.ini",
        "allow": ["drop_column"],
    },
    "compat": {"session": {}},
    "analysis": {
        "templates": {
            "t": {
                "metrics": [
                    {
                        "name": "a",
                        "query": "error_rate",
                        "min_samples": 10,
                        "compare": "baseline",
                        "max_increase": "10%",
                    },
                    {"name": "b", "query": "error_rate", "compare": "baseline", "judge": {}},
                    {"name": "c", "query": "error_rate", "count": 1},
                ]
            }
        }
    },
    "flag_guards": [{"flag": "x", "analysis": {"templates": ["t"]}}],
    "caution": {"irreversible": {"pause_factor": 3}},
    "strategy": {
        "canary": {
            "sticky": {"header": "X-User"},
            "steps": [
                {"set_flag": {"key": "x", "rollout": "10%"}},
                {"analysis": {"templates": ["t"], "starting_step": 1}},
                {"hold": "5s"},
            ],
        }
    },
}


def _key(path: str) -> str:
    """A note's path as FIELDS spells it: list indexes as [], map keys as *."""
    path = re.sub(r"\[\d+\]", "[]", path)
    return re.sub(r"^analysis\.templates\.[^.]+\.", "analysis.templates.*.", path)


def test_every_unmappable_field_that_is_set_is_reported() -> None:
    spec = Spec.model_validate(EVERYTHING_UNMAPPABLE)
    bundle = export(spec, ExportOptions(image="r.example/shop", version="v2"))
    reported = {_key(n.path) for n in bundle.notes if n.dropped}
    expected = {p for p, d in FIELDS.items() if isinstance(d, Reported)}
    expected -= {  # places this spec leaves out (one strategy at a time)
        "strategy.blue_green.pre_promotion_analysis.starting_step",
        "strategy.blue_green.post_promotion_analysis.starting_step",
        # the ssh platform's (containers or hosts, one at a time): see the test below
        "hosts",
        "ssh",
        "run.artifact",
    }
    assert expected - reported == set()
    rollout_comments = "\n".join(bundle.manifests[0].comments)
    for path in ("gate", "smoke", "compat", "notify", "flag_guards", "strategy.canary.steps[0]"):
        assert f"- {path}" in rollout_comments


def test_hosts_and_ssh_are_reported() -> None:
    hosts = {
        "service": "shop",
        "run": {"command": ["app"], "artifact": "shop-{version}.tgz"},
        "hosts": [{"name": "web1", "ssh": "root@10.0.0.1"}],
        "ssh": {"keep_releases": 2},
    }
    bundle = export(Spec.model_validate(hosts), ExportOptions(image="r.example/shop", version="v2"))
    assert {"hosts", "ssh", "run.artifact"} <= {_key(n.path) for n in bundle.notes if n.dropped}


def test_docs_show_the_mapping_table() -> None:
    """docs/kubernetes.md holds coverage.markdown_table() between its markers
    (ZERODOWN_UPDATE_GOLDEN=1 rewrites it)."""
    text = DOCS.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    fresh = f"{head}{START}{markdown_table()}{END}{tail}"
    if os.environ.get("ZERODOWN_UPDATE_GOLDEN") == "1":
        DOCS.write_text(fresh)
        text = fresh
    assert START in text and END in text
    assert text == fresh, "the mapping table in docs/kubernetes.md is out of date"
