"""Amazon Bedrock backend: Nova 2 Lite reinforcement fine-tuning as a managed model customization job.

`plan` builds the exact `bedrock.create_model_customization_job(...)` keyword arguments, with the RFT
hyperparameters typed as the service model wants them (integers, a float learning rate, an enum string).
botocore rejects values under a minimum but not over a maximum, so every range is checked here, both ends,
together with the dataset size Bedrock accepts (100..20,000 prompts), the region (Nova 2 Lite customization is
us-east-1 only), and the ARN/S3 forms. The idempotency token and the job name derive from the request, so
submitting the same plan twice creates one job. Bedrock passes `reference_answer` and extra keys to the reward
under `metadata`: a reward deployed from a file is packaged for that event variant. The evaluation split, when
given, goes to `validationDataConfig.validators[].s3Uri` (botocore bedrock/2023-04-20 ValidationDataConfig), so
Bedrock reports validation metrics beside the training ones. `batchSize` need not be a multiple of
`trainingSamplePerPrompt`: the API has no such rule.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from nbkit.errors import UserError
from nbkit.layout import RunLayout
from nbkit.train import aws, sagemaker
from nbkit.train.job import JobHandle, JobStatus, Plan
from nbkit.train.spec import JobSpec, with_surface_defaults

CUSTOMIZATION_TYPE = "REINFORCEMENT_FINE_TUNING"
MIN_PROMPTS, MAX_PROMPTS = 100, 20_000
# Service-model bounds (botocore enforces only the minimums); evalInterval is our AwsSettings field.
HYPER_RANGES = {
    "epochCount": (1, 50),
    "batchSize": (16, 512),
    "learningRate": (1e-7, 1e-3),
    "trainingSamplePerPrompt": (2, 16),
    "evalInterval": (1, 100),
    "maxPromptLength": (1, None),
    "inferenceMaxTokens": (1, None),
}
SPEC_FIELD = {
    "epochCount": "hyper.epochs",
    "batchSize": "hyper.global_batch_size",
    "learningRate": "hyper.learning_rate",
    "trainingSamplePerPrompt": "hyper.number_generation",
    "evalInterval": "aws.eval_interval",
    "maxPromptLength": "aws.max_prompt_length",
    "inferenceMaxTokens": "hyper.max_new_tokens",
    "reasoningEffort": "hyper.reasoning_effort",
}
_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9+\-.])*$")
_MODEL_NAME = re.compile(r"^([0-9a-zA-Z][_-]?){1,63}$")
_CUSTOM_MODEL_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:bedrock:[a-z0-9-]+:\d{12}:custom-model/.+$")


class BedrockPlan(Plan):
    """`request` is the create_model_customization_job keyword arguments, exactly as sent."""

    backend: str = "bedrock"
    region: str
    job_name: str
    uploads: list[dict[str, Any]]
    reward: dict[str, Any]
    n_train: int | None = Field(None, description="training prompts counted locally (None: data on S3)")

    def describe(self) -> str:
        lines = [super().describe(), "uploads (content-addressed; skipped when already there):"]
        lines += [f"  {u['source']} -> {u['uri']}" for u in self.uploads] or ["  (none: data is on S3)"]
        lines.append(sagemaker._reward_line(self.reward) + " [Bedrock event variant: reference under metadata]")
        lines += aws.provenance_lines(self.spec)
        return "\n".join(lines)


def base_model_arn(region: str) -> str:
    return f"arn:aws:bedrock:{region}::foundation-model/{aws.NOVA_MODEL_TYPE}"


# ----------------------------------------------------------------------------------------------- plan


def plan(spec: JobSpec) -> BedrockPlan:
    """The Bedrock RFT job for `spec`. Pure: reads the local data file to count and hash it, sends nothing."""
    spec = with_surface_defaults(spec)
    problems, warnings = aws.spec_problems(spec, "bedrock")
    a, h = spec.aws, spec.hyper
    region = a.region
    problems += aws.check_region(region, aws.BEDROCK_RFT_REGIONS, "Bedrock")
    problems += aws.check_role_arn(a.role_arn, "aws.role_arn")
    base = aws.s3_base(a.s3_bucket, a.s3_prefix, problems)
    output = aws.output_location(spec, base, problems)
    data_uri, upload = aws.plan_data(spec.train_data, "train_data", base, problems)
    eval_uri, eval_upload = aws.plan_data(spec.eval_data, "eval_data", base, problems) if spec.eval_data else ("", None)
    n_train = _dataset_size(spec, problems, warnings)
    reward = aws.plan_reward(spec, region, problems, target="bedrock")
    base_model = _base_model(spec, region, problems)
    if h.lora_rank == 0:
        warnings.append("hyper.lora_rank = 0 (full rank): Bedrock chooses the adaptation method itself; ignored")

    hyper: dict[str, Any] = {
        "epochCount": int(h.epochs),
        "batchSize": int(h.global_batch_size),
        "learningRate": float(h.learning_rate),
        "trainingSamplePerPrompt": int(h.number_generation),
        "inferenceMaxTokens": int(h.max_new_tokens),
    }
    if a.eval_interval is not None:
        hyper["evalInterval"] = int(a.eval_interval)
    if a.max_prompt_length is not None:
        hyper["maxPromptLength"] = int(a.max_prompt_length)
    if h.reasoning_effort is not None:
        hyper["reasoningEffort"] = h.reasoning_effort
    problems += hyper_problems(hyper)
    aws.raise_problems(problems, f"Bedrock plan for {spec.name!r}")

    request: dict[str, Any] = {
        "roleArn": a.role_arn,
        "baseModelIdentifier": base_model,
        "customizationType": CUSTOMIZATION_TYPE,
        "trainingDataConfig": {"s3Uri": data_uri},
        **({"validationDataConfig": {"validators": [{"s3Uri": eval_uri}]}} if eval_uri else {}),
        "outputDataConfig": {"s3Uri": output},
        "customizationConfig": {"rftConfig": {
            "graderConfig": {"lambdaGrader": {"lambdaArn": reward["arn"]}},
            "hyperParameters": hyper,
        }},
    }
    if a.tags:
        tags = [{"key": k, "value": v} for k, v in sorted(a.tags.items())]
        request["jobTags"] = tags
        request["customModelTags"] = tags
    token = aws.digest({"base": spec.name, "request": request})
    name = aws.job_name(spec.name, token)
    model_name = a.custom_model_name or name
    _name_problems(name, model_name, problems)
    aws.raise_problems(problems, f"Bedrock plan for {spec.name!r}")
    request = {"jobName": name, "customModelName": model_name, **request, "clientRequestToken": token[:64]}
    return BedrockPlan(spec=spec, region=region, job_name=name, request=request, warnings=warnings,
                       uploads=[u.to_dict() for u in (upload, eval_upload) if u], reward=reward, n_train=n_train)


def hyper_problems(hyper: dict[str, Any]) -> list[str]:
    """Both ends of every range (botocore would pass `epochCount: 500` through to the service)."""
    problems = []
    for key, (lo, hi) in HYPER_RANGES.items():
        if key not in hyper:
            continue
        value = hyper[key]
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            bounds = f"{lo:g}..{hi:g}" if hi is not None else f">= {lo:g}"
            problems.append(f"{SPEC_FIELD[key]} = {value:g}: Bedrock rftConfig.hyperParameters.{key} must be {bounds}")
    effort = hyper.get("reasoningEffort")
    if effort is not None and effort not in ("low", "medium", "high"):
        problems.append(f"hyper.reasoning_effort = {effort!r}: Bedrock takes low, medium or high")
    return problems


def _dataset_size(spec: JobSpec, problems: list[str], warnings: list[str]) -> int | None:
    """Bedrock accepts 100..20,000 training prompts; a local file is counted, an S3 one cannot be."""
    from nbkit.train.derived import count_records

    if not spec.train_data or spec.train_data.startswith("s3://"):
        warnings.append(f"train_data is on S3: its size cannot be checked here (Bedrock takes {MIN_PROMPTS:,}.."
                        f"{MAX_PROMPTS:,} prompts)")
        return None
    n = count_records(spec.train_data)
    if n is not None and not MIN_PROMPTS <= n <= MAX_PROMPTS:
        problems.append(f"train_data = {spec.train_data!r}: {n:,} records; Bedrock RFT takes {MIN_PROMPTS:,} to "
                        f"{MAX_PROMPTS:,} prompts")
    return n


def _base_model(spec: JobSpec, region: str, problems: list[str]) -> str:
    """The Nova 2 Lite foundation model ARN, or a Bedrock custom model to continue from."""
    source = spec.aws.continue_from or (spec.model if spec.model.startswith("arn:") else "")
    if source:
        if not _CUSTOM_MODEL_ARN.match(source):
            problems.append(f"aws.continue_from = {source!r}: on Bedrock, continue from a custom model ARN "
                            "(arn:aws:bedrock:<region>:<account>:custom-model/...)")
        return source
    aws.nova_base_model(spec, problems)
    return base_model_arn(region)


def _name_problems(name: str, model_name: str, problems: list[str]) -> None:
    if not _JOB_NAME.match(name) or len(name) > 63:
        problems.append(f"name: the job name {name!r} is not accepted by Bedrock (letters, digits, hyphens, dots)")
    if not _MODEL_NAME.match(model_name):
        problems.append(f"aws.custom_model_name = {model_name!r}: 1-63 letters or digits, single '-' or '_' "
                        "between them")


# --------------------------------------------------------------------------------------------- submit


def submit(plan: BedrockPlan, run_dir: str | os.PathLike, session: Any = None) -> JobHandle:
    """Upload, deploy the reward if planned, create the customization job once (idempotency token)."""
    from botocore.exceptions import ClientError

    sess, dry = sagemaker.prepare_submission(plan, run_dir, session)
    if dry:
        return dry
    client = sess.client("bedrock", region_name=plan.region, config=sagemaker.no_retry_config())
    name = plan.request["jobName"]
    with aws.aws_errors(f"creating Bedrock customization job {name}", "bedrock:CreateModelCustomizationJob "
                        f"(and iam:PassRole on {plan.request['roleArn']})", name):
        try:
            arn = client.create_model_customization_job(**plan.request)["jobArn"]
            print(f"created Bedrock customization job {name} ({arn})")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("ResourceInUseException", "ConflictException"):
                raise
            arn = client.get_model_customization_job(jobIdentifier=name)["jobArn"]
            print(f"Bedrock job {name} already exists: attaching to it. To run it again, change `name`.")
    return BedrockJobHandle(arn, run_dir, plan.region, plan.request["outputDataConfig"]["s3Uri"], job_name=name,
                            session=sess)


# --------------------------------------------------------------------------------------------- handle

_STATUS: dict[str, JobStatus] = {"InProgress": "running", "Completed": "completed", "Failed": "failed",
                                 "Stopping": "running", "Stopped": "stopped"}


class BedrockJobHandle(JobHandle):
    """A Bedrock customization job: status, stop, the custom model ARN, metrics from the output bucket."""

    backend = "bedrock"

    def __init__(self, job_id: str, run_dir: str | os.PathLike, region: str, output_s3_uri: str,
                 job_name: str = "", session: Any = None) -> None:
        super().__init__(job_id, run_dir)
        self.job_name = job_name or job_id.rsplit("/", 1)[-1]
        self.region = region
        self.output_s3_uri = output_s3_uri.rstrip("/")
        self._session = session

    def client(self, service: str) -> Any:
        return (self._session or aws.session(self.region)).client(service, region_name=self.region)

    def describe(self) -> dict[str, Any]:
        with aws.aws_errors(f"reading Bedrock job {self.job_id}", "bedrock:GetModelCustomizationJob", self.job_id):
            return self.client("bedrock").get_model_customization_job(jobIdentifier=self.job_name)

    def status(self) -> JobStatus:
        return _STATUS.get(self.describe()["status"], "running")

    def custom_model_arn(self) -> str:
        """The tuned model (`outputModelArn`); empty until the job completes."""
        return self.describe().get("outputModelArn", "")

    def stop(self) -> None:
        if self.status() != "running":
            return
        with aws.aws_errors(f"stopping Bedrock job {self.job_id}", "bedrock:StopModelCustomizationJob", self.job_id):
            self.client("bedrock").stop_model_customization_job(jobIdentifier=self.job_name)

    def logs(self, tail: int | None = None) -> str:
        """Bedrock has no log stream for customization jobs: the status, its details and any failure message."""
        info = self.describe()
        lines = [f"status: {info.get('status')}"]
        for key in ("statusDetails", "failureMessage", "outputModelArn", "trainingMetrics", "validationMetrics"):
            if info.get(key):
                lines.append(f"{key}: {info[key]}")
        return "\n".join(lines[-tail:] if tail else lines)

    def outputs(self, dest: str | os.PathLike | None = None) -> Path:
        """manifest.json (the custom model ARN is the checkpoint) plus the metrics CSVs Bedrock wrote."""
        import json

        info = self.describe()
        if info.get("status") != "Completed":
            raise UserError(f"Bedrock job {self.job_id} is {info.get('status')}: outputs exist once it completes")
        dest = Path(dest) if dest else RunLayout(self.run_dir).training / "output"
        dest.mkdir(parents=True, exist_ok=True)
        s3 = self.client("s3")
        job_id = self.job_id.rsplit("/", 1)[-1]
        for uri in aws.list_keys(s3, f"{self.output_s3_uri}/"):
            if uri.endswith(".csv") and job_id in uri:
                aws.download(s3, uri, dest / uri.rsplit("/", 1)[-1])
        arn = info.get("outputModelArn", "")
        manifest = {"checkpoint_s3_bucket": arn, "custom_model_arn": arn, "job_arn": info.get("jobArn", self.job_id)}
        (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return dest

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "job_id": self.job_id, "job_name": self.job_name, "region": self.region,
                "output_s3_uri": self.output_s3_uri}


def handle_from_dict(data: dict[str, Any], run_dir: str | os.PathLike) -> BedrockJobHandle:
    missing = [k for k in ("job_id", "region", "output_s3_uri") if k not in data]
    if missing:
        raise UserError(f"Bedrock job record lacks {', '.join(missing)}; re-launch to rewrite training/job.json")
    return BedrockJobHandle(data["job_id"], run_dir, data["region"], data["output_s3_uri"], data.get("job_name", ""))
