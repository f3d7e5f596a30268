"""`zerodown flags …` against a real flag service."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flagserver import FlagServer
from typer.testing import CliRunner

from zerodown.cli.flags import flags_app


def run(server: FlagServer, *args: str, token: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        flags_app,
        list(args),
        env={"ZERODOWN_URL": server.url, "ZERODOWN_TOKEN": token or server.token, "USER": "cli-u"},
    )
    return result.exit_code, result.output


@pytest.mark.slow  # a second or more: the full suite runs it
def test_cli_round_trip(flag_server: FlagServer, tmp_path: Path) -> None:
    s = flag_server
    assert run(s, "list")[1].startswith("no flags yet")
    assert run(s, "create", "new-checkout", "--type", "release", "--owner", "web") == (
        0,
        "created new-checkout\n",
    )
    code, out = run(s, "rollout", "new-checkout", "25%")
    assert code == 0 and "25% by default" in out
    code, out = run(s, "set", "new-checkout", "--rollout", "150%")
    assert code == 2 and "0% to 100%" in out
    assert run(s, "kill", "new-checkout", "--reason", "errors")[1] == "new-checkout: off\n"
    code, out = run(s, "get", "new-checkout", "--json")
    flag = json.loads(out)
    assert flag["enabled"] is False and flag["strategies"][0]["rollout"] == 25
    code, out = run(s, "audit", "new-checkout", "--json")
    entries = json.loads(out)
    assert [e["action"] for e in entries] == ["update", "update", "create"]
    assert entries[0]["note"] == "kill: errors" and entries[0]["actor"] == "cli-u"
    assert run(s, "enable", "new-checkout")[0] == 0
    code, out = run(s, "list")
    assert code == 0 and "new-checkout" in out
    assert run(s, "stale")[1] == "no stale flags\n"

    exported = tmp_path / "unleash.json"
    assert run(s, "export", "--format", "unleash", "-o", str(exported))[0] == 0
    assert run(s, "delete", "new-checkout") == (0, "deleted new-checkout\n")
    assert run(s, "import", str(exported))[1].startswith("created 1, updated 0")

    code, out = run(s, "get", "nope")
    assert code == 2 and "does not exist" in out
    code, out = run(s, "list", token="wrong")
    assert code == 2 and "refused the token" in out
    code, out = run(s, "env")
    assert f"OFREP_ENDPOINT={s.url}" in out and "Bearer" in out
    code, out = run(s, "create", "bad key")
    assert code == 2 and "key" in out


def test_connection_defaults_hook(flag_server: FlagServer) -> None:
    from zerodown.cli import flags as flags_cli

    flags_cli.set_connection_defaults(lambda: (flag_server.url, flag_server.token))
    try:
        result = CliRunner().invoke(
            flags_app, ["list"], env={"ZERODOWN_URL": "", "ZERODOWN_TOKEN": ""}
        )
        assert result.exit_code == 0 and "no flags yet" in result.output
    finally:
        flags_cli._defaults = None


def test_human_tables_show_text_as_written(flag_server: FlagServer) -> None:
    """get and audit as people read them; brackets in a note or owner are not markup."""
    s = flag_server
    assert run(s, "create", "dark-mode", "--owner", "[web]", "--description", "x")[0] == 0
    assert run(s, "set", "dark-mode", "--rollout", "10%", "--note", "ticket [ops-1]")[0] == 0
    code, out = run(s, "get", "dark-mode")
    row = next(line for line in out.splitlines() if "dark-mode" in line)
    assert code == 0 and "│ release │ on: 10% by" in row and "│ [web] │" in row, out
    code, out = run(s, "audit", "dark-mode")
    assert code == 0 and "[ops-1]" in out and "cli-u" in out, out
