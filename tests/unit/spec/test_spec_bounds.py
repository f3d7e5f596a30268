"""Values zerodown.yaml accepted and must refuse (issue 10, section 4), each with file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from samples import FULL, full_yaml

from zerodown.core.errors import SpecError
from zerodown.spec.load import MAX_BYTES, load_spec, parse_model
from zerodown.spec.model import Spec

HEAD = "service: shop\nrun: {command: [app]}\n"  # lines 1-2


def refused(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_model(text, Spec, file="zerodown.yaml")
    return caught.value


BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9 if prev else ['lol'] * 9)}]\n"
    for prev, name in zip(["", "a", "b", "c", "d", "e", "f", "g"], "abcdefgh", strict=True)
)


REFUSED = [
    (
        HEAD + "probes:\n  readiness: {http: /r, period: 0s}\n",
        "4: probes.readiness.period",
        "at least 100ms",
    ),
    (
        HEAD + "probes:\n  liveness: {http: /r, period: .inf}\n",
        "4: probes.liveness.period",
        "not a finite number",
    ),
    (
        HEAD + "probes:\n  liveness: {http: /r, timeout: .nan}\n",
        "4: probes.liveness.timeout",
        "not a finite number",
    ),
    (
        "service: shop\nrun: {command: [app], drain: 99999999999d}\n",
        "2: run.drain",
        "at most 30d",
    ),
    (
        HEAD + "probes:\n  readiness: {http: /r, timeout: 1.0e+308}\n",
        "4: probes.readiness.timeout",
        "at most 30d",
    ),
    (
        HEAD + "probes:\n  readiness: {http: /r, failure_threshold: " + "1" + "0" * 30 + "}\n",
        "4: probes.readiness.failure_threshold",
        "less than or equal to 1000",
    ),
    (
        HEAD + "strategy:\n  canary: {steps: [{set_weight: 5}], canary_scale: 1000000000}\n",
        "4: strategy.canary.canary_scale",
        "256",
    ),
    (
        HEAD + "strategy:\n  rolling:\n    max_surge: 0\n    max_unavailable: 0\n",
        "4: strategy.rolling",
        "cannot both be 0",
    ),
    (
        HEAD + "strategy:\n  rolling: {max_surge: 0%, max_unavailable: 0}\n",
        "4: strategy.rolling",
        "cannot both be 0",
    ),
    (
        "service: shop\ninstances: true\nrun: {command: [app]}\n",
        "2: instances",
        "valid integer",
    ),
    (
        HEAD + "probes:\n  readiness: {tcp: {port: true}}\n",
        "4: probes.readiness.tcp.port",
        "valid integer",
    ),
    (HEAD + "router: {listen: '127.0.0.1:0'}\n", "3: router.listen", "from 1 to 65535"),
    (HEAD + "router: {listen: '127.0.0.1:99999'}\n", "3: router.listen", "from 1 to 65535"),
    (HEAD + "router: {header_timeout: 0s}\n", "3: router.header_timeout", "too short"),
    (HEAD + "instances: 3\ninstances: 4\n", "4: instances", "duplicate key (also on line 3)"),
    (HEAD + "run: {command: [other]}\n", "3: run", "also on line 2"),
    (
        HEAD + "probes:\n  readiness: {http: /a, http: /b}\n",
        "4: probes.readiness.http",
        "duplicate key",
    ),
    (HEAD + BOMB, "3: ", "more than 100000 values"),
    (HEAD + "x: &x [*x]\n", "3: ", "nested more than 64"),
    (HEAD + "instances: 0x_\n", "3: ", "not valid YAML"),
    (HEAD + "instances: " + "9" * 5000 + "\n", "3: ", "not a number zerodown can read"),
    (HEAD + "gate: {command: [x], timeout: 2001-13-45}\n", "3: ", "month must be in 1..12"),
    (HEAD + "instances: \x07\n", "3: ", "not allowed in YAML"),
    (
        HEAD + "smoke: {checks: [{name: a, request: GET /, json: {n: -.inf}}]}\n",
        "3: smoke",
        "not a finite number",
    ),
    (
        HEAD.replace("[app]", "[" + "x" * 70_000 + "]"),
        "2: run.command.0",
        "at most 65536 characters",
    ),
    (
        HEAD
        + "analysis: {templates: {t: {metrics: [{name: m, query: error_rate, interval: 0s}]}}}\n",
        "3: analysis.templates.t.metrics.0.interval",
        "too short",
    ),
    (
        HEAD
        + "analysis: {templates: {t: {metrics: [{name: m, query: latency_p99, compare: baseline, max_increase: "
        + "9" * 400
        + "%}]}}}\n",
        "3: analysis",
        "over 10000%",
    ),
]


@pytest.mark.parametrize(
    ("text", "where", "says"), REFUSED, ids=[f"{n}-{case[2]}" for n, case in enumerate(REFUSED)]
)
def test_refused_with_line_and_field(text: str, where: str, says: str) -> None:
    error = refused(text)
    assert f"zerodown.yaml:{where}" in str(error) and says in str(error), str(error)
    assert error.line is not None


def test_the_full_sample_loads_and_survives_json() -> None:
    spec = parse_model(full_yaml(), Spec, file="zerodown.yaml")
    # the CLI sends the spec to the controller as JSON, which validates it again
    assert Spec.model_validate(spec.model_dump(mode="json")) == spec
    assert spec.model_dump(mode="json")["strategy"]["canary"]["canary_scale"] == 1


def test_anchors_and_merge_keys_within_bounds_are_fine() -> None:
    text = HEAD + (
        "probes:\n"
        "  startup: &probe {http: /healthz, period: 1s}\n"
        "  liveness: {<<: *probe, failure_threshold: 5}\n"
        "  readiness: *probe\n"
    )
    probes = parse_model(text, Spec, file="zerodown.yaml").probes
    assert probes.liveness is not None and probes.liveness.failure_threshold == 5
    assert probes.readiness.period == 1.0


def test_bare_numbers_are_seconds_and_percentages_still_resolve() -> None:
    spec = parse_model(
        HEAD + "probes:\n  readiness: {http: /r, period: 2}\nstrategy:\n"
        "  rolling: {max_surge: 0, max_unavailable: 25%}\n",
        Spec,
        file="zerodown.yaml",
    )
    assert spec.probes.readiness.period == 2.0


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"service: shop\nrun: {command: [\xff\xfe]}\n", "zerodown.yaml:2: not valid UTF-8"),
        (b"service: shop\n" + b"#" * MAX_BYTES, "larger than 1024 KiB"),
        (b"\xef\xbb\xbfservice: shop\nrun: {command: [app]}\n", ""),  # a BOM is fine
    ],
    ids=["utf-8", "size", "bom"],
)
def test_bytes_of_the_file(tmp_path: Path, raw: bytes, says: str) -> None:
    path = tmp_path / "zerodown.yaml"
    path.write_bytes(raw)
    if not says:
        assert load_spec(path).service == "shop"
        return
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert says in str(caught.value)


def test_a_directory_is_not_a_spec(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the file"):
        load_spec(tmp_path)


def test_many_problems_are_listed_then_counted() -> None:
    text = HEAD + "".join(f"unknown{n}: 1\n" for n in range(30))
    lines = str(refused(text)).splitlines()
    assert len(lines) == 11 and lines[-1] == "… and 20 more"


def test_the_sample_has_every_top_level_section_this_suite_mutates() -> None:
    assert {"probes", "strategy", "analysis", "smoke", "notify", "gate"} <= set(FULL)
