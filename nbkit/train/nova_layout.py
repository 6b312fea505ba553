"""The Nova training-output layout, written by the local backend and read for every backend.

A SageMaker Nova RFT job leaves `output.tar.gz` holding `manifest.json` (`{"checkpoint_s3_bucket": ...}`) and
`step_wise_training_metrics.csv`. The local backend writes the same two files (the manifest points at the local
checkpoint folder), so monitoring and evaluation read one layout whatever ran the job. The reader is tolerant:
real Nova CSVs may gain or lose columns between releases, and files may sit in subfolders of the archive.
"""

from __future__ import annotations

import io
import json
import math
import os
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from nbkit.errors import UserError

MANIFEST = "manifest.json"
METRICS_CSV = "step_wise_training_metrics.csv"
ARCHIVE = "output.tar.gz"
CHECKPOINT_KEY = "checkpoint_s3_bucket"

# Column order of the CSV that SageMaker Nova RFT jobs write (reference: nova-rft.md section 5).
NOVA_COLUMNS: tuple[str, ...] = (
    "step_number",
    "epoch_number",
    "train_reward_mean",
    "train_episode_length_mean",
    "policy_entropy",
    "gradient_norm",
    "mean_advantage",
    "min_advantage",
    "max_advantage",
)
_INTEGER_COLUMNS = ("step_number", "epoch_number")


@dataclass(frozen=True)
class NovaOutput:
    """What a training job left behind: the manifest, its checkpoint path, and the step-wise metrics."""

    manifest: dict[str, Any]
    metrics: Any  # pandas.DataFrame with at least NOVA_COLUMNS, sorted by step_number
    source: Path

    @property
    def checkpoint(self) -> str:
        """The checkpoint location (an s3:// URI for Nova, a local folder for the local backend)."""
        return str(self.manifest.get(CHECKPOINT_KEY, ""))


def write_output(
    dest_dir: str | os.PathLike, checkpoint: str | os.PathLike, rows: Iterable[Mapping[str, Any]]
) -> Path:
    """Write `dest_dir/output.tar.gz` (manifest + metrics CSV) atomically, so a reader never sees half a file.

    `rows` are per-step dicts keyed by NOVA_COLUMNS; missing values become empty cells, as in Nova's CSV.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    manifest = json.dumps({CHECKPOINT_KEY: str(checkpoint)}, indent=2).encode()
    csv_bytes = metrics_csv(rows).encode()
    fd, tmp = tempfile.mkstemp(prefix=".output-", suffix=".tar.gz", dir=dest)
    try:
        with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w:gz") as tar:
            for name, data in ((MANIFEST, manifest), (METRICS_CSV, csv_bytes)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
        os.chmod(tmp, 0o644)  # mkstemp makes it private; run folders are shared
        os.replace(tmp, dest / ARCHIVE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest / ARCHIVE


def metrics_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """The CSV text with Nova's header; integers for step/epoch, full precision floats, blanks for missing."""
    lines = [",".join(NOVA_COLUMNS)]
    for row in rows:
        cells = []
        for col in NOVA_COLUMNS:
            value = row.get(col)
            if value is None or (isinstance(value, float) and not math.isfinite(value)):
                cells.append("")
            elif col in _INTEGER_COLUMNS:
                cells.append(str(int(value)))
            else:
                cells.append(repr(float(value)))
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"


def nova_row(step: int, metrics: dict[str, Any]) -> dict[str, Any]:
    """One row of step_wise_training_metrics.csv from a logged step's metrics (Nova's column names)."""
    return {
        "step_number": step,
        "epoch_number": int(math.floor(metrics.get("epoch") or 0.0)),
        "train_reward_mean": metrics.get("reward_mean"),
        "train_episode_length_mean": metrics.get("completion_len_mean"),
        "policy_entropy": metrics.get("entropy"),
        "gradient_norm": metrics.get("grad_norm"),
        "mean_advantage": metrics.get("advantage_mean"),
        "min_advantage": metrics.get("advantage_min"),
        "max_advantage": metrics.get("advantage_max"),
    }


def read_output(path: str | os.PathLike) -> NovaOutput:
    """Read a Nova output from `output.tar.gz`, a folder holding the two files, or a folder holding the archive.

    Files are matched by name anywhere inside the archive or folder (Nova nests them in some releases).
    """
    source, manifest_bytes, csv_bytes = _raw_files(Path(path))
    manifest = _parse_manifest(manifest_bytes, source) if manifest_bytes is not None else {}
    text = csv_bytes.decode("utf-8-sig") if csv_bytes is not None else ""
    return NovaOutput(manifest, parse_metrics_csv(text, source), source)


def extract_output(path: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the manifest and metrics CSV (byte for byte) out of an archive or folder into `dest`, flat.

    Archives go through `safe_extract` (links and devices refused, streamed to disk, sizes capped); only
    those two names are written, so a hostile archive cannot place files outside `dest`.
    """
    from nbkit.train.archive import copy_into, safe_extract

    source = Path(path)
    if source.is_dir():
        found = {name: _find(source, name) for name in (MANIFEST, METRICS_CSV)}
        archive = _find(source, ARCHIVE)
        if found[MANIFEST] is None and archive is not None:
            return extract_output(archive, dest)
        if not any(found.values()):
            raise _no_output(source)
        for name, file in found.items():
            if file is not None:
                copy_into(file, dest, name)
        return Path(dest)
    if not source.exists():
        raise UserError(f"training output not found: {source}; has the job finished and written {ARCHIVE}?")
    picked: list[str] = []

    def flat(name: str) -> str | None:
        base = PurePosixPath(name).name
        if base in (MANIFEST, METRICS_CSV):
            picked.append(base)
            return base
        return None

    safe_extract(source, dest, select=flat)
    if not picked:
        raise UserError(f"{source} holds neither {MANIFEST} nor {METRICS_CSV}: is it a Nova training output?")
    return Path(dest)


def _raw_files(path: Path) -> tuple[Path, bytes | None, bytes | None]:
    """(where they came from, manifest bytes, CSV bytes) from an archive or a folder; at least one exists."""
    if path.is_dir():
        manifest_path, csv_path = _find(path, MANIFEST), _find(path, METRICS_CSV)
        archive = _find(path, ARCHIVE)
        if manifest_path is None and archive is not None:
            return _raw_files(archive)
        if manifest_path is None and csv_path is None:
            raise _no_output(path)
        read = [_file_bytes(p) if p is not None else None for p in (manifest_path, csv_path)]
        return path, read[0], read[1]
    if not path.exists():
        raise UserError(f"training output not found: {path}; has the job finished and written {ARCHIVE}?")
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {PurePosixPath(m.name).name: m for m in tar.getmembers() if m.isfile()}
            manifest_bytes = _member_bytes(tar, members.get(MANIFEST), path)
            csv_bytes = _member_bytes(tar, members.get(METRICS_CSV), path)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{path} is not a readable tar.gz archive ({exc}); download it again") from None
    if manifest_bytes is None and csv_bytes is None:
        raise UserError(f"{path} holds neither {MANIFEST} nor {METRICS_CSV}: is it a Nova training output?")
    return path, manifest_bytes, csv_bytes


def parse_metrics_csv(text: str, source: str | os.PathLike = "") -> Any:
    """Nova's step-wise CSV as a DataFrame: header names normalized, extra columns kept, missing ones NaN."""
    import pandas as pd

    if not text.strip():
        frame = pd.DataFrame(columns=list(NOVA_COLUMNS))
    else:
        try:
            frame = pd.read_csv(io.StringIO(text))
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise UserError(f"{source}: {METRICS_CSV} is not valid CSV ({exc})") from None
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    for col in NOVA_COLUMNS:
        if col not in frame.columns:
            frame[col] = float("nan")
    for col in frame.columns:
        converted = pd.to_numeric(frame[col], errors="coerce")
        if converted.notna().sum() >= frame[col].notna().sum():  # keep text columns that are really text
            frame[col] = converted.astype(float)
    for col in _INTEGER_COLUMNS:
        values = frame[col].dropna()
        if len(values) and bool((values == values.round()).all()):
            frame[col] = frame[col].astype("Int64")
    if frame["step_number"].notna().any():
        frame = frame.sort_values("step_number", kind="stable").reset_index(drop=True)
    ordered = list(NOVA_COLUMNS) + [c for c in frame.columns if c not in NOVA_COLUMNS]
    return frame[ordered]


def _find(folder: Path, name: str) -> Path | None:
    direct = folder / name
    if direct.is_file():
        return direct
    return next(iter(sorted(folder.rglob(name))), None)


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo | None, path: Path) -> bytes | None:
    from nbkit.train.archive import read_member

    return None if member is None else read_member(tar, member, str(path))


def _no_output(folder: Path) -> UserError:
    return UserError(
        f"no Nova training output in {folder}: expected {ARCHIVE}, or {MANIFEST} and {METRICS_CSV}; "
        "point at the job's output folder (for SageMaker: s3://<output_path>/<job>/output/, downloaded)"
    )


def _file_bytes(path: Path) -> bytes:
    from nbkit.train.archive import MAX_READ_BYTES

    size = path.stat().st_size
    if size > MAX_READ_BYTES:
        raise UserError(f"{path} is {size} bytes, more than the {MAX_READ_BYTES} a reader holds in memory; "
                        "is this the right file?")
    return path.read_bytes()


def _parse_manifest(data: bytes, source: str | os.PathLike) -> dict[str, Any]:
    try:
        manifest = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{source}: {MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{source}: {MANIFEST} must be a JSON object, got {type(manifest).__name__}")
    return manifest
