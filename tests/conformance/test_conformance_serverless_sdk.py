"""The serverless backend builds the sagemaker SDK's RLVRTrainer offline: the Hub lookup its constructor makes
is answered at the botocore boundary (tests/aws_calls.py), and the override-parameter file it downloads is
served by moto S3.

What the constructor calls was read from sagemaker-train 1.27.0 (common_utils/finetune_utils.py
_get_fine_tuning_options_and_model_arn): sagemaker.DescribeHubContent(SageMakerPublicHub, Model,
nova-textgeneration-lite-v2), then s3.GetObject of the LoRA RLVR recipe's `SmtjOverrideParamsS3Uri`. The Hub
document below holds only the keys the SDK reads; the override parameters are those of nova_smtj_lora_rft in
aws/sagemaker-hyperpod-recipes launcher/recipe_templatization/nova/nova_recipe_template_parameters.json (the
Hub's real file is AWS's and cannot be read offline: that is the assumption this test rests on)."""

from __future__ import annotations

import json

import aws_calls
import pytest
from conftest import REWARD, ROLE

from nbkit.errors import UserError
from nbkit.train import serverless
from nbkit.train.spec import JobSpec

OVERRIDES = {  # nova_smtj_lora_rft recipe_override_parameters (numeric ones), upstream commit 263199555b2e
    "learning_rate": {"type": "float", "required": True, "min": 1e-07, "max": 0.001, "default": 1e-05},
    "max_steps": {"type": "integer", "required": True, "min": 5, "max": 100000, "default": 10},
    "lora_alpha": {"type": "integer", "required": True, "enum": [16, 32, 64], "default": 32},
    "global_batch_size": {"type": "integer", "required": True, "min": 16, "max": 128, "default": 64},
    "max_length": {"type": "integer", "required": True, "min": 4096, "max": 32768, "default": 8192},
    "learning_rate_ratio": {"type": "float", "required": False, "min": 0.0, "max": 100.0, "default": 64.0},
    "save_steps": {"type": "integer", "required": True, "min": 0, "max": 100000, "default": 10},
}
HUB_ARN = "arn:aws:sagemaker:us-east-1:aws:hub-content/SageMakerPublicHub/Model/nova-textgeneration-lite-v2/1.0.0"
DOCUMENT = {"RecipeCollection": [{"CustomizationTechnique": "RLVR", "Peft": "LORA",
                                  "SmtjRecipeTemplateS3Uri": "s3://hub-content/nova/rft/recipe.yaml",
                                  "SmtjOverrideParamsS3Uri": "s3://hub-content/nova/rft/override.json"}]}
HUB = {"sagemaker.DescribeHubContent": {
    "HubContentName": "nova-textgeneration-lite-v2", "HubContentArn": HUB_ARN, "HubContentVersion": "1.0.0",
    "HubContentType": "Model", "DocumentSchemaVersion": "2.0.0", "HubName": "SageMakerPublicHub",
    "HubArn": "arn:aws:sagemaker:us-east-1:aws:hub/SageMakerPublicHub", "HubContentDocument": json.dumps(DOCUMENT),
    "HubContentStatus": "Available", "CreationTime": "2026-01-01T00:00:00Z"}}


@pytest.fixture
def hub(moto_session):
    s3 = moto_session.client("s3")
    s3.create_bucket(Bucket="hub-content")
    s3.put_object(Bucket="hub-content", Key="nova/rft/override.json", Body=json.dumps(OVERRIDES))
    return moto_session


def plan_for(train_file, **hyper):
    return serverless.plan(JobSpec(
        backend="sagemaker-serverless", name="math-rft", model="nova-lite-2/prod", train_data=str(train_file),
        reward=REWARD, dry_run=False, hyper={"max_steps": 20, "learning_rate": 2e-5} | hyper,
        aws={"role_arn": ROLE, "s3_bucket": "my-rft-bucket", "probe_reward": False}))


def test_rlvr_trainer_is_built_with_the_plan(hub, train_file, no_telemetry):
    plan = plan_for(train_file, global_batch_size=32)
    assert plan.hyperparameters == {"max_steps": 20, "learning_rate": 2e-5, "global_batch_size": 32}
    with aws_calls.recording(HUB) as rec:
        trainer = serverless.sdk_trainer(plan, hub)
    assert rec.params("sagemaker.DescribeHubContent")[0] == {
        "HubName": "SageMakerPublicHub", "HubContentType": "Model", "HubContentName": "nova-textgeneration-lite-v2"}
    assert rec.params("s3.GetObject")[0]["Key"] == "nova/rft/override.json"
    assert trainer._model_arn == HUB_ARN and trainer.compute is None  # serverless
    assert trainer.custom_reward_function == REWARD and trainer.training_dataset == plan.trainer["training_dataset"]
    assert trainer.base_job_name == plan.job_name and trainer.role == ROLE
    sent = trainer.hyperparameters.to_dict()
    assert (sent["max_steps"], sent["global_batch_size"]) == ("20", "32")  # CreateTrainingJob takes strings
    assert float(sent["learning_rate"]) == 2e-5


def test_a_hyperparameter_the_hub_recipe_lacks_is_refused(hub, train_file, no_telemetry):
    plan = plan_for(train_file)
    plan = plan.model_copy(update={"hyperparameters": plan.hyperparameters | {"number_generation": 4}})
    with aws_calls.recording(HUB), pytest.raises(UserError, match="has no hyperparameter 'number_generation'"):
        serverless.sdk_trainer(plan, hub)


def test_dry_run_calls_nothing(train_file, tmp_path, capsys):
    """The SDK's own train(dry_run=True) creates an Evaluator hub entry and invokes the reward (rlvr_trainer.py
    train): the backend's dry run is the offline plan, with no AWS call at all."""
    plan = serverless.plan(plan_for(train_file).spec.model_copy(update={"dry_run": True}))
    with aws_calls.recording(strict=True) as rec:
        handle = serverless.submit(plan, tmp_path)
    assert rec.calls == [] and handle.status() == "planned"
    assert "compute: serverless" in capsys.readouterr().out
