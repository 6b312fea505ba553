"""Estimate against outcome: what notebook 04 said a job would take, set against what it took.

Why: an estimate nobody checks stays wrong (3.1 minutes estimated, 49.6 taken). After a job ends, notebook 05
and the run index show both, with what the estimate rested on (a calibration on this machine, the bundled
figure, an assumed throughput), so the next estimate can be trusted or corrected. The estimate is job.json's
`derived` (written at launch); the actual figures come from the local job's status.json and progress.jsonl,
or for a managed job from its logged metrics (steps and the time since start).
"""

from __future__ import annotations

import math
import os
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from nbkit.errors import UserError

ENDED = ("completed", "stopped", "failed")


@dataclass
class EstimateCheck:
    """The estimated and actual steps, time per step, wall time and cost of one ended job."""

    backend: str
    job_id: str
    state: str
    estimated: dict[str, float | None]
    actual: dict[str, float | None]
    basis: str  # what the time estimate rested on
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """(quantity, estimate, actual, actual / estimate) rows, formatted for a plain table."""
        out = []
        for key, name, fmt in (("steps", "steps", _count), ("step_s", "time per step", _duration),
                               ("wall_s", "wall time", _duration), ("cost_usd", "cost", _money)):
            est, act = self.estimated.get(key), self.actual.get(key)
            if est is None and act is None:
                continue
            out.append({"quantity": name, "estimate": fmt(est), "actual": fmt(act), "actual / estimate": _ratio(act, est)})
        return out

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows(), columns=["quantity", "estimate", "actual", "actual / estimate"])

    def table(self) -> str:
        """Aligned plain text with the basis of the estimate and the notes (static reports, the CLI)."""
        rows = self.rows()
        cols = ["quantity", "estimate", "actual", "actual / estimate"]
        widths = [max(len(c), *(len(r[c]) for r in rows)) if rows else len(c) for c in cols]
        lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
        lines += ["  ".join(r[c].ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip() for r in rows]
        lines.append(f"estimate basis: {self.basis}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def headline(self) -> str:
        """One sentence for the run index: the time taken against the time estimated, and on what basis."""
        est, act = self.estimated.get("wall_s"), self.actual.get("wall_s")
        steps = self.actual.get("steps")
        done = f" for {int(steps)} steps" if steps is not None else ""
        if act is None:
            return f"Actual time unknown{done} (estimated {_duration(est)})."
        if est is None:
            return f"Took {_duration(act)}{done}; there was no time estimate ({self.basis})."
        took, estimated = _durations(act, est)
        return f"Took {took}{done}, estimated {estimated} ({_ratio(act, est)}; {self.basis})."

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count(value: float | None) -> str:
    return "-" if value is None else f"{int(value):,}"


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"


def _duration(seconds: float | None) -> str:
    from nbkit.train.derived import _duration as fmt

    return "-" if seconds is None else fmt(seconds)


def _durations(actual: float, estimate: float) -> tuple[str, str]:
    """Two durations in one unit, the larger's ("2.0 min ... 1.9 min", not "2.0 min ... 114.2 s")."""
    from nbkit.train.derived import _duration as fmt
    from nbkit.train.derived import duration_unit

    unit = duration_unit(max(actual, estimate))
    return fmt(actual, unit), fmt(estimate, unit)


def _ratio(actual: float | None, estimate: float | None) -> str:
    if actual is None or estimate is None or not estimate:
        return "-"
    return f"{actual / estimate:.2g}x"


def _seconds_between(start: str | None, end: str | None) -> float | None:
    try:
        return (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    except (TypeError, ValueError):
        return None


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------- checking


def check(run_dir: str | os.PathLike, frame: Any = None) -> EstimateCheck | None:
    """Estimate vs actual for the run's training job once it has ended (None before, or without a record).

    `frame` is the normalized metrics frame (notebook 05 has it); a managed job's actual steps and time come
    from it, a local job's from its own status and progress files. Nothing here calls AWS: a managed job
    counts as ended once its outputs are in the run (`<run>/training/output`, fetched by 06 or `outputs()`).
    """
    from nbkit.layout import RunLayout
    from nbkit.train.job import load_job, read_job

    try:
        record = read_job(run_dir)
    except UserError:
        return None
    if record.get("dry_run"):
        return None
    handle = load_job(run_dir)
    state: str
    if handle.backend == "local":
        state = handle.status()  # the worker's status file
    else:
        fetched = next((RunLayout(run_dir).training / "output").rglob("step_wise_training_metrics.csv"), None)
        state = "completed" if fetched is not None else ""
    if state not in ENDED:
        return None
    derived = record.get("derived") or {}
    estimated = {"steps": _finite(derived.get("total_steps")), "step_s": _finite(derived.get("step_time_s")),
                 "wall_s": _finite(derived.get("wall_time_s")), "cost_usd": _finite(derived.get("cost_usd"))}
    basis = (derived.get("basis") or {}).get("step_time_source") or "no basis recorded (launched by an older nbkit)"
    if not derived:
        basis = "no estimate recorded (the training data's size was unknown at launch)"
    notes: list[str] = []
    if handle.backend == "local":
        actual = _local_actual(handle, notes)
    else:
        actual = _managed_actual(frame, derived, notes)
    done_steps = actual.get("steps")
    if state != "completed" and done_steps is not None and estimated["steps"]:
        notes.append(f"the job {state} at step {int(done_steps)} of {int(estimated['steps'])}: compare the "
                     "time per step, not the wall time")
    return EstimateCheck(handle.backend, handle.job_id, state, estimated, actual, basis, notes)


def _local_actual(handle: Any, notes: list[str]) -> dict[str, float | None]:
    """A local job: steps and times from status.json (submitted -> ended) and progress.jsonl (per step)."""
    from nbkit.train.calibration import step_durations
    from nbkit.train.local import read_progress

    info = handle.info()
    durations = step_durations(read_progress(handle.files.progress))
    wall = _seconds_between(info.get("submitted"), info.get("ended"))
    attempt = int(info.get("attempt") or 1)
    if attempt > 1:
        notes.append(f"the job was resumed (attempt {attempt}): the wall time covers the last attempt only")
    if wall is None and _finite(info.get("seconds")) is not None:
        wall = float(info["seconds"])
        notes.append("wall time from the worker's own clock (it starts after its imports)")
    notes.append("local training costs no money")
    return {"steps": _finite(info.get("step")), "step_s": statistics.median(durations) if durations else None,
            "wall_s": wall, "cost_usd": None}


def _managed_actual(frame: Any, derived: dict[str, Any], notes: list[str]) -> dict[str, float | None]:
    """A managed job: steps and training time from its logged metrics; the compute cost of that time."""
    if frame is None or not len(frame):
        notes.append("no metrics were read: the actual steps and time are unknown")
        return {"steps": None, "step_s": None, "wall_s": None, "cost_usd": None}
    steps = float(frame["step"].max())
    times = frame["time"].dropna() if "time" in frame.columns else None
    train_s = float(times.max()) if times is not None and len(times) else None
    step_s = None
    if times is not None and len(times) >= 2:
        pairs = frame.dropna(subset=["time"]).sort_values("step")
        diffs = (pairs["time"].diff() / pairs["step"].diff()).dropna()
        step_s = float(diffs.median()) if len(diffs) else None
    cost = None
    price, nodes = _finite(derived.get("usd_per_instance_hour")), _finite(derived.get("instance_count"))
    if train_s is not None and price is not None and nodes is not None:
        cost = train_s / 3600 * nodes * price
        notes.append("cost of the logged training time only: the bill also counts startup and saving")
    if train_s is not None:
        notes.append("wall time is the training time the metrics log (since the first step), without startup")
    return {"steps": steps, "step_s": step_s, "wall_s": train_s, "cost_usd": cost}
