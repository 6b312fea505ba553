"""`nbkit run --pack RUN`: one archive of a run folder to share (reports, executed notebooks, small artifacts).

Why an archive of the folder itself: every record in a run folder stores its paths relative to the folder
(see nbkit.layout), so the unpacked copy opens, monitors, compares and reviews on its own data. Model
weights and checkpoints stay out (they are large and the reports do not need them); any other file larger
than the size limit does too, and the archive's PACKED.txt lists what was left out and why.
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbkit.errors import UserError
from nbkit.layout import RunLayout

MAX_FILE_BYTES = 20 * 2**20  # a larger file (weights, big tables) is left out and listed
WEIGHTS = ("model", "training/checkpoints")  # folders of model weights: never packed
LISTING = "PACKED.txt"


@dataclass
class Packed:
    """What went into the archive and what was left out (path relative to the run folder, reason)."""

    archive: Path
    files: list[str] = field(default_factory=list)
    size: int = 0
    left_out: list[tuple[str, str]] = field(default_factory=list)

    def describe(self) -> str:
        lines = [f"packed {len(self.files)} files ({self.size / 2**20:.1f} MB) into {self.archive}"]
        lines += [f"  left out {path}: {why}" for path, why in self.left_out]
        return "\n".join(lines)


def _left_out(relative: str, path: Path, max_bytes: int) -> str | None:
    """Why a file stays out of the archive, or None to pack it."""
    if any(relative == w or relative.startswith(w + "/") for w in WEIGHTS):
        return "model weights"
    name = path.name
    if name.startswith(".") or name.endswith((".tmp", ".lock")):
        return "lock or temporary file"
    size = path.stat().st_size
    if size > max_bytes:
        return f"{size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit"
    return None


def pack(run: str | os.PathLike, dest: str | os.PathLike | None = None,
         max_bytes: int = MAX_FILE_BYTES) -> Packed:
    """Write `<run>.tar.gz` (or `dest`) holding the run folder's reports, notebooks and small artifacts."""
    layout = RunLayout(run)
    root = layout.root
    if not root.is_dir():
        raise UserError(f"run folder {root} does not exist: give a folder `nbkit run` wrote (e.g. runs/demo)")
    if not layout.index.exists():
        raise UserError(f"{root} has no index.html: it is not a pipeline run folder (run `nbkit run` into it first)")
    archive = Path(dest) if dest else root.with_name(root.name + ".tar.gz")
    result = Packed(archive)
    members: list[tuple[Path, str]] = []
    skipped_dirs: set[str] = set()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_dir() or path.is_symlink() or any(relative.startswith(d + "/") for d in skipped_dirs):
            continue
        why = _left_out(relative, path, max_bytes)
        if why == "model weights":
            top = next(w for w in WEIGHTS if relative == w or relative.startswith(w + "/"))
            if top not in skipped_dirs:
                skipped_dirs.add(top)
                result.left_out.append((top + "/", why))
            continue
        if why:
            result.left_out.append((relative, why))
            continue
        members.append((path, relative))
        result.files.append(relative)
        result.size += path.stat().st_size
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.tmp")
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            for path, relative in members:
                tar.add(path, arcname=f"{root.name}/{relative}", recursive=False)
            listing = (f"Run folder {root.name}, packed {time.strftime('%Y-%m-%d %H:%M')}; open "
                       f"{root.name}/index.html.\n" + "".join(f"left out {p}: {w}\n" for p, w in result.left_out))
            info = tarfile.TarInfo(f"{root.name}/{LISTING}")
            info.size, info.mtime = len(listing.encode()), int(time.time())
            tar.addfile(info, io.BytesIO(listing.encode()))
        os.replace(tmp, archive)
    finally:
        tmp.unlink(missing_ok=True)
    return result
