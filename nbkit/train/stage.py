"""Notebook 04's stage: parameters -> job spec -> derived quantities -> plan -> launch -> how it ended.

One chain for the notebook, `nbkit train` and the editor's Launch button, so they agree on everything: what
is shown before anything runs, that launching again re-attaches or resumes (see `job.launch`), that a wait
which runs out raises WaitTimeout, and that only `failed` is a failure (a stopped job ended on request and
has its checkpoint and outputs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbkit.train import job
from nbkit.train.spec import JobSpec, from_params

if TYPE_CHECKING:
    from nbkit.params import LaunchTrainingParams
    from nbkit.train.derived import Derived
    from nbkit.train.job import JobHandle, JobStatus, Plan


@dataclass
class Launch:
    """A checked spec and its plan, ready to start: nothing has run and nothing has been sent yet."""

    spec: JobSpec
    plan: Plan
    derived: Derived | None
    run_dir: str | os.PathLike
    restart: bool = False
    warnings: list[str] = field(default_factory=list)

    def derived_table(self) -> str:
        if self.derived is None:
            return f"derived quantities: none shown, {size_unknown(self.spec.train_data)}"
        return self.derived.table()

    def describe(self) -> str:
        """What will run and what it costs, in a few sentences (Markdown) a report reader follows."""
        from nbkit.layout import RunLayout
        from nbkit.train.spec import SURFACE_TITLES

        spec, d, layout = self.spec, self.derived, RunLayout(self.run_dir)
        h = spec.hyper
        method = "full-rank GRPO" if h.full_rank else f"GRPO with LoRA (rank {h.lora_rank}, alpha {h.lora_alpha})"
        data = f"`{layout.relative(spec.train_data)}`" + (f" ({d.n_train:,} prompts)" if d else "")
        parts = [f"**What will run.** {SURFACE_TITLES.get(spec.surface, spec.surface)}: {method} on model "
                 f"`{spec.model}`, trained on {data} with reward `{spec.reward or spec.aws.reward_lambda_arn}`, "
                 f"learning rate {h.learning_rate:g}."]
        if d is not None:
            parts.append(f"It takes {d.total_steps:,} steps of {d.rollouts_per_step:,} rollouts ({d.prompts_per_step:,} "
                         f"prompts x {h.number_generation} generations), {d.epochs_effective:.2f} passes over the "
                         f"prompts: {d.total_rollouts:,} rollouts, each scored by the reward.")
            cost = "free (this machine)" if spec.surface == "local" else (
                f"about ${d.cost_usd:,.2f}" if d.cost_usd is not None else "not estimated (see the assumptions)")
            wall = f"about {_duration(d.wall_time_s)}" if d.wall_time_s else "not estimated"
            parts.append(f"**What it costs.** Wall time {wall}; cost {cost}.")
        else:
            parts.append(f"**What it costs.** Not estimated: {size_unknown(spec.train_data)}.")
        mode = ("a **dry run**: nothing is submitted or trained (set `dry_run: false` to train)" if spec.dry_run
                else "**launched** when the Launch cell runs" + (" (in the background on this machine)"
                                                                 if spec.backend == "local" else ""))
        parts.append(f"**Where it is recorded.** This is {mode}; the job is recorded in "
                     f"`{layout.relative(layout.job_record)}`" + (
                         ", its metrics in the run's MLflow store (`nbkit mlflow` on the run folder) and its "
                         "checkpoints in `training/checkpoints/`." if spec.backend == "local" else
                         f", its outputs in `{spec.output or spec.aws.output_s3_path or 's3://<s3_bucket>/<s3_prefix>/output'}`."))
        return "\n\n".join(parts)

    def spec_rows(self) -> list[dict[str, str]]:
        """The spec as (setting, value, allowed on this surface) rows, the run's paths relative to it."""
        from nbkit.layout import RunLayout

        layout = RunLayout(self.run_dir)
        return [{"setting": a, "value": layout.relative(b), "allowed on this surface": c}
                for a, b, c in self.spec.rows()]

    def plan_rows(self) -> list[dict[str, str]]:
        """Exactly what the backend runs or sends, flattened to (setting, value) rows."""
        from nbkit.layout import RunLayout

        layout = RunLayout(self.run_dir)
        return [{"setting": k, "value": layout.relative(_plain(v))} for k, v in _flatten(self.plan.request)]

    def start(self, wait: bool = True, timeout: float | None = None, poll_s: float = 2.0) -> LaunchResult:
        """Submit (unless a dry run), re-attach or resume, and with `wait` follow the job to its end."""
        derived = self.derived.to_dict() if self.derived is not None else None
        handle = job.launch(self.plan.spec, self.run_dir, derived=derived, plan=self.plan, restart=self.restart)
        waited = wait and not self.plan.spec.dry_run
        state = job.await_job(handle, timeout, poll_s=poll_s) if waited else handle.status()
        return LaunchResult(handle, state, derived)


@dataclass
class LaunchResult:
    """The launched (or planned) job and the status it had when the launch returned."""

    handle: JobHandle
    state: JobStatus
    derived: dict[str, Any] | None

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    def headline(self) -> str:
        """One sentence for the run index (a failed job raises with its log tail, see `job.outcome`), and for a
        local job that ended, how long it took against what was estimated."""
        text = job.outcome(self.handle, self.state, self.derived)
        if self.handle.backend == "local" and self.state in ("completed", "stopped"):
            from nbkit.train.actual import check

            checked = check(self.handle.run_dir)
            if checked is not None:
                text += f". {checked.headline()}"
        return text

    def records(self) -> dict[str, str]:
        """Where the job is recorded (job record, MLflow run, outputs), relative to the run folder."""
        from nbkit.layout import RunLayout

        layout = RunLayout(self.handle.run_dir)
        out = {"job": f"{self.handle.backend} job {self.handle.job_id}: {self.state}",
               "job record": layout.relative(layout.job_record)}
        for key, value in self.handle.to_dict().items():
            if key not in ("backend", "job_id", "description", "dry_run") and value not in (None, ""):
                out[key.replace("_", " ")] = layout.relative(_plain(value))
        return out


def size_unknown(train_data: str) -> str:
    """Why the training set cannot be counted here, in words."""
    if not train_data:
        return "no train_data: give the training JSONL to see steps, rollouts and cost"
    if train_data.startswith("s3://"):
        return (f"the training data is on S3 ({train_data}): its size is unknown here; pass n_train= to the "
                "editor to see steps, rollouts and cost")
    return (f"{train_data} does not exist yet (notebook 01 writes a run's data): steps, rollouts and cost "
            "follow once it does, or pass n_train= to the editor")


def prepare_spec(spec: JobSpec, run_dir: str | os.PathLike, prices: str | None = None,
                 restart: bool = False) -> Launch:
    """Check a spec and plan it. Sends nothing; a real local launch first times a few of its steps on this
    machine (once per model and settings, see nbkit.train.calibration) so its time estimate is measured."""
    from nbkit.train import calibration

    plan = job.plan_job(spec, run_dir)
    warnings = [str(i) for i in plan.spec.check() if i.severity != "error"] + list(plan.warnings)
    estimate = calibration.for_run(plan.spec, run_dir, prices, calibrate=not plan.spec.dry_run)
    return Launch(plan.spec, plan, estimate, run_dir, restart, warnings)


def prepare(P: LaunchTrainingParams) -> Launch:
    """Notebook 04's parameters, as a spec and its plan."""
    spec = from_params(P.model_dump(), run_dir=P.run_dir)
    return prepare_spec(spec, P.run_dir, P.prices or None, P.restart)


def run(P: LaunchTrainingParams) -> LaunchResult:
    """Notebook 04's stage end to end: prepare, launch, and with `wait` follow the job to its end."""
    return prepare(P).start(wait=P.wait, timeout=P.timeout_s)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a nested mapping; a list of mappings is numbered."""
    if isinstance(value, dict) and value:
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}{k}.")]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [item for i, v in enumerate(value) for item in _flatten(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), value)]


def _plain(value: Any) -> str:
    """A plan value as text: lists joined, empty ones named."""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    if value in ("", None):
        return "(empty)" if value == "" else "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
