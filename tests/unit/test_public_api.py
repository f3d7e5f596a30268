"""The packages users import into their apps export a curated, working `__all__`, and the pure
parts stay importable without the heavy dependencies."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC = ["zerodown.sessions", "zerodown.flags", "zerodown.keys"]


@pytest.mark.parametrize("name", PUBLIC)
def test_every_exported_name_resolves(name: str) -> None:
    package = importlib.import_module(name)
    assert package.__all__, f"{name} exports nothing"
    for export in package.__all__:
        assert getattr(package, export) is not None
    assert sorted(dir(package)) == sorted(package.__all__)


def test_unknown_name_is_an_attribute_error() -> None:
    package = importlib.import_module("zerodown.flags")
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = package.Nope


def test_pure_flag_evaluation_imports_no_io_library() -> None:
    code = (
        "import sys, zerodown.flags.evaluate, zerodown.flags;"
        "print(sorted(m for m in ('redis', 'httpx', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
