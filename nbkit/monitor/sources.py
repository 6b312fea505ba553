"""`load_metrics(source)`: one entry point from any place a training run's metrics live to the frame.

A source is a run folder or its `training/job.json` (the backend recorded there decides where to read), an
MLflow run (`MlflowRun(uri, run_id)`, a `(uri, run_id)` pair, or `mlflow:<run_id>@<uri>`), an MLflow SQLite
file holding one run, Nova's CSV (or an `output.tar.gz` / folder holding it), or CloudWatch logs
(`CloudWatchLogs(group, prefix, fmt)`, a `(group, prefix, fmt)` triple, or `cloudwatch:<fmt>:<group>[:<prefix>]`).
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nbkit.errors import UserError
from nbkit.layout import RunLayout

CHECKPOINT_DIR = re.compile(r"checkpoint[-_](\d+)$")


@dataclass(frozen=True)
class MlflowRun:
    """One MLflow run: a tracking URI (sqlite:///..., http(s)://..., a SageMaker MLflow ARN) and a run id."""

    tracking_uri: str
    run_id: str

    def describe(self) -> str:
        return f"mlflow:{self.run_id}@{self.tracking_uri}"


@dataclass(frozen=True)
class NovaCsv:
    """Nova's step_wise_training_metrics.csv, an output.tar.gz holding it, or a folder holding either."""

    path: Path

    def describe(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class CloudWatchLogs:
    """A job's CloudWatch log group, stream-name prefix (the SMTJ job name) and line format."""

    log_group: str
    stream_prefix: str | None = None
    fmt: str = "auto"
    region: str | None = None

    def describe(self) -> str:
        return f"cloudwatch:{self.fmt}:{self.log_group}" + (f":{self.stream_prefix}" if self.stream_prefix else "")


Source = MlflowRun | NovaCsv | CloudWatchLogs


@dataclass
class JobContext:
    """What job.json says that monitoring uses: who ran it, how far it should go, where checkpoints are."""

    backend: str = ""
    job_id: str = ""
    status: str = ""
    run_dir: Path | None = None
    max_new_tokens: int | None = None
    total_steps: int | None = None
    eval_every: int | None = None
    cost_per_hour: float | None = None
    checkpoints: dict[int, str] = field(default_factory=dict)
    final_checkpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend, "job_id": self.job_id, "status": self.status,
            "run_dir": str(self.run_dir) if self.run_dir else None, "max_new_tokens": self.max_new_tokens,
            "total_steps": self.total_steps, "eval_every": self.eval_every, "cost_per_hour": self.cost_per_hour,
            "checkpoints": {str(k): v for k, v in self.checkpoints.items()},
            "final_checkpoint": self.final_checkpoint,
        }


def parse_source(text: str) -> Source | Path:
    """A source from its text form (notebook parameter or CLI argument)."""
    text = text.strip()
    if text.startswith("mlflow:"):
        body = text[len("mlflow:"):]
        run_id, _, uri = body.partition("@")
        uri = uri or os.environ.get("MLFLOW_TRACKING_URI", "")
        if not run_id or not uri:
            raise UserError(
                f"MLflow source {text!r} needs a run id and a tracking URI: mlflow:<run_id>@<tracking_uri> "
                "(or set MLFLOW_TRACKING_URI and write mlflow:<run_id>)"
            )
        return MlflowRun(uri, run_id)
    if text.startswith("cloudwatch:"):
        parts = text.split(":", 3)
        if len(parts) < 3 or parts[1] not in ("smtj", "smhp", "auto") or not parts[2]:
            raise UserError(
                f"CloudWatch source {text!r} must read cloudwatch:<smtj|smhp|auto>:<log group>[:<stream prefix>], "
                "e.g. cloudwatch:smtj:/aws/sagemaker/TrainingJobs:my-job"
            )
        return CloudWatchLogs(parts[2], parts[3] if len(parts) > 3 and parts[3] else None, parts[1])
    if not text:
        raise UserError("empty metrics source: give a run folder, job.json, MLflow run, CSV or CloudWatch source")
    return Path(text)


def load_metrics(source: Any, *, region: str | None = None, client: Any = None) -> pd.DataFrame:
    """The normalized metrics frame of a run, wherever its metrics live (see the module docstring).

    `region` and `client` (a boto3 logs client) apply to CloudWatch sources. `frame.attrs["source"]` says
    what was read.
    """
    resolved, _ = resolve(source)
    return read(resolved, region=region, client=client)


def read(source: Source, *, region: str | None = None, client: Any = None) -> pd.DataFrame:
    """Read a concrete source (no job.json resolution)."""
    if isinstance(source, MlflowRun):
        from nbkit.monitor.mlflow_reader import read_mlflow

        return read_mlflow(source.tracking_uri, source.run_id)
    if isinstance(source, NovaCsv):
        from nbkit.monitor.nova_csv import read_nova_csv

        return read_nova_csv(source.path)
    if isinstance(source, CloudWatchLogs):
        from nbkit.monitor.cloudwatch import read_cloudwatch

        return read_cloudwatch(source.log_group, source.stream_prefix, source.fmt,
                               region=region or source.region, client=client)
    raise UserError(f"not a metrics source: {source!r}")


def resolve(source: Any) -> tuple[Source, JobContext]:
    """The concrete source behind any accepted form, and what the job record says (empty without one)."""
    if isinstance(source, MlflowRun | NovaCsv | CloudWatchLogs):
        return source, JobContext()
    if isinstance(source, tuple):
        if len(source) == 2:
            return MlflowRun(str(source[0]), str(source[1])), JobContext()
        if len(source) == 3:
            return CloudWatchLogs(str(source[0]), source[1] or None, str(source[2])), JobContext()
        raise UserError(f"a tuple source is (tracking_uri, run_id) or (log_group, stream_prefix, format), got {source!r}")
    if isinstance(source, str):
        parsed = parse_source(source)
        if not isinstance(parsed, Path):
            return parsed, JobContext()
        source = parsed
    if isinstance(source, os.PathLike):
        return _resolve_path(Path(source))
    raise UserError(f"unsupported metrics source {source!r} ({type(source).__name__})")


def _resolve_path(path: Path) -> tuple[Source, JobContext]:
    if path.is_dir():
        record = RunLayout(path).job_record
        for job in (record, path / record.name):  # a run folder, or its training folder
            if job.is_file():
                return from_job(job)
        return NovaCsv(path), JobContext()
    if not path.exists():
        raise UserError(
            f"metrics source not found: {path}; give a run folder (runs/<name>), its training/job.json, an MLflow "
            "store, a step_wise_training_metrics.csv / output.tar.gz, or mlflow:/cloudwatch: source text"
        )
    if path.suffix == ".json":
        return from_job(path)
    if path.suffix == ".db":
        return MlflowRun(f"sqlite:///{path.resolve()}", only_run(path)), JobContext()
    return NovaCsv(path), JobContext()


def only_run(db: Path) -> str:
    """The run id of an MLflow SQLite store that holds exactly one run (else say which to choose)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT run_uuid, name FROM runs ORDER BY start_time DESC").fetchall()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{db} is not an MLflow SQLite store ({exc})") from None
    finally:
        con.close()
    if len(rows) == 1:
        return rows[0][0]
    if not rows:
        raise UserError(f"the MLflow store {db} holds no runs yet")
    listing = ", ".join(f"{rid} ({name})" for rid, name in rows[:5])
    raise UserError(f"the MLflow store {db} holds {len(rows)} runs; pick one with mlflow:<run_id>@sqlite:///{db} ({listing})")


def _get(record: dict[str, Any], key: str, *sections: str) -> Any:
    """A job.json value from the top level, the handle, or the named spec sections, first found wins."""
    handle = record.get("handle") or {}
    for place in (record, handle):
        if place.get(key) not in (None, ""):
            return place[key]
    spec = record.get("spec") or {}
    for name in sections:
        value = (spec.get(name) or {}).get(key)
        if value not in (None, ""):
            return value
    return None


def from_job(job_file: Path) -> tuple[Source, JobContext]:
    """Where a recorded job's metrics are, decided by its backend, plus the job context."""
    from nbkit.train.job import read_job

    record = read_job(job_file)
    run = job_file.parent.parent if job_file.parent.name == "training" else job_file.parent
    context = job_context(record, run)
    if record.get("dry_run") or (record.get("handle") or {}).get("dry_run"):
        raise UserError(
            f"{job_file} records a dry run ({context.backend}): nothing trained, so there are no metrics. Set "
            "dry_run: false in the 04_launch_training section (local runs are free) and launch again"
        )
    if context.backend == "local":
        return _local_source(job_file, record, run, context), context
    outputs = RunLayout(run).training / "output"
    if _has_outputs(outputs):
        return NovaCsv(outputs), context
    backend, region = context.backend, _get(record, "region", "aws")
    uri, run_id = _get(record, "mlflow_tracking_uri", "aws"), _get(record, "mlflow_run_id")
    if backend == "hyperpod" and uri and run_id:
        return MlflowRun(str(uri), str(run_id)), context
    if backend in ("sagemaker", "sagemaker-serverless"):  # a serverless customization job is a training job
        name = _get(record, "job_name") or _get(record, "training_job_name") or context.job_id.rsplit("/", 1)[-1]
        group = _get(record, "log_group") or "/aws/sagemaker/TrainingJobs"
        return CloudWatchLogs(str(group), str(name), "smtj", region), context
    if backend == "hyperpod" and _get(record, "log_group"):
        return CloudWatchLogs(str(_get(record, "log_group")), _get(record, "log_stream_prefix"), "smhp", region), context
    raise UserError(
        f"no metrics to read for the {backend} job {context.job_id} yet: "
        + ("Bedrock publishes step_wise_training_metrics.csv in the job's output S3 folder; fetch it with "
           "nbkit.train.load_job(run).outputs() into <run>/training/output and retry"
           if backend == "bedrock" else
           "pass source: cloudwatch:smhp:<cluster log group> or mlflow:<run_id>@<tracking server ARN>")
    )


def _has_outputs(folder: Path) -> bool:
    return folder.is_dir() and any(
        next(folder.rglob(name), None) is not None for name in ("step_wise_training_metrics.csv", "output.tar.gz")
    )


def _local_source(job_file: Path, record: dict[str, Any], run: Path, context: JobContext) -> Source:
    """The local job's MLflow run. job.json is written at submit, before the worker creates the MLflow run,
    so the live handle (the worker's status file) supplies the run id and the status."""
    from nbkit.train.job import load_job

    handle = load_job(job_file)
    context.status = handle.status()
    files = getattr(handle, "files", None)
    if files is not None:
        context.checkpoints = find_checkpoints(files.checkpoints)
        final = files.checkpoints / "final"
        context.final_checkpoint = str(final) if final.is_dir() else None
    uri = getattr(handle, "tracking_uri", None) or _get(record, "tracking_uri", "local")
    run_id = getattr(handle, "mlflow_run_id", None) or _get(record, "mlflow_run_id")
    if uri and run_id:
        return MlflowRun(str(uri), str(run_id))
    layout = RunLayout(run)
    outputs = Path(layout.resolve(_get(record, "output_dir") or "") or layout.training / "output")
    if _has_outputs(outputs):
        return NovaCsv(outputs)
    raise UserError(
        f"the local job {context.job_id} ({context.status}) has no MLflow run yet and no output CSV: it has not "
        f"logged a step. Wait for its first steps (follow: true), or see {job_file.parent / 'job' / 'worker.log'}"
    )


def job_context(record: dict[str, Any], run: Path) -> JobContext:
    """The parts of a job record the health rules and the stop recommendation use."""
    hyper = (record.get("spec") or {}).get("hyper") or {}
    derived = record.get("derived") or {}
    price, nodes = derived.get("usd_per_instance_hour"), derived.get("instance_count")
    return JobContext(
        backend=str(record.get("backend", "")),
        job_id=str(record.get("job_id", "")),
        status=str(_get(record, "status") or ""),
        run_dir=run,
        max_new_tokens=hyper.get("max_new_tokens"),
        total_steps=hyper.get("max_steps") or derived.get("total_steps"),
        eval_every=_get(record, "eval_every", "local"),
        cost_per_hour=float(price) * float(nodes) if price and nodes else None,
        checkpoints=find_checkpoints(RunLayout(run).training / "checkpoints"),
    )


def find_checkpoints(folder: Path) -> dict[int, str]:
    """step -> folder of every `checkpoint-<step>` under a checkpoints folder (the local backend's layout)."""
    if not folder.is_dir():
        return {}
    found = {}
    for child in folder.iterdir():
        match = CHECKPOINT_DIR.search(child.name)
        if child.is_dir() and match:
            found[int(match.group(1))] = str(child)
    return dict(sorted(found.items()))
