"""`zerodown export kubernetes` writes exactly the golden files, for each strategy and the demo.

To regenerate after an intended change (then read the diff):
    ZERODOWN_UPDATE_GOLDEN=1 PYTHONPATH=src pytest tests/unit/export -q
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from k8s_cases import CASES, GOLDEN, Case, export_case

UPDATE = os.environ.get("ZERODOWN_UPDATE_GOLDEN") == "1"
OUTPUT = "output.txt"
"""The command's human output, beside the files it wrote."""


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_files_match_golden(case: Case, tmp_path: Path) -> None:
    out, printed = export_case(case, tmp_path)
    got = {p.name: p.read_text() for p in sorted(out.iterdir())}
    got[OUTPUT] = printed
    golden = GOLDEN / case.name
    if UPDATE:
        golden.mkdir(parents=True, exist_ok=True)
        for stale in golden.iterdir():
            stale.unlink()
        for name, text in got.items():
            (golden / name).write_text(text)
    want = {p.name: p.read_text() for p in sorted(golden.iterdir())}
    assert sorted(got) == sorted(want), "files differ; see the module docstring to regenerate"
    for name in want:
        assert got[name] == want[name], f"{case.name}/{name} differs from its golden file"
