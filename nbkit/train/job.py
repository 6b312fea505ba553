"""Plans, job handles, the backend registry, the `training/job.json` record that every later stage reads,
and the launch that ties them together.

Why a separate plan step: each backend's `plan(spec)` is pure (it computes exactly what would be sent,
reviewable and testable offline) and `submit(plan, run_dir)` is the only call that spends money or CPU.
A `JobHandle` then gives status, logs and outputs the same way for every backend, and `job.json` lets a
later notebook (monitoring, evaluation) or a new kernel re-attach with `load_job(run_dir)`.

Backend modules (`nbkit.train.<backend>`, found with `get_backend(name)`) expose three functions (the
`Backend` protocol): `plan(spec) -> Plan`, `submit(plan, run_dir) -> JobHandle` and
`handle_from_dict(data, run_dir) -> JobHandle` (the inverse of `JobHandle.to_dict()`, used by `load_job`).
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field

from nbkit.errors import UserError, WaitTimeout
from nbkit.train.spec import BACKENDS, SURFACE_TITLES, JobSpec, from_dict

JobStatus = Literal["planned", "pending", "running", "completed", "failed", "stopped"]
STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
TERMINAL: frozenset[JobStatus] = frozenset({"planned", "completed", "failed", "stopped"})
FORMAT_VERSION = 1


class Plan(BaseModel):
    """What a backend would do for a spec; backends subclass it and add their typed fields.

    `request` holds the exact thing sent (API keyword arguments, resolved recipe, argv, or the local
    trainer's configuration), so a reviewer reads it before anything runs.
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    backend: str
    spec: JobSpec
    request: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)

    @property
    def surface(self) -> str:
        return self.spec.surface

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def describe(self) -> str:
        """Human-readable plan: the surface, the warnings, then the request as YAML."""
        head = f"{self.backend} plan for job {self.spec.name!r} ({SURFACE_TITLES.get(self.surface, self.surface)})"
        mode = "DRY RUN: nothing will be submitted" if self.spec.dry_run else "will be SUBMITTED"
        lines = [head, f"  {mode}"]
        lines += [f"  warning: {w}" for w in self.warnings]
        body = yaml.safe_dump(_jsonable(self.request), sort_keys=False, default_flow_style=False, width=100)
        lines.append("request:")
        lines += ["  " + line for line in body.rstrip().splitlines()]
        return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """Round-trip through JSON so YAML shows plain types (paths, tuples, numpy scalars)."""
    return json.loads(json.dumps(value, default=str))


class JobHandle(ABC):
    """A submitted (or planned) job, the same for every backend.

    Subclasses implement `status`, `stop`, `logs`, `outputs` and `to_dict`/`handle_from_dict`; `wait`
    polls `status` (and `progress`, when the backend can tell how far it is) until a terminal status.
    """

    backend: str = ""

    def __init__(self, job_id: str, run_dir: str | os.PathLike) -> None:
        self.job_id = job_id
        self.run_dir = Path(run_dir)

    @abstractmethod
    def status(self) -> JobStatus:
        """One of STATUSES."""

    @abstractmethod
    def stop(self) -> None:
        """Ask the job to stop; it keeps its checkpoints."""

    @abstractmethod
    def logs(self, tail: int | None = None) -> str:
        """The job's log text (the last `tail` lines when given)."""

    @abstractmethod
    def outputs(self, dest: str | os.PathLike | None = None) -> Path:
        """Folder holding manifest.json and step_wise_training_metrics.csv (fetched/extracted into dest)."""

    def progress(self) -> tuple[int, int] | None:
        """(steps done, total steps) when the backend knows them; None otherwise."""
        return None

    def to_dict(self) -> dict[str, Any]:
        """Enough to rebuild the handle with the backend's `handle_from_dict` (plain JSON types only)."""
        return {"backend": self.backend, "job_id": self.job_id}

    def progress_note(self) -> str:
        """A few words shown beside the progress bar while waiting (the latest reward, say)."""
        return ""

    def wait(self, timeout: float | None = None, poll_s: float = 2.0, progress: bool = True) -> JobStatus:
        """Block until the job ends or `timeout` seconds pass; returns the last status seen.

        Reports the steps done (a bar in notebooks, the runner's live line under `nbkit run`) when the
        backend knows them. A timeout is not an error here: the job keeps running and the caller decides
        (`await_job` turns it into WaitTimeout).
        """
        from nbkit.progress import Task

        deadline = None if timeout is None else time.monotonic() + timeout
        task = Task(f"training job {self.job_id}", unit="step", bar=progress)
        try:
            while True:
                state = self.status()
                done = self.progress()
                note = ", ".join(p for p in (state, self.progress_note()) if p)
                if done is not None:
                    task.set(done[0], total=done[1], note=note)
                else:
                    task.set(task.n, note=note)
                if state in TERMINAL:
                    return state
                if deadline is not None and time.monotonic() >= deadline:
                    return state
                sleep = poll_s if deadline is None else min(poll_s, max(0.0, deadline - time.monotonic()))
                time.sleep(sleep)
        finally:
            task.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} backend={self.backend!r} job_id={self.job_id!r}>"


class DryRunHandle(JobHandle):
    """The handle of a planned-only job: nothing runs, nothing costs; `status()` is always "planned"."""

    def __init__(self, backend: str, name: str, run_dir: str | os.PathLike, description: str = "") -> None:
        super().__init__(f"dry-run-{name}", run_dir)
        self.backend = backend
        self.name = name
        self.description = description

    def status(self) -> JobStatus:
        return "planned"

    def stop(self) -> None:
        """Nothing to stop."""

    def logs(self, tail: int | None = None) -> str:
        lines = self.description.splitlines()
        return "\n".join(lines[-tail:] if tail else lines)

    def outputs(self, dest: str | os.PathLike | None = None) -> Path:
        raise UserError(
            f"job {self.name!r} was a dry run ({self.backend}): it has no outputs. Set dry_run: false in "
            "the 04_launch_training section (or untick 'dry run' in the widget) and launch again"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "job_id": self.job_id, "dry_run": True, "name": self.name,
                "description": self.description}

    @classmethod
    def from_dict(cls, data: dict[str, Any], run_dir: str | os.PathLike) -> DryRunHandle:
        return cls(data["backend"], data.get("name", data["job_id"]), run_dir, data.get("description", ""))


# ------------------------------------------------------------------------------------------ backends

# Imported on first use: the local backend pulls torch/transformers/trl and the AWS backends
# boto3/sagemaker; importing `nbkit.train` (the widget, the CLI, notebook 04 with an AWS params file) must
# not pay for either.
BACKEND_MODULES = {name: f"nbkit.train.{name}" for name in BACKENDS} | {
    "sagemaker-serverless": "nbkit.train.serverless"}
BACKEND_EXTRAS = {"local": "local", "sagemaker": "aws", "hyperpod": "aws", "bedrock": "aws",
                  "sagemaker-serverless": "aws"}
_BACKEND_FUNCTIONS = ("plan", "submit", "handle_from_dict")


class Backend(Protocol):
    """What a backend module provides (see the module doc)."""

    def plan(self, spec: JobSpec) -> Plan: ...

    def submit(self, plan: Plan, run_dir: Path) -> JobHandle: ...

    def handle_from_dict(self, data: dict[str, Any], run_dir: Path) -> JobHandle: ...


def get_backend(name: str) -> Backend:
    """The backend module for `name`, with a message that says how to fix a missing dependency."""
    if name not in BACKEND_MODULES:
        raise UserError(f"unknown training backend {name!r}; backends are: {', '.join(BACKEND_MODULES)}")
    module_name = BACKEND_MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise UserError(f"training backend {name!r} is not part of this installation ({module_name} missing)") from None
        raise UserError(
            f"training backend {name!r} needs the Python package {exc.name!r}, which is not installed: "
            f"install the extra with `pip install -e '.[{BACKEND_EXTRAS[name]}]'`"
        ) from None
    missing = [fn for fn in _BACKEND_FUNCTIONS if not callable(getattr(module, fn, None))]
    if missing:
        raise UserError(f"training backend module {module_name} lacks {', '.join(missing)}")
    return module


def available_backends() -> dict[str, bool]:
    """Which backends import here (for the widget's dropdown); imports each one, so call it sparingly."""
    result = {}
    for name in BACKEND_MODULES:
        try:
            get_backend(name)
            result[name] = True
        except UserError:
            result[name] = False
    return result


# ------------------------------------------------------------------------------------------ job.json


def job_path(run_dir_or_job_json: str | os.PathLike) -> Path:
    """`<run>/training/job.json`, or the path itself when it names a file."""
    from nbkit.layout import RunLayout

    path = Path(run_dir_or_job_json)
    if path.suffix == ".json":
        return path
    return RunLayout(path).job_record


def save_job(run_dir: str | os.PathLike, handle: JobHandle, spec: JobSpec, plan: Plan,
             derived: dict[str, Any] | None = None) -> Path:
    """Write `<run>/training/job.json` atomically; an earlier record moves to training/jobs/, never lost."""
    from nbkit.layout import RunLayout

    layout = RunLayout(run_dir)
    layout.stage("training")
    path = layout.job_record
    record = {
        "format": FORMAT_VERSION,
        "backend": handle.backend,
        "job_id": handle.job_id,
        "dry_run": isinstance(handle, DryRunHandle),
        "surface": spec.surface,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "handle": layout.portable(handle.to_dict()),
        "spec": portable_spec(spec.to_dict(), layout.root),
        "plan": layout.portable(plan.to_dict()),
        "derived": derived or {},
    }
    if path.exists():
        _archive(path)
    write_json_atomic(path, record)
    return path


def _archive(path: Path) -> Path:
    """Keep the previous job record under training/jobs/<created>-<job_id>.json."""
    try:
        old = json.loads(path.read_text())
        stamp = str(old.get("created", "")).replace(":", "").replace("-", "") or "unknown"
        name = f"{stamp}-{old.get('job_id', 'job')}".replace("/", "_")
    except (OSError, ValueError):
        name = f"unreadable-{int(time.time())}"
    dest = path.parent / "jobs" / f"{name}.json"
    dest.parent.mkdir(exist_ok=True)
    n = 1
    while dest.exists():
        dest = dest.with_name(f"{name}-{n}.json")
        n += 1
    os.replace(path, dest)
    return dest


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    """Temp file in the same folder + os.replace: a reader never sees half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_job(run_dir_or_job_json: str | os.PathLike) -> dict[str, Any]:
    """The raw job.json record (spec, plan, derived, handle) with a clear error when it is missing."""
    path = job_path(run_dir_or_job_json)
    if not path.exists():
        raise UserError(
            f"no training job record at {path}: run notebook 04_launch_training (or `nbkit train --params "
            "...`) for this run folder first"
        )
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); re-launch the job to rewrite it") from None
    for key in ("backend", "handle"):
        if key not in record:
            raise UserError(f"{path} has no {key!r} key; it was not written by nbkit.train.save_job")
    return record


def load_job(run_dir_or_job_json: str | os.PathLike) -> JobHandle:
    """Re-attach to the job recorded in a run folder (or a job.json path), whatever its backend."""
    path = job_path(run_dir_or_job_json)
    record = read_job(path)
    run_dir = path.parent.parent
    data = record["handle"]
    if data.get("dry_run"):
        return DryRunHandle.from_dict(data, run_dir)
    return get_backend(record["backend"]).handle_from_dict(data, run_dir)


def load_spec(run_dir_or_job_json: str | os.PathLike) -> JobSpec:
    """The spec a recorded job was launched with (its paths usable from here, wherever the run folder is)."""
    path = job_path(run_dir_or_job_json)
    return from_dict(resolved_spec(read_job(path)["spec"], path.parent.parent), f"spec in {path}")


# Spec fields that hold local paths: a record stores them relative to the run folder when they lie in it.
SPEC_PATHS = ("train_data", "eval_data", "output", "model", "local.tracking_uri", "local.resume_from")


def _spec_path_items(spec: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(section, key) of every path field present in a spec dict."""
    items = []
    for dotted in SPEC_PATHS:
        section, _, key = dotted.rpartition(".")
        holder = spec.get(section) if section else spec
        if isinstance(holder, dict) and isinstance(holder.get(key), str):
            items.append((holder, key))
    return items


def _is_local_path(key: str, value: str) -> bool:
    """Whether a spec value names a file on this machine (not s3://, a model id, `tiny` or `last`)."""
    if not value or ("://" in value and not value.startswith("sqlite:///")) or value.startswith(("arn:", "s3:")):
        return False
    if key == "model":  # tiny, a Nova model id, bedrock:/replay: specs, or a local folder
        return Path(value).is_absolute() or Path(value).exists()
    return not (key == "resume_from" and value == "last")


def portable_spec(spec: dict[str, Any], run: str | os.PathLike) -> dict[str, Any]:
    """A spec dict as a run folder records it: local paths made absolute (a relative one means relative to
    the launching process's folder), then relative to the run folder when they lie in it."""
    from nbkit.layout import portable

    out = json.loads(json.dumps(spec, default=str))
    for holder, key in _spec_path_items(out):
        if _is_local_path(key, holder[key]):
            holder[key] = portable(absolute(holder[key]), run)
    return out


def absolute(value: str) -> str:
    """A local path or `sqlite:///` URI made absolute against the current folder (what it means here)."""
    if value.startswith("sqlite:///"):
        rest = value[len("sqlite:///"):]
        return value if rest.startswith("/") or not rest else "sqlite:///" + str(Path(rest).absolute())
    return value if "://" in value or Path(value).is_absolute() else str(Path(value).absolute())


def resolved_spec(spec: dict[str, Any], run: str | os.PathLike) -> dict[str, Any]:
    """The inverse of `portable_spec` for the run folder where the record is now."""
    from nbkit.layout import resolve

    out = json.loads(json.dumps(spec, default=str))
    for holder, key in _spec_path_items(out):
        value = holder[key]
        if key == "model":  # "tiny" or a model id stay; a folder of the run is a stored relative path
            if value and (Path(run) / value).exists():
                holder[key] = resolve(value, run)
        elif _is_local_path(key, value):
            holder[key] = resolve(value, run)
    return out


# ------------------------------------------------------------------------------------------- launch


def plan_job(spec: JobSpec, run_dir: str | os.PathLike) -> Plan:
    """Validate the spec (one error listing every problem) and ask its backend for the plan; sends nothing.

    The local backend's output defaults to `<run>/training`, so the plan names real paths.
    """
    from nbkit.layout import RunLayout

    if spec.backend == "local" and not spec.output:
        spec = spec.model_copy(update={"output": str(RunLayout(run_dir).stage("training"))})
    spec.require_valid()
    return get_backend(spec.backend).plan(spec)


LAUNCH_LOCK = ".launch.lock"
# Spec fields that do not change what a job computes: a relaunch that differs only in these continues it
# (`sources` says where values came from, not what they are).
_SAME_JOB_IGNORES = ("dry_run", "local.threads", "local.resume_from", "local.calibrate_steps", "hyper.max_steps",
                     "sources.")


def launch(spec: JobSpec, run_dir: str | os.PathLike, derived: dict[str, Any] | None = None,
           plan: Plan | None = None, restart: bool = False) -> JobHandle:
    """Validate, plan (unless `plan` is given), then start, re-attach to or resume the run's training job.

    One training job per run folder, so launching again never loses work. If the run already has a job
    with the same settings, a running one is re-attached, a completed one reused, and a failed or stopped
    one resumed from its last checkpoint (with `max_steps` raised if the new spec asks for more). Other
    settings, or `restart=True`, start a new job; the old one's files are kept. Launches into one run folder
    are serialised by a lock, so a second concurrent launch gets one line naming the holder.
    """
    from nbkit import locking, paths
    from nbkit.layout import RunLayout

    run = paths.run_dir(run_dir)
    plan = plan if plan is not None else plan_job(spec, run)
    spec = plan.spec
    if derived is None:
        derived = _derived_for(spec)
    if spec.dry_run:
        handle: JobHandle = DryRunHandle(spec.backend, spec.name, run, plan.describe())
        if not _real_job_recorded(run):  # a dry run never hides the record of a job that ran
            save_job(run, handle, spec, plan, derived)
        return handle
    with locking.exclusive(RunLayout(run).training / LAUNCH_LOCK, f"the training of run {run}", job=spec.name):
        previous, record_it = _continue_previous(run, plan, restart)
        handle = previous if previous is not None else get_backend(spec.backend).submit(plan, run)
        if record_it:
            save_job(run, handle, spec, plan, derived)
    return handle


def _real_job_recorded(run: Path) -> bool:
    try:
        return not read_job(run).get("dry_run", False)
    except UserError:
        return False


def _continue_previous(run: Path, plan: Plan, restart: bool) -> tuple[JobHandle | None, bool]:
    """(the run's earlier job re-attached, reused or resumed, or None for a new job; record the spec?)"""
    try:
        record = read_job(run)
        previous = None if record.get("dry_run") else load_job(run)
    except UserError:
        return None, True  # no record, or one this version cannot read: save_job archives it
    if previous is None:
        return None, True
    if record.get("backend") != plan.spec.backend:
        _refuse_if_running(previous, run)
        return None, True
    state = previous.status()
    # both sides as the run folder stores them, so a moved (or copied) run folder is the same job
    recorded = portable_spec(resolved_spec(record.get("spec", {}), run), run)
    changes = spec_changes(recorded, portable_spec(plan.spec.to_dict(), run))
    steps = _max_steps_change(record.get("spec", {}), plan.spec.to_dict())
    name = f"{previous.backend} job {previous.job_id}"
    if state in ("pending", "running"):
        if changes or restart:
            raise UserError(
                f"{name} is still {state} in {run}"
                + (f" with other settings ({'; '.join(changes)})" if changes else "")
                + ": stop it first (nbkit.train.load_job(run_dir).stop()) or launch into another run folder"
            )
        print(f"re-attaching to {name} ({state}{_at_step(previous)})", flush=True)
        return previous, False
    if restart:
        print(f"restart: starting a new job; {name} ({state}) keeps its files", flush=True)
        return None, True
    if changes:
        raise UserError(
            f"this run already has {name} ({state}) with other settings: {'; '.join(changes)}. "
            "To train a new job here set restart: true (04_launch_training) or pass --restart (the old "
            "job's files are kept), or launch into another run folder"
        )
    resume = getattr(previous, "resume", None)
    if state == "completed" and steps is None:
        print(f"{name} already completed{_at_step(previous)}; reusing it (restart: true trains again)", flush=True)
        return previous, False
    if resume is not None and getattr(previous, "can_resume", lambda: False)():
        print(f"resuming {name} ({state}{_at_step(previous)}) from its last checkpoint", flush=True)
        return resume(max_steps=steps), steps is not None
    if state == "completed":
        return previous, False
    if resume is not None:
        print(f"{name} {state} before its first checkpoint: starting a new job (its files are kept)", flush=True)
    return None, True


def _refuse_if_running(previous: JobHandle, run: Path) -> None:
    """A job of another backend that still runs is never silently replaced."""
    state = previous.status()
    if state in ("pending", "running"):
        raise UserError(
            f"{previous.backend} job {previous.job_id} of run {run} is still {state}: stop it "
            "(nbkit.train.load_job(run_dir).stop()) or launch into another run folder"
        )
    return None


def _at_step(handle: JobHandle) -> str:
    done = handle.progress()
    return f" at step {done[0]}/{done[1]}" if done else ""


def spec_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """'field: old -> new' for every setting that changes what a job computes."""
    flat_old, flat_new = _flatten(old), _flatten(new)
    return [f"{key}: {flat_old.get(key)!r} -> {flat_new.get(key)!r}"
            for key in sorted(set(flat_old) | set(flat_new))
            if not key.startswith(_SAME_JOB_IGNORES) and flat_old.get(key) != flat_new.get(key)]


def _max_steps_change(old: dict[str, Any], new: dict[str, Any]) -> int | None:
    """The new step budget when the new spec asks for more steps than the old; None otherwise."""
    before = (old.get("hyper") or {}).get("max_steps")
    after = (new.get("hyper") or {}).get("max_steps")
    return after if after is not None and (before is None or after > before) else None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "tags":
            out |= _flatten(value, f"{name}.")
        else:
            out[name] = value
    return out


def await_job(handle: JobHandle, timeout: float | None = None, poll_s: float = 2.0) -> JobStatus:
    """Wait for the job to end and return its status; `timeout` seconds (None or 0: no limit) raise
    WaitTimeout while it still runs, so nothing downstream mistakes half a job for a finished one."""
    state = handle.wait(timeout=timeout or None, poll_s=poll_s)
    if state not in TERMINAL:
        raise WaitTimeout(
            f"{handle.backend} job {handle.job_id} is still {state}{_at_step(handle)} after waiting "
            f"{timeout:.0f} s (timeout_s). It keeps running: continue the pipeline from 04 (it re-attaches "
            "and waits), or watch it with notebook 05 (follow: true)"
        )
    return state


def _derived_for(spec: JobSpec) -> dict[str, Any]:
    """Derived quantities for the record; the data size is counted when the training file is local."""
    from nbkit.train import derived

    n_train = derived.count_records(spec.train_data)
    if n_train is None:
        return {}
    return derived.compute(spec, n_train).to_dict()


# ------------------------------------------------------------------------------------------ outcome


def outcome(handle: JobHandle, state: str, derived: dict[str, Any] | None = None) -> str:
    """One sentence for the run index: what ran and how it ended; a failed job raises with its log tail.

    Why raise: a pipeline run must not report success (and feed monitoring and evaluation) when the
    training it depends on failed.
    """
    d = derived or {}
    if state == "failed":
        raise UserError(
            f"{handle.backend} training job {handle.job_id} failed. Last log lines:\n{handle.logs(tail=40)}"
        )
    if state == "planned":
        cost = d.get("cost_usd")
        money = f", estimated ${cost:,.2f}" if isinstance(cost, int | float) else ""
        steps = f"{d['total_steps']} steps, {d['total_rollouts']:,} rollouts" if d.get("total_steps") else "plan only"
        return f"{handle.backend} dry run ({steps}{money}): nothing was submitted; set dry_run: false to train"
    if state in ("pending", "running"):
        return (f"{handle.backend} job {handle.job_id} is {state}; re-attach with nbkit.train.load_job(run_dir) "
                "and watch it in notebook 05")
    curve = _reward_curve(handle) if state in ("completed", "stopped") else None
    text = f"{handle.backend} job {handle.job_id} {state}"
    if curve is not None:
        last_step, first, last = curve
        text += f" after {last_step} steps: mean training reward {first:.3f} -> {last:.3f} (first -> last logged step)"
    elif state in ("completed", "stopped"):
        text += " (no step metrics found in its outputs)"
    return text


def _reward_curve(handle: JobHandle) -> tuple[int, float, float] | None:
    """(last step, first and last train_reward_mean) from the job's Nova-layout metrics CSV, if it has one."""
    import pandas as pd

    try:
        folder = handle.outputs()
        frame = pd.read_csv(Path(folder) / "step_wise_training_metrics.csv")
    except (UserError, OSError, ValueError):
        return None
    if frame.empty or "train_reward_mean" not in frame or "step_number" not in frame:
        return None
    frame = frame.dropna(subset=["train_reward_mean"]).sort_values("step_number")
    if frame.empty:
        return None
    return int(frame["step_number"].iloc[-1]), float(frame["train_reward_mean"].iloc[0]), float(
        frame["train_reward_mean"].iloc[-1])
