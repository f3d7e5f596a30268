"""What a user sees from `zerodown export kubernetes`: the summary, the notes, the files, and a
one-line error with exit code 2 for bad input (nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from k8s_cases import CASES, IMAGE, export_case, run, write_spec
from typer.testing import CliRunner

from zerodown.cli.main import app


def test_human_output_lists_files_assumptions_and_what_did_not_carry_over(tmp_path: Path) -> None:
    out, printed = export_case(CASES[1], tmp_path)  # the canary with a flag step and a gate
    assert printed.startswith("wrote 4 files to <out>/\n")
    assert "traffic router: ingress-nginx" in printed
    assert "queried at http://prometheus.monitoring.svc:9090" in printed
    dropped, _, changed = printed.partition("carried over with a difference")
    assert "no counterpart in Kubernetes / Argo Rollouts (6):" in dropped
    for line in (
        "  strategy.canary.steps[1].set_flag: Argo Rollouts has no flag step",
        "  gate: no test gate in Argo Rollouts",
        "  smoke: ",
        "  notify: ",
        "  analysis.templates.health.metrics[1].compare: ",
    ):
        assert line in dropped
    assert (
        "strategy.canary.steps[0].set_header_route: ingress-nginx has no header-route step"
        in changed
    )
    assert "probes.startup.period: 0.5s → 1s" in changed
    # and the same notes head the files they concern
    rollout = (out / "rollout.yaml").read_text()
    assert "# - strategy.canary.steps[1].set_flag: Argo Rollouts has no flag step" in rollout
    assert "# - gate: no test gate" in rollout
    assert "compare" in (out / "analysis.yaml").read_text().split("apiVersion")[0]


def test_json_summary(tmp_path: Path) -> None:
    spec = write_spec(CASES[3], tmp_path)
    code, stdout, _ = run(
        "kubernetes", "-f", str(spec), "--image", IMAGE, "--version", "1.4.0-rc.1", "--json"
    )
    assert code == 0
    summary = json.loads(stdout)
    assert summary["directory"] == str(tmp_path / "kubernetes")  # beside the spec by default
    assert summary["files"] == ["rollout.yaml", "services.yaml", "ingress.yaml", "analysis.yaml"]
    assert {"path": "compat", "file": "rollout.yaml", "dropped": True}.items() <= summary["notes"][
        0
    ].items()
    assert (
        "registry.example/shop:1.4.0-rc.1" in (tmp_path / "kubernetes" / "rollout.yaml").read_text()
    )


def test_registered_in_the_main_cli_and_image_is_required(tmp_path: Path) -> None:
    spec = write_spec(CASES[0], tmp_path)
    result = CliRunner().invoke(app, ["export", "kubernetes", "-f", str(spec), "--version", "v2"])
    assert result.exit_code == 2
    assert "Missing option '--image'" in result.stderr
    assert not (tmp_path / "kubernetes").exists()


BAD = [
    (("--version", "v 2"), "error: --version: version 'v 2' is not valid: 1-63 characters"),
    (("--version", "-v2"), "error: --version: version '-v2' is not valid"),
    (("--version", "1.0+build.5"), "an image tag cannot hold '+'"),
    (("--image", "registry.example/shop:v1"), "give the repository without a tag or digest"),
    (
        ("--image", "Registry Example"),
        "is not an image repository; write it like registry.example/shop",
    ),
    (("--prometheus", "prometheus:9090"), "--prometheus 'prometheus:9090' is not a URL"),
]


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m[:24] for _, m in BAD])
def test_bad_options_exit_2_with_one_line(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    spec = write_spec(CASES[0], tmp_path)
    options = {"--image": IMAGE, "--version": "v2", "--prometheus": "http://p:9090"}
    options[change[0]] = change[1]
    code, stdout, stderr = run(
        "kubernetes", "-f", str(spec), *[x for kv in options.items() for x in kv]
    )
    assert code == 2, stdout + stderr
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr
    assert not (tmp_path / "kubernetes").exists()


def test_bad_spec_exits_2_with_file_and_line(tmp_path: Path) -> None:
    spec = tmp_path / "zerodown.yaml"
    spec.write_text("service: shop\nrun:\n  command: [app]\nstrategy:\n  canary: {steps: []}\n")
    code, _, stderr = run("kubernetes", "-f", str(spec), "--image", IMAGE, "--version", "v2")
    assert code == 2
    assert f"{spec}:5" in stderr and "steps" in stderr
    code, _, stderr = run(
        "kubernetes", "-f", str(tmp_path / "nope.yaml"), "--image", IMAGE, "--version", "v2"
    )
    assert code == 2 and "file not found" in stderr
    assert not (tmp_path / "kubernetes").exists()


def test_missing_migrations_directory_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "zerodown.yaml"
    spec.write_text(
        "service: shop\nrun: {command: [app]}\nmigrations: {database: 'postgresql://db/x'}\n"
    )
    code, _, stderr = run("kubernetes", "-f", str(spec), "--image", IMAGE, "--version", "v2")
    assert code == 2
    assert "the migrations directory does not exist" in stderr


def test_a_service_name_too_long_for_a_kubernetes_service_exits_2(tmp_path: Path) -> None:
    spec = tmp_path / "zerodown.yaml"
    name = "s" * 60
    spec.write_text(
        f"service: {name}\nrun: {{command: [app]}}\nstrategy:\n  canary: {{steps: [{{set_weight: 50}}]}}\n"
    )
    code, _, stderr = run("kubernetes", "-f", str(spec), "--image", IMAGE, "--version", "v2")
    assert code == 2
    assert f"{spec}: service: the Service '{name}-canary' would be 67 characters" in stderr
    assert "shorten the service name to 56 characters or fewer" in stderr
