"""The local backend: TRL GRPO + LoRA on a local model, in a background process, with a Nova-shaped output.

Why a background process: training takes minutes, and a notebook must return at once, survive a kernel
restart (re-attach with `nbkit.train.load_job(run_dir)`), and be able to stop the run gracefully. The
worker (`python -m nbkit.train.local_worker JOBDIR`) owns the training; it and the handle talk only
through files in the job folder, so nothing depends on the process that launched it:

    <training>/job/config.json      what to run (the plan, resolved against the run folder)
    <training>/job/status.json      written by the worker: pending|running|completed|failed|stopped, step, error
    <training>/job/progress.jsonl   one line per logged step (the normalized metrics) and per validation
    <training>/job/worker.log       the worker's stdout and stderr
    <training>/job/stop             a stop request (the handle also sends SIGTERM)

and, for the later stages: `mlflow.db` + `mlartifacts/` (default tracking store), `checkpoints/`
(`checkpoint-N/` for resuming, `final/` = merged weights), `output/output.tar.gz` (Nova layout) and
`completions.parquet` (every rollout of every step).

This module stays import-light (no torch, no mlflow): `plan` is pure arithmetic on the spec.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import Field, ValidationError

from nbkit.errors import UserError
from nbkit.layout import COMPLETIONS, RunLayout
from nbkit.train.job import TERMINAL, JobHandle, JobStatus, Plan, write_json_atomic
from nbkit.train.spec import JobSpec, steps_for
from nbkit.validation import StrictModel, user_error

BACKEND = "local"
EVENT_VARIANT: Final = "sagemaker"  # the local trainer sends SageMaker-shaped events (reference_answer top level)
BUCKETS = {"high": 0.8, "low": 0.2}  # reward >= high: high; < low: low; medium otherwise (CONVENTIONS.md)
FINAL_CHECKPOINT = "final"
SAVE_TOTAL_LIMIT = 2  # resumable checkpoints kept on disk (the newest ones)


class LocalPaths:
    """Every file of a local job, from its training folder (`<run>/training` unless spec.output says else)."""

    def __init__(self, training_dir: str | os.PathLike) -> None:
        self.training = Path(training_dir)

    @property
    def job_dir(self) -> Path:
        return self.training / "job"

    @property
    def config(self) -> Path:
        return self.job_dir / "config.json"

    @property
    def status(self) -> Path:
        return self.job_dir / "status.json"

    @property
    def progress(self) -> Path:
        return self.job_dir / "progress.jsonl"

    @property
    def log(self) -> Path:
        return self.job_dir / "worker.log"

    @property
    def stop_request(self) -> Path:
        return self.job_dir / "stop"

    @property
    def checkpoints(self) -> Path:
        return self.training / "checkpoints"

    @property
    def final_checkpoint(self) -> Path:
        return self.checkpoints / FINAL_CHECKPOINT

    @property
    def output_dir(self) -> Path:
        return self.training / "output"

    @property
    def output_archive(self) -> Path:
        return self.output_dir / "output.tar.gz"

    @property
    def completions(self) -> Path:
        return self.training / COMPLETIONS

    @property
    def completion_parts(self) -> Path:
        return self.training / "completions_parts"

    @property
    def mlflow_db(self) -> Path:
        return self.training / "mlflow.db"

    @property
    def mlartifacts(self) -> Path:
        return self.training / "mlartifacts"

    def default_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db.resolve()}"

    def latest_checkpoint(self) -> Path | None:
        """The newest resumable `checkpoint-N` folder (the one with the highest N), if any."""
        found = []
        for path in self.checkpoints.glob("checkpoint-*"):
            suffix = path.name.split("-", 1)[1]
            if suffix.isdigit() and (path / "trainer_state.json").exists():
                found.append((int(suffix), path))
        return max(found)[1] if found else None


# ------------------------------------------------------------------------------------------------ plan


class StepPlan(StrictModel):
    max_steps: int | None = Field(description="the step budget; None until the training data is read (epochs)")
    prompts_per_step: int
    rollouts_per_step: int
    train_records: int | None


class ValidationPlan(StrictModel):
    every: int = Field(description="validation reward every N steps; 0 = none")
    prompts: int
    decoding: Literal["greedy"] = "greedy"
    max_new_tokens: int


class MlflowPlan(StrictModel):
    tracking_uri: str
    experiment: str
    log_every: int
    completions_every: int


class LocalRequest(StrictModel):
    """What the worker runs, derived from the spec by `local_request` alone: the plan shows it for review and
    the worker derives it again once the data is read, so no value has a second copy to keep in step."""

    model: str
    train_data: str
    eval_data: str
    reward: str
    event_variant: Literal["sagemaker", "bedrock"] = EVENT_VARIANT
    training_dir: str
    steps: StepPlan
    grpo_config: dict[str, Any] = Field(description="TRL GRPOConfig keyword arguments (output_dir added at run)")
    peft: dict[str, Any] | None = Field(description="peft LoraConfig keyword arguments; None = full rank")
    loraplus_lr_ratio: float | None
    max_prompt_length: int
    kl_measured: bool
    validation: ValidationPlan
    mlflow: MlflowPlan
    log_completions: bool
    reward_buckets: dict[str, float]
    threads: int
    device: str
    resume_from: str


class LocalJobConfig(StrictModel):
    """`<training>/job/config.json`: the job a worker runs. The spec is the one source of every setting.

    In memory every path is absolute; on disk the ones inside the run folder are relative to it, and the
    run folder itself is stored relative to the training folder the file lives in, so a moved run folder
    reads (and resumes) its own files.
    """

    job_id: str
    run_dir: str
    training_dir: str
    spec: JobSpec
    tracking_uri: str
    resume_from: str | None = None
    mlflow_run_id: str | None = None
    submitted: str

    @classmethod
    def read(cls, path: str | os.PathLike) -> LocalJobConfig:
        from nbkit.layout import read_json_object, resolve
        from nbkit.train.job import resolved_spec

        path = Path(path)
        data = read_json_object(path, "start local jobs with nbkit.train.local.submit", "submit the job again")
        training = path.absolute().parent.parent  # <training>/job/config.json
        run = Path(os.path.normpath(training / data.get("run_dir", "..")))
        data |= {"run_dir": str(run), "training_dir": str(training),
                 "tracking_uri": resolve(str(data.get("tracking_uri") or ""), run),
                 "resume_from": resolve(data["resume_from"], run) if data.get("resume_from") else None}
        if isinstance(data.get("spec"), dict):
            data["spec"] = resolved_spec(data["spec"], run)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise user_error(exc, f"{path} is not a local job configuration this version can run",
                             cls) from None

    def write(self, path: str | os.PathLike) -> None:
        from nbkit.layout import portable
        from nbkit.train.job import absolute, portable_spec

        run, training = Path(self.run_dir), Path(self.training_dir)
        data = self.model_dump(mode="json")
        inside = training.resolve().is_relative_to(run.resolve())
        data |= {"run_dir": os.path.relpath(run, training) if inside else str(run),
                 "training_dir": portable(str(training), run), "spec": portable_spec(data["spec"], run),
                 "tracking_uri": portable(absolute(self.tracking_uri), run),
                 "resume_from": portable(absolute(self.resume_from), run) if self.resume_from else None}
        write_json_atomic(path, data)

    def request(self, n_train: int | None = None) -> LocalRequest:
        return local_request(self.spec, Path(self.training_dir), n_train, self.tracking_uri)


def plan(spec: JobSpec) -> Plan:
    """The exact trainer configuration this spec gives, for review before anything runs (no side effects)."""
    if spec.backend != BACKEND:
        raise UserError(f"the local backend cannot plan a {spec.backend!r} job; set backend: local")
    h, loc = spec.hyper, spec.local
    warnings: list[str] = []
    if h.loraplus_lr_ratio == 0 and not h.full_rank:
        raise UserError(
            "hyper.loraplus_lr_ratio = 0 freezes LoRA's B matrices, which start at zero, so nothing would "
            "learn; use 1.0 for plain LoRA or a ratio > 1 for LoRA+"
        )
    request = local_request(spec, Path(spec.output) if spec.output else None, _count_records(spec.train_data))
    if request.steps.max_steps is None:
        warnings.append("max_steps will be derived from epochs once the training data is read")
    if not spec.eval_data:
        warnings.append("no eval_data: the validation reward (val_reward) will not be logged")
    elif loc.eval_every == 0 or loc.eval_prompts == 0:
        warnings.append("local.eval_every or local.eval_prompts is 0: no validation reward during training")
    if h.kl_coef == 0 and h.full_rank:
        warnings.append("kl_coef 0 with full-rank training: no reference model is kept, so kl is not logged")
    if h.reasoning_effort is not None:
        warnings.append("reasoning_effort is a Nova setting; the local trainer ignores it")
    return Plan(backend=BACKEND, spec=spec, request=request.model_dump(mode="json"), warnings=warnings)


def local_request(spec: JobSpec, training: Path | None, n_train: int | None,
                  tracking_uri: str = "") -> LocalRequest:
    """The worker's configuration for `spec`; with the training set's size the step budget is resolved."""
    h, loc = spec.hyper, spec.local
    max_steps = h.max_steps if h.max_steps is not None else (steps_for(h, n_train) if n_train else None)
    tracking_uri = tracking_uri or loc.tracking_uri or (LocalPaths(training).default_tracking_uri() if training else "")
    return LocalRequest(
        model=spec.model, train_data=spec.train_data, eval_data=spec.eval_data, reward=spec.reward,
        training_dir=str(training) if training else "<run>/training",
        steps=StepPlan(max_steps=max_steps, prompts_per_step=h.prompts_per_step,
                       rollouts_per_step=h.prompts_per_step * h.number_generation, train_records=n_train),
        grpo_config=grpo_config_kwargs(spec, max_steps),
        peft=None if h.full_rank else lora_config_kwargs(spec),
        loraplus_lr_ratio=None if h.full_rank or h.loraplus_lr_ratio == 1.0 else h.loraplus_lr_ratio,
        max_prompt_length=max(1, min(loc.max_prompt_length, h.max_length - h.max_new_tokens)),
        kl_measured=h.kl_coef > 0 or not h.full_rank,
        validation=ValidationPlan(every=loc.eval_every if spec.eval_data else 0, prompts=loc.eval_prompts,
                                  max_new_tokens=h.max_new_tokens),
        mlflow=MlflowPlan(tracking_uri=tracking_uri or "sqlite:///<run>/training/mlflow.db",
                          experiment=loc.experiment, log_every=loc.log_every,
                          completions_every=loc.completions_every),
        log_completions=loc.log_completions, reward_buckets=dict(BUCKETS), threads=loc.threads,
        device=loc.device, resume_from=loc.resume_from,
    )


def job_summary(spec: JobSpec, request: LocalRequest) -> str:
    """One line saying what the job trains: method, model, steps x rollouts, learning rate, reward."""
    h, steps = spec.hyper, request.steps
    method = "full-rank GRPO" if h.full_rank else f"GRPO with LoRA rank {h.lora_rank}"
    budget = f"{steps.max_steps} steps" if steps.max_steps else f"{h.epochs} epoch(s)"
    return (f"{spec.name}: {method} on {spec.model}, {budget} x {steps.rollouts_per_step} rollouts "
            f"({steps.prompts_per_step} prompts x {h.number_generation} generations), learning rate "
            f"{h.learning_rate:g}, reward {spec.reward}")


def portable_mlflow_store(db: str | os.PathLike, run_root: str | os.PathLike) -> int:
    """Store the artifact locations of an MLflow SQLite store relative to the run folder; returns how many
    locations changed.

    Why: MLflow records absolute `file://` locations, so a copied run folder would show the original's
    artifacts (or none). A relative location is resolved by MLflow from the current folder: the run folder
    for the worker and for `nbkit mlflow` (the UI). The tables are MLflow's, pinned by the pinned version
    (nbkit.monitor.mlflow_reader reads the same store with SQL).
    """
    import sqlite3

    from nbkit.layout import portable

    changed = 0
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        for table, key, column in (("experiments", "experiment_id", "artifact_location"),
                                   ("runs", "run_uuid", "artifact_uri")):
            for row_id, location in con.execute(f"SELECT {key}, {column} FROM {table}").fetchall():
                relative = portable(location, run_root) if location else location
                if relative != location:
                    con.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (relative, row_id))
                    changed += 1
    return changed


def grpo_config_kwargs(spec: JobSpec, max_steps: int | None) -> dict[str, Any]:
    """Keyword arguments of TRL's GRPOConfig (output_dir is added at run); every CPU-relevant default is
    set explicitly because TRL's own (bf16, gradient checkpointing, lr 1e-6) are wrong on a CPU. The warm-up
    and the save cadence follow from the step budget: they are computed here and nowhere else."""
    h, loc = spec.hyper, spec.local
    rollouts = h.prompts_per_step * h.number_generation
    kwargs: dict[str, Any] = {
        "per_device_train_batch_size": rollouts,
        "gradient_accumulation_steps": 1,
        "num_generations": h.number_generation,
        "max_completion_length": h.max_new_tokens,
        "temperature": h.temperature,
        "top_k": h.top_k,
        "learning_rate": h.learning_rate,
        "lr_scheduler_type": loc.lr_scheduler,
        "warmup_steps": math.ceil(loc.warmup_ratio * max_steps) if max_steps else 0,
        "weight_decay": h.weight_decay,
        "beta": h.kl_coef,
        "entropy_coef": h.entropy_coef,
        "max_steps": max_steps if max_steps is not None else -1,
        "num_train_epochs": h.epochs,
        "seed": h.seed,
        "data_seed": h.seed,
        "logging_steps": loc.log_every,
        "save_strategy": "steps",
        "save_steps": min(h.save_steps, max_steps or h.save_steps) if h.save_steps > 0 else (max_steps or 10**9),
        "save_total_limit": SAVE_TOTAL_LIMIT,
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": False,
        "use_cpu": loc.device == "cpu",
        "report_to": "none",
        "disable_tqdm": True,
        "remove_unused_columns": False,
        "shuffle_dataset": True,
        "log_completions": False,
        "dataloader_num_workers": 0,
    }
    return kwargs


def lora_config_kwargs(spec: JobSpec) -> dict[str, Any]:
    """peft LoraConfig arguments: every linear layer, no dropout (dropout would make rollouts and loss differ)."""
    return {
        "r": spec.hyper.lora_rank,
        "lora_alpha": spec.hyper.lora_alpha,
        "lora_dropout": 0.0,
        "target_modules": "all-linear",
        "task_type": "CAUSAL_LM",
    }


def _count_records(path: str) -> int | None:
    from nbkit.train.derived import count_records

    return count_records(path) if path else None


# ---------------------------------------------------------------------------------------------- submit


def submit(plan: Plan, run_dir: str | os.PathLike) -> LocalJobHandle:
    """Start the worker process and return at once; `spec.local.resume_from` continues an earlier job."""
    handle, previous = _prepare(plan, run_dir)
    handle._start_worker(previous)
    return handle


def prepare(plan: Plan, run_dir: str | os.PathLike) -> LocalJobHandle:
    """Write the job folder without starting anything: run it in the foreground with
    `python -m nbkit.train.local_worker <training>/job` (debugging, tests, schedulers)."""
    handle, previous = _prepare(plan, run_dir)
    handle._write_pending(previous)
    return handle


def _prepare(plan: Plan, run_dir: str | os.PathLike) -> tuple[LocalJobHandle, dict[str, Any]]:
    from nbkit import paths

    spec = plan.spec
    run = paths.run_dir(run_dir)
    files = LocalPaths(Path(spec.output) if spec.output else RunLayout(run).training)
    files.training.mkdir(parents=True, exist_ok=True)
    resume = spec.local.resume_from.strip()
    previous = _read_json(files.status) if files.status.exists() else {}
    if previous.get("status") in ("pending", "running") and _alive(previous):
        raise UserError(
            f"local job {previous.get('job_id')} is still {previous['status']} in {files.training}: wait for it "
            "or stop it (nbkit.train.load_job(run_dir).stop()) before submitting another"
        )
    if resume:
        checkpoint = _resume_checkpoint(files, resume)
        # A checkpoint of this training folder continues its job (same id, same MLflow run); one from
        # elsewhere starts a new job here from those weights, optimizer state and step count.
        same_job = files.config.exists() and checkpoint.resolve().parent == files.checkpoints.resolve()
        job_id = previous["job_id"] if same_job and previous.get("job_id") else _new_job_id(spec.name)
        mlflow_run_id = previous.get("mlflow_run_id") if same_job else None
        if not same_job:
            _keep_previous(files, previous)
    else:
        checkpoint, mlflow_run_id, same_job = None, None, False
        job_id = _new_job_id(spec.name)
        _keep_previous(files, previous)
    config = LocalJobConfig(
        job_id=job_id, run_dir=str(run.resolve()), training_dir=str(files.training.resolve()), spec=spec,
        tracking_uri=spec.local.tracking_uri or files.default_tracking_uri(),
        resume_from=str(checkpoint) if checkpoint else None, mlflow_run_id=mlflow_run_id, submitted=_now(),
    )
    files.job_dir.mkdir(parents=True, exist_ok=True)
    config.write(files.config)
    files.stop_request.unlink(missing_ok=True)
    return LocalJobHandle(job_id, run, files.training), (previous if same_job else {})


def _resume_checkpoint(files: LocalPaths, resume: str) -> Path:
    """The checkpoint folder `resume_from` names: 'last' = this run's newest, or an explicit path."""
    if resume == "last":
        found = files.latest_checkpoint()
        if found is None:
            raise UserError(
                f"local.resume_from = 'last' but {files.checkpoints} holds no checkpoint-N folder: the job never "
                "reached a save point (save_steps) nor was stopped gracefully; start fresh (resume_from: '')"
            )
        return found
    path = Path(resume)
    if not (path / "trainer_state.json").exists():
        raise UserError(
            f"local.resume_from = {resume!r} is not a trainer checkpoint (no trainer_state.json); give a "
            f"checkpoint-N folder such as {files.checkpoints / 'checkpoint-50'}, or 'last'"
        )
    return path


def _keep_previous(files: LocalPaths, previous: dict[str, Any]) -> Path | None:
    """A new job moves the earlier job's files to training/previous/<job id>/: nothing is ever deleted
    (its MLflow run stays in the database)."""
    import shutil

    movable = [p for p in (files.job_dir, files.checkpoints, files.completion_parts, files.output_dir,
                           files.completions) if p.exists()]
    if not movable:
        return None
    name = str(previous.get("job_id") or f"job-{int(time.time())}").replace("/", "_")
    dest = files.training / "previous" / name
    n = 1
    while dest.exists():
        dest = dest.with_name(f"{name}-{n}")
        n += 1
    dest.mkdir(parents=True)
    for path in movable:
        shutil.move(str(path), str(dest / path.name))
    return dest


def _new_job_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"local-{name}-{stamp}-{os.urandom(2).hex()}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def handle_from_dict(data: dict[str, Any], run_dir: str | os.PathLike) -> LocalJobHandle:
    """Rebuild a handle from `to_dict()` (job.json): paths are re-anchored on the run folder if it moved."""
    run = Path(run_dir)
    default = RunLayout(run).training
    training = Path(data.get("training_dir") or default)
    if not training.is_absolute():
        training = run / training
    if not training.exists() and default.exists():
        training = default
    return LocalJobHandle(data["job_id"], run, training)


# ---------------------------------------------------------------------------------------------- handle


class LocalJobHandle(JobHandle):
    """A local GRPO job: status, progress, logs, stop, resume and outputs, all through the job folder."""

    backend = BACKEND

    def __init__(self, job_id: str, run_dir: str | os.PathLike, training_dir: str | os.PathLike) -> None:
        super().__init__(job_id, run_dir)
        self.files = LocalPaths(training_dir)

    # -- state -----------------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """The worker's status record (status, step, max_steps, error, mlflow_run_id, pid, times)."""
        return _read_json(self.files.status) if self.files.status.exists() else {}

    def status(self) -> JobStatus:
        """pending|running|completed|failed|stopped; a worker that died without a word is recorded as failed
        (stopped, if a stop was asked for) the first time anyone looks."""
        if getattr(self, "_proc", None) is not None:
            self._proc.poll()  # reap our own child so it does not linger as a zombie
        info = self.info()
        state = info.get("status")
        if state is None:
            return "failed" if self.files.config.exists() else "pending"
        if state in ("pending", "running") and not _alive(info):
            if info.get("pid") is None and time.time() - info.get("updated_ts", 0) < 30:
                return state  # the launcher has not recorded the pid yet
            return self._record_death(info)
        return state

    def _record_death(self, info: dict[str, Any]) -> JobStatus:
        """Say in status.json and in the MLflow run that the worker is gone, with the reason.

        A stop that arrived before the worker installed its signal handler ends it at once: stopped.
        """
        state: JobStatus = "stopped" if self.files.stop_request.exists() else "failed"
        reason = (f"the worker process (pid {info.get('pid')}) ended without reporting a result at step "
                  f"{info.get('step') or 0} (killed, or out of memory?); see {self.files.log}")
        write_json_atomic(self.files.status, info | {
            "status": state, "error": None if state == "stopped" else reason, "phase": "died",
            "ended": _now(), "updated": _now(), "updated_ts": time.time()})
        _end_mlflow_run(self.tracking_uri, info.get("mlflow_run_id") or self.mlflow_run_id,
                        "KILLED" if state == "stopped" else "FAILED", reason)
        return state

    def can_resume(self) -> bool:
        """Is there a checkpoint to continue from?"""
        return self.files.latest_checkpoint() is not None

    def progress_note(self) -> str:
        reward = self.info().get("reward_mean")
        return f"reward {reward:.3f}" if isinstance(reward, int | float) else ""

    def error(self) -> str:
        """Why the job failed ('' otherwise); names the log when the worker died without reporting."""
        info = self.info()
        if info.get("error"):
            return str(info["error"])
        if self.status() == "failed":
            return (
                f"the worker process (pid {info.get('pid')}) ended without reporting a result (killed, or out "
                f"of memory?); see {self.files.log}"
            )
        return ""

    def progress(self) -> tuple[int, int] | None:
        info = self.info()
        total = info.get("max_steps")
        return (int(info.get("step") or 0), int(total)) if total else None

    @property
    def mlflow_run_id(self) -> str | None:
        """Known once the worker has created (or reopened) the MLflow run."""
        if self.info().get("mlflow_run_id"):
            return self.info()["mlflow_run_id"]
        return self._config().mlflow_run_id if self.files.config.exists() else None

    @property
    def tracking_uri(self) -> str:
        return self._config().tracking_uri if self.files.config.exists() else self.files.default_tracking_uri()

    @property
    def experiment(self) -> str | None:
        return self._config().spec.local.experiment if self.files.config.exists() else None

    def _config(self) -> LocalJobConfig:
        return LocalJobConfig.read(self.files.config)

    @property
    def checkpoint(self) -> Path:
        """Merged weights of the tuned model (exists once the job completed or was stopped)."""
        return self.files.final_checkpoint

    def to_dict(self) -> dict[str, Any]:
        """Where everything is; no status (job.json is written once, the status lives in job/status.json)."""
        return {
            "backend": BACKEND,
            "job_id": self.job_id,
            "training_dir": _relative(self.files.training, self.run_dir),
            "tracking_uri": self.tracking_uri,
            "mlflow_run_id": self.mlflow_run_id,
            "mlflow_experiment": self.experiment,
            "output_dir": str(self.files.output_dir),
            "checkpoint": str(self.files.final_checkpoint),
        }

    # -- control ---------------------------------------------------------------------------------------

    def stop(self, wait: bool = True, timeout: float = 300.0) -> None:
        """Ask the worker to stop after the current step; it saves a checkpoint and writes the outputs."""
        if self.status() in TERMINAL:
            return
        self.files.job_dir.mkdir(parents=True, exist_ok=True)
        self.files.stop_request.write_text(_now() + "\n")
        pid = self.info().get("pid")
        if pid and _alive(self.info()):
            with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
                os.kill(int(pid), signal.SIGTERM)
        if wait:
            deadline = time.monotonic() + timeout
            while self.status() not in TERMINAL and time.monotonic() < deadline:
                time.sleep(0.5)

    def resume(self, max_steps: int | None = None) -> LocalJobHandle:
        """Continue this job from its newest checkpoint in a new worker (same job id and MLflow run).

        `max_steps` raises the step budget (train longer than first planned).
        """
        state = self.status()
        if state in ("pending", "running"):
            raise UserError(f"job {self.job_id} is still {state}: stop it before resuming")
        checkpoint = self.files.latest_checkpoint()
        if checkpoint is None:
            raise UserError(
                f"job {self.job_id} has no checkpoint to resume from in {self.files.checkpoints}; submit it again"
            )
        config = self._config()
        if max_steps is not None:
            if max_steps < 1:
                raise UserError(f"max_steps = {max_steps}: must be at least 1")
            hyper = config.spec.hyper.model_copy(update={"max_steps": max_steps})
            config.spec = config.spec.model_copy(update={"hyper": hyper})
        done = int(self.info().get("step") or 0)
        target = config.spec.hyper.max_steps or 0
        if state == "completed" and 0 < target <= done:
            raise UserError(
                f"job {self.job_id} already completed its {target} steps; pass max_steps > {done} to train longer"
            )
        config.resume_from = str(checkpoint)
        config.mlflow_run_id = self.mlflow_run_id
        config.write(self.files.config)
        self.files.stop_request.unlink(missing_ok=True)
        self._start_worker(self.info())
        return self

    def _write_pending(self, previous: dict[str, Any]) -> None:
        """status.json before the worker exists: pending, with the step reached by an earlier attempt."""
        config = self._config()
        write_json_atomic(self.files.status, {
            "status": "pending", "job_id": self.job_id, "pid": None, "step": previous.get("step", 0),
            "max_steps": config.spec.hyper.max_steps,
            "mlflow_run_id": previous.get("mlflow_run_id") or config.mlflow_run_id,
            "error": None, "submitted": config.submitted, "updated": _now(), "updated_ts": time.time(),
            "attempt": int(previous.get("attempt", 0)) + 1,
        })

    def _start_worker(self, previous: dict[str, Any]) -> None:
        """Spawn `python -m nbkit.train.local_worker JOBDIR` detached from the kernel (own session)."""
        self._write_pending(previous)
        threads = str(self._config().spec.local.threads)
        env = dict(os.environ)
        env.update({
            "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
            "PYTHONUNBUFFERED": "1", "MLFLOW_ALLOW_FILE_STORE": env.get("MLFLOW_ALLOW_FILE_STORE", "false"),
        })
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        attempt = self.info().get("attempt")
        with open(self.files.log, "ab") as log:
            log.write(f"\n==== {_now()} worker start (attempt {attempt}) ====\n".encode())
            log.flush()
            proc = subprocess.Popen(
                [sys.executable, "-m", "nbkit.train.local_worker", str(self.files.job_dir)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=os.getcwd(), start_new_session=True,  # relative paths in the spec mean what they meant here
            )
        self._proc = proc  # keeps the child reapable while this handle lives (no zombie in tests)
        info = self.info()
        if info.get("status") == "pending" and info.get("pid") is None:
            info.update(pid=proc.pid, pid_create_time=_create_time(proc.pid), updated=_now(), updated_ts=time.time())
            write_json_atomic(self.files.status, info)

    # -- results ---------------------------------------------------------------------------------------

    def logs(self, tail: int | None = None) -> str:
        if not self.files.log.exists():
            return ""
        lines = self.files.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-tail:] if tail else lines)

    def metrics(self) -> Any:
        """The logged per-step metrics as a DataFrame (one row per step, the last value when a step repeats)."""
        import pandas as pd

        rows = read_progress(self.files.progress)
        steps = [r for r in rows if r.get("kind") == "train"]
        frame = pd.DataFrame(steps)
        if frame.empty:
            return frame
        frame = frame.drop(columns=["kind"]).drop_duplicates("step", keep="last").sort_values("step")
        evals = pd.DataFrame([r for r in rows if r.get("kind") == "eval"])
        if not evals.empty:
            evals = evals.drop(columns=["kind"]).drop_duplicates("step", keep="last")
            frame = frame.drop(columns=[c for c in evals.columns if c != "step" and c in frame], errors="ignore")
            frame = frame.merge(evals, on="step", how="outer").sort_values("step")
        return frame.reset_index(drop=True)

    def completions(self) -> Any:
        """Every recorded rollout (step, prompt_id, prompt, completion, reward, status, components, ...)."""
        return read_completions(self.files.training)

    def outputs(self, dest: str | os.PathLike | None = None) -> Path:
        """Folder holding manifest.json and step_wise_training_metrics.csv (extracted from output.tar.gz)."""
        from nbkit.train.nova_layout import extract_output

        if not self.files.output_archive.exists():
            state = self.status()
            raise UserError(
                f"job {self.job_id} is {state} and has not written {self.files.output_archive} yet"
                + (f": {self.error()}" if state == "failed" else "; wait for it (handle.wait()) or stop it")
            )
        return extract_output(self.files.output_archive, dest or self.files.output_dir)


# --------------------------------------------------------------------------------------- statistics


def reward_stats(
    rewards: list[float], statuses: list[str], groups: list[str], buckets: dict[str, float] = BUCKETS
) -> dict[str, float]:
    """The normalized reward metrics of one step's rollouts (errors already scored 0 in `rewards`).

    zero_var_group_share counts prompt groups whose rollouts all scored the same: GRPO learns nothing there.
    """
    import numpy as np

    values = np.asarray(rewards, dtype=float)
    n = len(values)
    if n == 0:
        return {}
    ok = sum(s == "ok" for s in statuses)
    by_group: dict[str, list[float]] = {}
    for group, value in zip(groups, values.tolist(), strict=True):
        by_group.setdefault(group, []).append(value)
    flat = sum(1 for v in by_group.values() if max(v) - min(v) <= 1e-12)
    p10, p50, p90 = np.quantile(values, [0.1, 0.5, 0.9]).tolist()
    high, low = buckets["high"], buckets["low"]
    return {
        "reward_mean": float(values.mean()),
        "reward_std": float(values.std(ddof=1)) if n > 1 else 0.0,
        "reward_p10": p10,
        "reward_p50": p50,
        "reward_p90": p90,
        "share_high": float((values >= high).mean()),
        "share_low": float((values < low).mean()),
        "share_medium": float(((values >= low) & (values < high)).mean()),
        "reward_error_rate": 1.0 - ok / n,
        "rollout_completion_rate": ok / n,
        "zero_var_group_share": flat / len(by_group),
    }



# ------------------------------------------------------------------------------------------ readers


def read_progress(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Lines of progress.jsonl; a half-written last line (the worker is mid-write) is skipped, not fatal."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def read_completions(training_dir: str | os.PathLike) -> Any:
    """The training completions table: the consolidated file, or the per-step parts of a running job."""
    import pandas as pd

    files = LocalPaths(training_dir)
    parts = sorted(files.completion_parts.glob("step_*.parquet"))
    if files.completions.exists() and (not parts or files.completions.stat().st_mtime >= parts[-1].stat().st_mtime):
        return pd.read_parquet(files.completions)
    if not parts:
        return pd.DataFrame(columns=["step", "prompt_id", "prompt", "completion", "reward", "status", "components"])
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


def load_tuned_model_path(manifest_or_run_dir: str | os.PathLike) -> Path:
    """The tuned model's folder from a manifest.json, an output.tar.gz, an output folder or a run folder."""
    from nbkit.train.nova_layout import read_output

    path = Path(manifest_or_run_dir)
    candidates = [path]
    if path.is_dir() and LocalPaths(RunLayout(path).training).output_dir.exists():
        candidates = [LocalPaths(RunLayout(path).training).output_dir]
    elif path.is_dir() and (path / "output").exists() and not (path / "manifest.json").exists():
        candidates = [path / "output"]
    if path.name == "manifest.json":
        manifest = _read_json(path)
        checkpoint = str(manifest.get("checkpoint_s3_bucket", ""))
    else:
        checkpoint = read_output(candidates[0]).checkpoint
    if not checkpoint:
        raise UserError(f"the manifest in {path} has no checkpoint_s3_bucket: the job wrote no checkpoint")
    if checkpoint.startswith("s3://"):
        raise UserError(
            f"the checkpoint {checkpoint} is on S3 (a Nova job): evaluate it with a Bedrock/SageMaker generator, "
            "it cannot be loaded as a local model"
        )
    folder = Path(checkpoint)
    if not folder.is_absolute():  # relative to the run folder the manifest was written in
        runs = [p for p in (path.absolute(), *path.absolute().parents) if (p / folder / "config.json").exists()]
        if not runs:
            raise UserError(f"the manifest in {path} names {checkpoint} relative to its run folder, and no folder "
                            f"above {path} holds it: pass the run folder (or its training/output folder)")
        folder = runs[0] / folder
    if not (folder / "config.json").exists():
        raise UserError(f"the manifest points at {folder}, which is not a model folder (no config.json)")
    return folder


# ------------------------------------------------------------------------------------------ helpers


def _read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from disk; a missing or half-written file reads as {} (writers replace atomically)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def _create_time(pid: int) -> float | None:
    from nbkit.locking import start_time

    return start_time(pid)


def _alive(info: dict[str, Any]) -> bool:
    """Is the worker of this status record running? Guards against pid reuse with the process start time."""
    from nbkit.locking import alive

    return alive(info.get("pid"), info.get("pid_create_time"))


def _end_mlflow_run(tracking_uri: str, run_id: str | None, status: str, reason: str) -> None:
    """Close a dead worker's MLflow run (it would stay RUNNING forever) and tag why."""
    if not run_id:
        return
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri)
        client.set_tag(run_id, "nbkit.end_reason", reason[:5000])
        client.set_terminated(run_id, status=status)
    except Exception as exc:  # the job's own record says it died; the MLflow mark is the second copy
        warnings.warn(f"could not mark MLflow run {run_id} as {status}: {type(exc).__name__}: {exc}", stacklevel=2)
