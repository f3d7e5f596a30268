"""FileTail: complete lines only, rotation by rename and reopen, nothing lost or counted twice."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from zerodown.routers import logtail
from zerodown.routers.logtail import FileTail


class Writer:
    """What nginx does with its log file: appends (O_APPEND), and on reopen writes out its
    buffer to the file it holds, then opens the file by its name again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.buffered = b""

    def write(self, data: bytes, *, buffer: bool = False) -> None:
        if buffer:
            self.buffered += data
        else:
            os.write(self.fd, data)

    def reopen(self) -> None:
        os.write(self.fd, self.buffered)
        self.buffered = b""
        os.close(self.fd)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def pids(self) -> list[int]:
        return [os.getpid()]  # this process holds the writer's descriptor


def collect(path: Path, **kwargs: object) -> tuple[FileTail, list[bytes]]:
    got: list[bytes] = []

    def on_lines(lines: Sequence[bytes]) -> None:
        got.extend(lines)

    return FileTail(path, on_lines, **kwargs), got  # type: ignore[arg-type]


def test_starts_at_the_end_and_hands_on_complete_lines_only(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    writer = Writer(path)
    writer.write(b"before the reader\n")
    tail, got = collect(path)
    assert tail.step() is False
    writer.write(b"zd1 a\nzd1 b")  # the second line is half written
    assert tail.step() is True
    assert got == [b"zd1 a"]
    writer.write(b" done\n")
    tail.step()
    assert got == [b"zd1 a", b"zd1 b done"]


def test_a_file_made_after_the_reader_started_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    tail, got = collect(path)
    assert tail.step() is False  # no file yet
    Writer(path).write(b"zd1 first\n")
    tail.step()
    assert got == [b"zd1 first"]


def test_rotation_keeps_every_line_and_bounds_the_files(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    writer = Writer(path)
    tail, got = collect(path, reopen=writer.reopen, writers=writer.pids, max_bytes=1000)
    tail.step()
    sent = [f"zd1 line {n:05d}".encode() for n in range(2000)]
    for n, line in enumerate(sent):
        # Every third line waits in the writer's buffer until the reopen writes it out, to
        # the renamed file: still read.
        writer.write(line + b"\n", buffer=n % 3 == 0)
        if n % 7 == 0:
            tail.step()
            assert path.stat().st_size < 2000
            files = sorted(p.name for p in tmp_path.iterdir())
            assert files in (["access.log"], ["access.log", "access.log.1"])
    writer.reopen()  # the last buffered lines
    for _ in range(3):
        tail.step()
    assert sorted(got) == sent  # each exactly once
    assert tail.rotations > 10
    assert not (tmp_path / "access.log.1").exists()


def test_a_renamed_file_is_kept_while_a_writer_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    writer = Writer(path)
    reopened: list[bool] = []
    tail, got = collect(
        path, reopen=lambda: reopened.append(True), writers=writer.pids, max_bytes=30
    )
    tail.step()
    writer.write(b"zd1 a line longer than max_bytes\n")
    tail.step()
    assert reopened == [True] and (tmp_path / "access.log.1").exists()
    writer.write(b"zd1 still to the old file\n")  # the writer has not reopened yet
    Writer(path)  # the new file exists, as after the master's reopen
    tail.step()
    assert (tmp_path / "access.log.1").exists()  # the writer still holds it
    writer.reopen()
    writer.write(b"zd1 new\n")
    tail.step()
    assert got == [b"zd1 a line longer than max_bytes", b"zd1 still to the old file", b"zd1 new"]
    assert not (tmp_path / "access.log.1").exists()


def test_without_known_writers_a_renamed_file_goes_once_quiet(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    now = [0.0]
    writer = Writer(path)
    tail, got = collect(path, reopen=writer.reopen, max_bytes=10, clock=lambda: now[0])
    tail.step()
    writer.write(b"zd1 a long enough line\n")
    tail.step()
    tail.step()  # follows the name to the new file
    assert (tmp_path / "access.log.1").exists()
    now[0] += logtail.GRACE
    tail.step()
    assert not (tmp_path / "access.log.1").exists()
    assert got == [b"zd1 a long enough line"]


def test_a_leftover_renamed_file_is_deleted_at_start(tmp_path: Path) -> None:
    (tmp_path / "access.log.1").write_bytes(b"zd1 from a reader before\n")
    tail, got = collect(tmp_path / "access.log")
    tail.step()
    assert not (tmp_path / "access.log.1").exists() and got == []
