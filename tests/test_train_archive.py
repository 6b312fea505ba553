"""safe_extract: archives from S3 must never write outside the destination folder.

The attacks that once got through (a symlink chain past PATH_MAX, hardlink overwrites) are in
tests/faults/test_archive_escape.py; this file covers the ordinary contract.
"""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from nbkit.errors import UserError
from nbkit.train import safe_extract
from nbkit.train.nova_layout import extract_output, read_output


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
        _file("./out/step_wise_training_metrics.csv", csv),
        ({"name": "empty/dir", "type": tarfile.DIRTYPE, "mode": 0o700}, b""),
    ])
    dest = safe_extract(archive, tmp_path / "dest")
    assert (dest / "out" / "manifest.json").read_bytes() == manifest
    assert (dest / "empty" / "dir").is_dir()
    assert oct((dest / "out" / "manifest.json").stat().st_mode & 0o777) == oct(0o644)
    out = read_output(dest)
    assert out.checkpoint == "s3://customer-escrow-1-smtj-2/job/step5"
    assert out.metrics["train_reward_mean"].tolist() == [0.25, 0.5]
    assert not [p for p in dest.rglob(".nbkit-extract-*")]  # no temporary file left


def test_extracting_again_replaces_the_files(tmp_path):
    dest = tmp_path / "dest"
    safe_extract(_tar(tmp_path / "a.tar.gz", [_file("m.json", b"old")]), dest)
    safe_extract(_tar(tmp_path / "b.tar.gz", [_file("m.json", b"new")]), dest)
    assert (dest / "m.json").read_bytes() == b"new"


@pytest.mark.parametrize("member, reason", [
    (_file("../evil.txt"), "escapes the destination"),
    (_file("a/../../evil.txt"), "escapes the destination"),
    (_file("/tmp/evil-absolute.txt"), "absolute path"),
    (_file("C:evil.txt"), "absolute path"),
    (({"name": "link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, b""), "'link': a symbolic link"),
    (({"name": "link", "type": tarfile.SYMTYPE, "linkname": "../../outside"}, b""), "symbolic link"),
    (({"name": "data/alias", "type": tarfile.SYMTYPE, "linkname": "real.txt"}, b""), "symbolic link"),
    (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside"}, b""), "'hard': a hard link"),
    (({"name": "hard", "type": tarfile.LNKTYPE, "linkname": "ok.txt"}, b""), "hard link"),
    (({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, b""), "'dev': a character device"),
    (({"name": "blk", "type": tarfile.BLKTYPE, "devmajor": 8, "devminor": 0}, b""), "block device"),
    (({"name": "fifo", "type": tarfile.FIFOTYPE}, b""), "'fifo': a FIFO"),
])
def test_refuses_hostile_members_and_writes_nothing(tmp_path, member, reason):
    archive = _tar(tmp_path / "bad.tar.gz", [_file("ok.txt", b"fine"), member])
    dest = tmp_path / "box" / "dest"
    with pytest.raises(UserError, match=reason):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []  # checked before extracting: not even the harmless member was written
    assert not (tmp_path / "box" / "evil.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_size_and_member_limits_stop_tar_bombs(tmp_path):
    archive = _tar(tmp_path / "big.tar.gz", [_file("zeros.bin", b"\0" * 5000), _file("b", b"1"), _file("c", b"2")])
    with pytest.raises(UserError, match="more than 4096 uncompressed bytes"):
        safe_extract(archive, tmp_path / "d1", max_bytes=4096)
    with pytest.raises(UserError, match="'zeros.bin': 5000 bytes exceeds the per-member limit of 4999"):
        safe_extract(archive, tmp_path / "d2", max_member_bytes=4999)
    with pytest.raises(UserError, match="more than 2 members"):
        safe_extract(archive, tmp_path / "d3", max_members=2)
    for d in ("d1", "d2", "d3"):
        assert list((tmp_path / d).iterdir()) == []
    assert (safe_extract(archive, tmp_path / "d4", max_member_bytes=5000, max_bytes=5002) / "c").read_bytes() == b"2"


def test_a_sparse_member_counts_its_full_size(tmp_path):
    # A 10 GB sparse file takes a few bytes in the archive: the header's size decides, before any byte is written.
    archive = tmp_path / "sparse.tar"
    with tarfile.open(archive, "w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("huge.bin")
        info.size = 10 << 30
        tar.addfile(info)  # header only: no data follows, as in a forged archive
    with pytest.raises(UserError, match="exceeds the per-member limit"):
        safe_extract(archive, tmp_path / "dest")
    assert list((tmp_path / "dest").iterdir()) == []


def test_every_problem_is_listed(tmp_path):
    archive = _tar(tmp_path / "bad.tar.gz", [_file("../a"), _file("/b")])
    with pytest.raises(UserError) as err:
        safe_extract(archive, tmp_path / "dest")
    assert "2 problem(s)" in str(err.value) and "'../a'" in str(err.value) and "'/b'" in str(err.value)


def test_not_an_archive_and_a_truncated_one_are_clear_errors(tmp_path):
    junk = tmp_path / "output.tar.gz"
    junk.write_bytes(b"this is not gzip")
    with pytest.raises(UserError, match="not a readable tar archive"):
        safe_extract(junk, tmp_path / "dest")
    good = _tar(tmp_path / "good.tar", [_file("a.bin", os.urandom(300_000))])
    cut = tmp_path / "cut.tar"
    cut.write_bytes(good.read_bytes()[:100_000])
    with pytest.raises(UserError, match="truncated or corrupt|not a readable"):
        safe_extract(cut, tmp_path / "dest2")
    assert not list((tmp_path / "dest2").rglob("*"))  # neither the half file nor its temporary name


def test_a_link_already_in_the_destination_is_never_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "m.json").write_text("precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)  # left there by someone else: writing "sub/m.json" must not go through it
    (dest / "m.json").symlink_to(outside / "m.json")
    with pytest.raises(UserError, match="'sub' in the destination is a link or a file"):
        safe_extract(_tar(tmp_path / "a.tar.gz", [_file("sub/m.json", b"pwned")]), dest)
    safe_extract(_tar(tmp_path / "b.tar.gz", [_file("m.json", b"mine")]), dest)
    assert (outside / "m.json").read_text() == "precious"
    assert not (dest / "m.json").is_symlink() and (dest / "m.json").read_bytes() == b"mine"  # the link was replaced


def test_extract_output_writes_only_the_two_files_flat(tmp_path):
    archive = _tar(tmp_path / "output.tar.gz", [
        _file("a/b/manifest.json", b'{"checkpoint_s3_bucket": "s3://b/k"}'),
        _file("a/step_wise_training_metrics.csv", b"step_number\n1\n"),
        _file("a/other.bin", b"ignored"),
    ])
    dest = extract_output(archive, tmp_path / "dest")
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "step_wise_training_metrics.csv"]
    link = _tar(tmp_path / "link.tar.gz", [({"name": "manifest.json", "type": tarfile.SYMTYPE,
                                             "linkname": "/etc/passwd"}, b"")])
    with pytest.raises(UserError, match="symbolic link"):
        extract_output(link, tmp_path / "dest2")
