"""Unleash's client specification (npm `@unleash/client-specification`) against our evaluator.

The vectors come from $ZERODOWN_UNLEASH_SPEC_DIR or .cache/unleash-spec/ (fetched by
scripts/fetch-unleash-spec when missing and npm is there). Every case of every file whose features
we support must pass; the files we skip, and why, are listed in SKIPPED (and in docs/flags.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from support.services import require
from zerodown.flags.evaluate import EvalContext, evaluate
from zerodown.flags.unleash import flags_from_unleash

ROOT = Path(__file__).resolve().parents[3]

SKIPPED = {
    "19-delta-api-hydration.json": "Unleash's delta API is a transport we do not speak",
    "20-delta-api-events.json": "Unleash's delta API is a transport we do not speak",
}


def spec_dir() -> Path:
    env = os.environ.get("ZERODOWN_UNLEASH_SPEC_DIR")
    directory = Path(env) if env else ROOT / ".cache" / "unleash-spec"
    if not (directory / "index.json").exists():
        if shutil.which("npm") is None:
            require(
                f"no Unleash spec vectors in {directory} and npm is not installed to fetch them"
            )
        result = subprocess.run(
            [str(ROOT / "scripts" / "fetch-unleash-spec"), str(directory)],
            capture_output=True,
            text=True,
            timeout=180,
        )
        if result.returncode != 0:
            require(f"scripts/fetch-unleash-spec failed: {result.stderr.strip()[-500:]}")
    return directory


def run_file(spec: dict[str, Any]) -> tuple[int, list[str]]:
    flags = {f.key: f for f in flags_from_unleash(spec["state"])}
    total, failures = 0, []
    for case in spec.get("tests", []):
        total += 1
        flag = flags.get(case["toggleName"])
        ctx = EvalContext.from_mapping(case["context"])
        got = flag is not None and evaluate(flag, ctx, flags=flags).enabled
        if got != case["expectedResult"]:
            failures.append(f"{spec['name']}: {case['description']}: got {got}")
    for case in spec.get("variantTests", []):
        total += 1
        flag = flags.get(case["toggleName"])
        ctx = EvalContext.from_mapping(case["context"])
        want = case["expectedResult"]
        if flag is None:
            got_v: dict[str, Any] = {"name": "disabled", "enabled": False, "feature_enabled": False}
        else:
            e = evaluate(flag, ctx, flags=flags)
            got_v = {"name": e.variant, "enabled": e.variant_enabled, "feature_enabled": e.enabled}
            if e.payload is not None:
                got_v["payload"] = {"type": e.payload.type, "value": e.payload.value}
        want_cmp = {k: want[k] for k in ("name", "enabled", "payload") if k in want}
        want_cmp["feature_enabled"] = want.get("feature_enabled", got_v["feature_enabled"])
        if {k: got_v.get(k) for k in want_cmp} != want_cmp:
            failures.append(f"{spec['name']}: {case['description']}: got {got_v}, want {want}")
    return total, failures


def test_unleash_client_specification(capsys: pytest.CaptureFixture[str]) -> None:
    directory = spec_dir()
    index = json.loads((directory / "index.json").read_text())
    total, failures, skipped_cases = 0, [], 0
    for name in index:
        spec = json.loads((directory / name).read_text())
        if name in SKIPPED:
            skipped_cases += len(spec.get("tests", [])) + len(spec.get("variantTests", []))
            continue
        n, f = run_file(spec)
        total += n
        failures.extend(f)
    version = (
        (directory / "VERSION").read_text().strip() if (directory / "VERSION").exists() else "?"
    )
    with capsys.disabled():
        print(
            f"\nUnleash client specification {version}: {total - len(failures)}/{total} cases"
            f" passed in {len(index) - len(SKIPPED)} files; {len(SKIPPED)} files"
            f" ({skipped_cases} cases) skipped: {', '.join(sorted(SKIPPED))}"
        )
    # A fetch that brought an empty or truncated set must not pass as "all cases passed".
    assert len(index) - len(SKIPPED) >= 20 and total >= 250, f"only {total} cases in {directory}"
    assert not failures, "\n".join(failures)
