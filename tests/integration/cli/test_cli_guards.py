"""What the CLI refuses before it starts anything, and the small commands (issue 10, sections 2,
4 and 6). In-process through typer's CliRunner, except where a real process is the point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_kit import assert_nothing_started, zerodown
from typer.testing import CliRunner

from support.workspace import Workspace
from zerodown.cli.main import app
from zerodown.control.process import controller_argv, error_summary
from zerodown.paths import Paths

runner = CliRunner()


@pytest.mark.slow  # a second or more: the full suite runs it
def test_up_without_a_version_on_a_new_service_starts_nothing(
    tmp_path: Path, workspace: Workspace
) -> None:
    result = zerodown(tmp_path, "up")
    assert result.returncode == 2
    assert "nothing is deployed yet: pass --version" in result.stderr
    assert_nothing_started(tmp_path, result)
    assert not (tmp_path / ".zerodown").exists()


@pytest.mark.slow  # a second or more: the full suite runs it
def test_a_bad_spec_through_the_real_cli_starts_nothing(
    tmp_path: Path, workspace: Workspace
) -> None:
    spec = workspace.spec_file
    spec.write_text(spec.read_text().replace("period: 500ms", "period: 0s"))
    result = zerodown(tmp_path, "up", "--version", "v1")
    assert result.returncode == 2
    assert (
        "zerodown.yaml:" in result.stderr and "readiness.period: 0s is too short" in result.stderr
    )
    assert_nothing_started(tmp_path, result)


BAD_VERSIONS = ["x/y", "v" * 64, "../etc", "-v1", "v 1", "", "v1\n", "[bold]v2"]


@pytest.mark.parametrize("version", BAD_VERSIONS)
@pytest.mark.parametrize("command", ["up", "deploy"])
def test_a_bad_version_is_refused_before_anything(
    tmp_path: Path, workspace: Workspace, command: str, version: str
) -> None:
    where = ["-f", str(workspace.spec_file)]
    args = (
        ["up", *where, "--version", version]
        if command == "up"
        else ["deploy", *where, "--", version]
    )
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "is not valid: 1-63 characters" in result.stderr
    if version.startswith("[bold]"):
        assert "[bold]v2" in result.stderr  # shown as typed, not eaten as markup
    assert not (tmp_path / ".zerodown").exists()


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["deploy", "v2", "--wait", "--timeout", "20s"], 1, "zerodown is not running"),
        (["deploy", "v2", "--timeout", "500ms"], 1, "zerodown is not running"),
        (["up", "--timeout", "2m", "--version", "v1", "--log-format", "yaml"], 2, "yaml"),
        (["deploy", "v2", "--timeout", "20 parsecs"], 2, "is not a duration"),
        (["rollback", "--timeout", "-1s"], 2, "is not a duration"),
        (["down", "--timeout", "99999d"], 2, "at most 30d"),
        (["down", "--timeout", "1m"], 0, "nothing is running"),
    ],
)
def test_durations_on_the_command_line_are_written_as_in_the_spec(
    tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    ws = Workspace.create(tmp_path)
    result = runner.invoke(app, [*args, "-f", str(ws.spec_file)])
    assert result.exit_code == code, result.output
    assert says in result.output


def test_the_log_format_is_passed_to_the_controller_only_when_asked(tmp_path: Path) -> None:
    paths = Paths.for_spec(tmp_path / "zerodown.yaml")
    assert "--log-format" not in controller_argv(paths)
    assert controller_argv(paths, log_format="json")[-2:] == ["--log-format", "json"]
    assert controller_argv(paths, log_format="text")[-2:] == ["--log-format", "text"]


def test_init_writes_the_spec_and_the_app_once(tmp_path: Path) -> None:
    spec = tmp_path / "zerodown.yaml"
    first = runner.invoke(app, ["init", "-f", str(spec)])
    assert first.exit_code == 0, first.output
    assert f"wrote {spec} and {tmp_path / 'app.py'}. Next: zerodown up --version v1" in " ".join(
        first.stdout.split()
    )
    assert spec.exists() and (tmp_path / "app.py").exists()
    again = runner.invoke(app, ["init", "-f", str(spec)])
    assert again.exit_code == 2 and "exists; pass --force to overwrite it" in again.stderr


def test_schema_is_the_json_schema_of_the_spec() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Spec" and "run" in schema["required"]


@pytest.mark.parametrize(
    ("stderr", "summary"),
    [
        (
            "WARNING something\nerror: zerodown.yaml:3: run: this field is required\nmore\n",
            "zerodown.yaml:3: run: this field is required\nmore",
        ),
        (
            'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
            "    boom()\nsqlite3.OperationalError: unable to open database file\n",
            "sqlite3.OperationalError: unable to open database file",
        ),
        ("one\n\ntwo\n", "one\ntwo"),
        ("", ""),
    ],
    ids=["own-error", "traceback", "plain", "empty"],
)
def test_why_a_process_stopped_is_its_first_error_lines(stderr: str, summary: str) -> None:
    assert error_summary(stderr) == summary
