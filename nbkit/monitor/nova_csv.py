"""Read Nova's `step_wise_training_metrics.csv` (SageMaker training jobs, and the local backend's copy).

The file sits inside `output.tar.gz` on SageMaker; it is read straight out of the archive (no extraction
to disk), from a folder holding either, or from the CSV itself. Cells that are not numbers are an error
with the line and column, never a silent NaN.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path, PurePosixPath

import pandas as pd

from nbkit.errors import UserError
from nbkit.monitor.frame import empty_frame, normalize

METRICS_CSV = "step_wise_training_metrics.csv"
ARCHIVE = "output.tar.gz"

# Nova column -> normalized name (reference nova-rft.md section 5). The advantage statistics and the epoch
# stay as extra columns under their own names.
NOVA_ALIASES: dict[str, str] = {
    "step_number": "step",
    "train_reward_mean": "reward_mean",
    "train_episode_length_mean": "completion_len_mean",
    "policy_entropy": "entropy",
    "gradient_norm": "grad_norm",
}


def read_nova_csv(path: str | os.PathLike) -> pd.DataFrame:
    """The normalized frame from the CSV, an `output.tar.gz` holding it, or a folder holding either."""
    name, text = csv_text(Path(path))
    frame = parse_nova_csv(text, name)
    frame.attrs["kind"] = "nova_csv"
    return frame


def parse_nova_csv(text: str, source: str = METRICS_CSV) -> pd.DataFrame:
    """Parse the CSV text; a header-only file (a job that has just started) gives an empty frame."""
    if not text.strip():
        raise UserError(f"{source} is empty (not even a header): the job may not have written it yet")
    try:
        raw = pd.read_csv(io.StringIO(text), skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UserError(f"{source} is not valid CSV ({exc}); download it again or check the job's output") from None
    raw.columns = [str(c).strip().lower().replace(" ", "_") for c in raw.columns]
    if "step_number" not in raw.columns and "step" not in raw.columns:
        raise UserError(
            f"{source} has no step_number column (columns: {', '.join(raw.columns)}); is this Nova's "
            f"{METRICS_CSV}?"
        )
    if raw.empty:
        return empty_frame(source)
    _check_numeric(raw, source)
    return normalize(raw, NOVA_ALIASES, source=source)


def _check_numeric(raw: pd.DataFrame, source: str) -> None:
    """Name the first non-numeric cell by line (1 = header) and column."""
    for col in raw.columns:
        if pd.api.types.is_numeric_dtype(raw[col]):
            continue
        converted = pd.to_numeric(raw[col], errors="coerce")
        bad = converted.isna() & raw[col].notna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise UserError(
                f"{source}, line {row + 2}, column {col!r}: {raw[col].iloc[row]!r} is not a number; "
                "fix or blank that cell (a blank cell means 'not logged at this step')"
            )


def csv_text(path: Path) -> tuple[str, str]:
    """(a name for messages, the CSV text) from a CSV file, a tar archive, or a folder holding either."""
    if path.is_dir():
        found = sorted(path.rglob(METRICS_CSV)) or sorted(path.rglob(ARCHIVE))
        if not found:
            raise UserError(
                f"no {METRICS_CSV} or {ARCHIVE} under {path}; download the job's output "
                "(s3://<output_path>/<job>/output/output.tar.gz) into it, or point at the file"
            )
        if len(found) > 1:
            listing = ", ".join(str(p.relative_to(path)) for p in found[:5])
            raise UserError(f"several training outputs under {path} ({listing}); point at the one to read")
        path = found[0]
    if not path.exists():
        raise UserError(f"metrics file not found: {path}")
    if path.name.endswith((".tar.gz", ".tgz", ".tar")):
        return _from_archive(path)
    try:
        return str(path), path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text: is it really {METRICS_CSV}?") from None


def _from_archive(path: Path) -> tuple[str, str]:
    from nbkit.train.archive import read_member

    try:
        with tarfile.open(path, "r:*") as tar:
            members = [m for m in tar.getmembers() if m.isfile() and PurePosixPath(m.name).name == METRICS_CSV]
            if not members:
                raise UserError(f"{path} holds no {METRICS_CSV}; is it the job's output.tar.gz (not model.tar.gz)?")
            if len(members) > 1:
                raise UserError(f"{path} holds {len(members)} copies of {METRICS_CSV}: {[m.name for m in members]}")
            data = read_member(tar, members[0], str(path))  # capped: a huge member is an error, not a 2 GB read
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{path} is not a readable tar archive ({exc}); download it again") from None
    try:
        return f"{path}:{members[0].name}", data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path}:{members[0].name} is not UTF-8 text") from None
