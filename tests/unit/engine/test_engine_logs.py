"""zerodown.logs: copy-and-truncate rotation (with a real O_APPEND writer), pruning of gone
instances' logs, and the JSON log format."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from zerodown import logs


def write(path: Path, size: int, *, mtime: float | None = None) -> Path:
    path.write_bytes(b"x" * size)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_a_log_under_the_cap_is_left_alone(tmp_path: Path) -> None:
    log = write(tmp_path / "router.log", 100)
    assert not logs.rotate(log, max_bytes=100, keep=3)
    assert log.stat().st_size == 100 and not (tmp_path / "router.log.1").exists()


def test_rotation_shifts_copies_and_keeps_only_keep(tmp_path: Path) -> None:
    log = tmp_path / "controller.log"
    for generation in range(5):
        log.write_text(f"generation {generation}\n" * 20)
        assert logs.rotate(log, max_bytes=10, keep=3)
        assert log.stat().st_size == 0
    copies = sorted(p.name for p in tmp_path.iterdir() if p.name != "controller.log")
    assert copies == ["controller.log.1", "controller.log.2", "controller.log.3"]
    assert (tmp_path / "controller.log.1").read_text().startswith("generation 4")
    assert (tmp_path / "controller.log.3").read_text().startswith("generation 2")


def test_keep_zero_truncates_without_a_copy(tmp_path: Path) -> None:
    log = write(tmp_path / "router.log", 50)
    assert logs.rotate(log, max_bytes=10, keep=0)
    assert [p.name for p in tmp_path.iterdir()] == ["router.log"]


def test_a_process_appending_keeps_writing_at_the_start_after_truncation(tmp_path: Path) -> None:
    """What makes copy-and-truncate right for logs other processes hold open with O_APPEND:
    the writer's next line lands at offset 0, with no hole of zeros before it."""
    log = tmp_path / "app.log"
    with open(log, "ab") as out:
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys\n"
                "for line in sys.stdin:\n"
                "    print(line.strip() * 100, flush=True)\n"
                "    print('done', file=sys.stderr, flush=True)\n",
            ],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
    assert writer.stdin is not None and writer.stderr is not None

    def say(word: str) -> None:
        assert writer.stdin is not None and writer.stderr is not None
        writer.stdin.write(word + "\n")
        writer.stdin.flush()
        assert writer.stderr.readline().strip() == "done"

    try:
        say("a")
        say("b")
        assert logs.rotate(log, max_bytes=100, keep=1)
        say("c")
    finally:
        writer.stdin.close()
        writer.wait(timeout=10)
        writer.stderr.close()
    assert log.read_text() == "c" * 100 + "\n"
    assert (tmp_path / "app.log.1").read_text() == "a" * 100 + "\n" + "b" * 100 + "\n"


def test_prune_deletes_only_old_logs_of_gone_instances(tmp_path: Path) -> None:
    now = 1_000_000.0
    day = 24 * 3600
    old_gone = write(tmp_path / "shop-v1-aaaaaa.log", 10, mtime=now - 2 * day)
    old_gone_copy = write(tmp_path / "shop-v1-aaaaaa.log.1", 10, mtime=now - 2 * day)
    recent_gone = write(tmp_path / "shop-v2-bbbbbb.log", 10, mtime=now - 60)
    old_live = write(tmp_path / "shop-v1-cccccc.log", 10, mtime=now - 2 * day)
    controller = write(tmp_path / "controller.log", 10, mtime=now - 2 * day)
    other = write(tmp_path / "notes.txt", 10, mtime=now - 2 * day)
    deleted = logs.prune(
        tmp_path,
        prefix="shop-",
        live={"shop-v1-cccccc"},
        now=now,
        retention=day,
        keep_retired=50,
    )
    assert sorted(deleted) == sorted([old_gone, old_gone_copy])
    assert all(p.exists() for p in (recent_gone, old_live, controller, other))


def test_prune_keeps_at_most_keep_retired_gone_instances(tmp_path: Path) -> None:
    now = 1_000_000.0
    for n in range(5):
        write(tmp_path / f"shop-v{n}-000000.log", 10, mtime=now - 100 + n)
    logs.prune(tmp_path, prefix="shop-", live=(), now=now, retention=3600, keep_retired=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "shop-v3-000000.log",
        "shop-v4-000000.log",
    ]


def test_maintain_rotates_everything_and_prunes_only_knowing_the_live_ones(tmp_path: Path) -> None:
    now = 1_000_000.0
    big = write(tmp_path / "router.log", 200)
    gone = write(tmp_path / "shop-v1-aaaaaa.log", 10, mtime=now - 10 * 24 * 3600)
    policy = logs.LogPolicy(max_bytes=100, keep=2)
    logs.maintain(tmp_path, prefix="shop-", live=None, policy=policy, now=now)
    assert big.stat().st_size == 0 and (tmp_path / "router.log.1").stat().st_size == 200
    assert gone.exists()  # without the list of live instances nothing is deleted
    logs.maintain(tmp_path, prefix="shop-", live=set(), policy=policy, now=now)
    assert not gone.exists()


@pytest.fixture
def root_logger() -> Iterator[None]:
    """logs.setup replaces the root logger's handlers: give pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logger")
def test_json_format_is_one_object_per_line_with_the_traceback() -> None:
    stream = io.StringIO()
    logs.setup("json", stream=stream)
    logging.getLogger("zerodown.engine").info("launch %s", "v2")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("zerodown.engine").exception("pass failed")
    logging.getLogger("httpx").info("HTTP Request: GET http://router/healthz")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(d["level"], d["logger"], d["message"]) for d in lines] == [
        ("info", "zerodown.engine", "launch v2"),
        ("error", "zerodown.engine", "pass failed"),
    ]
    assert "RuntimeError: boom" in lines[1]["exc"] and isinstance(lines[0]["ts"], float)


@pytest.mark.usefixtures("root_logger")
def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text, json"):
        logs.setup("xml")
