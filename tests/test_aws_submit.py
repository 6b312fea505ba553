"""Submit paths of the SMTJ and Bedrock backends against moto, and botocore Stubber where moto lacks."""

from __future__ import annotations

import io
import json
import tarfile
import time

import aws_calls
import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from nbkit.errors import UserError
from nbkit.train import aws, bedrock, sagemaker
from nbkit.train.job import DryRunHandle, load_job, save_job
from nbkit.train.nova_layout import read_output
from nbkit.train.spec import JobSpec

REGION, ROLE = aws_calls.REGION, aws_calls.ROLE
REWARD = "arn:aws:lambda:us-east-1:123456789012:function:math-reward"


ALLOWED = aws_calls.SIMULATE_ALLOWED


@pytest.fixture
def moto_session(creds):
    """moto with the bucket and the SageMaker execution role; AWS calls moto lacks are answered by aws_calls."""
    with mock_aws(), aws_calls.recording(ALLOWED):
        sess = boto3.Session(region_name=REGION)
        aws_calls.create_account(sess)
        yield sess


def spec_for(train_file, backend="sagemaker", dry_run=False, **over):
    hyper = {"global_batch_size": 64, "learning_rate": 1e-5, "max_new_tokens": 6000, "max_length": 8192,
             "max_steps": 10} | over.pop("hyper", {})
    return JobSpec(backend=backend, name="math-rft", model="nova-lite-2/prod", train_data=str(train_file),
                   reward=over.pop("reward", REWARD), dry_run=dry_run, hyper=hyper,
                   aws={"role_arn": ROLE, "s3_bucket": "my-rft-bucket", "probe_reward": False} | over.pop("aws", {}))


def keys(sess):
    listing = sess.client("s3").list_objects_v2(Bucket="my-rft-bucket")
    return sorted(o["Key"] for o in listing.get("Contents", []))


class Untouchable:
    """A session that fails the test if anything asks it for a client: a dry run must send nothing."""

    def client(self, *args, **kwargs):
        raise AssertionError("a dry run created an AWS client")

    def get_credentials(self):
        raise AssertionError("a dry run looked for credentials")


# ------------------------------------------------------------------------------------------- SMTJ


def test_dry_run_sends_nothing(train_file, tmp_path, capsys):
    plan = sagemaker.plan(spec_for(train_file, dry_run=True))
    handle = sagemaker.submit(plan, tmp_path, session=Untouchable())
    assert isinstance(handle, DryRunHandle) and handle.status() == "planned"
    assert plan.job_name in capsys.readouterr().out


def test_smtj_submit_uploads_once_and_creates_the_planned_job(moto_session, train_file, tmp_path):
    plan = sagemaker.plan(spec_for(train_file))
    handle = sagemaker.submit(plan, tmp_path, session=moto_session)
    assert handle.job_id.startswith(plan.job_name + "-")
    data_key = plan.uploads[0]["uri"].split("my-rft-bucket/", 1)[1]
    recipe_key = f"rft-workbench/{plan.job_name}/{handle.job_id}/input/recipe/recipe.yaml"
    assert keys(moto_session) == sorted([data_key, recipe_key])  # the data ours, the recipe the SDK's
    body = moto_session.client("s3").get_object(Bucket="my-rft-bucket", Key=recipe_key)["Body"].read()
    assert yaml.safe_load(body) == plan.recipe
    job = moto_session.client("sagemaker").describe_training_job(TrainingJobName=handle.job_id)
    assert job["HyperParameters"] == plan.request["HyperParameters"]
    assert job["AlgorithmSpecification"]["TrainingImage"] == plan.request["AlgorithmSpecification"]["TrainingImage"]
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["train", "recipe"]
    assert job["ResourceConfig"]["InstanceCount"] == 4
    assert handle.status() == "completed"  # moto completes jobs at once

    # Re-running the same plan uploads no data again (content-addressed keys already there).
    sagemaker.upload_all(plan, moto_session)
    assert data_key in keys(moto_session) and len(keys(moto_session)) == 2


def test_changed_data_after_planning_is_refused(moto_session, train_file, tmp_path):
    plan = sagemaker.plan(spec_for(train_file))
    with train_file.open("a") as fh:
        fh.write(json.dumps({"messages": [{"role": "user", "content": "late"}]}) + "\n")
    with pytest.raises(UserError, match="changed since the plan was made"):
        sagemaker.submit(plan, tmp_path, session=moto_session)
    assert keys(moto_session) == []


def test_reward_file_is_deployed_to_the_planned_arn(moto_session, train_file, tmp_path):
    iam = moto_session.client("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "lambda.amazonaws.com"}}]}
    lambda_role = iam.create_role(RoleName="RewardLambda", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    plan = sagemaker.plan(spec_for(train_file, reward="builtin:numeric", aws={"lambda_role_arn": lambda_role}))
    sagemaker.submit(plan, tmp_path, session=moto_session)
    fn = moto_session.client("lambda").get_function(FunctionName="math-rft-reward")["Configuration"]
    assert fn["FunctionArn"] == plan.reward["arn"] and fn["Role"] == lambda_role
    [name] = [j["TrainingJobName"] for j in moto_session.client("sagemaker").list_training_jobs()[
        "TrainingJobSummaries"]]
    job = moto_session.client("sagemaker").describe_training_job(TrainingJobName=name)
    assert job["HyperParameters"]["reward_lambda_arn"] == plan.reward["arn"]


def test_existing_job_of_the_plan_is_found_by_its_base_name(creds, train_file):
    """The SDK appends a timestamp; the plan's base name (its request digest) finds the job again."""
    plan = sagemaker.plan(spec_for(train_file))
    client = boto3.client("sagemaker", region_name=REGION)
    stub = Stubber(client)
    summary = {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:training-job/x",
               "CreationTime": "2026-01-01T00:00:00Z", "TrainingJobStatus": "InProgress"}
    stub.add_response("list_training_jobs", {"TrainingJobSummaries": [
        summary | {"TrainingJobName": f"{plan.job_name}-eval-ckpt-20260101000000"},  # another plan's job
        summary | {"TrainingJobName": f"{plan.job_name}-20260101000000"}]},
        {"NameContains": plan.job_name, "SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": 100})
    stub.add_response("list_training_jobs", {"TrainingJobSummaries": []},
                      {"NameContains": plan.job_name, "SortBy": "CreationTime", "SortOrder": "Descending",
                       "MaxResults": 100})
    with stub:
        assert sagemaker.existing_job(_FixedSession({"sagemaker": client}), REGION, plan.job_name) == (
            f"{plan.job_name}-20260101000000")
        assert sagemaker.existing_job(_FixedSession({"sagemaker": client}), REGION, plan.job_name) == ""


def test_access_denied_names_the_permission(moto_session, train_file, tmp_path):
    plan = sagemaker.plan(spec_for(train_file))

    def denied(params):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
                          "CreateTrainingJob")

    with aws_calls.recording(ALLOWED | {"sagemaker.CreateTrainingJob": denied}), pytest.raises(UserError) as err:
        sagemaker.submit(plan, tmp_path, session=moto_session)
    assert "sagemaker:CreateTrainingJob" in str(err.value) and "iam:PassRole" in str(err.value)


def test_missing_credentials_say_how_to_fix(monkeypatch, train_file, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    plan = sagemaker.plan(spec_for(train_file))
    with pytest.raises(UserError, match="no AWS credentials found.*aws configure"):
        sagemaker.submit(plan, tmp_path)


def _describe(name, status, secondary="Training"):
    return {"TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
            "TrainingJobStatus": status, "SecondaryStatus": secondary,
            "AlgorithmSpecification": {"TrainingInputMode": "File"}, "ResourceConfig": {"VolumeSizeInGB": 30},
            "StoppingCondition": {}, "CreationTime": "2026-01-01T00:00:00Z", "ModelArtifacts": {"S3ModelArtifacts": ""}}


@pytest.mark.parametrize("status, secondary, expected", [
    ("InProgress", "Starting", "pending"), ("InProgress", "Training", "running"), ("Stopping", "Stopping", "running"),
    ("Completed", "Completed", "completed"), ("Failed", "Failed", "failed"), ("Stopped", "Stopped", "stopped"),
])
def test_status_mapping_and_stop(creds, tmp_path, status, secondary, expected):
    client = boto3.client("sagemaker", region_name=REGION)
    stub = Stubber(client)
    stub.add_response("describe_training_job", _describe("job-1", status, secondary), {"TrainingJobName": "job-1"})
    handle = sagemaker.SageMakerJobHandle("job-1", tmp_path, REGION, "s3://b/out")
    handle._clients["sagemaker"] = client
    with stub:
        assert handle.status() == expected


def test_stop_calls_stop_training_job_only_while_running(creds, tmp_path):
    client = boto3.client("sagemaker", region_name=REGION)
    stub = Stubber(client)
    stub.add_response("describe_training_job", _describe("job-1", "InProgress"), {"TrainingJobName": "job-1"})
    stub.add_response("stop_training_job", {}, {"TrainingJobName": "job-1"})
    stub.add_response("describe_training_job", _describe("job-1", "Completed"), {"TrainingJobName": "job-1"})
    handle = sagemaker.SageMakerJobHandle("job-1", tmp_path, REGION, "s3://b/out")
    handle._clients["sagemaker"] = client
    with stub:
        handle.stop()
        handle.stop()  # already ended: nothing sent (the stub would fail on an unexpected call)
    stub.assert_no_pending_responses()


def test_logs_read_every_instance_stream_of_this_job_only(moto_session, tmp_path):
    logs = moto_session.client("logs")
    now = int(time.time() * 1000)  # CloudWatch drops events older than 14 days
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    lines = {"job-1/algo-1-1700000000": ["step:1 - critic/rewards/mean:0.1", "step:2 - critic/rewards/mean:0.2"],
             "job-1/algo-2-1700000000": ["worker 2 up"], "job-10/algo-1-1700000000": ["other job"]}
    for stream, messages in lines.items():
        logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)
        logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream,
                            logEvents=[{"timestamp": now + i, "message": m} for i, m in enumerate(messages)])
    handle = sagemaker.SageMakerJobHandle("job-1", tmp_path, REGION, "s3://my-rft-bucket/out", session=moto_session)
    assert handle.logs().splitlines() == lines["job-1/algo-1-1700000000"] + lines["job-1/algo-2-1700000000"]
    assert handle.logs(tail=1) == "worker 2 up"


def test_outputs_download_extract_and_read(moto_session, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("manifest.json", b'{"checkpoint_s3_bucket": "s3://customer-escrow-1-smtj-x/job-1/step10"}'),
                           ("step_wise_training_metrics.csv", b"step_number,train_reward_mean\n1,0.2\n2,0.4\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    moto_session.client("s3").put_object(Bucket="my-rft-bucket", Key="out/job-1/output/output.tar.gz",
                                         Body=buf.getvalue())
    handle = sagemaker.SageMakerJobHandle("job-1", tmp_path, REGION, "s3://my-rft-bucket/out", session=moto_session)
    folder = handle.outputs()
    assert folder == tmp_path / "training" / "output"
    out = read_output(folder)
    assert out.checkpoint == "s3://customer-escrow-1-smtj-x/job-1/step10"
    assert out.metrics["train_reward_mean"].tolist() == [0.2, 0.4]
    missing = sagemaker.SageMakerJobHandle("job-2", tmp_path, REGION, "s3://my-rft-bucket/out", session=moto_session)
    with pytest.raises(UserError, match="does not exist"):
        missing.outputs(tmp_path / "x")


def test_handle_round_trips_through_job_json(train_file, tmp_path):
    spec = spec_for(train_file)
    plan = sagemaker.plan(spec)
    handle = sagemaker.SageMakerJobHandle(plan.job_name, tmp_path, REGION, plan.output_s3_path)
    save_job(tmp_path, handle, spec, plan)
    again = load_job(tmp_path)
    assert isinstance(again, sagemaker.SageMakerJobHandle)
    assert again.to_dict() == handle.to_dict()
    assert json.loads((tmp_path / "training" / "job.json").read_text())["plan"]["job_name"] == plan.job_name


# ----------------------------------------------------------------------------------------- Bedrock


def test_bedrock_submit_status_model_arn_and_idempotency(moto_session, train_file, tmp_path, capsys):
    plan = bedrock.plan(spec_for(train_file, backend="bedrock", hyper={"global_batch_size": 128}))
    handle = bedrock.submit(plan, tmp_path, session=moto_session)
    assert handle.job_name == plan.job_name and handle.job_id.endswith(plan.job_name)
    job = moto_session.client("bedrock").get_model_customization_job(jobIdentifier=plan.job_name)
    assert job["customizationType"] == "REINFORCEMENT_FINE_TUNING"
    assert job["trainingDataConfig"] == plan.request["trainingDataConfig"]
    assert job["clientRequestToken"] == plan.request["clientRequestToken"]
    assert handle.status() == "running"
    assert handle.custom_model_arn().startswith("arn:aws:bedrock:us-east-1:123456789012:custom-model/")
    again = bedrock.submit(plan, tmp_path, session=moto_session)
    assert again.job_id == handle.job_id and "already exists" in capsys.readouterr().out
    assert len(moto_session.client("bedrock").list_model_customization_jobs()["modelCustomizationJobSummaries"]) == 1
    assert bedrock.handle_from_dict(handle.to_dict(), tmp_path).to_dict() == handle.to_dict()


def test_bedrock_stop_and_outputs_with_stubber(creds, tmp_path):
    arn = "arn:aws:bedrock:us-east-1:123456789012:model-customization-job/amazon.nova-2-lite-v1:0:256k/abc123"
    client = boto3.client("bedrock", region_name=REGION)
    stub = Stubber(client)
    base = {"jobArn": arn, "jobName": "math-rft-1", "roleArn": ROLE, "creationTime": "2026-01-01T00:00:00Z",
            "baseModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-2-lite-v1:0:256k",
            "outputModelName": "m", "trainingDataConfig": {"s3Uri": "s3://b/t.jsonl"},
            "validationDataConfig": {"validators": []},
            "outputDataConfig": {"s3Uri": "s3://b/out"}}
    stub.add_response("get_model_customization_job", base | {"status": "InProgress"}, {"jobIdentifier": "math-rft-1"})
    stub.add_response("stop_model_customization_job", {}, {"jobIdentifier": "math-rft-1"})
    stub.add_response("get_model_customization_job", base | {"status": "Failed", "failureMessage": "reward timeout"},
                      {"jobIdentifier": "math-rft-1"})
    handle = bedrock.BedrockJobHandle(arn, tmp_path, REGION, "s3://b/out", job_name="math-rft-1",
                                      session=_FixedSession({"bedrock": client}))
    with stub:
        handle.stop()
        assert "failureMessage: reward timeout" in handle.logs()
    stub.assert_no_pending_responses()


def test_bedrock_outputs_write_manifest_with_the_custom_model(moto_session, train_file, tmp_path):
    plan = bedrock.plan(spec_for(train_file, backend="bedrock", hyper={"global_batch_size": 128}))
    handle = bedrock.submit(plan, tmp_path, session=moto_session)
    job_id = handle.job_id.rsplit("/", 1)[-1]
    s3 = moto_session.client("s3")
    s3.put_object(Bucket="my-rft-bucket", Key=f"rft-workbench/output/model-customization-job-{job_id}/"
                  "training_artifacts/step_wise_training_metrics.csv", Body=b"step_number,train_reward_mean\n1,0.5\n")
    describe = moto_session.client("bedrock").get_model_customization_job(jobIdentifier=plan.job_name)
    client = boto3.client("bedrock", region_name=REGION)
    stub = Stubber(client)
    stub.add_response("get_model_customization_job",
                      {k: v for k, v in describe.items() if k != "ResponseMetadata"}
                      | {"status": "Completed", "validationDataConfig": {"validators": []}},
                      {"jobIdentifier": plan.job_name})
    handle._session = _FixedSession({"bedrock": client, "s3": s3})
    with stub:
        folder = handle.outputs()
    out = read_output(folder)
    assert out.checkpoint == describe["outputModelArn"]
    assert out.metrics["train_reward_mean"].tolist() == [0.5]


class _FixedSession:
    """Hands out pre-built (stubbed) clients: the Stubber sits on the client, the handle asks the session."""

    def __init__(self, clients):
        self.clients = clients

    def client(self, service, region_name=None, config=None):
        return self.clients[service]


# ------------------------------------------------------------------------------------------ helpers


def test_error_translation(creds):
    def boom(code):
        raise ClientError({"Error": {"Code": code, "Message": "m"}}, "Op")

    with pytest.raises(UserError, match="quota"), aws.aws_errors("creating", "sagemaker:CreateTrainingJob"):
        boom("ResourceLimitExceeded")
    with pytest.raises(UserError, match="invalid or expired"), aws.aws_errors("x", "p"):
        boom("ExpiredTokenException")
    with pytest.raises(ClientError), aws.aws_errors("x", "p"):
        boom("InternalFailure")  # not the user's doing: propagates unchanged


def test_arn_and_uri_forms():
    assert aws.check_lambda_arn("arn:aws:lambda:us-east-1:123456789012:function:f:prod", "r", "us-east-1") == []
    assert "not a Lambda function ARN" in aws.check_lambda_arn("arn:aws:lambda:us-east-1:1234:function:f", "r")[0]
    assert "deploy the reward in the job's region" in aws.check_lambda_arn(REWARD, "r", "us-west-2")[0]
    assert aws.check_s3_uri("s3://my-bucket/a/b.jsonl", "f", require_key=True) == []
    assert aws.check_s3_uri("s3://my-bucket", "f", require_key=True)[0].endswith("(s3://my-bucket/path/file.jsonl)")
    assert "bucket" in aws.check_s3_uri("s3://ab/x", "f")[0]
    assert aws.check_role_arn("arn:aws:iam::123456789012:role/path/R", "role") == []
    assert aws.unqualified("arn:aws:lambda:us-east-1:123456789012:function:f:3") == (
        "arn:aws:lambda:us-east-1:123456789012:function:f")


# ------------------------------------------------------------------------------------- reward probe


def _payload(data):
    from botocore.response import StreamingBody

    raw = json.dumps(data).encode()
    return StreamingBody(io.BytesIO(raw), len(raw))


class _MixedSession:
    """moto for every service except Lambda invoke (moto needs Docker for it): a Stubber-backed client."""

    def __init__(self, moto, lam):
        self.moto, self.lam = moto, lam

    def client(self, service, region_name=None, config=None):
        if service == "lambda":
            return self.lam
        return self.moto.client(service, region_name=region_name, config=config)

    def __getattr__(self, name):  # everything else (region, credentials, resources) is the moto session's
        return getattr(self.moto, name)


def test_reward_is_probed_before_the_job_is_created(moto_session, train_file, tmp_path, capsys):
    plan = sagemaker.plan(spec_for(train_file, aws={"probe_reward": True}))
    records = [json.loads(line) for line in train_file.read_text().splitlines()[:2]]
    reply = {"StatusCode": 200, "Payload": [{"id": "probe-0", "aggregate_reward_score": 1.0},
                                            {"id": "probe-1", "aggregate_reward_score": 0.0}]}
    # moto runs Lambda functions only in Docker: the invoke is answered at the botocore boundary instead.
    with aws_calls.recording(ALLOWED | {"lambda.Invoke": lambda p: reply | {"Payload": _payload(reply["Payload"])}}) \
            as rec:
        sagemaker.submit(plan, tmp_path, session=moto_session)
    [invoke] = rec.params("lambda.Invoke")
    assert invoke["FunctionName"] == REWARD and invoke["InvocationType"] == "RequestResponse"
    event = json.loads(invoke["Payload"])
    assert [e["id"] for e in event] == ["probe-0", "probe-1"]
    assert event[0]["messages"][-1] == {"role": "assistant", "content": records[0]["reference_answer"]}
    assert event[1]["messages"][-1] == {"role": "assistant", "content": ""}
    assert event[0]["reference_answer"] == "1"  # SageMaker variant: top level
    assert rec.ops().index("lambda.Invoke") < rec.ops().index("sagemaker.CreateTrainingJob")
    assert "reward probe ok" in capsys.readouterr().out


class _AnyEvent:
    """Stubber parameter matcher that runs assertions on the invoke payload."""

    def __init__(self, check):
        self.check = check

    def __eq__(self, other):
        return self.check({"Payload": other})

    def __repr__(self):
        return "<event checked by the test>"


@pytest.mark.parametrize("response, message", [
    ({"FunctionError": "Unhandled", "Payload": {"errorType": "KeyError", "errorMessage": "'answer'"}},
     "raised KeyError: 'answer'"),
    ({"Payload": [{"id": "probe-0", "aggregate_reward_score": 1.0}]}, "must return a list of 2 results"),
    ({"Payload": [{"id": "x", "aggregate_reward_score": 1.0}, {"id": "probe-1", "aggregate_reward_score": 0}]},
     "no result with id 'probe-0'"),
    ({"Payload": [{"id": "probe-0", "aggregate_reward_score": "1"}, {"id": "probe-1", "aggregate_reward_score": 0}]},
     "breaks the reward contract: aggregate_reward_score is str"),
])
def test_a_broken_reward_stops_the_submission(moto_session, train_file, tmp_path, response, message):
    plan = sagemaker.plan(spec_for(train_file, aws={"probe_reward": True}))
    lam = boto3.client("lambda", region_name=REGION)
    stub = Stubber(lam)
    stub.add_response("invoke", {"StatusCode": 200, **response, "Payload": _payload(response["Payload"])})
    with stub, pytest.raises(UserError, match=message):
        sagemaker.submit(plan, tmp_path, session=_MixedSession(moto_session, lam))
    assert moto_session.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


def test_probe_denied_names_lambda_invoke(creds, train_file):
    lam = boto3.client("lambda", region_name=REGION)
    stub = Stubber(lam)
    stub.add_client_error("invoke", "AccessDeniedException", "not allowed")
    with stub, pytest.raises(UserError, match="lambda:InvokeFunction"):
        aws.probe_reward(REWARD, str(train_file), "sagemaker", _FixedSession({"lambda": lam}), REGION)


def test_bedrock_probe_sends_the_metadata_variant(creds, train_file):
    lam = boto3.client("lambda", region_name=REGION)
    stub = Stubber(lam)
    seen = {}

    def capture(params):
        seen["event"] = json.loads(params["Payload"])
        return True

    stub.add_response("invoke", {"StatusCode": 200, "Payload": _payload([
        {"id": "probe-0", "aggregate_reward_score": 1}, {"id": "probe-1", "aggregate_reward_score": 0}])},
        {"FunctionName": REWARD, "InvocationType": "RequestResponse", "Payload": _AnyEvent(capture)})
    with stub:
        assert aws.probe_reward(REWARD, str(train_file), "bedrock", _FixedSession({"lambda": lam}), REGION) == [1.0, 0.0]
    assert seen["event"][0]["metadata"]["reference_answer"] == "1" and "reference_answer" not in seen["event"][0]
