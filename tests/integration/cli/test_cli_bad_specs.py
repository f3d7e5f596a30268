"""Mutated specs through the real `zerodown up`: exit 2 with file:line, no traceback, and no
process or state left behind (issue 10, "Proof, in CI"). Most mutations are tried in-process by
tests/unit/spec/test_spec_fuzz.py; a few go through the CLI here, since each is a process."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import pytest
from cli_kit import assert_nothing_started, zerodown
from hypothesis import HealthCheck, assume, given, settings

# the mutation strategies live beside the spec tests that use most of them
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "spec"))
from mutations import MUTATED

from zerodown.core.errors import SpecError
from zerodown.spec.load import load_spec

pytestmark = pytest.mark.slow


def refused_in_process(path: Path) -> bool:
    try:
        load_spec(path)
    except SpecError:
        return True
    return False


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(MUTATED)
def test_a_mutated_spec_through_up_exits_2_and_starts_nothing(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "zerodown.yaml").write_bytes(raw)
        assume(refused_in_process(root / "zerodown.yaml"))  # a valid one would start a service
        result = zerodown(root, "up", "--version", "v1", "-f", "zerodown.yaml")
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: zerodown.yaml:"), result.stderr
        assert_nothing_started(root, result)
        assert not (root / ".zerodown").exists()
