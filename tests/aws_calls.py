"""Record every AWS call at the botocore boundary, and answer the ones moto does not implement.

Why not a Stubber per client: the sagemaker SDK builds its own clients (some at import time, e.g.
sagemaker.ai_registry.air_hub.AIRHub), so there is no client to attach a Stubber to. This registers two
botocore built-in handlers, the mechanism Stubber and moto use themselves, so every client created after this
module is imported reports here:
- `before-parameter-build` records (service.Operation, API parameters) exactly as the caller passed them;
- `before-call` answers an operation listed in `answers` with that parsed response, or with what a
  callable makes of the call's API parameters (the request is never sent, as with Stubber). Anything else goes wherever it would go: to moto inside `mock_aws()`.
Outside `recording()` both handlers do nothing. With `strict=True` an unanswered call fails the test instead
of leaving the machine, for runs without moto.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import botocore.handlers
from botocore.awsrequest import AWSResponse


class Recorder:
    def __init__(self, answers: dict[str, Any], strict: bool) -> None:
        self.answers = answers
        self.strict = strict
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    def params(self, op: str) -> list[dict[str, Any]]:
        """The parameters of every call of `op` ("sagemaker.CreateTrainingJob"), in order."""
        return [params for name, params in self.calls if name == op]


_active: Recorder | None = None


def _op(model: Any) -> str:
    return f"{model.service_model.service_name}.{model.name}"


def _snapshot(value: Any) -> Any:
    """A copy of the parameters; streams (an upload's Body) are kept as they are."""
    if isinstance(value, dict):
        return {k: _snapshot(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snapshot(v) for v in value]
    try:
        return copy.deepcopy(value)
    except TypeError:
        return value


def _record(params: dict[str, Any], model: Any, **_: Any) -> None:
    if _active is not None:
        _active.calls.append((_op(model), _snapshot(params)))


def _answer(model: Any, params: dict[str, Any], **_: Any) -> Any:
    if _active is None:
        return None
    op = _op(model)
    if op in _active.answers:
        answer = _active.answers[op]
        api_params = _active.params(op)[-1]  # recorded by _record just before
        parsed = answer(api_params) if callable(answer) else copy.deepcopy(answer)
        return AWSResponse(None, 200, {}, None), parsed
    if _active.strict:
        raise AssertionError(f"unexpected AWS call {op} (no answer for it and strict=True)")
    return None


botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _record))
botocore.handlers.BUILTIN_HANDLERS.append(("before-call", _answer))


@contextmanager
def recording(answers: dict[str, Any | Callable[[dict], Any]] | None = None,
              strict: bool = False) -> Iterator[Recorder]:
    """Record (and answer) AWS calls inside the block; boto3's default session is renewed so clients the
    code creates from it carry the handlers."""
    import boto3

    global _active
    recorder = Recorder(answers or {}, strict)
    boto3.DEFAULT_SESSION = None
    _active = recorder
    try:
        yield recorder
    finally:
        _active = None


# moto 5.2.5 does not implement iam:SimulatePrincipalPolicy, which the sagemaker SDK calls to check the execution
# role (sagemaker-core role validation; model_trainer.py _resolve_staging_bucket): answer "allowed".
SIMULATE_ALLOWED = {"iam.SimulatePrincipalPolicy": lambda params: {"EvaluationResults": [
    {"EvalActionName": a, "EvalDecision": "allowed", "EvalResourceName": "*"} for a in params["ActionNames"]]}}


# ------------------------------------------------------------------- the offline account the tests share

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/SageMakerRFT"
BUCKET = "my-rft-bucket"


def fake_credentials(monkeypatch: Any) -> None:
    """moto's test credentials, and no profile of the machine's that a client could pick up."""
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def create_account(session: Any) -> None:
    """Inside mock_aws(): the bucket and the SageMaker execution role (trusted by SageMaker) the specs name."""
    session.client("s3").create_bucket(Bucket=BUCKET)
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"Service": "sagemaker.amazonaws.com"}}]}
    session.client("iam").create_role(RoleName=ROLE.rsplit("/", 1)[1], AssumeRolePolicyDocument=json.dumps(trust))


def write_train(path: Path, n: int = 150) -> Path:
    """n sample math records in the Nova RFT format (above the documented minimum of 100)."""
    path.write_text("".join(json.dumps({"id": f"q{i}", "messages": [{"role": "user", "content": f"{i}+1?"}],
                                        "reference_answer": str(i + 1)}) + "\n" for i in range(n)))
    return path
