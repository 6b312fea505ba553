"""Fixtures of the conformance suite: offline AWS (moto) with the recorder of tests/aws_calls.py."""

from __future__ import annotations

import json

import aws_calls  # noqa: F401  (registers the recording handlers before any client exists)
import boto3
import pytest
from moto import mock_aws

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRFT"
REWARD = "arn:aws:lambda:us-east-1:123456789012:function:SageMaker-math-reward"


@pytest.fixture
def creds(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def moto_session(creds):
    """moto account 123456789012 with the bucket and a SageMaker execution role (trusted by SageMaker)."""
    with mock_aws():
        sess = boto3.Session(region_name=REGION)
        sess.client("s3").create_bucket(Bucket="my-rft-bucket")
        trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                         "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
        sess.client("iam").create_role(RoleName="SageMakerRFT", AssumeRolePolicyDocument=json.dumps(trust))
        yield sess


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": f"{i}+1?"}],
                                        "reference_answer": str(i + 1)}) + "\n" for i in range(150)))
    return path


@pytest.fixture
def no_telemetry(monkeypatch):
    """Fail if the sagemaker SDK tries to send its usage telemetry (nbkit switches it off)."""
    from sagemaker.core.telemetry import telemetry_logging

    sent = []
    monkeypatch.setattr(telemetry_logging, "_send_telemetry_request", lambda *a, **k: sent.append(a))
    yield sent
    assert sent == [], "the sagemaker SDK sent usage telemetry"
