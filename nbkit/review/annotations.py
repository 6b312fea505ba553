"""Labels and notes on samples, kept in an append-only JSONL file so no re-run or second browser loses one.

Every save appends one line in a single write() on an O_APPEND descriptor, then fsyncs it, so concurrent
browsers never interleave and a saved note survives a power cut. A crash can still cut the last line short:
reading skips such a torn line with a warning naming it (file and line) and keeps every other annotation, and
the next save starts on a fresh line. Reading takes the latest line per sample key. Flagged samples are
exported as Nova RFT records, with the review attached, for fixing the data set or the reward.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nbkit.errors import UserError
from nbkit.layout import RunLayout

if TYPE_CHECKING:
    import pandas as pd

class AnnotationWarning(UserWarning):
    """A line of annotations.jsonl could not be read and was skipped (the others are kept)."""


LABELS = ("correct", "wrong answer", "format error", "reward too high", "reward too low", "bad reference", "unclear")


def _plain(value: Any) -> Any:
    """JSON-safe scalar: numpy and pandas values to Python, NaN/NA to None."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


class AnnotationStore:
    """Append-only annotations of one run (`<run>/review/annotations.jsonl`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.skipped: list[tuple[int, str]] = []  # (line number, why) of lines the last read() skipped

    @classmethod
    def for_run(cls, run_dir: str | Path) -> AnnotationStore:

        layout = RunLayout(run_dir)
        layout.stage("review")
        return cls(layout.annotations)

    def add(self, key: str, label: str = "", note: str = "", flagged: bool = False, **context: Any) -> dict[str, Any]:
        """Append one annotation; `context` (source, step, prompt_id, sample, reward...) travels with it."""
        if not isinstance(key, str) or not key.strip():
            raise UserError("an annotation needs the sample's key (e.g. 'tuned/p12/0'); got an empty key")
        record = {
            "key": key,
            "label": str(label or ""),
            "note": str(note or ""),
            "flagged": bool(flagged),
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
        } | {k: _plain(v) for k, v in context.items() if k not in ("key", "label", "note", "flagged", "ts")}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # backslashreplace: a lone surrogate pasted into a note is kept as its \\uXXXX escape, not an error
        line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8", "backslashreplace")
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # the last append was cut short: start afresh
                line = b"\n" + line
            view = memoryview(line)
            while view:  # one write(); more only if the kernel wrote part of it (a full disk, a signal)
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        return record

    def read(self) -> list[dict[str, Any]]:
        """Every annotation ever saved, oldest first. A line that cannot be read (torn by a crash, or edited by
        hand) is skipped with an AnnotationWarning naming it; it never hides the lines around it."""
        self.skipped = []
        if not self.path.is_file():
            return []
        out = []
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError as exc:  # JSONDecodeError, or UnicodeDecodeError for a character cut in half
                    self._skip(number, "it is incomplete, a save cut short by a crash" if _torn(line, exc)
                               else f"it is not valid JSON ({exc})")
                    continue
                if not isinstance(record, dict) or not isinstance(record.get("key"), str):
                    self._skip(number, f"it is not an annotation (an object with a 'key'): {line[:80]!r}")
                    continue
                out.append(record)
        return out

    def _skip(self, number: int, why: str) -> None:
        self.skipped.append((number, why))
        warnings.warn(f"{self.path}:{number} skipped: {why}. Every other annotation is kept, and the next "
                      "save starts on a new line; delete that line by hand to silence this warning",
                      AnnotationWarning, stacklevel=3)

    def latest(self) -> dict[str, dict[str, Any]]:
        """The current annotation of each sample: the last line for its key wins."""
        return {record["key"]: record for record in self.read()}

    def frame(self) -> pd.DataFrame:
        """Current annotations as a table (one row per annotated sample), newest first."""
        import pandas as pd

        rows = list(self.latest().values())
        cols = ["key", "label", "flagged", "note", "source", "step", "prompt_id", "sample", "reward", "ts"]
        frame = pd.DataFrame(rows)
        for col in cols:
            if col not in frame.columns:
                frame[col] = None
        return frame[cols + [c for c in frame.columns if c not in cols]].sort_values("ts", ascending=False,
                                                                                       ignore_index=True)


def _torn(line: bytes, exc: ValueError) -> bool:
    """Whether an unreadable line is the start of a valid one: it stops where the text ends."""
    if not line.endswith(b"\n"):
        return True
    if isinstance(exc, UnicodeDecodeError):
        return exc.end >= len(line.rstrip())
    text = line.decode("utf-8", "replace").rstrip()
    return isinstance(exc, json.JSONDecodeError) and (exc.pos >= len(text) or exc.msg.startswith("Unterminated"))


def _index_records(records: list[dict[str, Any]]) -> tuple[dict[str, dict], dict[str, dict]]:
    """Lookups of the original data records by id and by prompt text (the fallback when ids are positional)."""
    from nbkit.data.records import prompt_text

    by_id = {str(r["id"]): r for r in records if r.get("id") is not None}
    by_prompt = {prompt_text(r): r for r in records}
    return by_id, by_prompt


def flagged_record(annotation: dict[str, Any], row: dict[str, Any] | None,
                   by_id: dict[str, dict], by_prompt: dict[str, dict]) -> dict[str, Any]:
    """One flagged sample as a Nova RFT record: the original record when it can be found, else rebuilt from
    the sample's prompt and reference; the review (label, note, response, reward...) goes under `review`."""
    from nbkit.review.frame import parse_components

    row = row or {}
    pid = str(annotation.get("prompt_id") or row.get("prompt_id") or "")
    original = by_id.get(pid) or by_prompt.get(str(row.get("prompt") or ""))
    if original is not None:
        record = copy.deepcopy(original)
    else:
        record = {"id": pid, "messages": [{"role": "user", "content": str(row.get("prompt") or "")}]}
        reference = row.get("reference")
        if isinstance(reference, str) and reference:
            try:
                record["reference_answer"] = json.loads(reference)
            except json.JSONDecodeError:
                record["reference_answer"] = reference
        elif reference is not None:
            record["reference_answer"] = reference
    record["review"] = {
        "key": annotation["key"],
        "label": annotation.get("label", ""),
        "note": annotation.get("note", ""),
        "annotated_at": annotation.get("ts"),
        "source": row.get("source", annotation.get("source")),
        "step": row.get("step", annotation.get("step")),
        "sample": row.get("sample", annotation.get("sample")),
        "response": row.get("response"),
        "reward": row.get("reward", annotation.get("reward")),
        "components": parse_components(row.get("components"), annotation["key"]),
        "failure": row.get("failure"),
        "found_original_record": original is not None,
    }
    record["review"] = {k: v if isinstance(v, dict) else _plain(v) for k, v in record["review"].items()}
    return record


def export_flagged(store: AnnotationStore, frame: pd.DataFrame | None, out: str | Path,
                   records: list[dict[str, Any]] | None = None) -> int:
    """Write every currently flagged sample to `out` (JSONL, Nova RFT format + `review`); returns the count.

    The file is rewritten from the annotations each time (they are the source of truth), atomically.
    A flagged sample missing from `frame` is still exported from what its annotation recorded. With
    nothing flagged no file is written, and an earlier export (whose flags were since cleared) is removed.
    """
    by_id, by_prompt = _index_records(records or [])
    rows = {}
    if frame is not None and len(frame):
        rows = {r["key"]: r for r in frame.to_dict(orient="records")}
    flagged = [a for a in store.latest().values() if a.get("flagged")]
    out = Path(out)
    if not flagged:
        out.unlink(missing_ok=True)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    try:
        with tmp.open("w", encoding="utf-8", errors="backslashreplace") as fh:
            for annotation in flagged:
                record = flagged_record(annotation, rows.get(annotation["key"]), by_id, by_prompt)
                fh.write(json.dumps(record, ensure_ascii=False, allow_nan=False, default=str) + "\n")
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()  # gone after the rename; removed when anything failed
    return len(flagged)


def export_run_flagged(run_dir: str | Path, frame: pd.DataFrame | None = None) -> tuple[int, Path]:
    """(count, path): the run's flagged samples exported to <run>/review/flagged.jsonl with their data records."""

    layout = RunLayout(run_dir)
    layout.stage("review")
    out = layout.flagged
    from nbkit.review.frame import run_records

    return export_flagged(AnnotationStore.for_run(run_dir), frame, out, run_records(run_dir)), out
