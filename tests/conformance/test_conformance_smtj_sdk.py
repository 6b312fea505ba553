"""The SMTJ submit goes through the sagemaker SDK (ModelTrainer.from_recipe(...).train(wait=False)); the
CreateTrainingJob request the SDK sends is captured at the botocore boundary and compared, field by field,
with the plan's request. Offline: moto for S3/IAM/STS/SageMaker, one canned IAM answer moto lacks."""

from __future__ import annotations

import re

import aws_calls
import pytest
import yaml
from conftest import REWARD, ROLE

from nbkit.train import sagemaker
from nbkit.train.spec import JobSpec

# moto 5.2.5 does not implement iam:SimulatePrincipalPolicy, which the SDK calls to check the role
ALLOWED = aws_calls.SIMULATE_ALLOWED


def spec_for(train_file, **hyper):
    return JobSpec(backend="sagemaker", name="math-rft", model="nova-lite-2/prod", train_data=str(train_file),
                   reward=REWARD, dry_run=False,
                   hyper={"max_steps": 10, "learning_rate": 2e-5, "number_generation": 4, "reasoning_effort": None}
                   | hyper,
                   aws={"role_arn": ROLE, "s3_bucket": "my-rft-bucket", "probe_reward": False, "instance_count": 2,
                        "tags": {"team": "nlp"}})


@pytest.mark.parametrize("lora_rank", [32, 0])
def test_sdk_sends_the_planned_request(moto_session, train_file, tmp_path, no_telemetry, lora_rank):
    plan = sagemaker.plan(spec_for(train_file, lora_rank=lora_rank))
    with aws_calls.recording(ALLOWED) as rec:
        handle = sagemaker.submit(plan, tmp_path, session=moto_session)
    [sent] = rec.params("sagemaker.CreateTrainingJob")
    planned = plan.request
    assert set(sent) == set(planned), "the SDK sends exactly the planned fields"
    # The two values only the SDK knows: its timestamp in the name, and where it staged the recipe.
    assert re.fullmatch(rf"{plan.job_name}-\d{{14}}", sent["TrainingJobName"])
    assert handle.job_id == sent["TrainingJobName"]
    recipe_channel = sent["InputDataConfig"][1]
    stamped = planned["InputDataConfig"][1]["DataSource"]["S3DataSource"]["S3Uri"].replace(
        sagemaker.SUBMIT_STAMP, sent["TrainingJobName"].rsplit("-", 1)[1])
    assert recipe_channel["DataSource"]["S3DataSource"]["S3Uri"] == stamped
    for field in planned:
        if field not in ("TrainingJobName", "InputDataConfig"):
            assert sent[field] == planned[field], field
    assert sent["InputDataConfig"][0] == planned["InputDataConfig"][0]
    assert {k: v for k, v in recipe_channel.items() if k != "DataSource"} == {
        k: v for k, v in planned["InputDataConfig"][1].items() if k != "DataSource"}
    # The recipe the SDK uploaded is the plan's resolved recipe (null stays null: reasoning off).
    bucket, key = stamped.removeprefix("s3://").split("/", 1)
    uploaded = yaml.safe_load(moto_session.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read())
    assert uploaded == plan.recipe
    assert uploaded["training_config"]["reasoning_effort"] is None
    assert uploaded["training_config"]["rollout"]["advantage_strategy"]["number_generation"] == 4


def test_resubmitting_the_plan_attaches_to_its_job(moto_session, train_file, tmp_path, no_telemetry, capsys):
    plan = sagemaker.plan(spec_for(train_file))
    with aws_calls.recording(ALLOWED) as rec:
        first = sagemaker.submit(plan, tmp_path, session=moto_session)
        again = sagemaker.submit(plan, tmp_path, session=moto_session)
    assert again.job_id == first.job_id and len(rec.params("sagemaker.CreateTrainingJob")) == 1
    assert "already exists for this plan" in capsys.readouterr().out
