"""Managed rft_eval: plans for base model and checkpoint on SMTJ and HyperPod, submit, and result import."""

from __future__ import annotations

import json
from pathlib import Path

import aws_calls
import boto3
import pytest
from moto import mock_aws

from nbkit.errors import UserError
from nbkit.train import nova_eval
from nbkit.train.spec import JobSpec

ALLOWED = aws_calls.SIMULATE_ALLOWED

ROLE = "arn:aws:iam::123456789012:role/SageMakerRFT"
REWARD = "arn:aws:lambda:us-east-1:123456789012:function:SageMaker-math-reward"
SMTJ_CKPT = "s3://customer-escrow-123456789012-smtj-abc123/math-rft-1a2b3c4d/step50"


@pytest.fixture
def spec(tmp_path):
    records = [{"id": f"e{i}", "messages": [{"role": "system", "content": "Answer briefly."},
                                            {"role": "user", "content": f"What is {i}+1?"}],
                "reference_answer": {"answer": i + 1}, "domain": "math", "difficulty_level": "easy"}
               for i in range(3)]
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    return JobSpec(backend="sagemaker", name="math-rft", model="nova-lite-2/prod", train_data=str(data),
                   eval_data=str(data), reward=REWARD, hyper={"reasoning_effort": "low"},
                   aws={"role_arn": ROLE, "s3_bucket": "my-rft-bucket", "cluster_name": "nova-cluster",
                        "probe_reward": False})


def test_smtj_eval_of_the_base_model(spec):
    plan = nova_eval.plan(spec)
    assert plan.kind == "eval" and plan.job_name.startswith("math-rft-eval-base-")
    r = plan.request
    assert r["AlgorithmSpecification"]["TrainingImage"] == (
        "708977205387.dkr.ecr.us-east-1.amazonaws.com/nova-evaluation-repo:SM-TJ-Eval-V2-latest")
    assert r["HyperParameters"] == {"base_model": "nova-lite-2/prod",
                                    "sagemaker_recipe_local_path": "/opt/ml/input/data/recipe/recipe.yaml"}
    assert [c["ChannelName"] for c in r["InputDataConfig"]] == ["train", "recipe"]
    assert r["ResourceConfig"]["InstanceCount"] == 1
    recipe = plan.recipe
    assert plan.recipe_template == "evaluation/nova/nova_2_0/nova_lite/nova_lite_2_0_p5_48xl_gpu_rft_eval"
    assert recipe["evaluation"] == {"task": "rft_eval", "strategy": "rft_eval", "metric": "all"}
    assert recipe["run"]["data_s3_path"] == "" and recipe["run"]["output_s3_path"] == ""  # SMTJ: channel + job output
    assert recipe["run"]["model_name_or_path"] == "nova-lite-2/prod" and recipe["run"]["replicas"] == 1
    assert recipe["rl_env"] == {"reward_lambda_arn": REWARD}
    assert recipe["inference"] == {"max_new_tokens": 32768, "top_k": -1, "top_p": 1.0, "temperature": 0,
                                   "top_logprobs": 0, "reasoning_effort": "low"}
    assert "rft_eval plan for job" in plan.describe()


def test_smtj_eval_of_a_checkpoint_with_inference_overrides(spec):
    plan = nova_eval.plan(spec, checkpoint=SMTJ_CKPT, instance_count=2, inference={"max_new_tokens": 4096})
    assert plan.request["HyperParameters"]["base_model_location"] == SMTJ_CKPT
    assert plan.recipe["run"]["model_name_or_path"] == SMTJ_CKPT and plan.recipe["run"]["replicas"] == 2
    assert plan.recipe["inference"]["max_new_tokens"] == 4096
    assert plan.job_name.startswith("math-rft-eval-ckpt-") and plan.job_name != nova_eval.plan(spec).job_name
    with pytest.raises(UserError, match="unknown key"):
        nova_eval.plan(spec, inference={"beam_size": 4})


def test_hyperpod_eval_needs_data_and_output_paths_and_the_same_platform(spec):
    smhp = "s3://customer-escrow-123456789012-smhp-abc/job/step5"
    plan = nova_eval.plan(spec, checkpoint=smhp, backend="hyperpod")
    # Finding: HyperPod rft_eval had no image. The launcher reads `container` (default null); AWS's HyperPod RFT
    # notebook passes the region's nova-evaluation-repo:SM-HP-Eval-V2-latest.
    assert plan.overrides == {"instance_type": "ml.p5.48xlarge", "container":
                              "708977205387.dkr.ecr.us-east-1.amazonaws.com/nova-evaluation-repo:SM-HP-Eval-V2-latest"}
    assert plan.request["start"][5] == f"evaluation/nova/nbkit/{plan.job_name}" and len(plan.job_name) <= 34
    assert plan.recipe_template == "evaluation/nova/nova_2_0/nova_lite/nova_lite_2_0_p5_48xl_gpu_rft_eval"
    run = plan.recipe["run"]
    assert run["model_name_or_path"] == smhp and run["name"] == plan.job_name
    assert run["data_s3_path"].startswith("s3://my-rft-bucket/rft-workbench/data/sha256-")
    assert run["output_s3_path"] == "s3://my-rft-bucket/rft-workbench/output"
    assert plan.recipe["rl_env"]["reward_lambda_arn"] == REWARD
    assert run["replicas"] == 1  # fixed on HyperPod
    # Finding: recipes.inference.reasoning_effort was always sent as JSON null, i.e. the string "None".
    off = nova_eval.plan(spec.model_copy(update={"hyper": spec.hyper.model_copy(update={"reasoning_effort": None}),
                                                 "sources": {}}), checkpoint=smhp, backend="hyperpod")
    assert off.recipe["inference"]["reasoning_effort"] is None and "None" not in off.request["start"][-1]
    with pytest.raises(UserError, match="only reads checkpoints of its own platform"):
        nova_eval.plan(spec, checkpoint=SMTJ_CKPT, backend="hyperpod")
    with pytest.raises(UserError, match="managed rft_eval runs on sagemaker"):
        nova_eval.plan(spec, backend="bedrock")


def test_submit_smtj_eval_against_moto(spec, tmp_path, monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws(), aws_calls.recording(ALLOWED):
        sess = boto3.Session(region_name="us-east-1")
        sess.client("s3").create_bucket(Bucket="my-rft-bucket")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
        sess.client("iam").create_role(RoleName=ROLE.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(trust))
        plan = nova_eval.plan(spec.model_copy(update={"dry_run": False}), checkpoint=SMTJ_CKPT)
        handle = nova_eval.submit(plan, tmp_path, session=sess)
        job = sess.client("sagemaker").describe_training_job(TrainingJobName=handle.job_id)
        assert job["HyperParameters"]["base_model_location"] == SMTJ_CKPT
        assert job["AlgorithmSpecification"]["TrainingImage"].endswith("nova-evaluation-repo:SM-TJ-Eval-V2-latest")
        assert handle.kind == "eval" and handle.default_dest() == tmp_path / "training" / "eval" / handle.job_id


def _eval_output(root, records):
    """A folder laid out like an SMTJ rft_eval output (reference section 4), cells as Python-repr strings."""
    import pandas as pd

    result_dir = root / "eval-result"
    details_dir = result_dir / "details" / "model" / "2026-01-02T03-04-05"
    details_dir.mkdir(parents=True)
    (result_dir / "results_2026-01-02T03-04-05.json").write_text(json.dumps({"results": {
        "custom|rft_eval_rft_eval|0": {"lambda_reward_score": 0.5, "lambda_correctness": 0.5,
                                       "lambda_reward_score_stderr": "n/a"}}}))
    scores = [{"rft_eval_lambda_metric": {"lambda_reward_score": 1.0, "lambda_correctness": 1.0}},
              {"rft_eval_lambda_metric": {"lambda_reward_score": 0.0, "lambda_correctness": 0.0}},
              {}]
    rows = [{"predictions": repr([f"The answer is {i + 1}" if i != 1 else "no idea"]),
             "metrics": repr(score),
             "specifics": repr({"sample_id": str(i), "original_line": json.dumps(rec)})}
            for i, (rec, score) in enumerate(zip(records, scores, strict=True))]
    pd.DataFrame(rows).to_parquet(details_dir / "details_custom|rft_eval_rft_eval|0_2026-01-02T03-04-05.parquet")
    return root


def test_import_results_builds_the_local_evaluation_frame(spec, tmp_path):
    import tarfile

    records = [json.loads(line) for line in Path(spec.eval_data).read_text().splitlines()]
    folder = _eval_output(tmp_path / "job-out", records)
    archive = tmp_path / "output.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "eval-result", arcname="eval-result")
    results = nova_eval.import_results(archive, tmp_path / "extracted")
    assert results.summary == {"lambda_reward_score": 0.5, "lambda_correctness": 0.5}
    frame = results.frame
    assert list(frame.columns) == list(nova_eval.FRAME_COLUMNS) + ["domain", "difficulty_level"]
    assert frame["prompt_id"].tolist() == ["e0", "e1", "e2"] and frame["sample"].tolist() == [0, 0, 0]
    assert frame["prompt"].tolist() == ["What is 0+1?", "What is 1+1?", "What is 2+1?"]
    assert json.loads(frame["reference"][1]) == {"answer": 2}
    assert frame["response"].tolist() == ["The answer is 1", "no idea", "The answer is 3"]
    assert frame["reward"].tolist()[:2] == [1.0, 0.0] and frame["reward"].isna().tolist() == [False, False, True]
    assert frame["status"].tolist() == ["ok", "ok", "missing_result"]  # no row dropped
    assert json.loads(frame["components"][0]) == {"correctness": 1.0}
    assert frame["domain"].tolist() == ["math"] * 3 and frame["finish_reason"].tolist() == ["stop"] * 3
    assert results.mean_reward == 0.5 == results.summary["lambda_reward_score"]
    saved = results.save(tmp_path / "tuned" / "samples.parquet")
    import pandas as pd
    assert pd.read_parquet(saved)["response"].tolist() == frame["response"].tolist()


def test_import_results_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        nova_eval.import_results(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no rft_eval results"):
        nova_eval.import_results(tmp_path / "empty")
    bad = tmp_path / "bad" / "eval-result"
    bad.mkdir(parents=True)
    (bad / "results_1.json").write_text(json.dumps({"results": {"other|task|0": {"acc": 1}}}))
    with pytest.raises(UserError, match="no rft_eval entry"):
        nova_eval.import_results(tmp_path / "bad")
