"""run.artifact: a release archive unpacked once, safely, before it is shipped to the hosts."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from zerodown.core.errors import PermanentDriverError
from zerodown.platforms.ssh.artifact import unpacked
from zerodown.spec.model import Spec


def tar_with(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_tarball_and_a_zip_unpack_once(tmp_path: Path) -> None:
    archive = tar_with(tmp_path / "shop-v2.tar.gz", {"app.py": b"print(2)\n", "lib/x.py": b""})
    into = unpacked(archive, tmp_path / "artifacts" / "v2")
    assert (into / "app.py").read_text() == "print(2)\n" and (into / "lib" / "x.py").exists()
    (into / "app.py").write_text("changed")  # a second call reuses the complete copy
    assert unpacked(archive, into) == into and (into / "app.py").read_text() == "changed"
    zipped = tmp_path / "shop-v3.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("app.py", "print(3)\n")
    assert (unpacked(zipped, tmp_path / "artifacts" / "v3") / "app.py").read_text() == "print(3)\n"
    assert sorted(p.name for p in (tmp_path / "artifacts").iterdir()) == [
        "v2",
        "v2.unpacked",
        "v3",
        "v3.unpacked",
    ]  # the marker lies beside the tree: it is never shipped


def test_members_that_leave_the_release_are_refused(tmp_path: Path) -> None:
    zipped = tmp_path / "bad.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("../evil.py", "x")
    for archive in (tar_with(tmp_path / "bad.tar.gz", {"../evil.py": b"x"}), zipped):
        with pytest.raises(PermanentDriverError, match="cannot be unpacked"):
            unpacked(archive, tmp_path / "out")
        assert not (tmp_path / "out").exists() and not (tmp_path / "evil.py").exists()
    # an absolute member is written inside the release (its leading / dropped), never at /
    inside = unpacked(tar_with(tmp_path / "abs.tar.gz", {"/etc/evil.py": b"x"}), tmp_path / "abs")
    assert (inside / "etc" / "evil.py").exists()


def test_a_missing_archive_says_to_build_it(tmp_path: Path) -> None:
    with pytest.raises(PermanentDriverError, match="does not exist: build it first"):
        unpacked(tmp_path / "shop-v9.tar.gz", tmp_path / "out")


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ({}, "run.artifact is shipped to hosts: it goes with `hosts:`"),
        ({"hosts": [{"name": "a", "ssh": "root@10.0.0.1"}]}, None),
    ],
)
def test_artifact_goes_with_hosts(extra: dict[str, object], says: str | None) -> None:
    doc = {"service": "shop", "run": {"command": ["app"], "artifact": "shop-{version}.tgz"}}
    if says is None:
        assert Spec.model_validate({**doc, **extra}).run.artifact == "shop-{version}.tgz"
        return
    with pytest.raises(ValueError, match=says.replace("`", ".")):
        Spec.model_validate({**doc, **extra})
