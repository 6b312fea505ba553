"""Lambda packaging (offline, run in an isolated interpreter), deploy/update against moto, invoke via Stubber."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from nbkit.errors import UserError
from nbkit.rewards import (
    Reward,
    deploy_reward,
    load_reward,
    make_sample,
    package_reward,
    remote_reward,
    run_harness,
)
from nbkit.rewards import graders as G
from nbkit.rewards.lambda_deploy import check_deploy_args, plan_package

FIXTURES = Path(__file__).parent / "fixtures" / "rewards"
RECORD = {"id": "m1", "messages": [{"role": "user", "content": "What is 7 + 5?"}], "reference_answer": {"solution": "12"}}
SAMPLES = [make_sample(RECORD, r, sample_id=f"s{i}") for i, r in enumerate(["12, thank you", "13", "please: 12"])]
ROLE = "arn:aws:iam::123456789012:role/reward-role"


@pytest.fixture(autouse=True)
def offline_aws(tmp_path, monkeypatch):
    monkeypatch.setenv("NBKIT_CACHE", str(tmp_path / "cache"))
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def run_zip_isolated(zip_path: Path, module: str, tmp_path: Path) -> list[dict]:
    """Unpack the zip and call its handler in `python -I`: no nbkit, no site-packages, like Lambda."""
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    script = (f"import json, sys; sys.path.insert(0, sys.argv[1]); import {module} as m; "
              "print(json.dumps(m.lambda_handler(json.loads(sys.argv[2]), None)))")
    out = subprocess.run([sys.executable, "-I", "-c", script, str(folder), json.dumps(SAMPLES)],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_package_follows_local_imports_and_vendors_the_graders(tmp_path):
    reward = load_reward(str(FIXTURES / "packaged_reward.py"))
    plan = plan_package(reward)
    assert plan.handler == "packaged_reward.lambda_handler"
    assert sorted(plan.files) == ["helper_pkg/__init__.py", "helper_pkg/words.py", "nbkit/plain.py",
                                  "nbkit/rewards/graders.py", "packaged_reward.py", "reward_helpers.py"]
    assert plan.third_party == []
    path = package_reward(reward, tmp_path / "out")
    assert path == tmp_path / "out" / "lambda.zip"
    assert package_reward(reward, tmp_path / "again.zip").read_bytes() == path.read_bytes(), "deterministic"
    results = run_zip_isolated(path, "packaged_reward", tmp_path)
    assert [r["aggregate_reward_score"] for r in results] == [1.0, 0.0, 1.0]
    assert [next(m["value"] for m in r["metrics_list"] if m["name"] == "polite") for r in results] == [1.0, 0.0, 1.0]


def test_builtin_packages_as_its_generated_file_and_the_plain_helpers(tmp_path):
    reward = load_reward("builtin:composite?numeric=0.9&length=0.1")
    path = package_reward(reward, tmp_path / "builtin.zip")
    assert zipfile.ZipFile(path).namelist() == ["nbkit/__init__.py", "nbkit/plain.py", "nbkit_reward.py"]
    assert plan_package(reward).handler == "nbkit_reward.lambda_handler"
    assert run_zip_isolated(path, "nbkit_reward", tmp_path) == reward.handler(SAMPLES, None)


def test_third_party_imports_are_named(tmp_path):
    path = tmp_path / "heavy.py"
    path.write_text("import json\nimport boto3\nimport numpy as np\nfrom rdkit import Chem\n\n"
                    "def lambda_handler(event, context):\n    return []\n")
    with pytest.warns(UserWarning, match="numpy, rdkit are not in the zip"):
        package_reward(str(path), tmp_path)


def test_what_cannot_be_packaged_says_why():
    class Gen:
        def generate(self, prompts, n, max_new_tokens, temperature, seed):
            return []

    with pytest.raises(UserError, match="LLM judge"):
        plan_package(load_reward(G.LLMJudge(Gen())))
    with pytest.raises(UserError, match="no source file"):
        plan_package(Reward("inline", lambda e, c: []))


@pytest.mark.parametrize("args, words", [
    (("my-reward", ROLE, "hyperpod", 300, 512), "must contain 'SageMaker'|contains 'SageMaker'"),
    (("bad name!", ROLE, "sagemaker", 300, 512), "invalid"),
    (("r", "not-an-arn", "sagemaker", 300, 512), "not an IAM role ARN"),
    (("r", ROLE, "sagemaker", 901, 512), "1..900"),
    (("r", ROLE, "sagemaker", 300, 64), "128..10240"),
    (("r", ROLE, "vertex", 300, 512), "target"),
])
def test_deploy_arguments_are_checked_before_aws(args, words):
    with pytest.raises(UserError, match=words):
        check_deploy_args(*args)
    check_deploy_args("SageMaker-my-reward", ROLE, "hyperpod", 300, 512)
    check_deploy_args("sagemaker_reward", ROLE, "hyperpod", 300, 512)


def test_deploy_creates_then_updates_with_moto():
    from moto import mock_aws

    with mock_aws():
        iam = boto3.client("iam")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                          "Principal": {"Service": "lambda.amazonaws.com"}}]}
        role = iam.create_role(RoleName="reward-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        lam = boto3.client("lambda", region_name="us-east-1")
        arn = deploy_reward("builtin:numeric", "SageMaker-math-reward", role, "us-east-1", target="hyperpod",
                            client=lam)
        assert arn == "arn:aws:lambda:us-east-1:123456789012:function:SageMaker-math-reward"
        first = lam.get_function_configuration(FunctionName="SageMaker-math-reward")
        assert (first["Runtime"], first["Handler"], first["Timeout"], first["MemorySize"], first["Role"]) == \
               ("python3.12", "nbkit_reward.lambda_handler", 300, 512, role)
        assert lam.list_tags(Resource=arn)["Tags"] == {"nbkit:reward": "builtin:numeric"}
        again = deploy_reward(str(FIXTURES / "packaged_reward.py"), "SageMaker-math-reward", role, "us-east-1",
                              timeout_s=60, memory_mb=1024, client=lam)
        assert again == arn
        second = lam.get_function_configuration(FunctionName="SageMaker-math-reward")
        assert (second["Handler"], second["Timeout"], second["MemorySize"]) == \
               ("packaged_reward.lambda_handler", 60, 1024)
        assert second["CodeSha256"] != first["CodeSha256"]


def test_deploy_without_credentials_is_a_user_error(monkeypatch):
    from botocore.exceptions import NoCredentialsError

    class NoCreds:
        def get_function(self, **kw):
            raise NoCredentialsError()

    with pytest.raises(UserError, match="no AWS credentials"):
        deploy_reward("builtin:numeric", "reward", ROLE, "us-east-1", client=NoCreds())


def payload(data) -> dict:
    raw = json.dumps(data).encode()
    return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(raw), len(raw))}


def stubbed_lambda():
    client = boto3.client("lambda", region_name="us-east-1")
    return client, Stubber(client)


def test_remote_reward_goes_through_the_harness():
    client, stub = stubbed_lambda()
    local = load_reward("builtin:numeric")
    for start in (0, 2):
        batch = SAMPLES[start:start + 2]
        stub.add_response("invoke", payload(local.handler(batch, None)),
                          {"FunctionName": "SageMaker-r", "InvocationType": "RequestResponse",
                           "Payload": json.dumps(batch).encode()})
    with stub:
        report = run_harness(remote_reward("SageMaker-r", client=client), SAMPLES, batch_size=2, workers=1)
    stub.assert_no_pending_responses()
    assert report.statuses == ["ok"] * 3 and report.scores() == [1.0, 0.0, 1.0]
    assert report.settings["executor"] == "ThreadExecutor"


def test_remote_function_errors_and_throttling():
    client, stub = stubbed_lambda()
    error = {"errorType": "KeyError", "errorMessage": "'reference_answer'"}
    stub.add_response("invoke", {**payload(error), "FunctionError": "Unhandled"})
    with stub:
        report = run_harness(remote_reward("SageMaker-r", client=client), SAMPLES[:1], workers=1)
    assert report.statuses == ["exception"]
    assert "KeyError: 'reference_answer' (in the deployed function SageMaker-r)" in report.results[0].error

    client, stub = stubbed_lambda()
    stub.add_client_error("invoke", service_error_code="TooManyRequestsException", http_status_code=429,
                          service_message="Rate Exceeded.")
    stub.add_response("invoke", payload([{"id": "s0", "aggregate_reward_score": 1.0}]))
    with stub:
        report = run_harness(remote_reward("SageMaker-r", client=client), SAMPLES[:1], workers=1, retries=2,
                             backoff_s=0.001)
    assert report.statuses == ["ok"]
    assert any("retried" in w for w in report.warnings)


def test_remote_concurrency_is_limited_and_slow_calls_time_out():
    live, peak, lock = [0], [0], threading.Lock()

    def slow(event, context):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        time.sleep(1.0 if event[0]["id"] == "stuck" else 0.05)
        with lock:
            live[0] -= 1
        return [{"id": s["id"], "aggregate_reward_score": 1.0} for s in event]

    remote = Reward("remote", slow, remote=True)
    samples = [make_sample(RECORD, "12", sample_id=f"s{i}") for i in range(8)]
    report = run_harness(remote, samples, batch_size=1, workers=3)
    assert report.statuses == ["ok"] * 8 and peak[0] == 3
    stuck = [make_sample(RECORD, "12", sample_id="stuck")] + samples[:2]
    report = run_harness(remote, stuck, batch_size=1, workers=2, timeout=0.3)
    assert report.statuses == ["timeout", "ok", "ok"]


def test_lambda_spec_builds_a_remote_reward():
    reward = load_reward("lambda:SageMaker-r?region=us-west-2")
    assert reward.remote and reward.name == "lambda:SageMaker-r?region=us-west-2"
