"""Unpack archives that came from elsewhere (S3, a job's output) without letting them write outside `dest`.

This does not rely on tarfile's own extraction or its `data` filter, whose safety depends on the
interpreter's patch level: Python 3.11.7 lacks the fix for CVE-2025-4517, where a chain of symlinks that
overflows PATH_MAX stops `os.path.realpath` from resolving, so a path that looks inside the destination lands
outside it (python/cpython Lib/test/test_tarfile.py, test_realpath_limit_attack). Instead:

- only regular files and folders are accepted (Nova outputs hold nothing else): links, devices and FIFOs are
  refused, by name, before anything is written;
- every name is checked (no absolute path, no `..`) and folders are walked one component at a time through
  directory descriptors opened with O_NOFOLLOW, so no link on disk is ever followed;
- files are created with O_CREAT|O_EXCL|O_NOFOLLOW under a temporary name beside their final one and renamed
  into place (replacing a name swaps the directory entry: a hardlink or symlink there is never written through);
- data is streamed in chunks, and each member and the whole archive are capped in size.

tarfile is imported on use, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from nbkit.errors import UserError

MAX_MEMBER_BYTES = 2 << 30  # one eval details parquet is MBs; GBs in one file mean something is off
MAX_TOTAL_BYTES = 4 << 30
MAX_MEMBERS = 100_000
MAX_READ_BYTES = 256 << 20  # what a reader may hold in memory from one member (a manifest, a metrics CSV)
_CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

# Maps a member's name to the path (relative, '/'-separated) to write it to, or None to leave it out.
Select = Callable[[str], "str | None"]


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_bytes: int = MAX_TOTAL_BYTES,
    max_members: int = MAX_MEMBERS,
    select: Select | None = None,
) -> Path:
    """Extract a tar archive (any compression) into `dest` (created) and return `dest`, resolved.

    Every member is checked before anything is written, and every problem is listed in one UserError.
    `select` picks what to write and where (default: every member, at its own name).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    with _open(archive) as tar:
        plan = _plan(tar, archive, max_member_bytes, max_bytes, max_members, select)
        _write_all(tar, archive, plan, dest, max_member_bytes, max_bytes)
    return dest


def _open(archive: str | os.PathLike) -> Any:
    import tarfile

    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{archive}: not a readable tar archive ({exc}); download it again") from None


def _kind(member: Any) -> str | None:
    """What a member is when it is not a regular file or folder, else None."""
    if member.isfile() or member.isdir():
        return None
    if member.issym():
        return f"a symbolic link (to {member.linkname!r})"
    if member.islnk():
        return f"a hard link (to {member.linkname!r})"
    if member.ischr():
        return "a character device"
    if member.isblk():
        return "a block device"
    if member.isfifo():
        return "a FIFO"
    return f"a member of tar type {member.type!r}"


def parts_of(name: str) -> list[str] | str:
    """The path components of a member name, or why the name is refused."""
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path: members must be relative to the destination folder"
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        return "'..' in the name escapes the destination folder"
    return parts


def _plan(tar: Any, archive: str | os.PathLike, max_member_bytes: int, max_bytes: int, max_members: int,
          select: Select | None) -> list[tuple[Any, list[str]]]:
    """(member, target components) of everything to write; raises listing every problem found.

    Links, devices and FIFOs are refused wherever they are; names are checked where they decide the target
    (a `select` that writes flat names makes the member's folder irrelevant). Headers are read one by one and
    reading stops at the first limit passed, so a bomb is never unpacked.
    """
    import tarfile

    plan, problems, count, total = [], [], 0, 0
    try:
        while (member := tar.next()) is not None:
            count += 1
            if count > max_members:
                problems.append(f"more than {max_members} members (the limit; raise max_members if expected)")
                break
            name = member.name
            kind = _kind(member)
            if kind:
                problems.append(f"{name!r}: {kind}; only regular files and folders are extracted")
                continue
            target = name if select is None else select(name)
            if target is None:
                continue
            parts = parts_of(target)
            if isinstance(parts, str):
                problems.append(f"{name!r}: {parts}" if target == name else f"{name!r} -> {target!r}: {parts}")
                continue
            if member.isfile():
                if member.size > max_member_bytes:
                    problems.append(f"{name!r}: {member.size} bytes exceeds the per-member limit of {max_member_bytes}")
                    break
                total += member.size
                if total > max_bytes:
                    problems.append(f"more than {max_bytes} uncompressed bytes (the limit) at member {name!r}")
                    break
            if parts:
                plan.append((member, parts))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{archive}: not a readable tar archive ({exc}); download it again") from None
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise UserError(f"refusing to extract {archive}: {len(problems)} problem(s), nothing was written:\n{listed}")
    return plan


def _write_all(tar: Any, archive: str | os.PathLike, plan: list[tuple[Any, list[str]]], dest: Path,
               max_member_bytes: int, max_bytes: int) -> None:
    root = os.open(dest, _DIR_FLAGS)
    try:
        left = max_bytes
        for member, parts in plan:
            where = f"{archive}: member {member.name!r}"
            if member.isdir():
                os.close(open_dir(root, parts, where))
                continue
            stream = tar.extractfile(member)
            left -= write_stream(root, parts, stream, min(max_member_bytes, left), where)
    finally:
        os.close(root)


def open_dir(root: int, parts: list[str], where: str) -> int:
    """A descriptor of folder root/parts..., creating what is missing and following no link on the way."""
    fd = os.dup(root)
    path = ""
    try:
        for part in parts:
            path = f"{path}/{part}" if path else part
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)  # mkdirat never follows a link at its last component
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise UserError(f"{where}: {path!r} in the destination is a link or a file, not a folder "
                                f"({exc.strerror}); refusing to write through it") from None
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_stream(root: int, parts: list[str], stream: IO[bytes] | None, max_bytes: int, where: str) -> int:
    """Stream `stream` into root/parts (replacing a file there, never writing through a link); bytes written.

    The data goes to a new file (O_EXCL|O_NOFOLLOW) beside the target, then is renamed over it, so a reader
    never sees half a file and an existing link at the name is replaced, not followed.
    """
    parent = open_dir(root, parts[:-1], where)
    tmp = f".nbkit-extract-{os.urandom(6).hex()}"
    written, placed = 0, False
    try:
        fd = os.open(tmp, _NEW_FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            while stream is not None and (chunk := _read(stream, where)):
                written += len(chunk)
                if written > max_bytes:
                    raise UserError(f"{where}: more than {max_bytes} bytes, over the size limit; nothing kept of it")
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        os.replace(tmp, parts[-1], src_dir_fd=parent, dst_dir_fd=parent)
        placed = True
    except OSError as exc:
        raise UserError(f"{where}: cannot write {'/'.join(parts)!r} ({exc.strerror or exc})") from None
    finally:
        if not placed:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=parent)
        os.close(parent)
    return written


def _read(stream: IO[bytes], where: str) -> bytes:
    """One chunk of a member; a damaged archive is the user's to fetch again, not a traceback."""
    import tarfile
    import zlib

    try:
        return stream.read(_CHUNK)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise UserError(f"{where}: the archive is truncated or corrupt ({exc}); download it again") from None


def copy_into(source: Path, dest: str | os.PathLike, name: str, max_bytes: int = MAX_MEMBER_BYTES) -> Path:
    """Copy one file into folder `dest` (created) under `name`, streamed, never writing through a link there."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = os.open(dest, _DIR_FLAGS)
    try:
        with open(source, "rb") as stream:
            write_stream(root, [name], stream, max_bytes, str(source))
    finally:
        os.close(root)
    return dest / name


def read_member(tar: Any, member: Any, where: str, limit: int = MAX_READ_BYTES) -> bytes:
    """A member's bytes for a reader that must hold them (a manifest, a metrics CSV), refusing huge ones."""
    if member.size > limit:
        raise UserError(f"{where}: {member.name!r} is {member.size} bytes, more than the {limit} a reader holds "
                        "in memory; is this the right archive?")
    handle, chunks = tar.extractfile(member), []
    while handle is not None and (chunk := _read(handle, where)):
        chunks.append(chunk)
    return b"".join(chunks)
