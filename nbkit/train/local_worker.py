"""The local training process: `python -m nbkit.train.local_worker JOBDIR`.

It reads `JOBDIR/config.json` (written by `nbkit.train.local.submit`), trains with TRL's GRPOTrainer and LoRA
on the local model, and reports only through files (status.json, progress.jsonl, MLflow, the Nova layout), so
the notebook that launched it can exit, restart and re-attach. SIGTERM (or a `stop` file) ends the run after
the current step with a checkpoint and the same outputs as a finished run.

The reward is the user's Lambda handler: every completion becomes one SageMaker-shaped event sample built
from its dataset record (`make_sample`), the batch runs through the reward harness in this process, and a
sample whose status is not ok scores 0 and is counted (reward_error_rate), never fatal.

This module is only ever imported by the worker process and by tests, so it imports torch/transformers/trl
at the top on purpose; `nbkit.train` never imports it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.plain import content_text
from nbkit.policy.determinism import use_deterministic_kernels
from nbkit.train.job import write_json_atomic
from nbkit.train.local import (
    LocalJobConfig,
    LocalPaths,
    _now,
    job_summary,
    portable_mlflow_store,
    read_progress,
    reward_stats,
)
from nbkit.train.nova_layout import nova_row, write_output

MLFLOW_TABLE_DIR = "completions"
KL_ROLLOUTS = 16  # rollouts per step the KL-to-base estimate runs on when beta = 0 ...
KL_GROUPS = 4  # ... taken from this many prompt groups spread over the batch (a group's rollouts share a prompt pass)
EVAL_TABLE_DIR = "validation"
# TRL's log keys -> the normalized metric names (docs/CONVENTIONS.md) they are logged under instead: one
# name per metric. TRL's other keys (loss, advantages, clip ratios, lengths, step_time) keep their names.
TRL_TO_NORMALIZED = {
    "entropy": "entropy",
    "kl": "kl",
    "completions/mean_length": "completion_len_mean",
    "completions/clipped_ratio": "clipped_share",
    "learning_rate": "lr",
    "grad_norm": "grad_norm",
}
# TRL's copies of what the reward statistics of this worker carry (reward_mean, reward_std,
# zero_var_group_share): TRL's mean of the summed rewards and its per-function mean/std (one reward here).
TRL_REWARD_KEYS = ("reward", "frac_reward_zero_std")
TRL_REWARD_PREFIX = "rewards/"
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}  # the UI opens on the training runs
DESCRIPTION_TAG = "mlflow.note.content"  # the run's description in the MLflow UI


def normalized_metrics(logs: dict[str, Any]) -> dict[str, float]:
    """TRL's numeric log values under one name each: renamed where a normalized name exists, TRL's reward
    copies dropped (the adapter's reward statistics replace them)."""
    values = {}
    for key, value in logs.items():
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if key in TRL_REWARD_KEYS or key.startswith(TRL_REWARD_PREFIX):
            continue
        values[TRL_TO_NORMALIZED.get(key, key)] = float(value)
    return values


def completion_text(completion: Any) -> str:
    """TRL hands conversational completions as [{"role": "assistant", "content": ...}], plain ones as str."""
    if isinstance(completion, list):
        return "".join(content_text(m.get("content")) for m in completion if isinstance(m, dict))
    return str(completion)


# ---------------------------------------------------------------------------------------------- records


def prompt_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """The conversation the policy sees: the record's turns up to (not including) a trailing assistant turn."""
    messages = [
        {"role": str(m.get("role", "user")), "content": content_text(m.get("content"))}
        for m in record.get("messages") or []
    ]
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    return messages


def load_records(path: str, what: str) -> list[dict[str, Any]]:
    from nbkit.data.io import read_jsonl

    if not path:
        return []
    if not path.startswith("s3://") and not Path(path).exists():
        raise UserError(f"{what} {path} does not exist: run notebook 01_explore_data first or fix the spec's path")
    return list(read_jsonl(path))


# -------------------------------------------------------------------------------------------- the reward


class StopBeforeTraining(Exception):
    """A stop request that arrived while the worker was still loading: nothing to checkpoint."""


@dataclass
class StepRecord:
    """What the reward adapter learned about one training step."""

    step: int
    stats: dict[str, float]
    rows: list[dict[str, Any]]
    reward_s: float


class RewardAdapter:
    """TRL reward function that scores completions with the user's Lambda handler through the harness.

    Each completion becomes one event sample (`make_sample(record, completion)`, id `<prompt_id>#s<step>-<k>`),
    so the same handler file trains here and on AWS. It records every rollout for the completions table.
    """

    __name__ = "lambda_reward"

    def __init__(self, reward: Any, variant: str, files: LocalPaths, buckets: dict[str, float],
                 timeout: float | None = 60.0, record_rows: bool = True) -> None:
        self.reward = reward
        self.variant = variant
        self.files = files
        self.buckets = buckets
        self.timeout = timeout
        self.record_rows = record_rows
        self.steps: dict[int, StepRecord] = {}
        self.reward_seconds = 0.0

    def __call__(self, prompts: list, completions: list, completion_ids: list, trainer_state: Any,
                 record: list[str], prompt_id: list[str], **_: Any) -> list[float]:
        from nbkit.data.records import prompt_text
        from nbkit.rewards.contract import make_sample
        from nbkit.rewards.harness import run_harness

        step = int(trainer_state.global_step) + 1  # the step these rollouts are about to train
        texts = [completion_text(c) for c in completions]
        records = [json.loads(r) for r in record]
        seen: dict[str, int] = {}
        samples, sample_index = [], []
        for rec, pid, text in zip(records, prompt_id, texts, strict=True):
            k = seen.get(pid, 0)
            seen[pid] = k + 1
            sample_index.append(k)
            samples.append(make_sample(rec, text, variant=self.variant, sample_id=f"{pid}#s{step}-{k}"))
        prompts = [prompt_text(rec) for rec in records] if self.record_rows else []
        started = time.perf_counter()
        # The samples and the records they share data with are built for this call and only their prompt texts
        # (read above) are used after it, so the reward may have them without a defensive copy.
        report = run_harness(self.reward, samples, batch_size=max(1, len(samples)), workers=0,
                             timeout=self.timeout, score_range=None, copy_samples=False)
        elapsed = time.perf_counter() - started
        self.reward_seconds += elapsed
        scores = [float(s) for s in report.scores(default=0.0)]
        statuses = list(report.statuses)
        stats = reward_stats(scores, statuses, list(prompt_id), self.buckets)
        rows = []
        if self.record_rows:
            for i in range(len(records)):
                metrics = report.metric_list[i] or {}
                rows.append({
                    "step": step, "prompt_id": prompt_id[i], "sample": sample_index[i],
                    "prompt": prompts[i], "completion": texts[i], "reward": scores[i],
                    "status": statuses[i], "error": report.errors[i] or "",
                    "components": json.dumps(metrics, sort_keys=True), "num_tokens": len(completion_ids[i]),
                })
            self._write_part(step, rows)
        self.steps[step] = StepRecord(step, stats, rows, elapsed)
        return scores

    def _write_part(self, step: int, rows: list[dict[str, Any]]) -> None:
        """One parquet file per step: a crash loses no earlier step, and nothing is rewritten each step."""
        import pandas as pd

        self.files.completion_parts.mkdir(parents=True, exist_ok=True)
        path = self.files.completion_parts / f"step_{step:06d}.parquet"
        tmp = path.with_suffix(".tmp")
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        os.replace(tmp, path)

    def pop_steps(self, upto: int) -> list[StepRecord]:
        """Records of every step <= upto not yet handed out (a logging window), in step order."""
        done = sorted(s for s in self.steps if s <= upto)
        return [self.steps.pop(s) for s in done]


def score_texts(reward: Any, records: list[dict[str, Any]], texts: list[str], variant: str,
                tag: str, timeout: float | None = 60.0) -> tuple[list[float], list[str], Any]:
    """Scores (0 for failed samples), statuses and the harness report of one text per record."""
    from nbkit.rewards.contract import make_sample, record_id
    from nbkit.rewards.harness import run_harness

    samples = [make_sample(r, t, variant=variant, sample_id=f"{record_id(r)}#{tag}") for r, t in zip(
        records, texts, strict=True)]
    report = run_harness(reward, samples, batch_size=max(1, len(samples)), workers=0, timeout=timeout,
                         score_range=None)
    return [float(s) for s in report.scores(default=0.0)], list(report.statuses), report


# ------------------------------------------------------------------------------------------ validation


class Validator:
    """Greedy generation on the eval split's first prompts, scored with the training reward (val_reward)."""

    def __init__(self, records: list[dict[str, Any]], tokenizer: Any, reward: Any, variant: str,
                 max_new_tokens: int, batch_size: int = 64) -> None:
        self.records = records
        self.tokenizer = tokenizer
        self.reward = reward
        self.variant = variant
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.prompts = [prompt_messages(r) for r in records]
        self.generator: Any = None  # made on first use, kept: it tokenizes each prompt once for the whole run

    def generate(self, model: Any) -> list[str]:
        """Greedy completions through the evaluation generator, so val_reward measures what 06 measures.

        The generator seeds torch for every batch; the training's random state is put back afterwards, so
        validating (how often, on how many prompts) never changes the rollouts training samples next."""
        from nbkit.policy.hf import HFGenerator

        was_training = model.training
        model.eval()
        try:
            if self.generator is None or self.generator.model is not model:
                self.generator = HFGenerator.from_model(model, self.tokenizer, batch_size=self.batch_size)
            with torch.random.fork_rng(devices=[] if model.device.type != "cuda" else None):
                out = self.generator.generate(self.prompts, n=1, max_new_tokens=self.max_new_tokens,
                                              temperature=0.0, seed=0)
        finally:
            if was_training:
                model.train()
        return [samples[0].text for samples in out]

    def run(self, model: Any, step: int) -> tuple[dict[str, float], list[dict[str, Any]]]:
        from nbkit.data.records import prompt_text
        from nbkit.rewards.contract import record_id

        started = time.perf_counter()
        texts = self.generate(model)
        scores, statuses, report = score_texts(self.reward, self.records, texts, self.variant, f"val{step}")
        values = np.asarray(scores, dtype=float)
        metrics = {
            "val_reward": float(values.mean()),
            "val_reward_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "val_error_rate": 1.0 - sum(s == "ok" for s in statuses) / len(statuses),
            "val_prompts": float(len(values)),
            "val_time_s": time.perf_counter() - started,
        }
        rows = [{"step": step, "prompt_id": record_id(r), "prompt": prompt_text(r), "completion": t,
                 "reward": s, "status": st, "components": json.dumps(m or {}, sort_keys=True)}
                for r, t, s, st, m in zip(self.records, texts, scores, statuses, report.metric_list, strict=True)]
        return metrics, rows


def render_prompts(tokenizer: Any, records: list[dict[str, Any]], chat: bool) -> list[str]:
    """Prompt text as TRL renders it: the chat template with the generation prompt, or the plain prompt."""
    from nbkit.data.records import full_prompt_text

    if chat:
        return [tokenizer.apply_chat_template(prompt_messages(r), add_generation_prompt=True, tokenize=False)
                for r in records]
    return [full_prompt_text(r) for r in records]


# ------------------------------------------------------------------------------------------- the trainer


def trainer_class() -> type[Any]:
    """GRPOTrainer plus advantage statistics (Nova's CSV reports them) and KL to the base model when beta=0.

    Why a private override: TRL 1.16's public hooks (`log_metric`, `log_extra`, handed to reward functions)
    run before the advantages exist, and the KL needs the model; a test pins these methods to that version.
    """
    from trl import GRPOTrainer

    class WorkbenchGRPOTrainer(GRPOTrainer):
        measure_kl: bool = True

        def _generate_single_turn(self, prompt_ids: Any, images: Any, multimodal_fields: Any,
                                  num_generations: int, has_tool_images: bool = False) -> Any:
            """A group's rollouts share their prompt's forward pass (nbkit.train.shared_prompts)."""
            from nbkit.train.shared_prompts import generate

            completions = None if has_tool_images else generate(self, prompt_ids, images, multimodal_fields)
            if completions is None:
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields, num_generations,
                                                     has_tool_images)
            return completions, None

        def _get_per_token_logps_and_entropies(self, model: Any, input_ids: Any, attention_mask: Any,
                                               logits_to_keep: int, batch_size: int | None = None,
                                               compute_entropy: bool = False, **extra: Any) -> Any:
            """The loss's log-probs with one prompt pass per group (nbkit.train.shared_prompts)."""
            from nbkit.train.shared_prompts import completion_logps

            out = completion_logps(self, model, input_ids, attention_mask, logits_to_keep, batch_size,
                                   compute_entropy, extra)
            if out is None:
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size, compute_entropy, **extra)
            return out

        def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
            output = super()._generate_and_score_completions(inputs)
            # transformers types Trainer.model as Optional (unset before __init__ ends); it is set here
            mode = "train" if self.model.training else "eval"  # type: ignore[union-attr]
            adv = output["advantages"].detach().float()
            self._metrics[mode]["advantage_mean"].append(adv.mean().item())
            self._metrics[mode]["advantage_min"].append(adv.min().item())
            self._metrics[mode]["advantage_max"].append(adv.max().item())
            if self.beta == 0.0 and self.measure_kl and mode == "train":
                kl = self._kl_to_base(output)
                if kl is not None:
                    self._metrics[mode]["kl"].append(kl)
            return output

        def _kl_to_base(self, output: dict[str, Any]) -> float | None:
            """Mean per-token KL(policy || base) on this step's rollouts (k3 estimator, as TRL's beta term).

            With beta=0 TRL computes no reference log-probs; with LoRA the base is the adapter switched off,
            so measuring drift costs two no-grad forward passes and no memory. They run on KL_ROLLOUTS
            rollouts from KL_GROUPS prompt groups spread over the batch, so each group's prompt goes through
            the model once (nbkit.train.shared_prompts): ~3% of a demo step, where 16 rollouts of 16 different
            prompts cost ~12%.
            """
            model = self.accelerator.unwrap_model(self.model)
            if not hasattr(model, "disable_adapter"):
                return None
            rows, size = output["completion_ids"].size(0), max(1, self.num_generations or 1)
            n_groups = max(1, rows // size)  # rollouts come in prompt groups of `size`, in order, until the loss
            groups = torch.linspace(0, n_groups - 1, min(KL_GROUPS, n_groups)).round().long()
            per_group = min(size, max(1, KL_ROLLOUTS // len(groups)))
            pick = (groups[:, None] * size + torch.arange(per_group)[None]).flatten()
            pick = pick[pick < rows]
            ids = torch.cat([output["prompt_ids"][pick], output["completion_ids"][pick]], dim=1)
            mask = torch.cat([output["prompt_mask"][pick], output["completion_mask"][pick]], dim=1)
            keep = output["completion_ids"].size(1)
            with torch.no_grad():
                logps, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, mask, keep)
                with model.disable_adapter():
                    ref, _, _ = self._get_per_token_logps_and_entropies(self.model, ids, mask, keep)
            delta = ref - logps
            per_token = torch.exp(delta) - delta - 1.0
            cmask = output["completion_mask"][pick].float()
            return float((per_token * cmask).sum() / cmask.sum().clamp(min=1.0))

    return WorkbenchGRPOTrainer


# ---------------------------------------------------------------------------------------------- logging


class MlflowLogger:
    """The job's MLflow run through the client API (no global active run, so TRL cannot log into it).

    With `run_root` (the run's own store), artifact locations are stored relative to the run folder, so a
    copied run folder shows its own artifacts: MLflow resolves such locations from the current folder,
    hence every artifact call runs with the run folder as the current folder.
    """

    def __init__(self, tracking_uri: str, experiment: str, artifact_dir: Path | None,
                 run_root: Path | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.run_root = run_root
        self.client = MlflowClient(tracking_uri)
        with self._in_run_folder():
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                location = artifact_dir.resolve().as_uri() if artifact_dir is not None else None
                self.experiment_id = self.client.create_experiment(experiment, artifact_location=location,
                                                                   tags=EXPERIMENT_KIND)
            else:
                self.experiment_id = exp.experiment_id
                if not all(exp.tags.get(k) == v for k, v in EXPERIMENT_KIND.items()):
                    for key, value in EXPERIMENT_KIND.items():
                        self.client.set_experiment_tag(self.experiment_id, key, value)
        self._make_portable()
        self.run_id: str | None = None

    def _in_run_folder(self) -> Any:
        return contextlib.chdir(self.run_root) if self.run_root is not None else contextlib.nullcontext()

    def _make_portable(self) -> None:
        from nbkit.paths import sqlite_path

        db = sqlite_path(self.tracking_uri)
        if self.run_root is not None and db is not None:
            portable_mlflow_store(db, self.run_root)

    def start(self, run_id: str | None, run_name: str, tags: dict[str, str]) -> str:
        """Continue `run_id` (a resumed job) or create a new run."""
        if run_id:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
        else:
            self.run_id = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags).info.run_id
        self._make_portable()
        return self.run_id

    @property
    def active_run(self) -> str:
        """The run every call logs to (`start` sets it)."""
        if self.run_id is None:
            raise RuntimeError("MlflowLogger.start() was not called")
        return self.run_id

    def describe(self, text: str) -> None:
        """The run's description (what the MLflow UI shows on the run page)."""
        self.client.set_tag(self.active_run, DESCRIPTION_TAG, text)

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.active_run, params=items[i:i + 100])

    def metrics(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(k, float(v), stamp, step) for k, v in sorted(values.items())]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.active_run, metrics=items[i:i + 500])

    def table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        import pandas as pd

        with self._in_run_folder():
            self.client.log_table(self.active_run, pd.DataFrame(rows), artifact_file)

    def dict(self, data: dict[str, Any], artifact_file: str) -> None:
        with self._in_run_folder():
            self.client.log_dict(self.active_run, data, artifact_file)

    def artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with self._in_run_folder():
            self.client.log_artifact(self.active_run, str(path.absolute()), artifact_path)

    def end(self, status: str) -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, status=status)


def flatten_params(spec: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """MLflow params: the spec's fields (hyper.*, local.*, top level) and the exact trainer configuration."""
    params: dict[str, Any] = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            if key == "aws":
                continue
            params.update({f"{key}.{k}": v for k, v in value.items() if not isinstance(v, dict)})
        else:
            params[key] = value
    params.update({f"trl.{k}": v for k, v in request["grpo_config"].items()})
    for k, v in (request.get("peft") or {}).items():
        params[f"peft.{k}"] = v
    return params


# -------------------------------------------------------------------------------------------- callback


@dataclass
class RunState:
    """What the callback shares with the worker: stop requests, the last logged step, update counts."""

    stop_requested: bool = False
    stopped: bool = False
    training: bool = False
    last_logged: int = 0
    policy_updates: int = 0
    last_eval_step: int = -1


class WorkbenchCallback(TrainerCallback):
    """Normalized metrics + TRL's own to MLflow and progress.jsonl, validation, stop requests, status."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        w = self.w
        w.state.last_logged = int(state.global_step)
        w.set_status("running", phase="training", step=int(state.global_step), max_steps=int(state.max_steps))
        if state.global_step == 0 and w.validator is not None:
            w.validate(model, 0)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        w = self.w
        step = int(state.global_step)
        if w.state.stop_requested or w.files.stop_request.exists():
            w.state.stop_requested = w.state.stopped = True
            control.should_training_stop = True
            control.should_save = True
        final = step >= state.max_steps or w.state.stopped
        if final:  # the last (possibly partial) logging window is logged and checkpointed too
            control.should_save = True
            control.should_log = True
        if w.validator is not None and (final or (w.eval_every and step % w.eval_every == 0)):
            w.validate(model, step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
        if not logs or "train_runtime" in logs:
            return
        self.w.log_step(int(state.global_step), logs, float(state.epoch or 0.0), int(state.max_steps))


# ---------------------------------------------------------------------------------------------- worker


class Worker:
    """One run of a local job (a fresh start or a resume) from config.json to the final outputs."""

    def __init__(self, job_dir: str | os.PathLike) -> None:
        self.config = LocalJobConfig.read(Path(job_dir) / "config.json")
        self.files = LocalPaths(self.config.training_dir)
        self.layout = RunLayout(self.config.run_dir)
        self.spec = self.config.spec
        self.request = self.config.request()  # the plan as reviewed; resolved again once the data is read
        self.job_id = self.config.job_id
        self.state = RunState()
        self.validator: Validator | None = None
        self.eval_every = self.request.validation.every
        self.logger: MlflowLogger | None = None
        self.adapter: RewardAdapter | None = None
        self.status_record = json.loads(self.files.status.read_text()) if self.files.status.exists() else {}
        self.started = time.perf_counter()

    @property
    def run_logger(self) -> MlflowLogger:
        """The MLflow run's logger: training starts after `_start_mlflow`, so every step has one."""
        if self.logger is None:
            raise RuntimeError("the MLflow run has not been started")
        return self.logger

    @property
    def summary(self) -> str:
        """The job in one line (the MLflow run's description)."""
        return job_summary(self.spec, self.request)

    # -- status ----------------------------------------------------------------------------------------

    def set_status(self, status: str, **fields: Any) -> None:
        import psutil

        record = dict(self.status_record)
        record.update(fields)
        pid = os.getpid()
        record.update(status=status, job_id=self.job_id, pid=pid, updated=_now(), updated_ts=time.time(),
                      pid_create_time=psutil.Process(pid).create_time())
        if self.logger is not None and self.logger.run_id:
            record.update(mlflow_run_id=self.logger.run_id, tracking_uri=self.logger.tracking_uri)
        self.status_record = record
        write_json_atomic(self.files.status, self.layout.portable(record))

    def progress_line(self, row: dict[str, Any]) -> None:
        with open(self.files.progress, "a") as fh:
            fh.write(json.dumps(row, default=_json_default, allow_nan=True) + "\n")

    # -- main ------------------------------------------------------------------------------------------

    def run(self) -> str:
        """Train to the end (or a stop request); returns completed|stopped|failed, also in status.json."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        self.set_status("running", phase="loading", error=None, started=_now(), ended=None)
        try:
            return self._train()
        except StopBeforeTraining as exc:
            print(f"{exc}: nothing to save", flush=True)
            if self.logger is not None:
                self.logger.end("KILLED")
            self.set_status("stopped", phase="done", ended=_now(), error=str(exc))
            return "stopped"
        except BaseException as exc:  # report every failure in status.json; the traceback goes to the log
            traceback.print_exc()
            message = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            self._finish_failed(message)
            return "failed"
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        """Before training: abandon loading (a warm start can take minutes). During: stop after this step."""
        self.state.stop_requested = True
        if not self.state.training:
            raise StopBeforeTraining(f"stopped (signal {signum}) before training started")
        print(f"stop requested (signal {signum}): finishing the current step", flush=True)

    def _train(self) -> str:
        from transformers import set_seed

        request = self.request
        torch.set_num_threads(request.threads)
        use_deterministic_kernels()
        set_seed(self.spec.hyper.seed)
        resume_from = self.config.resume_from
        train = load_records(request.train_data, "training data")
        if not train:
            raise UserError(f"training data {request.train_data} holds no records")
        self.request = request = self.config.request(len(train))  # the step budget, resolved
        evals = load_records(request.eval_data, "eval data") if request.eval_data else []
        model_path = resolve_model(request.model, train, Path(self.config.run_dir))
        reward = _load_reward(request.reward)
        tokenizer, model = load_policy(model_path)
        chat = tokenizer.chat_template is not None
        check_prompt_lengths(tokenizer, train, chat, request.max_prompt_length, self.spec.hyper.max_new_tokens,
                             model)
        dataset = build_dataset(train, chat)
        max_steps = request.steps.max_steps
        assert max_steps is not None  # resolved from epochs now that the data is read
        if resume_from:
            self._truncate_history(_checkpoint_step(resume_from))
        self.adapter = RewardAdapter(reward, request.event_variant, self.files, request.reward_buckets,
                                     record_rows=request.log_completions)
        validation = request.validation
        if evals and self.eval_every and validation.prompts:
            self.validator = Validator(evals[: validation.prompts], tokenizer, reward, request.event_variant,
                                       validation.max_new_tokens)
        self._start_mlflow(model_path, resume_from)
        trainer = self._make_trainer(model, tokenizer, dataset, max_steps)
        self.set_status("running", phase="training", max_steps=max_steps, model_path=str(model_path))
        if self.state.stop_requested or self.files.stop_request.exists():
            raise StopBeforeTraining("stopped before training started")
        self.state.training = True
        trainer.train(resume_from_checkpoint=resume_from)
        return self._finish(trainer, model_path)

    def _make_trainer(self, model: Any, tokenizer: Any, dataset: Any, max_steps: int) -> Any:
        from trl import GRPOConfig

        config = GRPOConfig(**self.request.grpo_config, output_dir=str(self.files.checkpoints))
        optimizers: tuple[torch.optim.Optimizer | None, None] = (None, None)
        if self.request.peft:
            from peft import LoraConfig, get_peft_model

            model = get_peft_model(model, LoraConfig(**self.request.peft))
            ratio = self.request.loraplus_lr_ratio
            if ratio:
                from peft.optimizers import create_loraplus_optimizer

                optimizer = create_loraplus_optimizer(
                    model, optimizer_cls=torch.optim.AdamW, lr=config.learning_rate, loraplus_lr_ratio=ratio,
                    weight_decay=config.weight_decay,
                )
                optimizers = (optimizer, None)
        from transformers import PrinterCallback

        cls = trainer_class()
        cls.measure_kl = self.request.kl_measured
        trainer = cls(model=model, reward_funcs=self.adapter, args=config, train_dataset=dataset,
                      processing_class=tokenizer, callbacks=[WorkbenchCallback(self)], optimizers=optimizers)
        trainer.remove_callback(PrinterCallback)  # a 40-key dict per step; progress.jsonl has it, the log a summary
        return trainer

    def _start_mlflow(self, model_path: Path, resume_from: str | None) -> None:
        uri = self.config.tracking_uri
        default = uri == self.files.default_tracking_uri()
        portable = default and self.files.training.resolve().is_relative_to(self.layout.root.resolve())
        self.logger = MlflowLogger(uri, self.spec.local.experiment, self.files.mlartifacts if default else None,
                                   run_root=self.layout.root if portable else None)
        run_id = self.config.mlflow_run_id if resume_from else None
        tags = {"nbkit.job_id": self.job_id, "nbkit.backend": "local", "nbkit.run": self.layout.root.name,
                "mlflow.source.name": "nbkit.train.local_worker"}
        self.logger.start(run_id, self.job_id, tags)
        self.logger.describe(self.summary)
        if run_id:
            self.logger.client.set_tag(run_id, f"nbkit.resumed_from.{self.status_record.get('attempt', 0)}",
                                       self.layout.relative(str(resume_from)))
        else:
            spec = self.layout.portable(self.spec.model_dump(mode="json"))
            request = self.layout.portable(self.request.model_dump(mode="json"))
            self.logger.params(flatten_params(spec, request) | {"model_path": self.layout.relative(model_path)})
            self.logger.dict(spec, "spec.json")
            self.logger.dict(request, "plan.json")
        self.config.mlflow_run_id = self.logger.run_id
        self.config.write(self.files.config)
        self.set_status("running")
        self._patch_job_record()

    # -- per step --------------------------------------------------------------------------------------

    def log_step(self, step: int, logs: dict[str, Any], epoch: float, max_steps: int) -> None:
        """Merge TRL's log with the adapter's reward stats for the steps since the last log; write them out."""
        values = normalized_metrics(logs)
        records = self.adapter.pop_steps(step) if self.adapter else []
        if records:
            keys = records[-1].stats.keys()
            values.update({k: float(np.mean([r.stats[k] for r in records])) for k in keys})
            values["reward_time_s"] = float(sum(r.reward_s for r in records))
        if math.isfinite(values.get("grad_norm", float("nan"))):  # a NaN/inf gradient means no real update
            self.state.policy_updates += step - self.state.last_logged
        values["policy_updates"] = float(self.state.policy_updates)
        values["epoch"] = epoch
        self.run_logger.metrics(step, values)
        self.progress_line({"kind": "train", "step": step, "time": time.time(), **values})
        every = self.request.mlflow.completions_every
        for record in records:
            if record.rows and (record.step == 1 or record.step % every == 0 or record.step >= max_steps
                                or self.state.stopped):
                self.run_logger.table(record.rows, f"{MLFLOW_TABLE_DIR}/step_{record.step:06d}.json")
        self.state.last_logged = step
        self.set_status("running", step=step, max_steps=max_steps, reward_mean=values.get("reward_mean"))
        if step == 1 or step % max(1, max_steps // 20) == 0 or step >= max_steps:
            print(f"step {step}/{max_steps}: reward_mean {values.get('reward_mean', float('nan')):.4f} "
                  f"error_rate {values.get('reward_error_rate', float('nan')):.3f} "
                  f"kl {values.get('kl', float('nan')):.4g} step_time {values.get('step_time', float('nan')):.2f}s",
                  flush=True)

    def validate(self, model: Any, step: int) -> None:
        if self.validator is None or step == self.state.last_eval_step:
            return
        metrics, rows = self.validator.run(model, step)
        self.state.last_eval_step = step
        self.run_logger.metrics(step, metrics)
        self.run_logger.table(rows, f"{EVAL_TABLE_DIR}/step_{step:06d}.json")
        self.progress_line({"kind": "eval", "step": step, "time": time.time(), **metrics})
        print(f"step {step}: val_reward {metrics['val_reward']:.4f} on {len(rows)} eval prompts", flush=True)

    # -- the end ---------------------------------------------------------------------------------------

    def _finish(self, trainer: Any, base_model: Path) -> str:
        status = "stopped" if self.state.stopped else "completed"
        self.set_status("running", phase="saving")
        step = int(trainer.state.global_step)
        final = save_final_model(trainer, self.files.final_checkpoint, {
            "job_id": self.job_id, "base_model": self.layout.relative(base_model), "step": step,
            "status": status, "lora": self.request.peft,
        })
        rows = self._nova_rows(step)
        archive = write_output(self.files.output_dir, self.layout.relative(final), rows)
        consolidate_completions(self.files)
        self.run_logger.artifact(archive, "output")
        self.run_logger.describe(f"{self.summary}. {status.capitalize()} at step {step}.")
        self.run_logger.end("FINISHED" if status == "completed" else "KILLED")
        self.set_status(status, phase="done", step=step, checkpoint=str(final), output=str(archive),
                        ended=_now(), seconds=round(time.perf_counter() - self.started, 1),
                        cpu_seconds=round(time.process_time(), 1),
                        reward_seconds=round(self.adapter.reward_seconds, 2) if self.adapter else None)
        self._patch_job_record()
        return status

    def _finish_failed(self, message: str) -> None:
        try:
            consolidate_completions(self.files)
        except Exception:  # the failure being reported matters more; the parts stay on disk
            traceback.print_exc()
        if self.logger is not None:
            try:
                self.logger.end("FAILED")
            except Exception:
                traceback.print_exc()
        self.set_status("failed", phase="done", error=message, ended=_now())
        self._patch_job_record()

    def _nova_rows(self, upto: int) -> list[dict[str, Any]]:
        steps: dict[int, dict[str, Any]] = {}
        for row in read_progress(self.files.progress):
            if row.get("kind") == "train" and row["step"] <= upto:
                steps[int(row["step"])] = row
        return [nova_row(s, steps[s]) for s in sorted(steps)]

    def _truncate_history(self, step: int) -> None:
        """Resuming from checkpoint-N: drop progress and completion parts of steps after N (they rerun)."""
        rows = [r for r in read_progress(self.files.progress) if int(r.get("step", 0)) <= step]
        tmp = self.files.progress.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, default=_json_default) + "\n" for r in rows))
        os.replace(tmp, self.files.progress)
        for part in self.files.completion_parts.glob("step_*.parquet"):
            if int(part.stem.split("_")[1]) > step:
                part.unlink()
        self.files.completions.unlink(missing_ok=True)
        self.state.policy_updates = step

    def _patch_job_record(self) -> None:
        """Put the MLflow run id and output paths into training/job.json once they exist (readers need them)."""
        from nbkit.train.job import job_path

        path = job_path(self.config.run_dir)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        handle = record.get("handle") or {}
        if handle.get("job_id") != self.job_id:
            return
        handle.update(mlflow_run_id=self.logger.run_id if self.logger else handle.get("mlflow_run_id"),
                      tracking_uri=self.config.tracking_uri, output_dir=str(self.files.output_dir),
                      checkpoint=str(self.files.final_checkpoint))
        record["handle"] = self.layout.portable(handle)
        write_json_atomic(path, record)


# ------------------------------------------------------------------------------------------------ models


def resolve_model(model: str, train: list[dict[str, Any]], run_dir: Path) -> Path:
    """The base model folder. For `tiny`: the run's own copy (<run>/model, written by notebook 03) when it
    exists, so training starts from exactly the model the baseline measured; else built from the training split."""
    from nbkit.policy import resolve_local_model

    copy = RunLayout(run_dir).model
    if model == "tiny" and (copy / "config.json").exists():
        return copy
    path = resolve_local_model(model, train_records=train, run_dir=run_dir)
    if not (path / "config.json").exists():
        raise UserError(
            f"model {model!r} is neither 'tiny' nor a local Hugging Face model folder (no config.json at {path}); "
            "no model hub is reachable here, so give a folder saved with save_pretrained()"
        )
    return path


def load_policy(path: Path) -> tuple[Any, Any]:
    """Tokenizer (left padding, as TRL needs for generation) and the model in fp32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left", truncation_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return tokenizer, model


def check_prompt_lengths(tokenizer: Any, records: list[dict[str, Any]], chat: bool, limit: int,
                         max_new_tokens: int, model: Any) -> None:
    """Refuse prompts longer than the limit instead of truncating them (that would change the task)."""
    from nbkit.rewards.contract import record_id

    texts = render_prompts(tokenizer, records, chat)
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    positions = getattr(model.config, "max_position_embeddings", None)
    cap = min(limit, positions - max_new_tokens) if positions else limit
    long = [(record_id(r), n) for r, n in zip(records, lengths, strict=True) if n > cap]
    if long:
        shown = ", ".join(f"{rid} ({n} tokens)" for rid, n in long[:5])
        raise UserError(
            f"{len(long)} training prompt(s) exceed {cap} tokens (local.max_prompt_length / the model's "
            f"{positions} positions minus max_new_tokens): {shown}; raise local.max_prompt_length and "
            "hyper.max_length, or shorten those prompts"
        )


def build_dataset(records: list[dict[str, Any]], chat: bool) -> Any:
    """TRL dataset: prompt (messages or text), prompt_id, and the whole record as JSON for the reward."""
    from datasets import Dataset

    from nbkit.data.records import full_prompt_text
    from nbkit.rewards.contract import record_id

    rows = [{"prompt": prompt_messages(r) if chat else full_prompt_text(r), "prompt_id": record_id(r),
             "record": json.dumps(r, ensure_ascii=False)} for r in records]
    return Dataset.from_list(rows)


def save_final_model(trainer: Any, dest: Path, info: dict[str, Any]) -> Path:
    """Merged weights + tokenizer in one folder any HF loader (and nbkit.policy) reads; written atomically."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".final-", dir=dest.parent))
    try:
        model.save_pretrained(tmp)
        trainer.processing_class.save_pretrained(tmp)
        tmp.chmod(0o755)  # mkdtemp makes it private; run folders are shared
        (tmp / "nbkit_tuned.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest.resolve()


def consolidate_completions(files: LocalPaths) -> Path | None:
    """One completions.parquet from the per-step parts (kept, so a resumed job can extend them)."""
    import pandas as pd

    parts = sorted(files.completion_parts.glob("step_*.parquet"))
    if not parts:
        return None
    frame = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    tmp = files.completions.with_suffix(".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, files.completions)
    return files.completions


def _load_reward(spec: str) -> Any:
    from nbkit.rewards.loader import load_reward

    return load_reward(spec)


def _checkpoint_step(path: str) -> int:
    state = json.loads((Path(path) / "trainer_state.json").read_text())
    return int(state.get("global_step", 0))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nbkit.train.local_worker JOBDIR", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # transformers 5 warns on every step that TRL still reads `gradient_checkpointing` (off here): noise.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    worker = Worker(args[0])
    outcome = worker.run()
    return 0 if outcome in ("completed", "stopped") else 1


if __name__ == "__main__":
    sys.exit(main())
