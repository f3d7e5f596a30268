"""Shipping a release to a host: the `run.workdir` tree into <dir>/<service>/releases/<version>,
sending only the files whose content changed.

The controller hashes the tree here (`manifest`); the host stages a copy of its last copy of the
release, or else of its newest release, and hashes that; only files whose SHA-256 differs are
sent over SFTP, files the release no longer has are deleted, and the staged copy is swapped in
whole (`commit`), so a launch sees the old tree or the new one, never half of each. The host then
prunes releases beyond `ssh.keep_releases`, except those a running instance still uses.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from zerodown.platforms.ssh.connection import HostLink

SKIP_DIRS = {".zerodown", ".git", "__pycache__", ".mypy_cache", ".pytest_cache"}
SHIP_TIMEOUT = 300.0  # staging and committing a large tree on a slow disk
PARALLEL_PUTS = 16  # files sent at once over one SFTP session


@dataclass(frozen=True)
class LocalFile:
    sha256: str
    mode: int
    size: int


@dataclass(frozen=True)
class Shipped:
    host: str
    sent: int  # files sent
    sent_bytes: int
    unchanged: int  # files the host already had
    deleted: int
    pruned: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"{self.host}: sent {self.sent} files ({self.sent_bytes:,} bytes), "
            f"{self.unchanged} unchanged, {self.deleted} deleted"
            + (f", pruned {', '.join(self.pruned)}" if self.pruned else "")
        )


def manifest(workdir: Path, skip: Path | None = None) -> dict[str, LocalFile]:
    """Every regular file under `workdir` (symlinks to files followed), by relative path."""
    files: dict[str, LocalFile] = {}
    skipped = skip.resolve() if skip is not None else None
    for root, dirs, names in os.walk(workdir):
        dirs[:] = sorted(
            d for d in dirs if d not in SKIP_DIRS and (Path(root, d).resolve() != skipped)
        )
        for name in sorted(names):
            path = Path(root, name)
            if not path.is_file():
                continue
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 20), b""):  # type: ignore[misc]
                    digest.update(block)
            st = path.stat()
            rel = path.relative_to(workdir).as_posix()
            files[rel] = LocalFile(digest.hexdigest(), st.st_mode & 0o7777, st.st_size)
    return files


async def ship(
    link: HostLink,
    *,
    release: str,
    workdir: Path,
    files: dict[str, LocalFile],
    keep: int,
    state: str,
) -> Shipped:
    staged = await link.request("stage", timeout=SHIP_TIMEOUT, release=release)
    stage, remote = PurePosixPath(staged["stage"]), dict(staged["files"])
    send = [rel for rel, f in files.items() if remote.get(rel) != f.sha256]
    delete = [rel for rel in remote if rel not in files]
    if send:
        async with await link.sftp() as sftp:
            for parent in sorted({(stage / rel).parent for rel in send}):
                await sftp.makedirs(str(parent), exist_ok=True)
            limit = asyncio.Semaphore(PARALLEL_PUTS)  # small files: latency, not bandwidth

            async def put(rel: str) -> None:
                async with limit:
                    await sftp.put(str(workdir / rel), str(stage / rel))

            await asyncio.gather(*(put(rel) for rel in send))
    committed = await link.request(
        "commit",
        timeout=SHIP_TIMEOUT,
        release=release,
        delete=delete,
        modes={rel: f.mode for rel, f in files.items()},
        keep=keep,
        state=state,
        host=link.name,
        unchanged=not send and not delete and staged.get("seed") == release,
    )
    return Shipped(
        host=link.name,
        sent=len(send),
        sent_bytes=sum(files[rel].size for rel in send),
        unchanged=len(files) - len(send),
        deleted=len(delete),
        pruned=tuple(committed["pruned"]),
    )
