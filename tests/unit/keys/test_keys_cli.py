"""`zerodown keys …` through typer's CliRunner, on a real directory."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zerodown.cli.keys import keys_app
from zerodown.keys.storage import PRIVATE_MEMBERS

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(keys_app, list(args))
    return result.exit_code, result.output


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "RS256"])
def test_init_rotate_list_jwks(tmp_path: Path, alg: str) -> None:
    d = str(tmp_path / "keys")
    code, out = run("init", "--alg", alg, "--jwks-cache", "2m", "--dir", d)
    assert code == 0, out
    assert f"active {alg} key" in out
    code, out = run("rotate", "--dir", d)
    assert code == 0, out
    assert "in 2m" in out.replace("120s", "2m")
    code, out = run("list", "--json", "--dir", d)
    assert code == 0, out
    rows = json.loads(out)
    assert [r["state"] for r in rows] == ["active", "next"]
    assert rows[1]["activates_at"] - rows[1]["published_at"] == pytest.approx(120)
    code, out = run("list", "--dir", d)
    assert code == 0 and "next" in out and "active" in out
    code, out = run("jwks", "--dir", d)
    assert code == 0, out
    keys = json.loads(out)["keys"]
    assert [k["kid"] for k in keys] == [r["kid"] for r in rows]
    assert all(not PRIVATE_MEMBERS & k.keys() for k in keys)
    for f in Path(d).glob("*.private.jwk"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        private = json.loads(f.read_text())
        for member in PRIVATE_MEMBERS & private.keys():
            assert str(private[member]) not in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list"], "keys init"),
        (["rotate"], "keys init"),
        (["jwks"], "keys init"),
        (["init", "--jwks-cache", "soon"], "--jwks-cache"),
        (["init", "--alg", "HS256"], "HS256"),
    ],
)
def test_errors_exit_2_with_a_message(tmp_path: Path, args: list[str], message: str) -> None:
    code, out = run(*args, "--dir", str(tmp_path / "keys"))
    assert code == 2
    assert message in out
    assert "Traceback" not in out


def test_second_init_and_double_rotate_are_refused(tmp_path: Path) -> None:
    d = str(tmp_path / "keys")
    assert run("init", "--dir", d)[0] == 0
    code, out = run("init", "--dir", d)
    assert code == 2 and "keys rotate" in out
    assert run("rotate", "--dir", d)[0] == 0
    code, out = run("rotate", "--dir", d)
    assert code == 2 and "already waiting" in out
