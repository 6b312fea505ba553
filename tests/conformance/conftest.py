"""Fixtures of the conformance suite: offline AWS (moto) with the recorder of tests/aws_calls.py."""

from __future__ import annotations

import aws_calls  # registers the recording handlers before any client exists
import boto3
import pytest
from aws_calls import REGION, ROLE  # noqa: F401  (the tests import ROLE from here)
from moto import mock_aws

REWARD = "arn:aws:lambda:us-east-1:123456789012:function:SageMaker-math-reward"


@pytest.fixture
def moto_session(creds):
    """moto account 123456789012 with the bucket and a SageMaker execution role (trusted by SageMaker)."""
    with mock_aws():
        sess = boto3.Session(region_name=REGION)
        aws_calls.create_account(sess)
        yield sess


@pytest.fixture
def no_telemetry(monkeypatch):
    """Fail if the sagemaker SDK tries to send its usage telemetry (nbkit switches it off)."""
    from sagemaker.core.telemetry import telemetry_logging

    sent = []
    monkeypatch.setattr(telemetry_logging, "_send_telemetry_request", lambda *a, **k: sent.append(a))
    yield sent
    assert sent == [], "the sagemaker SDK sent usage telemetry"
