"""Logging for the controller, and the size of `.zerodown/logs/` on disk.

- `setup(fmt)`: one line per event on stdout, as text or as one JSON object per line
  (ts, level, logger, message, and exc when there is a traceback). The HTTP clients' per-request
  INFO lines (a router health check every second) are silenced: at idle the controller is quiet.
- `rotate(path)`: when a log passes `max_bytes`, copy it to `<name>.1` (older copies shift to .2,
  .3, …; the oldest beyond `keep` is dropped) and truncate it in place. Truncating, rather than
  renaming, is what works for a file other processes hold open: the controller's own stdout (the
  CLI opened it), the router's and the instances' logs are all opened with O_APPEND, so their next
  write lands at the new end of the file. Lines written between the copy and the truncation are
  lost (the logrotate `copytruncate` trade-off); with a 10 MB cap that is a rare, small loss.
- `prune(directory, prefix, live)`: logs of instances that are gone (`<service>-…-<suffix>.log`
  and their rotated copies) are deleted once untouched for `retention`, and beyond the newest
  `keep_retired` at once. Logs of live instances, the controller and the router are never pruned.

Nothing here raises for a file that vanished meanwhile: another pass will see the new state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sys
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

FORMATS = ("text", "json")
QUIET_LOGGERS = ("httpx", "httpcore")  # an INFO line per request; their warnings still show

_ROTATED = re.compile(r"^(?P<stem>.+)\.log(?:\.\d+)?$")


@dataclass(frozen=True)
class LogPolicy:
    max_bytes: int = 10 * 1024 * 1024  # a log is rotated once larger than this
    keep: int = 3  # rotated copies kept per log: name.log.1 … name.log.3
    retention: float = 24 * 3600.0  # seconds a gone instance's logs stay after their last write
    keep_retired: int = 50  # and at most this many gone instances' logs in all


# --- formatting --------------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (epoch seconds), level, logger, message[, exc]."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def setup(fmt: str = "text", *, stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Configure the root logger of this process (replacing any handler it had)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stdout)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# --- size on disk ------------------------------------------------------------------------------


def rotate(path: Path, *, max_bytes: int, keep: int) -> bool:
    """Copy-and-truncate `path` if it is over `max_bytes`. True when it rotated."""
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    if keep > 0:
        for n in range(keep - 1, 0, -1):
            with contextlib.suppress(FileNotFoundError):
                os.replace(_copy(path, n), _copy(path, n + 1))
        shutil.copyfile(path, _copy(path, 1))
    os.truncate(path, 0)
    return True


def _copy(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def prune(
    directory: Path,
    *,
    prefix: str,
    live: Collection[str],
    now: float,
    retention: float,
    keep_retired: int,
) -> list[Path]:
    """Delete the logs of gone instances (names starting with `prefix`, ids not in `live`)."""
    gone: dict[str, list[Path]] = {}
    for path in directory.iterdir():
        match = _ROTATED.match(path.name)
        if match is None or not path.name.startswith(prefix) or match["stem"] in live:
            continue
        gone.setdefault(match["stem"], []).append(path)
    newest_first = sorted(gone, key=lambda stem: -_last_write(gone[stem]))
    deleted = []
    for rank, stem in enumerate(newest_first):
        if rank < keep_retired and now - _last_write(gone[stem]) < retention:
            continue
        for path in gone[stem]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                deleted.append(path)
    return deleted


def _last_write(paths: list[Path]) -> float:
    times = [0.0]
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            times.append(path.stat().st_mtime)
    return max(times)


def maintain(
    directory: Path,
    *,
    prefix: str,
    live: Collection[str] | None,
    policy: LogPolicy,
    now: float | None = None,
) -> None:
    """Rotate every log in `directory` that is over the cap; prune gone instances' logs
    (skipped when `live` is None: without the list of live instances nothing is safe to delete)."""
    for path in directory.glob("*.log"):
        rotate(path, max_bytes=policy.max_bytes, keep=policy.keep)
    if live is not None:
        prune(
            directory,
            prefix=prefix,
            live=live,
            now=time.time() if now is None else now,
            retention=policy.retention,
            keep_retired=policy.keep_retired,
        )
