"""A release given as an archive (`run.artifact`): unpacked once on the controller's machine, then
shipped like a `run.workdir` tree, so a host still receives only the files that changed.

Unpacking refuses what would write outside its directory (absolute paths, `..`, links that point
out, devices): tar members through the standard library's "data" filter, zip names checked here.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from zerodown.core.errors import PermanentDriverError


def unpacked(archive: Path, into: Path) -> Path:
    """`archive` unpacked into `into` (done once; an existing complete copy is reused)."""
    done = into.parent / f"{into.name}.unpacked"  # written last, beside it (never shipped)
    if done.exists() and into.is_dir():
        return into
    if not archive.is_file():
        raise PermanentDriverError(f"run.artifact {archive} does not exist: build it first")
    into.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{into.name}-", dir=into.parent))
    try:
        _extract(archive, staging)
        shutil.rmtree(into, ignore_errors=True)
        staging.rename(into)
        done.write_text(f"{archive}\n")
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise PermanentDriverError(f"run.artifact {archive} cannot be unpacked: {exc}") from exc
    return into


def _extract(archive: Path, into: Path) -> None:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                path = PurePosixPath(name)
                if path.is_absolute() or ".." in path.parts:
                    raise tarfile.TarError(f"{name!r} would be written outside the release")
            zipped.extractall(into)
        return
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")  # refuses paths and links that leave `into`
