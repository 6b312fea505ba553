"""Plans of the managed backends, field by field against reference/nova-rft.md sections 3 and 6. Offline."""

from __future__ import annotations

import hashlib
import json

import aws_calls
import pytest
import yaml

from nbkit.errors import UserError
from nbkit.train import bedrock, hyperpod, sagemaker
from nbkit.train import recipes as rec
from nbkit.train.spec import JobSpec

ROLE = "arn:aws:iam::123456789012:role/SageMakerRFT"
LAMBDA_ROLE = "arn:aws:iam::123456789012:role/RewardLambda"
REWARD = "arn:aws:lambda:us-east-1:123456789012:function:SageMaker-math-reward"


@pytest.fixture
def train_file(tmp_path):
    return aws_calls.write_train(tmp_path / "train.jsonl", 300)


def make(train_file, backend="sagemaker", hyper=None, aws=None, **fields):
    base_aws = {"role_arn": ROLE, "s3_bucket": "my-rft-bucket", "lambda_role_arn": LAMBDA_ROLE,
                "cluster_name": "nova-cluster", "cluster_nodes": 8}
    base_hyper = {"global_batch_size": 64, "learning_rate": 1e-5, "max_new_tokens": 6000, "max_length": 8192,
                  "max_steps": 20, "reasoning_effort": "high"}
    fields.setdefault("model", "nova-lite-2/prod")
    return JobSpec(backend=backend, name="math-rft", train_data=str(train_file),
                   reward=fields.pop("reward", REWARD), hyper=base_hyper | (hyper or {}),
                   aws=base_aws | (aws or {}), **fields)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------------------- SMTJ


def test_smtj_lora_request_matches_the_documented_sdk_path(train_file):
    plan = sagemaker.plan(make(train_file))
    r = plan.request
    # the SDK names the job <base_job_name>-<YYYYmmddHHMMSS> (sagemaker-train utils.py _get_unique_name)
    assert r["TrainingJobName"] == f"{plan.job_name}-YYYYmmddHHMMSS" and plan.job_name.startswith("math-rft-")
    assert len(r["TrainingJobName"]) <= 63
    assert r["RoleArn"] == ROLE
    assert r["AlgorithmSpecification"] == {
        "TrainingImage": "708977205387.dkr.ecr.us-east-1.amazonaws.com/nova-fine-tune-repo:SM-TJ-RFT-V2-latest",
        "TrainingInputMode": "File"}
    assert r["HyperParameters"] == {"base_model": "nova-lite-2/prod", "reward_lambda_arn": REWARD,
                                    "sagemaker_recipe_local_path": "/opt/ml/input/data/recipe/recipe.yaml"}
    train, recipe = r["InputDataConfig"]
    assert train["ChannelName"] == "train" and recipe["ChannelName"] == "recipe"
    digest = sha(train_file)
    assert train["DataSource"]["S3DataSource"] == {
        "S3DataType": "S3Prefix", "S3DataDistributionType": "FullyReplicated",
        "S3Uri": f"s3://my-rft-bucket/rft-workbench/data/sha256-{digest[:20]}/train.jsonl"}
    # where ModelTrainer._create_training_job_args stages the recipe: <prefix>/<base>/<job>/input/recipe/recipe.yaml
    assert recipe["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://my-rft-bucket/rft-workbench/{plan.job_name}/{plan.job_name}-YYYYmmddHHMMSS/input/recipe/recipe.yaml")
    assert [u["source"] for u in plan.uploads] == [str(train_file)]  # the SDK uploads the recipe itself
    assert r["OutputDataConfig"] == {"S3OutputPath": "s3://my-rft-bucket/rft-workbench/output",
                                     "CompressionType": "GZIP"}
    assert r["ResourceConfig"] == {"InstanceType": "ml.p5.48xlarge", "InstanceCount": 4, "VolumeSizeInGB": 30}
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert "Tags" not in r


def test_smtj_lora_recipe_keeps_smtj_spellings_and_fills_every_placeholder(train_file):
    plan = sagemaker.plan(make(train_file, hyper={"lora_alpha": 16, "loraplus_lr_ratio": 80.0, "kl_coef": 0.01,
                                                  "entropy_coef": 0.002, "weight_decay": 0.1, "save_steps": 10,
                                                  "temperature": 0.9, "top_k": 5}))
    recipe = yaml.safe_load(plan.recipe_yaml)
    assert recipe == plan.recipe
    assert plan.recipe_template == "fine-tuning/nova/nova_2_0/nova_lite/RFT/nova_lite_v2_smtj_p5_p5en_gpu_lora_rft"
    run, tc = recipe["run"], recipe["training_config"]
    assert run == {"name": plan.job_name, "model_type": "amazon.nova-2-lite-v1:0:256k",
                   "model_name_or_path": "nova-lite-2/prod",
                   "data_s3_path": plan.request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"],
                   "replicas": 4, "reward_lambda_arn": REWARD}
    assert "output_s3_path" not in run and not any(k.startswith("mlflow") for k in run)
    assert tc["max_length"] == 8192 and tc["global_batch_size"] == 64 and tc["reasoning_effort"] == "high"
    assert tc["rollout"]["advantage_strategy"] == {"number_generation": 2}  # not exposed on SMTJ: recipe value
    assert tc["rollout"]["generator"] == {"max_new_tokens": 6000, "set_random_seed": True, "temperature": 0.9,
                                          "top_k": 5}
    assert tc["rollout"]["rewards"]["api_endpoint"] == {"lambda_arn": REWARD, "lambda_concurrency_limit": 12}
    trainer = tc["trainer"]
    assert trainer["max_steps"] == 20 and trainer["save_steps"] == 10
    assert trainer["ent_coeff"] == 0.002 and trainer["kl_loss_coef"] == 0.01
    assert trainer["optim_config"] == {"lr": 1e-5, "weight_decay": 0.1, "adam_beta1": 0.9, "adam_beta2": 0.95}
    assert trainer["peft"] == {"peft_scheme": "lora", "lora_tuning": {"alpha": 16, "lora_plus_lr_ratio": 80.0}}
    assert "${" not in plan.recipe_yaml


def test_smtj_full_rank_uses_the_full_recipe_and_resolves_save_steps(train_file):
    plan = sagemaker.plan(make(train_file, hyper={"lora_rank": 0}))
    assert plan.recipe_template.endswith("nova_lite_v2_smtj_p5_p5en_gpu_rft")
    assert plan.recipe["training_config"]["trainer"]["peft"] == {"peft_scheme": None}
    assert plan.request["ResourceConfig"]["InstanceCount"] == 4
    # the template's `${oc.select:training_config.trainer.max_steps}` resolves like OmegaConf would
    template = rec.resolve(rec.load("smtj-full"))
    assert template["training_config"]["trainer"]["save_steps"] == template["training_config"]["trainer"]["max_steps"] == 5


def test_from_recipe_arguments_mirror_the_request(train_file):
    plan = sagemaker.plan(make(train_file, aws={"instance_count": 2, "tags": {"team": "nlp"}}))
    fr = plan.from_recipe
    assert fr["training_recipe"].endswith("nbkit/train/recipes/smtj_lora_rft.yaml")
    assert fr["compute"] == {"instance_type": "ml.p5.48xlarge", "instance_count": 2, "volume_size_in_gb": 30}
    assert fr["training_image"] == plan.request["AlgorithmSpecification"]["TrainingImage"]
    assert fr["role"] == ROLE and fr["base_job_name"] == plan.job_name
    assert fr["recipe_overrides"]["run"]["reward_lambda_arn"] == REWARD
    # only what differs from the published recipe is overridden: LoRA settings left unset stay the recipe's
    assert "peft" not in fr["recipe_overrides"]["training_config"]["trainer"]
    assert plan.recipe["training_config"]["trainer"]["peft"]["lora_tuning"]["lora_plus_lr_ratio"] == 64.0
    assert rec.resolve(rec.apply(rec.load("smtj-lora"), _flat(fr["recipe_overrides"]))) == plan.recipe
    assert plan.train_call == {"input_data_config": [{"channel_name": "train", "data_source":
                               plan.request["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]}],
                               "wait": False}
    assert plan.request["Tags"] == [{"Key": "team", "Value": "nlp"}]
    assert fr["tags"] == [{"key": "team", "value": "nlp"}]


def _flat(nested, prefix=""):
    out = {}
    for key, value in nested.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_checkpoint_becomes_base_model_location_and_scheme_must_match(train_file):
    ckpt = "s3://customer-escrow-123456789012-smtj-abc/math-rft-1/step20"
    plan = sagemaker.plan(make(train_file, aws={"continue_from": ckpt, "continue_from_scheme": "lora"}))
    assert plan.request["HyperParameters"]["base_model_location"] == ckpt
    assert "base_model" not in plan.request["HyperParameters"]
    assert plan.recipe["run"]["model_name_or_path"] == ckpt
    with pytest.raises(UserError, match="LoRA->LoRA, full->full"):
        sagemaker.plan(make(train_file, hyper={"lora_rank": 0},
                            aws={"continue_from": ckpt, "continue_from_scheme": "lora"}))
    with pytest.raises(UserError, match="continue_from_scheme: empty"):
        sagemaker.plan(make(train_file, aws={"continue_from": ckpt}))


@pytest.mark.parametrize("region, account", [("us-west-2", "176779409107"), ("ap-northeast-1", "878185805882")])
def test_image_account_per_region(train_file, region, account):
    reward = f"arn:aws:lambda:{region}:123456789012:function:r"
    plan = sagemaker.plan(make(train_file, aws={"region": region}, reward=reward))
    assert plan.request["AlgorithmSpecification"]["TrainingImage"] == (
        f"{account}.dkr.ecr.{region}.amazonaws.com/nova-fine-tune-repo:SM-TJ-RFT-V2-latest")


def test_same_spec_same_name_and_a_change_gives_a_new_one(train_file):
    a, b = sagemaker.plan(make(train_file)), sagemaker.plan(make(train_file))
    assert a.job_name == b.job_name and a.request == b.request
    c = sagemaker.plan(make(train_file, hyper={"learning_rate": 2e-5}))
    assert c.job_name != a.job_name


def test_every_problem_is_reported_together_with_field_names(train_file):
    spec = make(train_file, hyper={"learning_rate": 5e-3, "global_batch_size": 200},
                aws={"region": "eu-west-1", "role_arn": "not-a-role", "instance_count": 1,
                     "instance_type": "ml.g5.48xlarge", "s3_bucket": "Bad_Bucket"},
                model="tiny", reward="arn:aws:lambda:us-east-1:123:function:x")
    with pytest.raises(UserError) as err:
        sagemaker.plan(spec)
    text = str(err.value)
    for needle in ("hyper.learning_rate", "hyper.global_batch_size", "aws.region = 'eu-west-1'",
                   "aws.role_arn = 'not-a-role'", "aws.instance_count = 1", "aws.instance_type = 'ml.g5.48xlarge'",
                   "aws.s3_bucket", "model = 'tiny'", "reward = 'arn:aws:lambda:us-east-1:123:function:x'"):
        assert needle in text, needle


@pytest.mark.parametrize("lora_rank", [32, 0])
def test_smtj_instance_counts_are_2_4_6_or_8_for_lora_and_full_rank(train_file, lora_rank):
    """Finding: full rank refused 2 and both accepted 3, 5 and 10. AWS documents 2, 4, 6 or 8 instances for
    LoRA and full rank alike (Nova 2 user guide, RFT on SMTJ; reference/nova-rft.md section 9)."""
    for count in (2, 4, 6, 8):
        plan = sagemaker.plan(make(train_file, hyper={"lora_rank": lora_rank}, aws={"instance_count": count}))
        assert plan.request["ResourceConfig"]["InstanceCount"] == count == plan.recipe["run"]["replicas"]
    for count in (1, 3, 5, 10):
        with pytest.raises(UserError, match=f"instance_count = {count}: SMTJ .* runs on 2, 4, 6, 8 instances"):
            sagemaker.plan(make(train_file, hyper={"lora_rank": lora_rank}, aws={"instance_count": count}))


def test_smtj_sends_number_generation(train_file):
    """Finding: SMTJ forced number_generation to 2. The recipe has the key (so the SDK keeps it) and AWS's SMTJ
    sample uses 4: a value the user sets reaches the recipe."""
    plan = sagemaker.plan(make(train_file, hyper={"number_generation": 4}))
    assert plan.recipe["training_config"]["rollout"]["advantage_strategy"]["number_generation"] == 4
    assert plan.from_recipe["recipe_overrides"]["training_config"]["rollout"]["advantage_strategy"] == {
        "number_generation": 4}


def test_describe_says_where_every_value_comes_from(train_file):
    text = sagemaker.plan(make(train_file)).describe()
    assert "top_k = 1  <- recipe nova_lite_v2_smtj_p5_p5en_gpu_lora_rft" in text
    assert "learning_rate = 1e-05  <- set" in text


def test_reward_from_a_file_is_deployed_under_a_planned_arn(train_file):
    plan = sagemaker.plan(make(train_file, reward="builtin:numeric"))
    assert plan.reward == {"arn": "arn:aws:lambda:us-east-1:123456789012:function:math-rft-reward", "deploy": True,
                           "source": "builtin:numeric", "function_name": "math-rft-reward",
                           "role_arn": LAMBDA_ROLE, "target": "sagemaker"}
    assert plan.request["HyperParameters"]["reward_lambda_arn"] == plan.reward["arn"]
    with pytest.raises(UserError, match="aws.lambda_role_arn"):
        sagemaker.plan(make(train_file, reward="builtin:numeric", aws={"lambda_role_arn": ""}))


def test_steps_derived_from_epochs_must_reach_the_minimum(train_file):
    plan = sagemaker.plan(make(train_file, hyper={"max_steps": None, "epochs": 2, "number_generation": 2}))
    assert plan.recipe["training_config"]["trainer"]["max_steps"] == 2 * 10  # 300 prompts / 32 per step
    with pytest.raises(UserError, match="must be 5..100000"):
        sagemaker.plan(make(train_file, hyper={"max_steps": None, "epochs": 1, "global_batch_size": 128,
                                              "number_generation": 1}))  # 300 / 128 -> 3 steps


def test_describe_shows_request_recipe_and_sdk_call(train_file):
    text = sagemaker.plan(make(train_file)).describe()
    assert "DRY RUN" in text and "TrainingJobName" in text and "lora_plus_lr_ratio: 64.0" in text
    assert "from_recipe:" in text and "uploads" in text


# ------------------------------------------------------------------------------------------- SMHP


def test_hyperpod_argv_is_exact(train_file):
    """The SDK's way (sagemaker-train base_trainer.py _train_hyperpod): the resolved recipe is a file of the CLI's
    collection named by --recipe, and only instance_type and container go on the command line."""
    plan = hyperpod.plan(make(train_file, backend="hyperpod", hyper={"global_batch_size": 64, "learning_rate": 7e-7},
                              aws={"mlflow_tracking_uri":
                                   "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/rft"}))
    argv = plan.request["start"]
    assert argv[:7] == ["hyperpod", "start-job", "--namespace", "kubeflow", "--recipe",
                        f"fine-tuning/nova/nbkit/{plan.job_name}", "--override-parameters"]
    assert json.loads(argv[7]) == plan.overrides == {
        "instance_type": "ml.p5.48xlarge",
        # launcher/recipe_templatization/nova/nova_regional_parameters.json, nova_lite_2_0_p5_gpu_lora_rft k8s
        "container": "708977205387.dkr.ecr.us-east-1.amazonaws.com/nova-fine-tune-repo:SM-HP-RFT-TRAIN-V2-latest"}
    data_uri = f"s3://my-rft-bucket/rft-workbench/data/sha256-{sha(train_file)[:20]}/train.jsonl"
    run, tc = plan.recipe["run"], plan.recipe["training_config"]
    assert run == {"name": plan.job_name, "model_type": "amazon.nova-2-lite-v1:0:256k",
                   "model_name_or_path": "nova-lite-2/prod", "data_s3_path": data_uri,
                   "output_s3_path": "s3://my-rft-bucket/rft-workbench/output", "replicas": 2,
                   "generation_replicas": 2, "rollout_worker_replicas": 1, "reward_lambda_arn": REWARD,
                   "mlflow_tracking_uri": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/rft",
                   "mlflow_experiment_name": "rft-workbench", "mlflow_run_name": plan.job_name}
    assert (tc["global_batch_size"], tc["max_length"], tc["reasoning_effort"]) == (64, 8192, "high")
    assert tc["rollout"]["advantage_strategy"]["number_generation"] == 8  # the HyperPod recipe's own
    assert tc["rollout"]["generator"]["max_new_tokens"] == 6000
    assert tc["rollout"]["rewards"]["api_endpoint"] == {"lambda_arn": REWARD, "lambda_concurrency_limit": 100}
    assert tc["trainer"]["max_steps"] == 20 and tc["trainer"]["optim_config"]["lr"] == 7e-7
    assert tc["trainer"]["peft"]["lora_tuning"] == {"alpha": 32, "loraplus_lr_ratio": 64.0}
    assert "kl_loss_coef" not in tc["trainer"] and tc["rollout"]["rollout_strategy"] == {
        "type": "off_policy_async", "age_tolerance": 2}
    assert yaml.safe_load(plan.recipe_yaml) == plan.recipe and "${" not in plan.recipe_yaml
    assert plan.request["connect"] == ["hyperpod", "connect-cluster", "--cluster-name", "nova-cluster",
                                       "--region", "us-east-1", "--namespace", "kubeflow"]
    assert "hyperpod start-job --namespace kubeflow --recipe" in plan.describe()


def test_hyperpod_never_sends_a_null_override(train_file):
    """Finding: the CLI turns every override into key={value}, so JSON null reached Hydra as the string "None"
    (aws/sagemaker-hyperpod-cli release_v2 commands/job.py start_training_job). Reasoning off now stays a YAML
    null inside the recipe file, and the command line carries strings only."""
    plan = hyperpod.plan(make(train_file, backend="hyperpod", hyper={"reasoning_effort": None}))
    overrides = json.loads(plan.request["start"][-1])
    assert all(isinstance(v, str) and v for v in overrides.values())
    assert "reasoning_effort: null" in plan.recipe_yaml and yaml.safe_load(plan.recipe_yaml)[
        "training_config"]["reasoning_effort"] is None
    assert "None" not in plan.request["start"][-1]


def test_hyperpod_run_name_keeps_its_digest_within_34_characters(train_file):
    """Finding: the launcher keeps run.name[:34] (aws/sagemaker-hyperpod-recipes main.py valid_run_name), and
    names reached 63 characters, so the digest was cut and re-attaching failed."""
    long = make(train_file, backend="hyperpod").model_copy(update={"name": "a-very-long-experiment-name-for-math-rft"})
    a = hyperpod.plan(long)
    assert len(a.job_name) <= 34 and a.job_name == a.job_name[:34] and a.recipe["run"]["name"] == a.job_name
    b = hyperpod.plan(long.model_copy(update={"hyper": long.hyper.model_copy(update={"learning_rate": 2e-7})}))
    assert a.job_name[:-8] == b.job_name[:-8] and a.job_name != b.job_name  # the digest survives the cap


def test_hyperpod_us_west_2_warns_about_the_launcher_table(train_file):
    reward = "arn:aws:lambda:us-west-2:123456789012:function:SageMaker-r"
    plan = hyperpod.plan(make(train_file, backend="hyperpod", aws={"region": "us-west-2"}, reward=reward))
    assert any("RFT_REGION_ACCOUNT_MAP" in w and "us-west-2" in w for w in plan.warnings)
    assert plan.overrides["container"].startswith("176779409107.dkr.ecr.us-west-2.amazonaws.com/")
    assert not any("RFT_REGION_ACCOUNT_MAP" in w for w in hyperpod.plan(make(train_file, backend="hyperpod")).warnings)


def test_hyperpod_full_rank_replicas_default_and_allowed_set(train_file):
    plan = hyperpod.plan(make(train_file, backend="hyperpod", hyper={"lora_rank": 0}))
    assert plan.recipe["run"]["replicas"] == 4
    assert plan.recipe_template.endswith("nova_lite_2_0_p5_gpu_rft")
    assert "peft" not in plan.recipe["training_config"]["trainer"]
    with pytest.raises(UserError, match="must be one of 2, 4, 8, 16"):
        hyperpod.plan(make(train_file, backend="hyperpod", aws={"instance_count": 6}))


def test_hyperpod_rules(train_file):
    bad_name = "arn:aws:lambda:us-east-1:123456789012:function:math-reward"
    with pytest.raises(UserError, match="must contain 'SageMaker'"):
        hyperpod.plan(make(train_file, backend="hyperpod", reward=bad_name))
    with pytest.raises(UserError, match="needs at least 8 ml.p5.48xlarge nodes"):
        hyperpod.plan(make(train_file, backend="hyperpod", aws={"cluster_nodes": 4}))
    with pytest.raises(UserError, match="aws.instance_type = 'ml.p5en.48xlarge'"):
        hyperpod.plan(make(train_file, backend="hyperpod", aws={"instance_type": "ml.p5en.48xlarge"}))
    with pytest.raises(UserError, match="aws.cluster_name"):
        hyperpod.plan(make(train_file, backend="hyperpod", aws={"cluster_name": ""}))
    unknown = hyperpod.plan(make(train_file, backend="hyperpod", aws={"cluster_nodes": None}))
    assert any("aws.cluster_nodes not set" in w for w in unknown.warnings)
    deployed = hyperpod.plan(make(train_file, backend="hyperpod", reward="builtin:numeric"))
    assert deployed.reward["function_name"] == "SageMaker-math-rft-reward" and deployed.reward["target"] == "hyperpod"


# ----------------------------------------------------------------------------------------- Bedrock


def test_bedrock_request_is_exact_and_typed(train_file):
    spec = make(train_file, backend="bedrock", hyper={"global_batch_size": 128, "epochs": 2, "learning_rate": 1e-5,
                                                      "number_generation": 4, "max_new_tokens": 4096},
                aws={"eval_interval": 10, "max_prompt_length": 2048, "tags": {"team": "nlp"}})
    plan = bedrock.plan(spec)
    r = plan.request
    assert list(r) == ["jobName", "customModelName", "roleArn", "baseModelIdentifier", "customizationType",
                       "trainingDataConfig", "outputDataConfig", "customizationConfig", "jobTags",
                       "customModelTags", "clientRequestToken"]
    assert r["baseModelIdentifier"] == "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-2-lite-v1:0:256k"
    assert r["customizationType"] == "REINFORCEMENT_FINE_TUNING"
    assert r["trainingDataConfig"] == {"s3Uri": f"s3://my-rft-bucket/rft-workbench/data/sha256-{sha(train_file)[:20]}/train.jsonl"}
    assert r["outputDataConfig"] == {"s3Uri": "s3://my-rft-bucket/rft-workbench/output"}
    rft = r["customizationConfig"]["rftConfig"]
    assert rft["graderConfig"] == {"lambdaGrader": {"lambdaArn": REWARD}}
    hp = rft["hyperParameters"]
    assert hp == {"epochCount": 2, "batchSize": 128, "learningRate": 1e-5, "trainingSamplePerPrompt": 4,
                  "inferenceMaxTokens": 4096, "evalInterval": 10, "maxPromptLength": 2048, "reasoningEffort": "high"}
    assert [type(hp[k]) for k in ("epochCount", "batchSize", "learningRate", "evalInterval")] == [int, int, float, int]
    assert r["jobTags"] == [{"key": "team", "value": "nlp"}]
    assert r["jobName"] == plan.job_name and r["customModelName"] == plan.job_name
    assert len(r["clientRequestToken"]) == 64 and bedrock.plan(spec).request["clientRequestToken"] == r["clientRequestToken"]
    assert plan.n_train == 300


def test_bedrock_request_passes_botocore_validation(train_file):
    import boto3
    from botocore.validate import validate_parameters

    plan = bedrock.plan(make(train_file, backend="bedrock", hyper={"global_batch_size": 128}))
    model = boto3.client("bedrock", region_name="us-east-1").meta.service_model
    validate_parameters(plan.request, model.operation_model("CreateModelCustomizationJob").input_shape)


def test_bedrock_checks_maxima_botocore_ignores(train_file):
    spec = make(train_file, backend="bedrock", hyper={"global_batch_size": 1024, "epochs": 60},
                aws={"eval_interval": 500})
    with pytest.raises(UserError) as err:
        bedrock.plan(spec)
    text = str(err.value)
    assert "hyper.global_batch_size" in text and "hyper.epochs" in text
    assert "aws.eval_interval = 500: Bedrock rftConfig.hyperParameters.evalInterval must be 1..100" in text
    # and the request botocore would have accepted: it checks minimums only
    assert bedrock.hyper_problems({"epochCount": 60, "batchSize": 1024}) == [
        "hyper.epochs = 60: Bedrock rftConfig.hyperParameters.epochCount must be 1..50",
        "hyper.global_batch_size = 1024: Bedrock rftConfig.hyperParameters.batchSize must be 16..512"]


def test_bedrock_dataset_size_and_region(train_file, tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n" for _ in range(50)))
    with pytest.raises(UserError, match="50 records; Bedrock RFT takes 100 to 20,000 prompts"):
        bedrock.plan(make(small, backend="bedrock", hyper={"global_batch_size": 128}))
    with pytest.raises(UserError, match="Bedrock does not run Nova 2 Lite RFT there; use one of us-east-1"):
        bedrock.plan(make(train_file, backend="bedrock", hyper={"global_batch_size": 128},
                          aws={"region": "us-west-2"}, reward="arn:aws:lambda:us-west-2:123456789012:function:r"))
    on_s3 = bedrock.plan(make("s3://my-rft-bucket/train.jsonl", backend="bedrock", hyper={"global_batch_size": 128}))
    assert on_s3.uploads == [] and any("cannot be checked" in w for w in on_s3.warnings)


def test_bedrock_reward_file_is_deployed_for_the_bedrock_event(train_file):
    plan = bedrock.plan(make(train_file, backend="bedrock", hyper={"global_batch_size": 128}, reward="builtin:numeric"))
    assert plan.reward["target"] == "bedrock" and plan.reward["deploy"]
    lam = plan.request["customizationConfig"]["rftConfig"]["graderConfig"]["lambdaGrader"]["lambdaArn"]
    assert lam == "arn:aws:lambda:us-east-1:123456789012:function:math-rft-reward"


@pytest.mark.parametrize("name, backend", [("aws-smtj", "sagemaker"), ("aws-hyperpod", "hyperpod"),
                                           ("aws-bedrock", "bedrock"), ("aws-serverless", "sagemaker-serverless")])
def test_params_files_validate_and_plan_offline(tmp_path, name, backend):
    """The shipped AWS params files pass notebook 04's validation and give a complete dry-run plan."""
    from nbkit import params, paths
    from nbkit.train.job import get_backend
    from nbkit.train.spec import from_params

    merged = params.load_file(paths.PARAMS / f"{name}.yaml")
    values = params.validate("04_launch_training", merged["04_launch_training"], name).model_dump()
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "eval.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "1+1?"}]}) + "\n")
    (run / "data" / "train.jsonl").write_text("".join(
        json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": f"{i}+1?"}], "reference_answer": str(i)})
        + "\n" for i in range(150)))
    spec = from_params(values, run_dir=str(run))
    assert spec.backend == backend and spec.dry_run is True
    plan = get_backend(backend).plan(spec)
    assert plan.reward["deploy"] and "123456789012" in plan.reward["arn"]
    text = plan.describe()
    assert "DRY RUN" in text
    if backend == "sagemaker":
        assert plan.request["ResourceConfig"]["InstanceCount"] == 2 and "lora_plus_lr_ratio: 64.0" in text
    elif backend == "hyperpod":
        assert plan.request["start"][:2] == ["hyperpod", "start-job"] and "SageMaker-" in plan.reward["function_name"]
    elif backend == "bedrock":
        assert plan.request["customizationConfig"]["rftConfig"]["hyperParameters"]["batchSize"] == 256
    else:
        assert plan.trainer["training_type"] == "LORA" and plan.hyperparameters["learning_rate"] == 1e-5


def test_bedrock_takes_batch_sizes_that_are_not_a_multiple_of_the_generations(train_file):
    """Finding: we required batchSize % trainingSamplePerPrompt == 0; the API has no such rule (botocore
    bedrock/2023-04-20 RFTHyperParameters: batchSize 16..512, trainingSamplePerPrompt 2..16, independent)."""
    plan = bedrock.plan(make(train_file, backend="bedrock", hyper={"global_batch_size": 100, "number_generation": 16}))
    hp = plan.request["customizationConfig"]["rftConfig"]["hyperParameters"]
    assert (hp["batchSize"], hp["trainingSamplePerPrompt"]) == (100, 16)
    assert not [i for i in plan.spec.check() if i.field == "hyper.global_batch_size"]


def test_bedrock_sends_the_eval_split_as_validation_data(train_file, tmp_path):
    """Finding: eval_data was never sent although CreateModelCustomizationJob has validationDataConfig.validators."""
    eval_file = tmp_path / "eval.jsonl"
    eval_file.write_text(json.dumps({"messages": [{"role": "user", "content": "2+2?"}], "reference_answer": "4"}) + "\n")
    plan = bedrock.plan(make(train_file, backend="bedrock", hyper={"global_batch_size": 128},
                             eval_data=str(eval_file)))
    uri = f"s3://my-rft-bucket/rft-workbench/data/sha256-{sha(eval_file)[:20]}/eval.jsonl"
    assert plan.request["validationDataConfig"] == {"validators": [{"s3Uri": uri}]}
    assert [u["source"] for u in plan.uploads] == [str(train_file), str(eval_file)]
    assert "validationDataConfig" not in bedrock.plan(make(train_file, backend="bedrock",
                                                           hyper={"global_batch_size": 128})).request
