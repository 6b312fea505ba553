"""Managed RFT evaluation (`rft_eval`) of the Nova 2 Lite base model or a checkpoint, on SMTJ or HyperPod.

Why: the managed surfaces do not evaluate during training; AWS's way to compare base and tuned is a separate
`rft_eval` job per model, on the same data and reward, on the same platform that trained the checkpoint
(the evaluation container only reads checkpoints of its own platform). `plan` renders that job (the
resolved recipe plus the CreateTrainingJob request or the `hyperpod start-job` argv), `submit` sends it, and
`import_results` turns its `results_*.json` and `details_*.parquet` into the same evaluation frame the local
runs produce (`nbkit.evaluate.sample_and_score` columns), so notebooks 06/07 compare them unchanged.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbkit.errors import UserError
from nbkit.train import aws, hyperpod, sagemaker
from nbkit.train.archive import safe_extract
from nbkit.train.job import JobHandle, Plan
from nbkit.train.spec import JobSpec, with_surface_defaults

RESULTS_KEY_PART = "rft_eval"
FRAME_COLUMNS = ("prompt_id", "sample", "prompt", "reference", "response", "reward", "status", "components",
                 "num_tokens", "finish_reason")


# ----------------------------------------------------------------------------------------------- plan


def plan(spec: JobSpec, checkpoint: str = "", backend: str = "", data: str = "", instance_count: int = 1,
         inference: dict[str, Any] | None = None) -> Plan:
    """The rft_eval job of the base model (`checkpoint=""`) or of a checkpoint from a manifest.json.

    `backend` defaults to the spec's (sagemaker or hyperpod); `data` to `spec.eval_data`; `inference`
    overrides keys of the recipe's inference section (max_new_tokens, temperature, top_k, top_p,
    reasoning_effort; reasoning_effort defaults to the spec's so base and tuned are scored alike).
    """
    backend = backend or spec.backend
    if backend not in ("sagemaker", "hyperpod"):
        raise UserError(f"backend = {backend!r}: managed rft_eval runs on sagemaker (SMTJ) or hyperpod; evaluate "
                        "local or Bedrock models with nbkit.evaluate.sample_and_score")
    spec = with_surface_defaults(spec.model_copy(update={"backend": backend}))
    problems: list[str] = []
    warnings: list[str] = []
    region = spec.aws.region
    problems += aws.check_region(region, tuple(aws.NOVA_IMAGE_ACCOUNTS), "SageMaker (Nova images)")
    base = aws.s3_base(spec.aws.s3_bucket, spec.aws.s3_prefix, problems)
    output = aws.output_location(spec, base, problems)
    data_uri, upload = aws.plan_data(data or spec.eval_data, "eval_data", base, problems)
    model = _model(checkpoint, backend, problems, warnings)
    reward = aws.plan_reward(spec, region, problems, target="hyperpod" if backend == "hyperpod" else "sagemaker")
    bad_inference = sorted(set(inference or {}) - {"max_new_tokens", "temperature", "top_k", "top_p",
                                                   "top_logprobs", "reasoning_effort"})
    if bad_inference:
        problems.append(f"inference: unknown key(s) {', '.join(bad_inference)}; the rft_eval recipe has "
                        "max_new_tokens, temperature, top_k, top_p, top_logprobs, reasoning_effort")
    if backend == "sagemaker":
        problems += aws.check_role_arn(spec.aws.role_arn, "aws.role_arn")
        if instance_count < 1:
            problems.append(f"instance_count = {instance_count}: at least 1")
    else:
        hyperpod._cluster_problems(spec, problems)
    aws.raise_problems(problems, f"rft_eval plan for {spec.name!r}")

    values: dict[str, Any] = {
        "run.model_name_or_path": model,
        "rl_env.reward_lambda_arn": reward["arn"],
        "inference.reasoning_effort": spec.hyper.reasoning_effort,
    }
    values |= {f"inference.{k}": v for k, v in (inference or {}).items()}
    which = "ckpt" if checkpoint else "base"
    if backend == "sagemaker":
        values["run.replicas"] = instance_count  # SMTJ: data in the `train` channel, results in the job output
        image = aws.image_uri(region, "eval")
        hyper = sagemaker.model_hyperparameters(model) | {
            "sagemaker_recipe_local_path": sagemaker.RECIPE_CONTAINER_PATH}
        skeleton = sagemaker.common_request(spec, image, hyper, [sagemaker._channel(sagemaker.DATA_CHANNEL, data_uri)],
                                            output, instance_count)
        name = aws.job_name(f"{spec.name}-eval-{which}", aws.digest({"values": values, "request": skeleton}),
                            limit=sagemaker.JOB_BASE_LIMIT)
        values["run.name"] = name
        return sagemaker.build(spec, "eval", "eval", name, values, skeleton, [upload], reward, output, warnings,
                               staging=base or output)
    values |= {"run.data_s3_path": data_uri, "run.output_s3_path": output,
               "run.mlflow_tracking_uri": spec.aws.mlflow_tracking_uri}
    name = hyperpod.run_name(f"{spec.name}-eval-{which}", aws.digest({"values": values}))
    values["run.name"] = name
    hyperpod.region_warning(region, warnings)
    return hyperpod.build(spec, "eval", "eval", name, values, [upload], reward, output, warnings,
                          hyperpod.image_uri(region, "eval"))


def _model(checkpoint: str, backend: str, problems: list[str], warnings: list[str]) -> str:
    """The base model, or a checkpoint of the same platform (the eval container reads only its own)."""
    if not checkpoint:
        return aws.NOVA_MODEL_NAME
    found = aws.check_s3_uri(checkpoint, "checkpoint")
    if found:
        problems += found
        return checkpoint
    platform = "smtj" if "-smtj-" in checkpoint else "smhp" if "-smhp-" in checkpoint else ""
    wanted = "smtj" if backend == "sagemaker" else "smhp"
    if platform and platform != wanted:
        problems.append(f"checkpoint = {checkpoint!r}: trained on {platform.upper()}, but the eval would run on "
                        f"{wanted.upper()}; the evaluation container only reads checkpoints of its own platform")
    elif not platform:
        warnings.append(f"checkpoint {checkpoint!r}: cannot tell which platform trained it; it must be {wanted.upper()}")
    return checkpoint


def submit(plan: Plan, run_dir: str | os.PathLike, session: Any = None) -> JobHandle:
    """Send an rft_eval plan (dry run unless the spec says otherwise); returns the job handle."""
    module = sagemaker if plan.backend == "sagemaker" else hyperpod
    return module.submit(plan, run_dir, session=session)


# ------------------------------------------------------------------------------------------- results


@dataclass
class EvalResults:
    """An rft_eval job's results: the service's summary and one row per (prompt, sample) like local runs."""

    summary: dict[str, float]  # results_*.json, e.g. {"lambda_reward_score": 0.61, "lambda_correctness": 0.6}
    frame: Any  # pandas.DataFrame with FRAME_COLUMNS (+ domain / difficulty_level when the records have them)
    results_file: str
    details_files: list[str] = field(default_factory=list)

    @property
    def mean_reward(self) -> float:
        """Mean reward over the imported rows (NaN rows excluded), to compare with summary's score."""
        rewards = self.frame["reward"].dropna()
        return float(rewards.mean()) if len(rewards) else math.nan

    def save(self, path: str | os.PathLike) -> Path:
        """Write the frame as `samples.parquet` (the layout 03 and 06 write), creating the folder."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.frame.to_parquet(path, index=False)
        return path


def import_results(path: str | os.PathLike, dest: str | os.PathLike | None = None) -> EvalResults:
    """Read an rft_eval output: a folder (e.g. `handle.outputs()`) or its `output.tar.gz` (extracted safely
    into `dest`, default beside the archive). Files are found by recursive glob, as Nova nests them.

    The frame has `nbkit.evaluate.sample_and_score`'s columns. Nova reports neither token counts nor finish
    reasons: `num_tokens` is the word-and-punctuation estimate and `finish_reason` "stop", as the replay
    generator does for the same files. A row without a reward gets status `missing_result`; none is dropped.
    """
    root = Path(path)
    if not root.exists():
        raise UserError(f"{root}: no such file or folder; download the eval job's output first (handle.outputs())")
    if root.is_file():
        if not root.name.endswith((".tar.gz", ".tgz", ".tar")):
            raise UserError(f"{root}: give the eval output folder or its output.tar.gz")
        root = safe_extract(root, Path(dest) if dest else root.parent / root.name.split(".")[0])
    results_files = sorted(root.rglob("results_*.json"))
    details = sorted(root.rglob("details_*.parquet"))
    if not results_files and not details:
        raise UserError(f"no rft_eval results under {root}: expected eval-result/results_*.json and "
                        "eval-result/details/model/<time>/details_*.parquet")
    summary = _summary(results_files[-1]) if results_files else {}
    frame = _frame(root) if details else _empty_frame()
    return EvalResults(summary, frame, str(results_files[-1]) if results_files else "", [str(p) for p in details])


def _summary(path: Path) -> dict[str, float]:
    """The rft_eval entry of results_<time>.json (`results["custom|rft_eval_rft_eval|0"]`), numbers only."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not readable JSON ({exc})") from None
    results = data.get("results", data) if isinstance(data, dict) else {}
    entries = {k: v for k, v in results.items() if RESULTS_KEY_PART in str(k) and isinstance(v, dict)}
    if not entries:
        raise UserError(f"{path}: no rft_eval entry in 'results' (keys: {', '.join(map(str, results)) or 'none'})")
    entry = entries[sorted(entries)[0]]
    out = {}
    for key, value in entry.items():
        try:
            out[str(key)] = float(value)
        except (TypeError, ValueError):
            continue  # stderr strings and similar: not a score
    return out


def _frame(root: Path) -> Any:
    from nbkit.policy.base import approx_tokens
    from nbkit.policy.replay import read_nova_details

    details = read_nova_details(root)
    frame = details[["prompt_id", "prompt", "reference", "response", "reward", "components"]].copy()
    frame.insert(1, "sample", details.groupby("prompt_id").cumcount().astype(int))
    frame["reward"] = frame["reward"].astype(float)
    frame["status"] = ["ok" if math.isfinite(r) else "missing_result" for r in frame["reward"]]
    frame["num_tokens"] = [approx_tokens(str(r)) for r in frame["response"]]
    frame["finish_reason"] = "stop"
    frame = frame[list(FRAME_COLUMNS)]
    for key in ("domain", "difficulty_level"):
        values = [rec.get(key) if isinstance(rec, dict) else None for rec in details["record"]]
        if any(v is not None for v in values):
            frame[key] = values
    return frame


def _empty_frame() -> Any:
    import pandas as pd

    return pd.DataFrame(columns=list(FRAME_COLUMNS))
