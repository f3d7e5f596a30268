"""The exported objects are valid without a cluster, checked on the golden files (which the golden
test holds equal to the command's output):

- core objects (Service, Ingress, Job, and the Rollout's pod template as a Deployment's, the job
  metrics' Jobs) against Kubernetes' OpenAPI schemas as the `kubernetes-validate` package ships
  them (offline: the schemas are in the wheel), strict: an unknown field is an error;
- Argo objects against the structural schemas of the Rollout and AnalysisTemplate CRDs
  (tests/data/argo-rollouts/, see its README), made strict the same way: Kubernetes prunes
  unknown fields of a custom resource silently, so a misspelt field would otherwise pass.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from k8s_cases import CASES, GOLDEN, Case
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

ARGO = Path(__file__).parents[2] / "data" / "argo-rollouts"
KUBERNETES = "1.30"
"""The oldest Kubernetes the export targets: preStop `sleep` is on by default from 1.30."""


def objects(case: Case) -> Iterator[dict[str, Any]]:
    for path in sorted((GOLDEN / case.name).glob("*.yaml")):
        yield from yaml.safe_load_all(path.read_text())


def strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` wherever it lists properties and does not
    say it keeps unknown fields."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def argo_validator(kind: str) -> jsonschema.Draft7Validator:
    name = {"Rollout": "rollout-crd", "AnalysisTemplate": "analysis-template-crd"}[kind]
    crd = json.loads((ARGO / f"{name}.schema.json").read_text())
    assert crd["kind"] == kind and crd["source"].startswith("argoproj/argo-rollouts")
    return jsonschema.Draft7Validator(strict(crd["openAPIV3Schema"]))


@cache
def core_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator:
    """What kubernetes_validate.validate(..., strict=True) builds, built once per kind: it reads
    the 1.3 MB definitions file again on every call."""
    group = api_version.split("/")[0].split(".")[0] if "/" in api_version else ""
    api = f"{group}-{api_version.split('/')[-1]}" if group else api_version
    folder = f"kubernetes-json-schema/v{KUBERNETES}.0-local-strict"
    schema = kv_utils.schema_contents(f"{folder}/{kind.lower()}-{api}.json", KUBERNETES)
    definitions = kv_utils.schema_contents(f"{folder}/_definitions.json", KUBERNETES)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def as_deployment(rollout: dict[str, Any]) -> dict[str, Any]:
    spec = rollout["spec"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": rollout["metadata"],
        "spec": {
            k: spec[k] for k in ("replicas", "selector", "template", "minReadySeconds") if k in spec
        },
    }


def metric_jobs(template: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for metric in template["spec"]["metrics"]:
        job = metric["provider"].get("job")
        if job is not None:
            yield {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": metric["name"]},
                "spec": job["spec"],
            }


def core_objects(case: Case) -> Iterator[dict[str, Any]]:
    for obj in objects(case):
        if obj["kind"] == "Rollout":
            yield as_deployment(obj)
        elif obj["kind"] == "AnalysisTemplate":
            yield from metric_jobs(obj)
        else:
            yield obj


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_core_objects_match_kubernetes_schemas(case: Case) -> None:
    checked = set()
    for obj in core_objects(case):
        core_validator(obj["kind"], obj["apiVersion"]).validate(obj)
        checked.add(obj["kind"])
    assert {"Service", "Deployment"} <= checked


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_argo_objects_match_crd_schemas(case: Case) -> None:
    kinds = []
    for obj in objects(case):
        if obj["apiVersion"].startswith("argoproj.io/"):
            argo_validator(obj["kind"]).validate(obj)
            kinds.append(obj["kind"])
    assert "Rollout" in kinds


def test_the_validators_catch_mistakes() -> None:
    """Not vacuous: the same checks refuse a misspelt or mistyped field."""
    rollout = next(o for o in objects(CASES[1]) if o["kind"] == "Rollout")
    misspelt = copy.deepcopy(rollout)
    misspelt["spec"]["strategy"]["canary"]["steps"][0] = {"setWieght": 5}
    with pytest.raises(jsonschema.ValidationError, match="setWieght"):
        argo_validator("Rollout").validate(misspelt)
    mistyped = copy.deepcopy(rollout)
    mistyped["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["periodSeconds"] = "5s"
    with pytest.raises(jsonschema.ValidationError):
        core_validator("Deployment", "apps/v1").validate(as_deployment(mistyped))
    # the package's own entry point agrees with the cached validator
    deployment = as_deployment(rollout)
    assert kubernetes_validate.validate(deployment, KUBERNETES, strict=True) == KUBERNETES
    deployment["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]["sleep"] = {
        "second": 5
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES, strict=True)
