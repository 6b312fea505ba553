"""Every planned AWS request against botocore's service models (the installed botocore 1.44.5's
bedrock/2023-04-20, sagemaker/2017-07-24 and lambda/2015-03-31 service-2.json), offline.

- Every request passes botocore's ParamValidator, and also the model's `max` and `pattern` traits, which the
  ParamValidator does not check (botocore/validate.py checks only `min` of numbers and lengths).
- Every range of the job spec that maps onto a service-model field agrees with the model's min/max.
- The dry run (plan) of every surface accepts every configuration the API accepts: each range's both ends.
"""

from __future__ import annotations

import json
import re
from typing import Any

import aws_calls
import boto3
import pytest
from botocore.validate import ParamValidator
from conftest import REWARD, ROLE

from nbkit.train import bedrock, hyperpod, nova_eval, sagemaker, serverless
from nbkit.train.spec import RANGES, JobSpec

MODELS = {name: boto3.session.Session()._session.get_service_model(name) for name in ("bedrock", "sagemaker", "lambda")}


def input_shape(service: str, operation: str) -> Any:
    return MODELS[service].operation_model(operation).input_shape


def model_problems(params: Any, shape: Any, path: str = "") -> list[str]:
    """What botocore's ParamValidator reports, plus the `max` and `pattern` traits it leaves unchecked."""
    report = ParamValidator().validate(params, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    return problems + _traits(params, shape, path or shape.name)


def _traits(value: Any, shape: Any, path: str) -> list[str]:
    meta, out = shape.metadata, []
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                out += _traits(item, shape.members[key], f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: {len(value)} items > max {meta['max']}")
        for i, item in enumerate(value):
            out += _traits(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            out += _traits(key, shape.key, f"{path} key") + _traits(item, shape.value, f"{path}.{key}")
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{path}: length {len(value)} > max {meta['max']}")
        pattern = _python_pattern(meta.get("pattern"))
        if pattern is not None and not pattern.fullmatch(value):
            out.append(f"{path} = {value!r} does not match {meta['pattern']}")
    elif (shape.type_name in ("integer", "long", "float", "double") and isinstance(value, int | float)
          and "max" in meta and value > meta["max"]):
        out.append(f"{path} = {value} > max {meta['max']}")
    return out


_JAVA_CLASSES = {r"\p{Alnum}": "a-zA-Z0-9", r"\p{Alpha}": "a-zA-Z", r"\p{Digit}": "0-9", r"\p{L}": "\\w",
                 r"\p{N}": "0-9", r"\p{Z}": " ", r"\p{Print}": " -~", r"\p{Punct}": "!-/:-@\\[-`{-~"}


def _python_pattern(pattern: str | None) -> re.Pattern | None:
    """The model's (Java-flavoured) regex for Python: \\p{...} classes spelled out; None when not translatable."""
    if not pattern:
        return None
    for java, python in _JAVA_CLASSES.items():  # AWS uses them inside character classes: [\\p{L}\\p{N}_.]
        pattern = pattern.replace(java, python)
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


def spec(train_file, backend: str, hyper: dict | None = None, aws: dict | None = None, **fields) -> JobSpec:
    base_aws = {"role_arn": ROLE, "s3_bucket": "my-rft-bucket", "lambda_role_arn": ROLE,
                "cluster_name": "nova-cluster", "cluster_nodes": 8, "tags": {"team": "nlp"}}
    base_hyper = {"max_steps": 20}
    if backend == "bedrock":
        base_hyper = {"global_batch_size": 128}
    return JobSpec(backend=backend, name="math-rft", model="nova-lite-2/prod", train_data=str(train_file),
                   eval_data=str(train_file), reward=fields.pop("reward", REWARD),
                   hyper=base_hyper | (hyper or {}), aws=base_aws | (aws or {}), **fields)


# ------------------------------------------------------------------------------------- ParamValidator


@pytest.mark.parametrize("lora_rank", [32, 0])
def test_smtj_and_eval_requests_conform(train_file, lora_rank):
    plans = [sagemaker.plan(spec(train_file, "sagemaker", {"lora_rank": lora_rank})),
             nova_eval.plan(spec(train_file, "sagemaker", {"lora_rank": lora_rank})),
             nova_eval.plan(spec(train_file, "sagemaker"), checkpoint="s3://customer-escrow-1-smtj-x/job/step5")]
    for plan in plans:
        assert model_problems(plan.request, input_shape("sagemaker", "CreateTrainingJob")) == []


def test_bedrock_request_conforms(train_file):
    plan = bedrock.plan(spec(train_file, "bedrock", aws={"eval_interval": 10, "max_prompt_length": 2048}))
    assert "validationDataConfig" in plan.request
    assert model_problems(plan.request, input_shape("bedrock", "CreateModelCustomizationJob")) == []


def test_model_problems_catches_what_botocore_lets_through():
    """The checker itself: a maximum and a pattern botocore's ParamValidator accepts."""
    shape = input_shape("bedrock", "CreateModelCustomizationJob")
    request = {"jobName": "bad name!", "customModelName": "m", "roleArn": ROLE, "baseModelIdentifier": "a.b",
               "trainingDataConfig": {"s3Uri": "s3://my-bucket/t.jsonl"}, "outputDataConfig": {"s3Uri": "s3://b/o"},
               "customizationConfig": {"rftConfig": {"hyperParameters": {"epochCount": 60}}}}
    assert not ParamValidator().validate(request, shape).has_errors()
    found = model_problems(request, shape)
    assert any("jobName" in p for p in found) and any("epochCount = 60 > max 50" in p for p in found)


def test_lambda_deploy_requests_conform(moto_session, train_file, tmp_path):
    """CreateFunction on the first submit and UpdateFunctionCode/UpdateFunctionConfiguration on the next, as
    nbkit.rewards.lambda_deploy sends them for a planned reward."""
    iam = moto_session.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    role = iam.create_role(RoleName="RewardLambda", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    plan = sagemaker.plan(spec(train_file, "sagemaker", reward="builtin:numeric",
                               aws={"lambda_role_arn": role, "probe_reward": False}))
    from nbkit.train import aws

    with aws_calls.recording() as rec:
        aws.deploy_planned_reward(plan.reward, "us-east-1", moto_session)
        aws.deploy_planned_reward(plan.reward, "us-east-1", moto_session)
    sent = {op: rec.params(f"lambda.{op}") for op in ("CreateFunction", "UpdateFunctionConfiguration")}
    assert len(sent["CreateFunction"]) == 1 and len(sent["UpdateFunctionConfiguration"]) == 1
    for op, calls in sent.items():
        for params in calls:
            assert model_problems(params, input_shape("lambda", op)) == [], op


# ---------------------------------------------------------------------------- ranges vs service model

# Job-spec fields that land in a service-model field with numeric bounds: (range table, field) -> shape path.
BEDROCK_FIELDS = {"epochs": "epochCount", "global_batch_size": "batchSize", "learning_rate": "learningRate",
                  "number_generation": "trainingSamplePerPrompt"}


def _hyper_shape() -> Any:
    return (input_shape("bedrock", "CreateModelCustomizationJob").members["customizationConfig"]
            .members["rftConfig"].members["hyperParameters"])


def test_bedrock_ranges_are_the_service_model_s():
    members = _hyper_shape().members
    for field, key in BEDROCK_FIELDS.items():
        rng, meta = RANGES["bedrock"][field], members[key].metadata
        assert (rng.lo, rng.hi) == (meta["min"], meta["max"]), field
    for key, (lo, hi) in bedrock.HYPER_RANGES.items():
        meta = members[key].metadata
        assert (lo, hi) == (meta.get("min", lo), meta.get("max")), key
    effort = RANGES["bedrock"]["reasoning_effort"].choices
    assert set(effort) - {None} == set(members["reasoningEffort"].enum)


def test_sagemaker_settings_fit_the_service_model():
    """aws.max_runtime_hours (le=672) -> StoppingCondition.MaxRuntimeInSeconds; instance counts -> InstanceCount."""
    from nbkit.train.spec import SURFACE_DEFAULTS, AwsSettings

    request = input_shape("sagemaker", "CreateTrainingJob").members
    runtime = request["StoppingCondition"].members["MaxRuntimeInSeconds"].metadata
    hours = next(m.le for m in AwsSettings.model_fields["max_runtime_hours"].metadata if hasattr(m, "le"))
    assert hours * 3600 <= runtime.get("max", float("inf")) and runtime["min"] <= 1
    count = request["ResourceConfig"].members["InstanceCount"].metadata
    for surface in ("smtj-lora", "smtj-full"):
        assert all(n >= count.get("min", 0) for n in SURFACE_DEFAULTS[surface]["instance_counts"])


# ----------------------------------------------------------------------------- boundary configurations


def _ends(surface: str) -> list[tuple[str, Any]]:
    out = []
    for field, rng in RANGES[surface].items():
        if not rng.exposed:
            continue
        if rng.choices is not None:
            out += [(field, c) for c in rng.choices]
        else:
            out += [(field, v) for v in (rng.lo, rng.hi) if v is not None]
    return out


SURFACES = {"smtj-lora": ("sagemaker", 32), "smtj-full": ("sagemaker", 0), "smhp-lora": ("hyperpod", 32),
            "smhp-full": ("hyperpod", 0), "bedrock": ("bedrock", 32), "serverless-lora": ("sagemaker-serverless", 32),
            "serverless-full": ("sagemaker-serverless", 0)}
MODULES = {"sagemaker": sagemaker, "hyperpod": hyperpod, "bedrock": bedrock, "sagemaker-serverless": serverless}


def _consistent(field: str, value: Any, surface: str) -> dict[str, Any]:
    """The other values a boundary needs to be a valid configuration on its own (cross-field rules)."""
    hyper: dict[str, Any] = {field: value}
    if field == "max_length":
        hyper["max_new_tokens"] = min(2048, value - 1)
    if field == "max_new_tokens" and surface != "bedrock":
        hyper["max_length"] = 32768
    if field in ("global_batch_size", "number_generation") and surface != "bedrock":
        hyper |= {"global_batch_size": 64, "number_generation": 2} | {field: value}
        if field == "number_generation":
            hyper["global_batch_size"] = value * 8 if value * 8 <= RANGES[surface]["global_batch_size"].hi else value
    if field == "save_steps":
        hyper["max_steps"] = max(5, value)
    if field == "temperature" and value == 0:
        hyper["temperature"] = value
    return hyper


@pytest.mark.parametrize("surface", list(SURFACES))
def test_every_surface_plans_both_ends_of_every_range(train_file, surface):
    backend, lora_rank = SURFACES[surface]
    for field, value in _ends(surface):
        hyper = {"lora_rank": lora_rank} | _consistent(field, value, surface)
        plan = MODULES[backend].plan(spec(train_file, backend, hyper))
        assert getattr(plan.spec.hyper, field) == value, (surface, field, value)
        if backend == "sagemaker":
            assert model_problems(plan.request, input_shape("sagemaker", "CreateTrainingJob")) == [], (field, value)
        if backend == "bedrock":
            assert model_problems(plan.request, input_shape("bedrock", "CreateModelCustomizationJob")) == [], field


@pytest.mark.parametrize("backend, counts", [("sagemaker", (2, 4, 6, 8)), ("hyperpod", (2, 4, 8, 16))])
def test_every_documented_instance_count_plans(train_file, backend, counts):
    for lora_rank in (32, 0):
        for n in counts:
            plan = MODULES[backend].plan(spec(train_file, backend, {"lora_rank": lora_rank},
                                              {"instance_count": n, "cluster_nodes": 32}))
            assert plan.recipe["run"]["replicas"] == n


def test_bedrock_accepts_every_hyperparameter_end_the_model_allows(train_file):
    """Each end of each bounded rftConfig.hyperParameters field, taken from the service model itself."""
    members = _hyper_shape().members
    spec_field = {v: k for k, v in BEDROCK_FIELDS.items()}
    for key, shape in members.items():
        meta = shape.metadata
        for value in (meta.get("min"), meta.get("max")):
            if value is None:
                continue
            if key in spec_field:
                plan = bedrock.plan(spec(train_file, "bedrock", {spec_field[key]: value}))
            elif key == "evalInterval":
                plan = bedrock.plan(spec(train_file, "bedrock", aws={"eval_interval": value}))
            else:
                continue
            assert plan.request["customizationConfig"]["rftConfig"]["hyperParameters"][key] == value
