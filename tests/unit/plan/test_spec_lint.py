"""`zerodown lint`'s rules, table-driven over specs (pure), and what a user sees from the CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from zerodown.cli.main import app
from zerodown.spec.lint import ERROR, NOTE, WARNING, Observed, constant, lint
from zerodown.spec.model import Spec

GOOD_PROBES = {"liveness": {"http": "/livez"}, "readiness": {"http": "/ready", "period": "1s"}}


def spec(**extra: Any) -> Spec:
    doc: dict[str, Any] = {"service": "shop", "run": {"command": ["app"]}, "probes": GOOD_PROBES}
    return Spec.model_validate({**doc, **extra})


def analysis(metric: dict[str, Any], **template: Any) -> dict[str, Any]:
    base = {"name": "errors", "query": "error_rate", "interval": "1s"}
    return {"templates": {"health": {"metrics": [{**base, **metric}], **template}}}


CANARY = {"canary": {"steps": [{"set_weight": 5}, {"set_weight": 100}]}}
SEEN = Observed(longest_request=1.0)  # the drain rule runs, and passes, unless a case says


@pytest.mark.parametrize(
    ("doc", "observed", "expected"),
    [
        ({}, SEEN, []),
        (
            {"probes": {"liveness": {"http": "/healthz"}, "readiness": {"http": "/healthz"}}},
            SEEN,
            [("liveness-is-readiness", WARNING, "probes.liveness")],
        ),
        (
            {"probes": {"liveness": {"http": "/livez"}}},
            SEEN,
            [("no-readiness-probe", WARNING, "probes")],
        ),
        (
            {"probes": {**GOOD_PROBES, "liveness": {"http": "/health/db"}}},
            SEEN,
            [("liveness-checks-dependency", WARNING, "probes.liveness.http")],
        ),
        (
            {
                "probes": {
                    **GOOD_PROBES,
                    "readiness": {"http": "/ready", "period": "1s", "timeout": "2s"},
                }
            },
            SEEN,
            [("probe-timeout-over-period", WARNING, "probes.readiness.timeout")],
        ),
        ({}, Observed(longest_request=30.0), [("drain-vs-longest-request", WARNING, "run.drain")]),
        ({}, Observed(), [("drain-vs-longest-request", NOTE, "run.drain")]),
        (
            {"analysis": analysis({"failure_condition": "1 > 2"})},
            SEEN,
            [
                (
                    "analysis-cannot-fail",
                    ERROR,
                    "analysis.templates.health.metrics.0.failure_condition",
                )
            ],
        ),
        (
            {"analysis": analysis({"failure_condition": "result > 0 or true"})},
            SEEN,
            [
                (
                    "analysis-always-fails",
                    ERROR,
                    "analysis.templates.health.metrics.0.failure_condition",
                )
            ],
        ),
        (
            {"analysis": analysis({"success_condition": "result >= 0 or result < 0"})},
            SEEN,
            [
                (
                    "analysis-cannot-fail",
                    ERROR,
                    "analysis.templates.health.metrics.0.success_condition",
                )
            ],
        ),
        (
            {
                "analysis": analysis(
                    {"count": 3, "failure_limit": 3, "failure_condition": "result > 0.05"}
                )
            },
            SEEN,
            [("analysis-cannot-fail", ERROR, "analysis.templates.health.metrics.0.failure_limit")],
        ),
        (
            {"analysis": analysis({})},
            SEEN,
            [("analysis-without-condition", WARNING, "analysis.templates.health.metrics.0")],
        ),
        (
            {"analysis": analysis({"failure_condition": "result > 0.05"}, dry_run=["errors"])},
            SEEN,
            [("analysis-all-dry-run", WARNING, "analysis.templates.health.dry_run")],
        ),
        (
            {
                "analysis": analysis({"interval": None, "failure_condition": "result > 0.05"}),
                "strategy": {"canary": {**CANARY["canary"], "analysis": {"templates": ["health"]}}},
            },
            SEEN,
            [("background-analysis-measured-once", WARNING, "analysis.templates.health.metrics.0")],
        ),
        (
            {
                "strategy": {
                    "canary": {"steps": [{"set_weight": 5}, {"pause": {}}, {"set_weight": 50}]}
                }
            },
            SEEN,
            [("canary-never-reaches-100", WARNING, "strategy.canary.steps")],
        ),
        ({"strategy": CANARY}, SEEN, []),
        (
            {"strategy": {"blue_green": {}}},
            SEEN,
            [("blue-green-without-preview-checks", WARNING, "strategy.blue_green")],
        ),
        (
            {
                "strategy": {"blue_green": {}},
                "smoke": {"checks": [{"name": "home", "request": "GET /"}]},
            },
            SEEN,
            [],
        ),
    ],
)
def test_rules(
    doc: dict[str, Any], observed: Observed, expected: list[tuple[str, str, str]]
) -> None:
    found = [(f.rule, f.severity, f.field) for f in lint(spec(**doc), observed)]
    assert found == expected


def test_router_workers_beyond_the_machines_cores() -> None:
    """A warning on a machine with fewer cores than the workers asked for; none for `auto`,
    for as many as the cores, or when the cores are not known."""
    many = spec(router={"workers": 8})
    found = lint(many, replace(SEEN, cores=2))
    assert [(f.rule, f.severity, f.field) for f in found] == [
        ("router-workers-beyond-cores", WARNING, "router.workers")
    ]
    assert "8 router processes on a machine with 2 cores" in found[0].why
    assert "router.workers: auto" in found[0].fix
    assert lint(many, replace(SEEN, cores=8)) == lint(many, SEEN) == []
    assert lint(spec(router={"workers": "auto"}), replace(SEEN, cores=1)) == []


@pytest.mark.parametrize(
    ("condition", "value"),
    [
        ("result > 0.05", None),
        ("true", True),
        ("false", False),
        ("result > baseline * 1.2", None),
        ("samples >= 0 or true", True),
        ("result < 0 and result > 0", False),
    ],
)
def test_constant_conditions(condition: str, value: bool | None) -> None:
    assert constant(condition) is value


SPEC = """\
service: shop
run:
  command: [app]
  drain: 1s
probes:
  liveness: {http: /healthz}
  readiness: {http: /healthz}
analysis:
  templates:
    health:
      metrics:
        - name: errors
          query: error_rate
          interval: 1s
          failure_condition: "1 > 2"
strategy:
  canary: {steps: [{set_weight: 5}, {set_weight: 100}], analysis: {templates: [health]}}
"""


def test_cli_lint_prints_file_line_why_and_fix_and_exits_1_on_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("zerodown.yaml").write_text(SPEC)
    result = CliRunner().invoke(app, ["lint"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(
        "zerodown.yaml:15: error: analysis-cannot-fail "
        "(analysis.templates.health.metrics.0.failure_condition): failure_condition '1 > 2' is "
        "false whatever is measured"
    )
    assert lines[1].startswith("    fix: write the condition over `result`")
    assert lines[2].startswith("zerodown.yaml:6: warning: liveness-is-readiness (probes.liveness)")
    assert lines[4].startswith("zerodown.yaml:4: note: drain-vs-longest-request (run.drain): not")
    assert lines[-1] == "1 error, 1 warning, 1 note"

    Path("zerodown.yaml").write_text(SPEC.replace('"1 > 2"', '"result > 0.05"'))
    assert CliRunner().invoke(app, ["lint"]).exit_code == 0


def test_deploy_refuses_lint_errors_before_it_talks_to_a_controller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("zerodown.yaml").write_text(SPEC)
    refused = CliRunner().invoke(app, ["deploy", "v2"])
    assert refused.exit_code == 2
    assert "error: analysis-cannot-fail" in refused.output
    assert "lint found errors: fix them, or deploy with --no-lint" in refused.output
    # with --no-lint it goes on, to the controller, which does not run here
    skipped = CliRunner().invoke(app, ["deploy", "v2", "--no-lint"])
    assert skipped.exit_code == 1 and "analysis-cannot-fail" not in skipped.output
    assert "start it with `zerodown up`" in skipped.output


def test_cli_plan_human_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    doc = yaml.safe_load(SPEC.replace('"1 > 2"', '"result > 0.05"'))
    Path("zerodown.yaml").write_text(yaml.safe_dump(doc))
    result = CliRunner().invoke(app, ["plan", "--version", "v2"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith(
        "zerodown plan: shop v2 (canary, 2 instances)\n\nrollout\n  1. weight 5%\n"
    )
    assert (
        "  - analysis:background errors (error_rate): fails when result > 0.05\n"
        "      watches in the background, across the steps\n"
    ) in out
    assert "      detects within 1.00s = max(first 1s, interval 1s)\n" in out
    assert (
        "how long\n  worst case 1.35s from a regression to all traffic on the stable release\n"
        "  = max(first 1s, interval 1s) + 250ms reconcile pass + 100ms route apply\n"
    ) in out
    assert "how\n  route change only: canary weight 0 in the same pass" in out
    assert "what would block it\n  - nothing\n" in out
    assert not Path(".zerodown").exists()  # plan created nothing
    as_json = CliRunner().invoke(app, ["plan", "--json"])
    assert '"worst_case": 1.35' in as_json.output
    bad = CliRunner().invoke(app, ["plan", "--version", "no way"])
    assert bad.exit_code == 2 and "is not valid" in bad.output
