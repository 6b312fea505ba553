"""SageMaker training job (SMTJ) backend: Nova 2 Lite RFT through the sagemaker v3 SDK's recipe path.

`plan` is offline and needs no credentials: it resolves the recipe (the surface's published template plus
only the values the spec changes), and computes the `ModelTrainer.from_recipe(...)` arguments and the
CreateTrainingJob request the SDK sends for them. `submit` uploads the data (content-addressed), deploys and
probes the reward if planned, then calls exactly those `from_recipe(...)` arguments and `.train(wait=False)`
(sagemaker-train 1.27.0). What the SDK does for a Nova recipe (sagemaker/train/sm_recipes/utils.py
_get_args_from_nova_recipe, model_trainer.py _create_training_job_args), and the plan mirrors:
- the resolved recipe is uploaded and passed as input channel `recipe` (container path
  /opt/ml/input/data/recipe/recipe.yaml, announced in hyperparameter `sagemaker_recipe_local_path`);
- `run.model_name_or_path` becomes hyperparameter `base_model`, or `base_model_location` for an s3:// checkpoint;
- `run.reward_lambda_arn` becomes hyperparameter `reward_lambda_arn`;
- the job is named `<base_job_name>-<YYYYmmddHHMMSS>` (utils.py _get_unique_name) and the recipe goes to
  `s3://<bucket>/<prefix>/<base_job_name>/<job name>/input/recipe/recipe.yaml`: those two values exist only at
  submit, so the plan's request holds the base name and the recipe's content address instead.
The base name is deterministic (the request's digest): submitting the same plan again finds the job through
ListTrainingJobs and attaches to it instead of paying twice. The stopping condition defaults to 24 h (the
SDK's 1 h would kill any real RFT run), and the SDK's usage telemetry is switched off (only the calls the
plan shows leave the machine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.train import aws
from nbkit.train import recipes as rec
from nbkit.train.archive import safe_extract
from nbkit.train.job import DryRunHandle, JobHandle, JobStatus, Plan
from nbkit.train.spec import (
    JobSpec,
    from_recipe_default,
    recipe_key,
    steps_for,
    surface_default,
    with_surface_defaults,
)

INSTANCE_TYPES = ("ml.p5.48xlarge", "ml.p5en.48xlarge")
RECIPE_CHANNEL = "recipe"  # sagemaker.train.constants SM_RECIPE / SM_RECIPE_YAML
RECIPE_FILE = "recipe.yaml"
RECIPE_CONTAINER_PATH = f"/opt/ml/input/data/{RECIPE_CHANNEL}/{RECIPE_FILE}"
DATA_CHANNEL = "train"
VOLUME_SIZE_GB = 30  # ModelTrainer's default volume
JOB_BASE_LIMIT = 48  # the SDK appends "-YYYYmmddHHMMSS" and cuts at 63 characters
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
MIN_DOCUMENTED_PROMPTS = 100


class SageMakerPlan(Plan):
    """Everything an SMTJ job (training or `rft_eval`) would send; `request` is the CreateTrainingJob call."""

    backend: str = "sagemaker"
    kind: str = "train"
    region: str
    job_name: str
    recipe_template: str = Field(description="upstream recipe this template copies")
    recipe: dict[str, Any] = Field(description="the resolved recipe the job runs")
    recipe_yaml: str = Field(description="the exact bytes uploaded as channel `recipe`")
    recipe_overrides: dict[str, Any]
    from_recipe: dict[str, Any] = Field(description="ModelTrainer.from_recipe(...) arguments (sagemaker v3)")
    train_call: dict[str, Any] = Field(description="ModelTrainer.train(...) arguments")
    uploads: list[dict[str, Any]]
    reward: dict[str, Any]
    output_s3_path: str
    staging: str = Field(description="s3://bucket/prefix where the SDK uploads the recipe")

    def describe(self) -> str:
        head = super().describe()
        if self.kind == "eval":
            head = head.replace(" plan for job", " rft_eval plan for job", 1)
        lines = [head, "uploads (content-addressed; skipped when already there):"]
        lines += [f"  {u['source']} -> {u['uri']}" for u in self.uploads]
        lines.append(_reward_line(self.reward))
        lines += aws.provenance_lines(self.spec)
        lines.append(f"job name at submit: {self.job_name}-{SUBMIT_STAMP} (the SDK's UTC timestamp; the same plan "
                     "submitted again attaches to its job)")
        lines.append(f"output: {self.output_s3_path}/<job name>/output/output.tar.gz")
        lines.append("resolved recipe (the SDK uploads it as channel 'recipe'):")
        lines += ["  " + line for line in self.recipe_yaml.rstrip().splitlines()]
        lines.append("equivalent sagemaker v3 SDK call (ModelTrainer.from_recipe(...).train(...)):")
        sdk = yaml.safe_dump({"from_recipe": self.from_recipe, "train": self.train_call}, sort_keys=False, width=100)
        lines += ["  " + line for line in sdk.rstrip().splitlines()]
        return "\n".join(lines)


def _reward_line(reward: dict[str, Any]) -> str:
    if reward.get("deploy"):
        return f"reward: deploy {reward['source']} as Lambda {reward['arn']} (runs as {reward['role_arn']})"
    return f"reward: existing Lambda {reward.get('arn', '')}"


# ----------------------------------------------------------------------------------------------- plan


def plan(spec: JobSpec) -> SageMakerPlan:
    """The SMTJ job for `spec`: resolved recipe, from_recipe arguments, CreateTrainingJob request. Pure.

    Every problem (spec ranges on the surface, ARNs, S3 forms, region, instances, data) is collected and
    raised together in one UserError naming the fields.
    """
    spec = with_surface_defaults(spec)
    surface = spec.surface
    problems, warnings = aws.spec_problems(spec, surface)
    region = spec.aws.region
    image = _image(spec, region, "train", problems, warnings)
    problems += aws.check_role_arn(spec.aws.role_arn, "aws.role_arn")
    instance_count = _instance_count(spec, surface, problems)
    _instance_type(spec.aws.instance_type, problems)

    base = aws.s3_base(spec.aws.s3_bucket, spec.aws.s3_prefix, problems)
    output = aws.output_location(spec, base, problems)
    data_uri, data_upload = aws.plan_data(spec.train_data, "train_data", base, problems)
    model = aws.nova_base_model(spec, problems)
    reward = aws.plan_reward(spec, region, problems)
    steps = resolve_steps(spec, problems, warnings)
    concurrency = spec.aws.lambda_concurrency_limit or surface_default(surface, "lambda_concurrency_limit")
    aws.raise_problems(problems, f"SageMaker training job plan for {spec.name!r}")
    staging = base or output

    values = recipe_values(spec, surface, model=model, data_uri=data_uri, reward_arn=reward["arn"],
                           replicas=instance_count, concurrency=concurrency, steps=steps)
    skeleton = _request_skeleton(spec, image, model, reward["arn"], data_uri, output, instance_count)
    name = aws.job_name(spec.name, aws.digest({"recipe": rec.template(surface).upstream, "values": values,
                                                "request": skeleton}), limit=JOB_BASE_LIMIT)
    values["run.name"] = name
    return build(spec, "train", surface, name, values, skeleton, [data_upload], reward, output, warnings,
                 staging=staging)


SUBMIT_STAMP = "YYYYmmddHHMMSS"  # stands for the SDK's timestamp in names known only at submit


def build(spec: JobSpec, kind: str, template_key: str, name: str, values: dict[str, Any],
          skeleton: dict[str, Any], uploads: list[aws.Upload | None], reward: dict[str, Any], output: str,
          warnings: list[str], staging: str) -> SageMakerPlan:
    """Resolve the recipe and complete the request the SDK will send (shared with rft_eval).

    `staging` (s3://bucket/prefix) is where the SDK uploads the recipe: its session's default bucket and prefix.
    """
    template = rec.template(template_key)
    values = {"run.name": values["run.name"], **values}  # name first in the overrides shown
    recipe = rec.resolve(rec.apply(rec.load(template_key), values))
    text = rec.dump(recipe)
    job = f"{name}-{SUBMIT_STAMP}"
    request = {"TrainingJobName": job, **skeleton}
    recipe_uri = f"{staging}/{name}/{job}/input/{RECIPE_CHANNEL}/{RECIPE_FILE}"
    request["InputDataConfig"] = [*skeleton["InputDataConfig"], _channel(RECIPE_CHANNEL, recipe_uri)]
    request = _ordered(request)
    compute = {"instance_type": spec.aws.instance_type,
               "instance_count": request["ResourceConfig"]["InstanceCount"],
               "volume_size_in_gb": VOLUME_SIZE_GB}
    from_recipe = {
        "training_recipe": str(template.path),
        "compute": compute,
        "recipe_overrides": rec.nested(values),
        "training_image": request["AlgorithmSpecification"]["TrainingImage"],
        "role": request["RoleArn"],
        "base_job_name": name,
        "output_data_config": {"s3_output_path": output, "compression_type": "GZIP"},
        "stopping_condition": {"max_runtime_in_seconds": request["StoppingCondition"]["MaxRuntimeInSeconds"]},
    }
    if request.get("Tags"):
        from_recipe["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in request["Tags"]]
    data_channels = [
        {"channel_name": c["ChannelName"], "data_source": c["DataSource"]["S3DataSource"]["S3Uri"]}
        for c in skeleton["InputDataConfig"]
    ]
    return SageMakerPlan(
        spec=spec, kind=kind, region=spec.aws.region, job_name=name, request=request, warnings=warnings,
        recipe_template=template.upstream, recipe=recipe, recipe_yaml=text, recipe_overrides=rec.nested(values),
        from_recipe=from_recipe, train_call={"input_data_config": data_channels, "wait": False},
        uploads=[u.to_dict() for u in uploads if u is not None], reward=reward, output_s3_path=output,
        staging=staging,
    )


def recipe_values(spec: JobSpec, surface: str, *, model: str, data_uri: str, reward_arn: str, replicas: int,
                  concurrency: int | None, steps: int) -> dict[str, Any]:
    """Dotted recipe paths -> values to override, in the surface's key spellings.

    Only what differs from the published recipe is sent: a value the spec took from the recipe itself
    (`spec.sources`) stays the recipe's own, so the plan's overrides are exactly the user's changes. Only keys
    the surface's template has are set (the SDK drops others with a warning; HyperPod has no kl_loss_coef).
    A null (reasoning off) stays a YAML null in the recipe file: never the string "None".
    """
    h = spec.hyper
    prefix = surface.split("-")[0]
    values: dict[str, Any] = {
        "run.model_name_or_path": model,
        "run.data_s3_path": data_uri,
        "run.replicas": replicas,
        "run.reward_lambda_arn": reward_arn,
        "training_config.trainer.max_steps": steps,
    }
    fields = ["max_length", "global_batch_size", "reasoning_effort", "max_new_tokens", "temperature", "top_k",
              "entropy_coef", "learning_rate", "weight_decay", "number_generation", "save_steps"]
    if prefix == "smtj":
        values["training_config.rollout.rewards.api_endpoint.lambda_arn"] = reward_arn
        fields.append("kl_coef")
    if h.lora_rank:
        fields += ["lora_alpha", "loraplus_lr_ratio"]
    for name in fields:
        if from_recipe_default(spec, name):
            continue
        key = "training_config.trainer.save_steps" if name == "save_steps" else recipe_key(surface, name)
        values[key] = getattr(h, name)
    if concurrency is not None:
        values["training_config.rollout.rewards.api_endpoint.lambda_concurrency_limit"] = concurrency
    return values


def resolve_steps(spec: JobSpec, problems: list[str], warnings: list[str]) -> int:
    """trainer.max_steps: the spec's, or derived from epochs and the (local) training file's size."""
    from nbkit.train.derived import count_records

    h = spec.hyper
    n_train = count_records(spec.train_data) if spec.train_data and not spec.train_data.startswith("s3://") else None
    if n_train is not None and n_train < MIN_DOCUMENTED_PROMPTS:
        warnings.append(f"train_data has {n_train} records; AWS recommends at least {MIN_DOCUMENTED_PROMPTS}")
    if h.max_steps is not None:
        steps = h.max_steps
    elif n_train is None:
        problems.append("hyper.max_steps: None, and train_data is not a local file, so the steps cannot be "
                        "derived from epochs; set max_steps")
        return 0
    else:
        steps = steps_for(h, n_train)
    if not 5 <= steps <= 100000:
        problems.append(f"hyper.max_steps = {steps} (derived from epochs and data size): trainer.max_steps must "
                        "be 5..100000; set max_steps or change epochs/batch size")
    return steps


def note_unexposed(spec: JobSpec, prefix: str, warnings: list[str]) -> None:
    """Knobs the spec's range table lets through but the surface's recipe has no key for."""
    from nbkit.train.spec import Hyperparameters

    default = Hyperparameters()
    if prefix == "smhp" and spec.hyper.kl_coef != default.kl_coef:
        warnings.append(f"hyper.kl_coef = {spec.hyper.kl_coef}: the HyperPod recipe has no kl_loss_coef; ignored")


def _image(spec: JobSpec, region: str, kind: str, problems: list[str], warnings: list[str]) -> str:
    """The region's Nova image, or the user's override (then an unlisted region is only a warning)."""
    found = aws.check_region(region, tuple(aws.NOVA_IMAGE_ACCOUNTS), "SageMaker (Nova images)")
    override = spec.aws.image_uri if kind == "train" else ""
    if override:
        if found:
            warnings.append(found[0] + "; using aws.image_uri as given")
        return override
    problems += found
    return aws.image_uri(region, kind) if not found else ""


def _instance_count(spec: JobSpec, surface: str, problems: list[str]) -> int:
    """SMTJ Nova RFT runs on 2, 4, 6 or 8 instances, LoRA and full rank alike (reference section 9)."""
    count = spec.aws.instance_count or surface_default(surface, "instance_count")
    allowed = surface_default(surface, "instance_counts")
    if count not in allowed:
        kind = "LoRA" if surface.endswith("lora") else "full-rank"
        problems.append(f"aws.instance_count = {count}: SMTJ {kind} RFT runs on {', '.join(map(str, allowed))} "
                        f"instances (default {surface_default(surface, 'instance_count')})")
    return count


def _instance_type(instance_type: str, problems: list[str], allowed: tuple[str, ...] = INSTANCE_TYPES) -> None:
    if instance_type not in allowed:
        problems.append(f"aws.instance_type = {instance_type!r}: Nova 2 Lite RFT runs on {', '.join(allowed)}")


def _channel(name: str, uri: str) -> dict[str, Any]:
    """One S3 input channel exactly as ModelTrainer builds it for an s3:// data source."""
    return {
        "ChannelName": name,
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri,
                                        "S3DataDistributionType": "FullyReplicated"}},
        "InputMode": "File",
    }


def model_hyperparameters(model: str) -> dict[str, str]:
    """from_recipe's mapping of run.model_name_or_path: s3:// -> base_model_location, else base_model."""
    return {"base_model_location": model} if model.startswith("s3://") else {"base_model": model}


def _request_skeleton(spec: JobSpec, image: str, model: str, reward_arn: str, data_uri: str, output: str,
                      instance_count: int) -> dict[str, Any]:
    """CreateTrainingJob fields except the name and the recipe channel (those depend on the digest)."""
    hyper = model_hyperparameters(model)
    if reward_arn:
        hyper["reward_lambda_arn"] = reward_arn
    hyper["sagemaker_recipe_local_path"] = RECIPE_CONTAINER_PATH
    return common_request(spec, image, hyper, [_channel(DATA_CHANNEL, data_uri)], output, instance_count)


def common_request(spec: JobSpec, image: str, hyper: dict[str, str], channels: list[dict[str, Any]],
                   output: str, instance_count: int) -> dict[str, Any]:
    request: dict[str, Any] = {
        "RoleArn": spec.aws.role_arn,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "HyperParameters": hyper,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": output, "CompressionType": "GZIP"},
        "ResourceConfig": {"InstanceType": spec.aws.instance_type, "InstanceCount": instance_count,
                           "VolumeSizeInGB": VOLUME_SIZE_GB},
        "StoppingCondition": {"MaxRuntimeInSeconds": int(spec.aws.max_runtime_hours * 3600)},
    }
    if spec.aws.tags:
        request["Tags"] = [{"Key": k, "Value": v} for k, v in sorted(spec.aws.tags.items())]
    return request


_ORDER = ("TrainingJobName", "RoleArn", "AlgorithmSpecification", "HyperParameters", "InputDataConfig",
          "OutputDataConfig", "ResourceConfig", "StoppingCondition", "Tags")


def _ordered(request: dict[str, Any]) -> dict[str, Any]:
    return {k: request[k] for k in _ORDER if k in request}


# --------------------------------------------------------------------------------------------- submit


def no_retry_config() -> Any:
    """Creating a job is never retried automatically (a retry after a lost response could pay twice)."""
    from botocore.config import Config

    return Config(retries={"total_max_attempts": 1, "mode": "standard"})


def plan_uploads(plan: Any) -> list[aws.Upload]:
    """The plan's uploads (local data files) as Upload objects."""
    return [aws.Upload(uri=item["uri"], sha256=item["sha256"], source=item["source"]) for item in plan.uploads]


def upload_all(plan: Any, sess: Any) -> None:
    s3 = sess.client("s3", region_name=plan.region)
    for upload in plan_uploads(plan):
        state = aws.perform_upload(s3, upload)
        print(f"{state:>8}: {upload.uri}")


def prepare_submission(plan: Any, run_dir: str | os.PathLike, session: Any = None) -> tuple[Any, JobHandle | None]:
    """What every AWS submission does before creating its job, in this order: credentials, content-addressed
    data uploads, the reward Lambda (deployed and probed if planned). A dry run prints the plan, sends nothing
    and returns its handle instead of a session."""
    if plan.spec.dry_run:
        print(plan.describe())
        return None, DryRunHandle(plan.backend, plan.spec.name, run_dir, plan.describe())
    sess = session or aws.session(plan.region)
    aws.require_credentials(sess)
    upload_all(plan, sess)
    aws.submit_reward(plan.reward, plan.spec, plan.region, sess)
    return sess, None


def submit(plan: SageMakerPlan, run_dir: str | os.PathLike, session: Any = None) -> JobHandle:
    """Send the plan: upload the data (content-addressed), deploy and probe the reward if planned, then run
    the plan's `ModelTrainer.from_recipe(...)` arguments and `.train(wait=False)` through the sagemaker SDK.

    Dry run (the default) prints the plan and sends nothing. A job this plan created before is found by its
    base name and attached to, not duplicated; creation is never retried automatically.
    """
    sess, dry = prepare_submission(plan, run_dir, session)
    if dry:
        return dry
    name = existing_job(sess, plan.region, plan.job_name)
    if name:
        print(f"training job {name} already exists for this plan: attaching to it. To run the same configuration "
              "again, change `name`.")
    else:
        name = train_with_sdk(plan, sess)
    return SageMakerJobHandle(name, run_dir, plan.region, plan.output_s3_path, kind=plan.kind, session=sess)


def existing_job(sess: Any, region: str, base: str) -> str:
    """The newest job named `<base>-<timestamp>` (what the SDK names a job of this plan), or ''."""
    import re

    client = sess.client("sagemaker", region_name=region)
    with aws.aws_errors(f"looking for earlier jobs of {base}", "sagemaker:ListTrainingJobs"):
        found = client.list_training_jobs(NameContains=base, SortBy="CreationTime", SortOrder="Descending",
                                          MaxResults=100)["TrainingJobSummaries"]
    ours = re.compile(rf"^{re.escape(base)}-\d{{14}}$")
    return next((j["TrainingJobName"] for j in found if ours.match(j["TrainingJobName"])), "")


SDK_CONFIG = {"SchemaVersion": "1.0", "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}}}


def sdk_session(sess: Any, staging: str) -> Any:
    """A sagemaker-core Session on our boto3 session: our credentials and region, the plan's bucket
    (`staging`, an s3:// prefix) for the SDK's staging uploads, and the SDK's usage telemetry off."""
    from sagemaker.core.helper.session_helper import Session

    bucket, _, prefix = staging.removeprefix("s3://").partition("/")
    return Session(boto_session=sess, default_bucket=bucket, default_bucket_prefix=prefix or None,
                   sagemaker_config=SDK_CONFIG)


def sdk_trainer(plan: SageMakerPlan, sess: Any) -> Any:
    """`ModelTrainer.from_recipe(...)` with exactly the plan's arguments."""
    from sagemaker.core.shapes import Tag
    from sagemaker.train import ModelTrainer
    from sagemaker.train.configs import Compute, OutputDataConfig, StoppingCondition

    fr = plan.from_recipe
    return ModelTrainer.from_recipe(
        training_recipe=fr["training_recipe"],
        compute=Compute(**fr["compute"]),
        recipe_overrides=fr["recipe_overrides"],
        training_image=fr["training_image"],
        role=fr["role"],
        base_job_name=fr["base_job_name"],
        output_data_config=OutputDataConfig(**fr["output_data_config"]),
        stopping_condition=StoppingCondition(**fr["stopping_condition"]),
        tags=[Tag(**t) for t in fr.get("tags", [])] or None,
        sagemaker_session=sdk_session(sess, plan.staging),
    )


def train_with_sdk(plan: SageMakerPlan, sess: Any) -> str:
    """Build the trainer and start the job (`wait=False`); returns the job name the SDK gave it."""
    from sagemaker.train.configs import InputData

    channels = [InputData(**c) for c in plan.train_call["input_data_config"]]
    with aws.aws_errors(f"creating training job {plan.job_name}-<timestamp>", "sagemaker:CreateTrainingJob (and "
                        f"iam:PassRole, iam:GetRole, iam:SimulatePrincipalPolicy on {plan.request['RoleArn']}, "
                        "s3:PutObject on the bucket)", plan.job_name):
        trainer = sdk_trainer(plan, sess)
        trainer.train(input_data_config=channels, wait=False, logs=False)
    name = trainer._latest_training_job.training_job_name  # the SDK keeps the created job here (1.27.0)
    print(f"created training job {name} through ModelTrainer.from_recipe(...).train(wait=False)")
    return name


# --------------------------------------------------------------------------------------------- handle


_STATUS: dict[str, JobStatus] = {"Completed": "completed", "Failed": "failed", "Stopped": "stopped",
                                 "Stopping": "running"}
_PENDING_SECONDARY = {"Starting", "Pending", "LaunchingMLInstances", "PreparingTrainingStack",
                      "DownloadingTrainingImage", "Downloading"}


class SageMakerJobHandle(JobHandle):
    """A SageMaker training job (RFT training or rft_eval): status, stop, CloudWatch logs, output.tar.gz."""

    backend = "sagemaker"

    def __init__(self, job_id: str, run_dir: str | os.PathLike, region: str, output_s3_path: str,
                 kind: str = "train", session: Any = None) -> None:
        super().__init__(job_id, run_dir)
        self.region = region
        self.output_s3_path = output_s3_path.rstrip("/")
        self.kind = kind
        self._session = session
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            sess = self._session or aws.session(self.region)
            self._clients[service] = sess.client(service, region_name=self.region)
        return self._clients[service]

    def describe(self) -> dict[str, Any]:
        with aws.aws_errors(f"describing training job {self.job_id}", "sagemaker:DescribeTrainingJob", self.job_id):
            return self.client("sagemaker").describe_training_job(TrainingJobName=self.job_id)

    def status(self) -> JobStatus:
        info = self.describe()
        state = info["TrainingJobStatus"]
        if state == "InProgress":
            return "pending" if info.get("SecondaryStatus") in _PENDING_SECONDARY else "running"
        return _STATUS.get(state, "running")

    def failure_reason(self) -> str:
        return self.describe().get("FailureReason", "")

    def stop(self) -> None:
        """StopTrainingJob; a job that already ended has nothing to stop (not an error)."""
        if self.status() not in ("pending", "running"):
            return
        with aws.aws_errors(f"stopping training job {self.job_id}", "sagemaker:StopTrainingJob", self.job_id):
            self.client("sagemaker").stop_training_job(TrainingJobName=self.job_id)

    def logs(self, tail: int | None = None) -> str:
        """CloudWatch lines of every instance: log group /aws/sagemaker/TrainingJobs, streams `<job>/...`."""
        lines = aws.log_lines(self.client("logs"), LOG_GROUP, f"{self.job_id}/")
        return "\n".join(lines[-tail:] if tail else lines)

    @property
    def output_uri(self) -> str:
        return f"{self.output_s3_path}/{self.job_id}/output/output.tar.gz"

    def outputs(self, dest: str | os.PathLike | None = None) -> Path:
        """Download output.tar.gz and extract it safely; the folder then holds manifest.json and the CSV
        (and, for rft_eval, eval-result/results_*.json and details parquet)."""
        dest = Path(dest) if dest else self.default_dest()
        archive = aws.download(self.client("s3"), self.output_uri, dest / "output.tar.gz")
        return safe_extract(archive, dest)

    def default_dest(self) -> Path:
        """training/output for a training job (the layout every stage reads), training/eval/<job> for rft_eval."""
        training = RunLayout(self.run_dir).training
        return training / "output" if self.kind == "train" else training / "eval" / self.job_id

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "job_id": self.job_id, "region": self.region,
                "output_s3_path": self.output_s3_path, "kind": self.kind}


def handle_from_dict(data: dict[str, Any], run_dir: str | os.PathLike) -> SageMakerJobHandle:
    missing = [k for k in ("job_id", "region", "output_s3_path") if k not in data]
    if missing:
        raise UserError(f"SageMaker job record lacks {', '.join(missing)}; re-launch to rewrite training/job.json")
    return SageMakerJobHandle(data["job_id"], run_dir, data["region"], data["output_s3_path"],
                              kind=data.get("kind", "train"))
