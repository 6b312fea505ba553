"""Fault family: archives built to write outside their destination (issue 12, finding 1).

The symlink chain that reaches PATH_MAX follows CPython's own regression test for CVE-2025-4517
(python/cpython Lib/test/test_tarfile.py, test_realpath_limit_attack): `os.path.realpath` stops resolving once
the expanded path passes PATH_MAX, so a check built on it sees a path inside the destination while the kernel
follows the links outside. Python 3.11.7 (these machines) lacks tarfile's fix; safe_extract must not care.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from nbkit.errors import UserError
from nbkit.train import nova_eval, safe_extract
from nbkit.train.nova_layout import extract_output

STEPS = "abcdefghijklmnop"


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, symlink: str | None = None,
         hardlink: str | None = None, folder: bool = False) -> None:
    info = tarfile.TarInfo(name)
    if folder:
        info.type, info.mode = tarfile.DIRTYPE, 0o777
    elif symlink is not None:
        info.type, info.linkname = tarfile.SYMTYPE, symlink
    elif hardlink is not None:
        info.type, info.linkname = tarfile.LNKTYPE, hardlink
    else:
        info.size = len(data or b"")
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def chain_archive(path: Path, dest: Path, *, hardlink: bool) -> Path:
    """A small tar.gz whose links expand past PATH_MAX, then write `escape/newfile` (or, with `hardlink`,
    overwrite `../flag` through a hard link) outside `dest`."""
    path_max = os.pathconf(dest.parent, "PC_PATH_MAX")
    component = "d" * ((path_max - len(str(dest)) - 1) // (len(STEPS) + 1))
    with tarfile.open(path, "w:gz") as tar:
        prefix = ""
        for step in STEPS:
            _add(tar, os.path.join(prefix, component), folder=True)
            _add(tar, os.path.join(prefix, step), symlink=component)
            prefix = os.path.join(prefix, component)
        long_link = os.path.join(*STEPS, "l" * 254)
        _add(tar, long_link, symlink=os.path.join(*[".."] * len(STEPS)))
        _add(tar, "escape", symlink=os.path.join(long_link, ".."))
        if hardlink:
            _add(tar, "flaglink", hardlink=os.path.join("escape", "flag"))
            _add(tar, "flaglink", data=b"overwritten")
        else:
            _add(tar, "escape/newfile", data=b"new")
    return path


def _outside(box: Path, dest: Path) -> list[Path]:
    """Every file under `box` that is not under `dest` (nor the archive and the flag we put there)."""
    return sorted(p for p in box.rglob("*") if p.is_file() and dest not in p.parents
                  and p.name not in ("flag", "output.tar.gz"))


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """outer/flag beside outer/dest: the file an escape would overwrite."""
    outer = tmp_path / "outer"
    outer.mkdir()
    (outer / "flag").write_bytes(b"original")
    return outer


@pytest.mark.parametrize("hardlink", [False, True], ids=["new-file", "hardlink-overwrite"])
def test_symlink_chain_past_path_max_is_refused(box, hardlink):
    dest = box / "dest"
    archive = chain_archive(box / "output.tar.gz", dest, hardlink=hardlink)
    assert archive.stat().st_size < 4096  # a tiny archive
    with pytest.raises(UserError) as err:
        safe_extract(archive, dest)
    message = str(err.value)
    assert "'a': a symbolic link" in message and "'escape': a symbolic link" in message
    assert ("'flaglink': a hard link" in message) == hardlink
    assert "nothing was written" in message
    assert (box / "flag").read_bytes() == b"original"
    assert not any(p.name == "newfile" for p in box.parent.rglob("newfile"))
    assert _outside(box.parent, dest) == [] and list(dest.iterdir()) == []


@pytest.mark.parametrize("hardlink", [False, True], ids=["new-file", "hardlink-overwrite"])
def test_the_chain_through_nova_eval_import_results(box, hardlink):
    dest = box / "eval" / "output"
    archive = chain_archive(box / "output.tar.gz", dest, hardlink=hardlink)
    with pytest.raises(UserError, match="symbolic link"):
        nova_eval.import_results(archive, dest)
    assert (box / "flag").read_bytes() == b"original"
    assert not list(box.parent.rglob("newfile"))
    assert _outside(box.parent, dest) == []


def test_the_chain_through_extract_output(box):
    dest = box / "dest"
    archive = chain_archive(box / "output.tar.gz", dest, hardlink=True)
    with pytest.raises(UserError, match="symbolic link"):
        extract_output(archive, dest)
    assert (box / "flag").read_bytes() == b"original"


def test_a_hardlink_to_a_file_outside_cannot_overwrite_it(box):
    # Plain variant: a hard link at a name inside dest, to a file outside, then a regular member at that name.
    dest = box / "dest"
    dest.mkdir()
    os.link(box / "flag", dest / "manifest.json")  # say a previous (trusted) tool left it
    archive = box / "output.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "manifest.json", data=b"from the archive")
    safe_extract(archive, dest)
    assert (dest / "manifest.json").read_bytes() == b"from the archive"
    assert (box / "flag").read_bytes() == b"original"  # the entry was replaced, not written through


def test_a_member_is_streamed_not_read_whole(box, monkeypatch):
    # extract_output once read each member whole into memory (a 2 GB member took 2.1 GB of RAM).
    big = 8 << 20
    archive = box / "output.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        _add(tar, "step_wise_training_metrics.csv", data=b"1" * big)
    reads: list[int] = []
    original = tarfile.ExFileObject.read

    def spy(self, size=-1):
        data = original(self, size)
        reads.append(len(data))
        return data

    monkeypatch.setattr(tarfile.ExFileObject, "read", spy)
    dest = extract_output(archive, box / "dest")
    assert (dest / "step_wise_training_metrics.csv").stat().st_size == big
    assert reads and max(reads) <= 1 << 20  # 1 MiB chunks
