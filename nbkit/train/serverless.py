"""SageMaker AI serverless model customization (backend `sagemaker-serverless`): Nova 2 Lite RFT through the
sagemaker v3 SDK's `RLVRTrainer` with no compute (SageMaker AI manages it).

What the SDK does, read from sagemaker-train 1.27.0 (rlvr_trainer.py, common_utils/finetune_utils.py), and
what follows for this backend:
- The constructor reads the model's Hub entry (DescribeHubContent on SageMakerPublicHub, model
  `nova-textgeneration-lite-v2` for `amazon.nova-2-lite-v1`, common_utils/model_aliases.py) and downloads the
  recipe's override parameters from S3 (GetObject on its `SmtjOverrideParamsS3Uri`): the hyperparameter names,
  ranges and defaults come from AWS at submit, not from this machine. The plan therefore names the
  RLVRTrainer arguments and the hyperparameters it sets, and says what the SDK resolves at submit.
- `train(dry_run=True)` is not free of side effects: with a Lambda ARN it creates an Evaluator in the
  account's AI Registry hub (Evaluator.create) and invokes the reward (reward verification) before it returns.
  So this backend's dry run is the offline plan alone; nothing calls the SDK until `dry_run: false`.
- The job is named `<base_job_name>-<YYYYmmddHHMMSS>` (utils.py _get_unique_name); the base name is the
  request's digest, so a resubmitted plan finds its job through ListTrainingJobs and attaches to it.
- The SDK's usage telemetry is switched off (sagemaker_config TelemetryOptOut), and the reward is probed by
  the workbench before submitting (as on every surface), so the SDK's own verification is skipped.
The job is a SageMaker training job: status, stop, CloudWatch logs and outputs work as for SMTJ.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field

from nbkit.errors import UserError
from nbkit.train import aws, sagemaker
from nbkit.train.job import JobHandle, Plan
from nbkit.train.spec import JobSpec, from_recipe_default, with_surface_defaults

MODEL_ID = "amazon.nova-2-lite-v1"  # the SDK's alias of Hub model nova-textgeneration-lite-v2
# Hyperparameter names of the serverless SMTJ recipe's override parameters (nova_smtj_rft / nova_smtj_lora_rft
# in aws/sagemaker-hyperpod-recipes launcher/recipe_templatization/nova/nova_recipe_template_parameters.json).
HYPER_NAMES = {
    "learning_rate": "learning_rate",
    "max_steps": "max_steps",
    "save_steps": "save_steps",
    "global_batch_size": "global_batch_size",
    "max_length": "max_length",
    "lora_alpha": "lora_alpha",
    "loraplus_lr_ratio": "learning_rate_ratio",
}
LORA_ONLY = ("lora_alpha", "loraplus_lr_ratio")


class ServerlessPlan(Plan):
    """`trainer` is RLVRTrainer(...)'s keyword arguments, `hyperparameters` what is set on
    `trainer.hyperparameters` before `train(wait=False)`; `request` holds the three together."""

    backend: str = "sagemaker-serverless"
    region: str
    job_name: str = Field(description="base_job_name; the SDK appends -<YYYYmmddHHMMSS>")
    trainer: dict[str, Any]
    hyperparameters: dict[str, Any]
    uploads: list[dict[str, Any]]
    reward: dict[str, Any]
    output_s3_path: str
    staging: str

    def describe(self) -> str:
        lines = [super().describe(), "uploads (content-addressed; skipped when already there):"]
        lines += [f"  {u['source']} -> {u['uri']}" for u in self.uploads] or ["  (none: data is on S3)"]
        lines.append(sagemaker._reward_line(self.reward))
        lines += aws.provenance_lines(self.spec)
        lines += [
            "compute: serverless (SageMaker AI provisions and manages it; RLVRTrainer(compute=None))",
            f"job name at submit: {self.job_name}-{sagemaker.SUBMIT_STAMP} (the SDK's timestamp)",
            "resolved by the SDK at submit, from AWS: the model's Hub ARN and recipe, the evaluator wrapping the "
            "reward Lambda (created in the account's AI Registry hub), and the MLflow app when none is given",
            f"output: {self.output_s3_path}/<job name>/output/",
        ]
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- plan


def plan(spec: JobSpec) -> ServerlessPlan:
    """RLVRTrainer's arguments for `spec`. Pure: reads the local data files to hash them, sends nothing."""
    spec = with_surface_defaults(spec)
    surface = spec.surface
    problems, warnings = aws.spec_problems(spec, surface)
    a, region = spec.aws, spec.aws.region
    problems += aws.check_region(region, tuple(aws.NOVA_IMAGE_ACCOUNTS), "SageMaker AI serverless Nova RFT")
    problems += aws.check_role_arn(a.role_arn, "aws.role_arn")
    problems += aws.check_mlflow_arn(a.mlflow_tracking_uri, "aws.mlflow_tracking_uri")
    base = aws.s3_base(a.s3_bucket, a.s3_prefix, problems)
    output = aws.output_location(spec, base, problems)
    data_uri, data_upload = aws.plan_data(spec.train_data, "train_data", base, problems)
    eval_uri, eval_upload = aws.plan_data(spec.eval_data, "eval_data", base, problems) if spec.eval_data else ("", None)
    reward = aws.plan_reward(spec, region, problems)
    steps = sagemaker.resolve_steps(spec, problems, warnings)
    model = aws.nova_base_model(spec, problems)
    if model != aws.NOVA_MODEL_NAME:
        problems.append(f"aws.continue_from = {model!r}: serverless RFT starts from the Hub's Nova 2 Lite; continue "
                        "from a checkpoint on the sagemaker or hyperpod backend")
    for name in ("instance_count", "cluster_name"):
        if getattr(a, name):
            warnings.append(f"aws.{name}: serverless customization chooses its own compute; ignored")
    aws.raise_problems(problems, f"SageMaker AI serverless plan for {spec.name!r}")

    hyper = {"max_steps": steps}
    for field, key in HYPER_NAMES.items():
        if field == "max_steps" or from_recipe_default(spec, field) or (spec.hyper.full_rank and field in LORA_ONLY):
            continue
        hyper[key] = getattr(spec.hyper, field)
    trainer: dict[str, Any] = {
        "model": MODEL_ID,
        "training_type": "FULL" if spec.hyper.full_rank else "LORA",
        "model_package_group": a.model_package_group or spec.name,
        "custom_reward_function": reward["arn"],
        "training_dataset": data_uri,
        "validation_dataset": eval_uri or None,
        "s3_output_path": output,
        "mlflow_resource_arn": a.mlflow_tracking_uri or None,
        "mlflow_experiment_name": a.mlflow_experiment_name or None,
        "stopping_condition": {"max_runtime_in_seconds": int(a.max_runtime_hours * 3600)},
        "skip_reward_validation": True,
        "role": a.role_arn,
    }
    if a.tags:
        trainer["tags"] = [{"key": k, "value": v} for k, v in sorted(a.tags.items())]
    name = aws.job_name(spec.name, aws.digest({"trainer": trainer, "hyperparameters": hyper}),
                        limit=sagemaker.JOB_BASE_LIMIT)
    trainer["base_job_name"] = name
    return ServerlessPlan(
        spec=spec, region=region, job_name=name, trainer=trainer, hyperparameters=hyper, warnings=warnings,
        request={"RLVRTrainer": trainer, "hyperparameters": hyper, "train": {"wait": False}},
        uploads=[u.to_dict() for u in (data_upload, eval_upload) if u], reward=reward, output_s3_path=output,
        staging=base or output,
    )


# --------------------------------------------------------------------------------------------- submit


def submit(plan: ServerlessPlan, run_dir: str | os.PathLike, session: Any = None) -> JobHandle:
    """Upload, deploy and probe the reward if planned, then `RLVRTrainer(...).train(wait=False)` (once).

    Dry run (the default) prints the plan and calls nothing (see the module docstring for why not the SDK's).
    """
    sess, dry = sagemaker.prepare_submission(plan, run_dir, session)
    if dry:
        return dry
    name = sagemaker.existing_job(sess, plan.region, plan.job_name)
    if name:
        print(f"training job {name} already exists for this plan: attaching to it. To run it again, change `name`.")
    else:
        name = train_with_sdk(plan, sess)
    return ServerlessJobHandle(name, run_dir, plan.region, plan.output_s3_path, session=sess)


def sdk_trainer(plan: ServerlessPlan, sess: Any) -> Any:
    """RLVRTrainer with the plan's arguments and hyperparameters (the constructor reads the Hub)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", plan.region)  # sagemaker.ai_registry builds clients at import
    from sagemaker.core.shapes import Tag
    from sagemaker.train.configs import StoppingCondition
    from sagemaker.train.rlvr_trainer import RLVRTrainer

    kwargs = dict(plan.trainer)
    kwargs["stopping_condition"] = StoppingCondition(**kwargs["stopping_condition"])
    if "tags" in kwargs:
        kwargs["tags"] = [Tag(**t) for t in kwargs["tags"]]
    trainer = RLVRTrainer(**kwargs, sagemaker_session=sagemaker.sdk_session(sess, plan.staging))
    for key, value in plan.hyperparameters.items():
        if not hasattr(trainer.hyperparameters, key):
            raise UserError(f"the Hub's serverless recipe for {MODEL_ID} has no hyperparameter {key!r} (it has: "
                            f"{', '.join(sorted(trainer.hyperparameters.to_dict()))}); unset it and plan again")
        setattr(trainer.hyperparameters, key, value)
    return trainer


def train_with_sdk(plan: ServerlessPlan, sess: Any) -> str:
    with aws.aws_errors(f"creating serverless training job {plan.job_name}-<timestamp>",
                        "sagemaker:CreateTrainingJob, sagemaker:DescribeHubContent, sagemaker:ImportHubContent "
                        f"(and iam:PassRole on {plan.trainer['role']})", plan.job_name):
        try:
            job = sdk_trainer(plan, sess).train(wait=False)
        except ValueError as exc:  # the SDK's own validation (hyperparameter ranges, recipe lookup, datasets)
            raise UserError(f"the sagemaker SDK refused the serverless job: {exc}") from None
    print(f"created serverless training job {job.training_job_name} through RLVRTrainer(...).train(wait=False)")
    return job.training_job_name


# --------------------------------------------------------------------------------------------- handle


class ServerlessJobHandle(sagemaker.SageMakerJobHandle):
    """A serverless customization job is a SageMaker training job: the SMTJ handle, under its own backend."""

    backend = "sagemaker-serverless"


def handle_from_dict(data: dict[str, Any], run_dir: str | os.PathLike) -> ServerlessJobHandle:
    missing = [k for k in ("job_id", "region", "output_s3_path") if k not in data]
    if missing:
        raise UserError(f"serverless job record lacks {', '.join(missing)}; re-launch to rewrite training/job.json")
    return ServerlessJobHandle(data["job_id"], run_dir, data["region"], data["output_s3_path"])
