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
        """One sentence for the run index; a failed job raises with its log tail (see `job.outcome`)."""
        return job.outcome(self.handle, self.state, self.derived)


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
    """Check a spec and plan it (pure: reads local data to count it, sends nothing)."""
    from nbkit.train import derived

    plan = job.plan_job(spec, run_dir)
    warnings = [str(i) for i in plan.spec.check() if i.severity != "error"] + list(plan.warnings)
    return Launch(plan.spec, plan, derived.for_run(plan.spec, run_dir, prices), run_dir, restart, warnings)


def prepare(P: LaunchTrainingParams) -> Launch:
    """Notebook 04's parameters, as a spec and its plan."""
    spec = from_params(P.model_dump(), run_dir=P.run_dir)
    return prepare_spec(spec, P.run_dir, P.prices or None, P.restart)


def run(P: LaunchTrainingParams) -> LaunchResult:
    """Notebook 04's stage end to end: prepare, launch, and with `wait` follow the job to its end."""
    return prepare(P).start(wait=P.wait, timeout=P.timeout_s)
