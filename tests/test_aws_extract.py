"""safe_extract: archives from S3 must never write outside the destination folder."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from nbkit.errors import UserError
from nbkit.train.aws import safe_extract
from nbkit.train.nova_layout import read_output


def _tar(path, members):
    """Write a tar.gz from (TarInfo fields, bytes) pairs; lets a test forge hostile headers."""
    with tarfile.open(path, "w:gz") as tar:
        for fields, data in members:
            info = tarfile.TarInfo(fields["name"])
            for key, value in fields.items():
                setattr(info, key, value)
            if info.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return path


def _file(name, data=b"x"):
    return ({"name": name, "mode": 0o644}, data)


def test_extracts_a_nova_output_and_the_layout_reader_reads_it(tmp_path):
    manifest = json.dumps({"checkpoint_s3_bucket": "s3://customer-escrow-1-smtj-2/job/step5"}).encode()
    csv = b"step_number,epoch_number,train_reward_mean\n1,0,0.25\n2,0,0.5\n"
    archive = _tar(tmp_path / "output.tar.gz", [
        ({"name": "out", "type": tarfile.DIRTYPE, "mode": 0o755}, b""),
        _file("out/manifest.json", manifest),
        _file("out/step_wise_training_metrics.csv", csv),
    ])
    dest = safe_extract(archive, tmp_path / "dest")
    assert (dest / "out" / "manifest.json").read_bytes() == manifest
    out = read_output(dest)
    assert out.checkpoint == "s3://customer-escrow-1-smtj-2/job/step5"
    assert out.metrics["train_reward_mean"].tolist() == [0.25, 0.5]


@pytest.mark.parametrize("member, reason", [
    (_file("../evil.txt"), "escapes the destination"),
    (_file("a/../../evil.txt"), "escapes the destination"),
    (_file("/tmp/evil-absolute.txt"), "absolute path"),
    (({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, b""), "symlink"),
    (({"name": "link", "type": tarfile.SYMTYPE, "linkname": "../../outside"}, b""), "symlink"),
    (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside"}, b""), "hardlink"),
    (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"}, b""), "hardlink"),
    (({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, b""), "device"),
])
def test_refuses_hostile_members_and_writes_nothing(tmp_path, member, reason):
    archive = _tar(tmp_path / "bad.tar.gz", [_file("ok.txt", b"fine"), member])
    dest = tmp_path / "box" / "dest"
    with pytest.raises(UserError, match=reason):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []  # checked before extracting: not even the harmless member was written
    assert not (tmp_path / "box" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_symlink_inside_the_folder_is_allowed(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [
        _file("data/real.txt", b"hello"),
        ({"name": "data/alias.txt", "type": tarfile.SYMTYPE, "linkname": "real.txt"}, b""),
    ])
    dest = safe_extract(archive, tmp_path / "dest")
    assert (dest / "data" / "alias.txt").read_text() == "hello"


def test_symlink_then_file_through_it_cannot_escape(tmp_path):
    # Classic two-step attack: a symlink to the parent, then a file written "through" it.
    archive = _tar(tmp_path / "a.tar.gz", [
        ({"name": "up", "type": tarfile.SYMTYPE, "linkname": ".."}, b""),
        _file("up/evil.txt", b"pwned"),
    ])
    with pytest.raises(UserError, match="outside|escapes"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "evil.txt").exists()


def test_size_and_member_limits_stop_tar_bombs(tmp_path):
    archive = _tar(tmp_path / "big.tar.gz", [_file("zeros.bin", b"\0" * 5000), _file("b", b"1"), _file("c", b"2")])
    with pytest.raises(UserError, match="5002 uncompressed bytes exceeds the limit of 4096"):
        safe_extract(archive, tmp_path / "d1", max_bytes=4096)
    with pytest.raises(UserError, match="3 members exceeds the limit of 2"):
        safe_extract(archive, tmp_path / "d2", max_members=2)


def test_every_problem_is_listed(tmp_path):
    archive = _tar(tmp_path / "bad.tar.gz", [_file("../a"), _file("/b")])
    with pytest.raises(UserError) as err:
        safe_extract(archive, tmp_path / "dest")
    assert "2 problem(s)" in str(err.value) and "'../a'" in str(err.value) and "'/b'" in str(err.value)


def test_not_an_archive_is_a_clear_error(tmp_path):
    junk = tmp_path / "output.tar.gz"
    junk.write_bytes(b"this is not gzip")
    with pytest.raises(UserError, match="not a readable tar archive"):
        safe_extract(junk, tmp_path / "dest")
