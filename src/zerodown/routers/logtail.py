"""Reading a log file as a router appends to it, and keeping it bounded: nginx's per-request log.

Why a file and not a socket: nginx sends a syslog line as one datagram per request, and a unix
datagram socket queues at most `net.unix.max_dgram_qlen` of them (10 by default); nginx never
waits, so above a few thousand requests a second it dropped 35-72 % of the lines (measured,
docs/router-nginx.md). The sysctl is no way out: it takes root, applies to every socket of the
network namespace, and a longer queue only moves the limit (a reader that pauses 50 ms at 10,000
requests a second needs 500). A file queues as much as the disk holds, and nginx writes it
buffered (`access_log FILE FORMAT buffer=64k flush=250ms`): each worker collects lines and
writes them whole, one `write` per 64 KB or per 250 ms, instead of a `sendto` per request.

`FileTail` (a thread of its own) reads what was appended, waits `POLL` seconds when there is
nothing new, and hands on the complete lines only (a read can see a write half done: the end of
an unfinished line waits for the next read).

Rotation, so the file never grows without bound while a reader runs: once the file passes
`max_bytes`, the reader renames it to `<name>.1` and asks the router to reopen its log files
(`reopen`; nginx: SIGUSR1, what `nginx -s reopen` sends). nginx's master and every worker write
out what they buffered to the file they hold, then create the file by its name again and
append there (a reload's new workers open it by name too). The reader follows the name to the
new file (from its first byte) and keeps reading the renamed one until no process of `writers`
holds it open any more, or it has been quiet for `GRACE` seconds since the new file appeared,
then reads it a last time and deletes it. (Holding is not writing: nginx's master keeps the
files of a configuration it reloaded from open until it frees that configuration, up to 30 s
later, and workers it starts meanwhile inherit them; but every worker writes out its buffer
before it reopens, so a renamed file quiet for seconds after the new one exists is done.)
Nothing is lost and the files hold at most about twice `max_bytes`. While no reader runs (the
controller is down) nobody rotates: the file grows by one line per request while the log is
on; the next reader starts at its end (its counters start then) and rotates it at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("zerodown.router.logtail")

POLL = 0.1  # seconds between reads when the last one found nothing new
CHUNK = 1 << 20  # bytes per read
MAX_BYTES = 16 << 20  # rotate past this: at 10,000 requests a second, about every 30 s
GRACE = 5.0  # seconds a renamed file some process still holds must stay quiet
GIVE_UP = 75.0  # seconds after which a renamed file is dropped even if a writer still holds it
MAX_PARTIAL = 8192  # bytes of an unfinished line kept for the next read


@dataclass
class _Tailed:
    """One file being read: its descriptor, identity, and the end of an unfinished line."""

    fd: int
    ident: tuple[int, int]  # (st_dev, st_ino)
    name: Path  # where it is now (the rotated name once renamed)
    partial: bytes = b""
    last_data: float = field(default_factory=time.monotonic)
    retired_at: float | None = None  # when the reader moved on to a newer file


class FileTail:
    """Read the lines appended to `path`, hand them to `on_lines`, rotate past `max_bytes`.

    `reopen()` asks the writer to reopen its log files (called from the reader's thread; an
    OSError is logged and the rotation waits for the writer to open the file again by itself).
    `writers()` names the processes that may hold the file open (nginx's master and workers);
    the renamed file is deleted once none of them does, or once it has been quiet for `GRACE`.
    `step()` is one pass (the thread runs it in a loop; tests call it directly)."""

    def __init__(
        self,
        path: Path,
        on_lines: Callable[[Sequence[bytes]], None],
        *,
        reopen: Callable[[], None] | None = None,
        writers: Callable[[], Iterable[int]] | None = None,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.rotated = path.with_name(path.name + ".1")
        self.on_lines = on_lines
        self.reopen = reopen
        self.writers = writers
        self.max_bytes = max_bytes
        self.clock = clock
        self.rotations = 0  # times this reader renamed the file (tests and benches read it)
        self._current: _Tailed | None = None
        self._old: list[_Tailed] = []
        self._started = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the thread ------------------------------------------------------------------------

    def start(self) -> threading.Thread:
        self.begin()
        thread = threading.Thread(target=self._run, name=f"logtail {self.path.name}", daemon=True)
        self._thread = thread
        thread.start()
        return thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if not self.step():
                    self._stop.wait(POLL)
        except Exception:  # a bug here must not end the counting silently
            log.exception("reading %s failed", self.path)
            raise
        finally:
            self._close_all()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        else:
            self._close_all()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- one pass --------------------------------------------------------------------------

    def begin(self) -> None:
        """Start at the end of what is there (counters start with the reader); a renamed file
        a reader before this one left behind holds nothing new: deleted."""
        if self._started:
            return
        self._started = True
        with contextlib.suppress(FileNotFoundError):
            self.rotated.unlink()
        self._current = self._open(at_end=True)

    def step(self) -> bool:
        """Read what is new in every file being read; follow the name to a new file; delete a
        renamed file nobody writes any more; rotate past max_bytes. True when it read lines."""
        self.begin()
        self._follow()
        read = False
        for tailed in self._old:
            read |= self._read(tailed)
        if self._current is not None:
            read |= self._read(self._current)
        self._retire()
        self._rotate()
        return read

    def _open(self, *, at_end: bool) -> _Tailed | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        st = os.fstat(fd)
        if at_end:
            os.lseek(fd, 0, os.SEEK_END)
        return _Tailed(fd=fd, ident=(st.st_dev, st.st_ino), name=self.path)

    def _follow(self) -> None:
        """The name now points at another file (the writer reopened after a rename, or made
        it anew): read that one from its start, and keep draining the one before."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        current = self._current
        if current is not None and (st.st_dev, st.st_ino) == current.ident:
            return
        fresh = self._open(at_end=False)
        if fresh is None:
            return
        if current is not None:
            current.retired_at = self.clock()
            if current.name == self.path:  # replaced by someone else: its name is gone
                current.name = Path()
            self._old.append(current)
        self._current = fresh

    def _read(self, tailed: _Tailed) -> bool:
        chunks = []
        while True:
            data = os.read(tailed.fd, CHUNK)
            if not data:
                break
            chunks.append(data)
            if len(data) < CHUNK:
                break
        if not chunks:
            return False
        tailed.last_data = self.clock()
        *lines, rest = (tailed.partial + b"".join(chunks)).split(b"\n")
        tailed.partial = rest[-MAX_PARTIAL:]
        if lines:
            self.on_lines(lines)
        return bool(lines)

    def _retire(self) -> None:
        if not self._old:
            return
        held = self._held()
        now = self.clock()
        keep = []
        for tailed in self._old:
            assert tailed.retired_at is not None
            quiet = now - tailed.last_data >= GRACE and now - tailed.retired_at >= GRACE
            done = quiet or (held is not None and tailed.ident not in held)
            if not done and now - tailed.retired_at < GIVE_UP:
                keep.append(tailed)
                continue
            self._read(tailed)  # what was written before the last writer let go
            if tailed.partial:
                self.on_lines([tailed.partial])  # an unfinished line: counted as malformed
            os.close(tailed.fd)
            if tailed.name == self.rotated:
                with contextlib.suppress(FileNotFoundError):
                    self.rotated.unlink()
        self._old = keep

    def _held(self) -> set[tuple[int, int]] | None:
        """(dev, inode) of every file the writers hold open; None when they are not known."""
        if self.writers is None:
            return None
        held: set[tuple[int, int]] = set()
        mine = {str(t.fd) for t in [*self._old, *([self._current] if self._current else [])]}
        for pid in self.writers():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                if pid == os.getpid() and fd in mine:
                    continue  # the reader's own descriptors (a writer in this process)
                try:
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                held.add((st.st_dev, st.st_ino))
        return held

    def _rotate(self) -> None:
        current = self._current
        if current is None or self._old or current.name != self.path:
            return
        if os.fstat(current.fd).st_size <= self.max_bytes:
            return
        try:
            os.rename(self.path, self.rotated)
        except FileNotFoundError:
            return
        current.name = self.rotated
        self.rotations += 1
        if self.reopen is not None:
            try:
                self.reopen()
            except OSError as exc:
                log.warning("%s was rotated but the writer could not reopen it: %s", self.path, exc)

    def _close_all(self) -> None:
        for tailed in [*self._old, *([self._current] if self._current else [])]:
            with contextlib.suppress(OSError):
                os.close(tailed.fd)
        self._old = []
        self._current = None
        self._started = False
