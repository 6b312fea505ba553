"""Progress of long steps, for the person watching a notebook and for the pipeline runner.

A step that can take more than a few seconds (model build and warm start, sampling, the training wait,
bootstrap, probes) says what it does, n of N, the time it has taken and an ETA. In JupyterLab that is a
tqdm bar. Under `nbkit run` the kernel also writes the open steps to the file named by NBKIT_PROGRESS_FILE,
which the runner reads to show one live status line per running notebook: a cell that runs for minutes is
no longer a silent "6/22 cells".
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Sized
from pathlib import Path
from typing import Any, TypeVar

ENV = "NBKIT_PROGRESS_FILE"
WRITE_EVERY_S = 0.5  # the runner refreshes about once a second; writing more often only costs time

T = TypeVar("T")
_OPEN: list[Task] = []  # open steps, outermost first (a sampling step inside a model build, ...)
_last_write = 0.0


class Task:
    """One long step: `update()` as work gets done; closes on `close()` or at the end of a `with` block."""

    def __init__(self, what: str, total: int | None = None, unit: str = "it", bar: bool = True,
                 leave: bool = False) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.n = 0
        self.note = ""
        self.started = time.monotonic()
        self._bar = _tqdm(total, what, unit, leave) if bar else None
        _OPEN.append(self)
        _publish(force=True)

    def update(self, n: int = 1, note: str | None = None) -> None:
        self.set(self.n + n, note=note)

    def set(self, n: int, total: int | None = None, note: str | None = None) -> None:
        """Absolute progress (a training job reports its step), optionally a new total and a short note."""
        if total is not None and total != self.total:
            self.total = total
            if self._bar is not None:
                self._bar.total = total
        if note is not None:
            self.note = note
            if self._bar is not None:
                self._bar.set_postfix_str(note, refresh=False)
        if self._bar is not None:
            self._bar.update(n - self.n)
        self.n = n
        _publish()

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def eta_s(self) -> float | None:
        """Seconds left at the average rate so far; None until there is a rate to go by."""
        if not self.total or self.n <= 0 or self.n >= self.total:
            return None
        return self.elapsed_s * (self.total - self.n) / self.n

    def state(self) -> dict[str, Any]:
        eta = self.eta_s()
        return {"what": self.what, "n": self.n, "total": self.total, "unit": self.unit, "note": self.note,
                "elapsed_s": round(self.elapsed_s, 1), "eta_s": None if eta is None else round(eta, 1)}

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self in _OPEN:
            _OPEN.remove(self)
            _publish(force=True)

    def __enter__(self) -> Task:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(items: Iterable[T], what: str, total: int | None = None, unit: str = "it",
          bar: bool = True) -> Iterator[T]:
    """Iterate with progress (the iterable's length is the total when it has one)."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with Task(what, total, unit, bar=bar) as task:
        for item in items:
            yield item
            task.update()


def _tqdm(total: int | None, what: str, unit: str, leave: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=what, unit=unit, leave=leave, mininterval=0.5)


def _publish(force: bool = False) -> None:
    """Write the open steps to NBKIT_PROGRESS_FILE (when the runner set it), at most every WRITE_EVERY_S."""
    global _last_write
    target = os.environ.get(ENV)
    if not target:
        return
    now = time.monotonic()
    if not force and now - _last_write < WRITE_EVERY_S:
        return
    _last_write = now
    path = Path(target)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps([t.state() for t in _OPEN]))
        os.replace(tmp, path)
    except OSError:  # progress is a courtesy: a full disk must not fail the step it describes
        tmp.unlink(missing_ok=True)


def read(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The open steps a kernel last wrote ([] when none or unreadable mid-replace)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def duration(seconds: float | None) -> str:
    """'42s', '3m05s', '1h02m': short enough for a status line."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def describe(steps: list[dict[str, Any]]) -> str:
    """One line for the open steps: the outermost with its ETA, then the inner ones' counts."""
    parts = []
    for i, step in enumerate(steps):
        count = f"{step['n']}/{step['total']}" if step.get("total") else str(step.get("n", 0))
        text = f"{step['what']} {count}"
        if step.get("note"):
            text += f" ({step['note']})"
        if i == 0:
            text += f", {duration(step.get('elapsed_s'))}"
            if step.get("eta_s") is not None:
                text += f", ETA {duration(step['eta_s'])}"
        parts.append(text)
    return " > ".join(parts)
