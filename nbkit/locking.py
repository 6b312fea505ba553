"""One writer at a time: advisory file locks that name their holder, and "is that process still alive?".

Why flock: the kernel releases it when the holder dies, however it dies (kill -9 included), so a lock can
never outlive its process, and a second pipeline or launch into the same folder is refused with one line
that says who holds it instead of a traceback from two writers racing.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nbkit.errors import UserError


class Busy(UserError):
    """Someone else holds the lock; the message names them."""


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, what: str, wait: bool = False, **holder: Any) -> Iterator[None]:
    """Hold the lock at `path` for the block, or raise Busy naming the current holder (`wait`: block until
    the holder is done instead, for work a second caller would only repeat).

    `what` says what is locked (for the message); `holder` fields (command, job, ...) are recorded in the
    lock file so a refused caller learns who it waits for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"{what} is in use by {describe_holder(path)}; wait for it to finish or use another "
                       "folder") from None
        record = {"pid": os.getpid(), "since": datetime.now(UTC).isoformat(timespec="seconds"), **holder}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def held(path: str | os.PathLike) -> bool:
    """Is the lock at `path` held right now (by another open file description)?"""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def describe_holder(path: str | os.PathLike) -> str:
    """'pid 123 (nbkit run --params ...), since 2026-12-02T10:00:00+00:00' from the lock file."""
    for _ in range(3):  # the holder writes its record just after taking the lock
        try:
            record = json.loads(Path(path).read_text() or "{}")
        except (OSError, ValueError):
            record = {}
        if record:
            break
        time.sleep(0.1)
    if not record:
        return "another process"
    extra = ", ".join(f"{k} {v}" for k, v in record.items() if k not in ("pid", "since"))
    return f"pid {record.get('pid')}" + (f" ({extra})" if extra else "") + f", since {record.get('since')}"


def start_time(pid: int) -> float | None:
    """The process's start time, to tell it from a later process that reuses its pid."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def alive(pid: int | None, created: float | None = None) -> bool:
    """Is process `pid` running (not a zombie), and the same process that started at `created`?"""
    import psutil

    if not pid:
        return False
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return created is None or abs(proc.create_time() - float(created)) < 1.0
    except psutil.Error:
        return False
