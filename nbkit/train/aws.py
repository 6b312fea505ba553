"""Shared AWS helpers for the managed backends (SageMaker training jobs, HyperPod, Bedrock).

Everything a user can get wrong about AWS (credentials, permissions, ARN and S3 forms, regions) is turned
into a `UserError` that names the field or the IAM permission and says how to fix it. Validation helpers
return lists of problems instead of raising, so a plan can report every problem at once.
boto3 is imported lazily: `import nbkit.train.aws` stays cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbkit.errors import UserError

# Nova 2 Lite is the only model with RFT; its identifiers on each surface (reference sections 3, 6).
NOVA_MODEL_TYPE = "amazon.nova-2-lite-v1:0:256k"
NOVA_MODEL_NAME = "nova-lite-2/prod"

# Accounts that publish the SageMaker Nova images, per region (reference section 6). A region missing
# here has no published image, so SMTJ (and HyperPod, which pulls the same images) cannot run there.
NOVA_IMAGE_ACCOUNTS = {
    "us-east-1": "708977205387",
    "us-west-2": "176779409107",
    "ap-northeast-1": "878185805882",
}
# Bedrock fine-tuning of Nova 2 Lite is single-region (Bedrock user guide, supported models table).
BEDROCK_RFT_REGIONS = ("us-east-1",)

TRAIN_IMAGE_TAG = "nova-fine-tune-repo:SM-TJ-RFT-V2-latest"
EVAL_IMAGE_TAG = "nova-evaluation-repo:SM-TJ-Eval-V2-latest"

LAMBDA_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>[A-Za-z0-9_$-]{1,128}))?$"
)
ROLE_ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::(?P<account>\d{12}):role/(?P<name>[\w+=,.@/-]{1,512})$")
MLFLOW_ARN = re.compile(
    r"^arn:aws[a-zA-Z-]*:sagemaker:(?P<region>[a-z0-9-]+):\d{12}:(?:mlflow-tracking-server|mlflow-app)/[\w-]+$"
)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IP = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d$")


# --------------------------------------------------------------------------------------------- regions


def image_uri(region: str, kind: str = "train") -> str:
    """The Nova SageMaker image of a region; `kind` is "train" (RFT) or "eval" (evaluation)."""
    if region not in NOVA_IMAGE_ACCOUNTS:
        raise UserError(
            f"aws.region = {region!r}: no Nova training image is published there; "
            f"use one of {', '.join(NOVA_IMAGE_ACCOUNTS)}"
        )
    tag = {"train": TRAIN_IMAGE_TAG, "eval": EVAL_IMAGE_TAG}[kind]
    return f"{NOVA_IMAGE_ACCOUNTS[region]}.dkr.ecr.{region}.amazonaws.com/{tag}"


def check_region(region: str, supported: tuple[str, ...], surface: str, field: str = "aws.region") -> list[str]:
    """Problems with a region: malformed, or not one where `surface` runs Nova 2 Lite RFT."""
    if not region:
        return [f"{field}: empty; set the AWS region to run in (one of {', '.join(supported)})"]
    if not _REGION.match(region):
        return [f"{field} = {region!r}: not an AWS region name (e.g. us-east-1)"]
    if region not in supported:
        return [f"{field} = {region!r}: {surface} does not run Nova 2 Lite RFT there; use one of {', '.join(supported)}"]
    return []


# ------------------------------------------------------------------------------------- ARN and S3 forms


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3:// URI; raises UserError on anything else."""
    problems = check_s3_uri(uri, "s3 uri")
    if problems:
        raise UserError(problems[0])
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def check_s3_uri(uri: str, field: str, require_key: bool = False) -> list[str]:
    """Problems with an S3 URI: scheme, bucket naming rules, and (optionally) a non-empty key."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        return [f"{field} = {uri!r}: must be an S3 URI like s3://my-bucket/prefix"]
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket or _IP.match(bucket):
        return [
            f"{field} = {uri!r}: bucket {bucket!r} is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit)"
        ]
    if require_key and not key.strip("/"):
        return [f"{field} = {uri!r}: needs an object key after the bucket (s3://{bucket}/path/file.jsonl)"]
    return []


def check_lambda_arn(arn: str, field: str, region: str = "", hyperpod: bool = False) -> list[str]:
    """Problems with a reward Lambda ARN: form, same region as the job, HyperPod's `SageMaker`-in-name rule."""
    match = LAMBDA_ARN.match(arn or "")
    if not match:
        return [
            f"{field} = {arn!r}: not a Lambda function ARN; expected "
            "arn:aws:lambda:<region>:<12-digit account>:function:<name>[:<alias or version>]"
        ]
    problems = []
    if region and match["region"] != region:
        problems.append(
            f"{field} = {arn!r}: the function is in {match['region']} but the job runs in {region}; "
            "deploy the reward in the job's region"
        )
    if hyperpod and "sagemaker" not in match["name"].lower():
        problems.append(
            f"{field} = {arn!r}: on HyperPod the reward function's name must contain 'SageMaker' "
            f"(case-insensitive), e.g. SageMaker-{match['name']}; rename or redeploy it"
        )
    return problems


def check_role_arn(arn: str, field: str) -> list[str]:
    """Problems with an IAM role ARN (the execution role SageMaker or Bedrock assumes)."""
    if not arn:
        return [f"{field}: empty; set the ARN of the IAM role the service assumes (arn:aws:iam::<account>:role/<name>)"]
    if not ROLE_ARN.match(arn):
        return [f"{field} = {arn!r}: not an IAM role ARN; expected arn:aws:iam::<12-digit account>:role/<name>"]
    return []


def check_mlflow_arn(uri: str, field: str) -> list[str]:
    """Problems with a SageMaker managed MLflow tracking server ARN ('' means no MLflow)."""
    if uri and not MLFLOW_ARN.match(uri):
        return [
            f"{field} = {uri!r}: HyperPod recipes take a SageMaker managed MLflow ARN "
            "(arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>) or ''"
        ]
    return []


def account_of(role_arn: str) -> str:
    """The 12-digit account of a role ARN (to name resources the plan creates, e.g. the reward Lambda)."""
    match = ROLE_ARN.match(role_arn or "")
    return match["account"] if match else ""


def raise_problems(problems: list[str], what: str) -> None:
    """One UserError listing every problem, so the user fixes them in one pass."""
    if problems:
        listed = "\n".join(f"  - {p}" for p in problems)
        raise UserError(f"{what}: {len(problems)} problem(s) to fix before anything is sent to AWS:\n{listed}")


# --------------------------------------------------------------------------- sessions and clear errors


def session(region: str) -> Any:
    """A boto3 session from the standard credential chain (env, AWS_PROFILE, SSO, instance role)."""
    import boto3

    return boto3.Session(region_name=region)


def require_credentials(sess: Any) -> None:
    """Fail early with the ways to provide credentials, instead of a botocore traceback mid-submit."""
    if sess.get_credentials() is None:
        raise UserError(
            "no AWS credentials found. A real submission (dry_run: false) needs them from the standard chain: "
            "run `aws configure` or `aws sso login --profile NAME` and set AWS_PROFILE, or export "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (never put keys in params files). "
            "Keep dry_run: true to review the plan without credentials."
        )


_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden", "403"}
_BAD_TOKEN = {
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
}
_QUOTA = {"ResourceLimitExceeded", "ServiceQuotaExceededException", "LimitExceededException"}


@contextmanager
def aws_errors(action: str, permission: str, resource: str = "") -> Iterator[None]:
    """Turn credential, permission and quota errors of one AWS call into a UserError saying how to fix them.

    Other errors (service faults, bugs) propagate unchanged: hiding them would lose the real cause.
    """
    from botocore.exceptions import ClientError, NoCredentialsError, NoRegionError, PartialCredentialsError

    on = f" on {resource}" if resource else ""
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise UserError(
            f"{action} failed: {exc}. Configure AWS credentials (aws configure / aws sso login, or AWS_PROFILE)."
        ) from None
    except NoRegionError:
        raise UserError(f"{action} failed: no region; set aws.region in the params file.") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in _DENIED:
            raise UserError(
                f"{action} was denied ({code}: {message}). The calling identity needs the IAM permission "
                f"`{permission}`{on}. Attach a policy that allows it to your user or role "
                "(`aws sts get-caller-identity` shows which identity is calling), then retry."
            ) from None
        if code in _BAD_TOKEN:
            raise UserError(
                f"{action} failed: your AWS credentials are invalid or expired ({code}). "
                "Refresh them (`aws sso login`, or new keys) and retry."
            ) from None
        if code in _QUOTA:
            raise UserError(
                f"{action} failed: a service quota is exhausted ({code}: {message}). Request an increase in the "
                "Service Quotas console (e.g. 'ml.p5.48xlarge for training job usage'), or lower the instance count."
            ) from None
        if code in {"ValidationException", "ValidationError", "InvalidParameterValueException"}:
            raise UserError(f"{action} was rejected by AWS as invalid ({code}): {message}") from None
        raise


# ------------------------------------------------------------------------ content-addressed S3 uploads


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, streamed (datasets can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def content_uri(prefix: str, name: str, sha256: str) -> str:
    """Where content goes: `<prefix>/sha256-<first 20 hex>/<name>`; same bytes -> same key, so no duplicates."""
    return f"{prefix.rstrip('/')}/sha256-{sha256[:20]}/{name}"


@dataclass(frozen=True)
class Upload:
    """One local file the plan will place at a content-addressed S3 URI."""

    uri: str
    sha256: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "sha256": self.sha256, "source": self.source, "bytes": self.size}

    @property
    def size(self) -> int:
        return Path(self.source).stat().st_size


def plan_file_upload(path: str | os.PathLike, prefix: str) -> Upload:
    """The content-addressed destination of a local file (reads the file; sends nothing)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found; run the earlier notebooks first or fix the path")
    sha = file_sha256(path)
    return Upload(uri=content_uri(prefix, path.name, sha), sha256=sha, source=str(path))


def perform_upload(s3: Any, upload: Upload) -> str:
    """Upload unless the same content is already there; returns "uploaded" or "exists".

    The key embeds the SHA-256, and the object carries it as metadata: an object at the key with other
    content means someone overwrote it, which is reported rather than silently replaced.
    """
    from botocore.exceptions import ClientError

    if file_sha256(upload.source) != upload.sha256:
        raise UserError(
            f"{upload.source} changed since the plan was made (its SHA-256 differs); plan again so the job "
            "trains on what you reviewed"
        )
    bucket, key = parse_s3_uri(upload.uri)
    with aws_errors(f"checking {upload.uri}", "s3:GetObject (HeadObject)", f"arn:aws:s3:::{bucket}/{key}"):
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in {"404", "NoSuchKey", "NotFound"}:
                raise
            head = None
    if head is not None:
        found = head.get("Metadata", {}).get("sha256", "")
        if found != upload.sha256:
            raise UserError(
                f"{upload.uri} exists with different content (sha256 {found or 'unknown'} != {upload.sha256}); "
                "something overwrote a content-addressed object. Delete it or choose another aws.s3_prefix."
            )
        return "exists"
    with aws_errors(f"uploading {upload.uri}", "s3:PutObject", f"arn:aws:s3:::{bucket}/{key}"):
        s3.upload_file(upload.source, bucket, key, ExtraArgs={"Metadata": {"sha256": upload.sha256}})
    return "uploaded"


def download(s3: Any, uri: str, dest: str | os.PathLike) -> Path:
    """Download one S3 object to a local file, with a clear message when it is missing or denied."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_uri(uri)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with aws_errors(f"downloading {uri}", "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}"):
        try:
            s3.download_file(bucket, key, str(dest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                raise UserError(f"{uri} does not exist (yet): has the job finished and written its output?") from None
            raise
    return dest


def list_keys(s3: Any, uri: str) -> list[str]:
    """Every object URI under an S3 prefix (HyperPod and Bedrock outputs are found by listing)."""
    bucket, prefix = parse_s3_uri(uri)
    keys: list[str] = []
    with aws_errors(f"listing {uri}", "s3:ListBucket", f"arn:aws:s3:::{bucket}"):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(f"s3://{bucket}/{item['Key']}" for item in page.get("Contents", []))
    return keys


# ------------------------------------------------------------------------------------ CloudWatch Logs


def log_lines(logs: Any, group: str, stream_prefix: str, limit: int = 10_000) -> list[str]:
    """Messages of every log stream whose name starts with `stream_prefix`, oldest first, up to `limit`.

    SageMaker writes one stream per instance (`<job>/algo-1-...`); all of them are read so a metric line from
    any node is found.
    """
    from botocore.exceptions import ClientError

    lines: list[str] = []
    with aws_errors(f"reading CloudWatch logs {group}", "logs:DescribeLogStreams and logs:GetLogEvents", group):
        try:
            pages = logs.get_paginator("describe_log_streams").paginate(
                logGroupName=group, logStreamNamePrefix=stream_prefix
            )
            streams = [s["logStreamName"] for page in pages for s in page.get("logStreams", [])]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []
            raise
        for stream in sorted(streams):
            token = None
            while len(lines) < limit:
                kwargs = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
                if token:
                    kwargs["nextToken"] = token
                page = logs.get_log_events(**kwargs)
                lines.extend(event["message"] for event in page.get("events", []))
                if page.get("nextForwardToken") in (None, token) or not page.get("events"):
                    break
                token = page["nextForwardToken"]
    return lines[:limit]


def log_lines_since(logs: Any, group: str, start_ms: int, limit: int = 10_000) -> list[str]:
    """Messages of every stream of a log group since `start_ms` (HyperPod: one stream per node, shared by
    all jobs of the cluster, so the job's start time is the filter), oldest first, up to `limit`."""
    from botocore.exceptions import ClientError

    lines: list[str] = []
    with aws_errors(f"reading CloudWatch logs {group}", "logs:FilterLogEvents", group):
        try:
            pages = logs.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=int(start_ms))
            for page in pages:
                lines.extend(event["message"] for event in page.get("events", []))
                if len(lines) >= limit:
                    break
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []
            raise
    return lines[:limit]


# ------------------------------------------------------------------------- planning shared by backends


def digest(payload: Any) -> str:
    """SHA-256 of a canonical JSON form: equal requests give equal job names and idempotency tokens."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def job_name(base: str, payload_digest: str, limit: int = 63) -> str:
    """`<base>-<8 hex of the request digest>`: the same plan always gets the same name, so submitting it
    twice finds the first job (AWS refuses a duplicate name) instead of paying for a second one."""
    head = re.sub(r"[^a-zA-Z0-9-]+", "-", base).strip("-") or "rft"
    head = re.sub(r"-{2,}", "-", head)[: limit - 9].rstrip("-")
    return f"{head}-{payload_digest[:8]}"


def s3_base(bucket: str, prefix: str, problems: list[str]) -> str:
    """s3://<bucket>/<prefix> (no trailing slash); '' when no bucket is set or the name is invalid."""
    if not bucket:
        return ""
    if bucket.startswith("s3://") or not _BUCKET.match(bucket) or ".." in bucket or _IP.match(bucket):
        problems.append(f"aws.s3_bucket = {bucket!r}: not a bucket name (3-63 lowercase letters, digits, dots or "
                        "hyphens; the name only, without s3://)")
        return ""
    prefix = prefix.strip("/")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def plan_data(path: str, field: str, base: str, problems: list[str]) -> tuple[str, Upload | None]:
    """The S3 URI a dataset will have, and the upload that puts it there (None when it is already on S3)."""
    if not path:
        problems.append(f"{field}: empty; give a JSONL file (local path or s3:// URI)")
        return "", None
    if path.startswith("s3://"):
        problems.extend(check_s3_uri(path, field, require_key=True))
        return path, None
    if not Path(path).is_file():
        problems.append(f"{field} = {path!r}: file not found; run notebook 01 or fix the path")
        return "", None
    if not base:
        problems.append(f"aws.s3_bucket: no valid bucket set; {field} is a local file and must be uploaded to a "
                        "bucket you own")
        return "", None
    upload = plan_file_upload(path, f"{base}/data")
    return upload.uri, upload


def output_location(spec: Any, base: str, problems: list[str]) -> str:
    """Where the job writes: spec.output (s3://), else aws.output_s3_path, else <bucket>/<prefix>/output."""
    for value, field in ((spec.output, "output"), (spec.aws.output_s3_path, "aws.output_s3_path")):
        if value:
            found = check_s3_uri(value, field)
            if found:
                problems.append(found[0] + " (managed jobs write to S3)")
                return ""
            return value.rstrip("/")
    if not base:
        if not spec.aws.s3_bucket:  # an invalid name was reported by s3_base already
            problems.append("aws.s3_bucket: empty; set it (or aws.output_s3_path) so the job has somewhere to write")
        return ""
    return f"{base}/output"


def plan_reward(spec: Any, region: str, problems: list[str], target: str = "sagemaker") -> dict[str, Any]:
    """Which reward Lambda the job calls: an existing ARN, or one deployed from `spec.reward` at submit.

    A deployed function's ARN is known before deploying (region, the role's account, a deterministic name),
    so the plan shows the exact ARN the job will call. On HyperPod the name gets a `SageMaker-` prefix
    because HyperPod only invokes functions whose name contains `SageMaker`.
    """
    aws = spec.aws
    hyperpod = target == "hyperpod"
    arn = aws.reward_lambda_arn or (spec.reward if str(spec.reward).startswith("arn:") else "")
    if arn:
        field = "aws.reward_lambda_arn" if aws.reward_lambda_arn else "reward"
        problems.extend(check_lambda_arn(arn, field, region, hyperpod=hyperpod))
        match = LAMBDA_ARN.match(arn)
        return {"arn": arn, "deploy": False, "source": "", "function_name": match["name"] if match else "",
                "role_arn": "", "target": target}
    if not spec.reward:
        problems.append("reward: empty; give a reward file / builtin:<name> to deploy, or aws.reward_lambda_arn")
        return {}
    name = aws.reward_lambda_name or f"{spec.name}-reward"
    if hyperpod and "sagemaker" not in name.lower():
        name = f"SageMaker-{name}"
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", name)[:64]
    if aws.reward_lambda_name and hyperpod and "sagemaker" not in aws.reward_lambda_name.lower():
        problems.append(
            f"aws.reward_lambda_name = {aws.reward_lambda_name!r}: on HyperPod the reward function's name must "
            "contain 'SageMaker' (case-insensitive)"
        )
    found = check_role_arn(aws.lambda_role_arn, "aws.lambda_role_arn")
    if found:
        problems.append(found[0] + " (the reward Lambda runs as this role; it needs only basic logging rights)")
    account = account_of(aws.role_arn) or account_of(aws.lambda_role_arn)
    partition = (aws.role_arn or aws.lambda_role_arn or "arn:aws").split(":")[1] or "aws"
    planned = f"arn:{partition}:lambda:{region}:{account or '<account>'}:function:{name}"
    return {"arn": planned, "deploy": True, "source": spec.reward, "function_name": name,
            "role_arn": aws.lambda_role_arn, "target": target}


def deploy_planned_reward(reward: dict[str, Any], region: str, sess: Any) -> str:
    """Deploy the reward the plan named (no-op for an existing ARN); the deployed ARN must be the planned one."""
    if not reward.get("deploy"):
        return reward["arn"]
    from nbkit.rewards.lambda_deploy import deploy_reward

    arn = deploy_reward(reward["source"], function_name=reward["function_name"], role_arn=reward["role_arn"],
                        region=region, target=reward.get("target", "sagemaker"),
                        client=sess.client("lambda", region_name=region))
    if unqualified(arn) != unqualified(reward["arn"]):
        raise UserError(
            f"the reward Lambda was deployed as {arn}, but the plan named {reward['arn']}: the credentials belong "
            "to another account than aws.role_arn. Use credentials of the role's account, or set "
            "aws.reward_lambda_arn to the deployed ARN and plan again."
        )
    print(f"deployed reward {reward['source']} as {arn}")
    return arn


def probe_reward(arn: str, train_data: str, target: str, sess: Any, region: str) -> list[float]:
    """Invoke the reward Lambda on two training records (answered with their reference, and with nothing)
    before the paid job is created, so a broken or unreachable reward fails here, for cents, not hours into
    a run. Returns the two scores; raises UserError saying what is wrong."""
    from nbkit.rewards.contract import ContractError, check_result, make_sample

    records = _first_records(train_data, 2)
    variant = "bedrock" if target == "bedrock" else "sagemaker"
    event = []
    for i, record in enumerate(records):
        reference = record.get("reference_answer", "")
        answer = reference if isinstance(reference, str) else json.dumps(reference)
        event.append(make_sample(record, answer if i == 0 else "", variant, sample_id=f"probe-{i}"))
    client = sess.client("lambda", region_name=region)
    with aws_errors(f"probing the reward Lambda {arn}", "lambda:InvokeFunction", arn):
        response = client.invoke(FunctionName=arn, InvocationType="RequestResponse", Payload=json.dumps(event).encode())
    raw = response["Payload"].read()
    where = f"the reward Lambda {arn} (probed with {len(event)} training records; no job was created)"
    try:
        out = json.loads(raw) if raw else None
    except ValueError:
        raise UserError(f"{where} returned non-JSON output: {raw[:200]!r}") from None
    if response.get("FunctionError"):
        detail = f"{out.get('errorType')}: {out.get('errorMessage')}" if isinstance(out, dict) else repr(out)[:300]
        raise UserError(f"{where} raised {detail}; fix it (check its CloudWatch logs) and submit again")
    if not isinstance(out, list) or len(out) != len(event):
        raise UserError(f"{where} must return a list of {len(event)} results, one per sample, got {repr(out)[:200]}")
    by_id = {r.get("id"): r for r in out if isinstance(r, dict)}
    scores = []
    for sample in event:
        if sample["id"] not in by_id:
            raise UserError(f"{where}: no result with id {sample['id']!r}; results must keep each sample's id")
        try:
            scores.append(check_result(by_id[sample["id"]])[0])
        except ContractError as exc:
            raise UserError(f"{where}: result {sample['id']!r} breaks the reward contract: {exc}") from None
    print(f"reward probe ok: {arn} scored the reference answer {scores[0]:g} and an empty answer {scores[-1]:g}")
    return scores


def _first_records(path: str, n: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                records.append(json.loads(line))
            if len(records) == n:
                break
    if not records:
        raise UserError(f"{path} holds no records to probe the reward with")
    return records


def submit_reward(reward: dict[str, Any], spec: Any, region: str, sess: Any) -> str:
    """Deploy the planned reward if needed, then probe it on the training data (aws.probe_reward)."""
    arn = deploy_planned_reward(reward, region, sess)
    if spec.aws.probe_reward:
        if spec.train_data.startswith("s3://"):
            print("reward probe skipped: train_data is on S3 (set aws.probe_reward: false to silence this)")
        else:
            probe_reward(arn, spec.train_data, reward.get("target", "sagemaker"), sess, region)
    return arn


def unqualified(arn: str) -> str:
    """A function ARN without its :alias / :version qualifier."""
    match = LAMBDA_ARN.match(arn or "")
    if not match or not match["qualifier"]:
        return arn
    return arn[: -(len(match["qualifier"]) + 1)]


def nova_base_model(spec: Any, problems: list[str]) -> str:
    """`run.model_name_or_path`: the Nova 2 Lite base, or a checkpoint to continue from (same peft scheme)."""
    aws = spec.aws
    checkpoint = aws.continue_from or (spec.model if str(spec.model).startswith("s3://") else "")
    if checkpoint:
        field = "aws.continue_from" if aws.continue_from else "model"
        problems.extend(check_s3_uri(checkpoint, field))
        scheme = "full" if spec.hyper.lora_rank == 0 else "lora"
        if not aws.continue_from_scheme:
            problems.append(
                f"aws.continue_from_scheme: empty; say whether {checkpoint} was trained with lora or full rank "
                "(Nova continues LoRA from LoRA and full rank from full rank only)"
            )
        elif aws.continue_from_scheme != scheme:
            problems.append(
                f"aws.continue_from_scheme = {aws.continue_from_scheme!r}: the checkpoint is {aws.continue_from_scheme} "
                f"but this job trains {scheme} (hyper.lora_rank = {spec.hyper.lora_rank}); model_type must stay "
                "the same: LoRA->LoRA, full->full"
            )
        return checkpoint
    known = {NOVA_MODEL_NAME, NOVA_MODEL_TYPE, f"bedrock:{NOVA_MODEL_TYPE}", "nova-lite-2", "nova-2-lite"}
    if spec.model not in known:
        problems.append(
            f"model = {spec.model!r}: Nova RFT trains Nova 2 Lite only; set model: {NOVA_MODEL_NAME} "
            "(or an s3:// checkpoint from a previous job's manifest.json to continue from it)"
        )
    return NOVA_MODEL_NAME


def spec_problems(spec: Any, surface: str) -> tuple[list[str], list[str]]:
    """The spec's own range/cross-field checks on `surface`, as (errors, warnings) strings."""
    issues = spec.check(surface)
    return ([str(i) for i in issues if i.severity == "error"], [str(i) for i in issues if i.severity != "error"])


def provenance_lines(spec: Any) -> list[str]:
    """"where each hyperparameter comes from" lines for a plan's description (spec.sources)."""
    if not spec.sources:
        return []
    lines = ["hyperparameters (value <- where it comes from):"]
    for name, source in spec.sources.items():
        value = getattr(spec.hyper, name, None)
        shown = "null" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
        lines.append(f"  {name} = {shown}  <- {source}")
    return lines
