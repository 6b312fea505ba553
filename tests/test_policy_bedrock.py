"""Bedrock Converse generator against botocore's Stubber: request shape, parsing, throttling retries, errors."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from nbkit.errors import UserError
from nbkit.policy import Completion, load_generator
from nbkit.policy.bedrock import BedrockGenerator

MODEL = "amazon.nova-2-lite-v1:0"
PROMPT = [{"role": "system", "content": "Reply with the final answer only."},
          {"role": "user", "content": [{"type": "text", "text": "What is 2 + 2?"}]}]
EXPECTED_REQUEST = {
    "modelId": MODEL,
    "messages": [{"role": "user", "content": [{"text": "What is 2 + 2?"}]}],
    "system": [{"text": "Reply with the final answer only."}],
    "inferenceConfig": {"maxTokens": 16, "temperature": 0.7},
}


def response(text: str, stop: str = "end_turn", tokens: int = 3) -> dict:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": stop,
        "usage": {"inputTokens": 12, "outputTokens": tokens, "totalTokens": 12 + tokens},
        "metrics": {"latencyMs": 42},
    }


@pytest.fixture
def stubbed():
    client = boto3.client("bedrock-runtime", region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def generator(client, **kw) -> tuple[BedrockGenerator, list[float]]:
    sleeps: list[float] = []
    gen = BedrockGenerator(MODEL, client=client, workers=1, sleep=sleeps.append, progress=False, **kw)
    return gen, sleeps


def test_request_shape_and_parsing_n_samples_in_order(stubbed):
    client, stubber = stubbed
    stubber.add_response("converse", response("4", tokens=1), EXPECTED_REQUEST)
    stubber.add_response("converse", response("The answer is 4", stop="max_tokens", tokens=16), EXPECTED_REQUEST)
    gen, sleeps = generator(client)
    out = gen.generate([PROMPT], n=2, max_new_tokens=16, temperature=0.7, seed=0)
    assert out == [[Completion("4", 1, "stop"), Completion("The answer is 4", 16, "length")]]
    assert sleeps == []


def test_throttling_is_retried_with_growing_backoff_then_succeeds(stubbed):
    client, stubber = stubbed
    for _ in range(2):
        stubber.add_client_error("converse", service_error_code="ThrottlingException",
                                 service_message="Too many requests", http_status_code=429,
                                 expected_params=EXPECTED_REQUEST)
    stubber.add_response("converse", response("4", tokens=1), EXPECTED_REQUEST)
    gen, sleeps = generator(client, base_delay_s=1.0, max_delay_s=30.0)
    out = gen.generate([PROMPT], n=1, max_new_tokens=16, temperature=0.7, seed=3)
    assert out == [[Completion("4", 1, "stop")]]
    assert len(sleeps) == 2 and gen.retries_used == 2
    # exponential: attempt 1 waits base * 2 (times the same jitter factor in [0.5, 1.5))
    assert sleeps[1] == pytest.approx(2 * sleeps[0])
    assert 0.5 <= sleeps[0] < 1.5


def test_retries_exhausted_keeps_the_sample_as_an_error_completion(stubbed):
    client, stubber = stubbed
    for _ in range(3):
        stubber.add_client_error("converse", service_error_code="ServiceUnavailableException",
                                 service_message="busy", http_status_code=503)
    stubber.add_response("converse", response("4", tokens=1))
    gen, sleeps = generator(client, max_retries=2)
    out = gen.generate([PROMPT, PROMPT], n=1, max_new_tokens=16, temperature=0.7, seed=0)
    assert out == [[Completion("", 0, "error")], [Completion("4", 1, "stop")]]
    assert len(sleeps) == 2
    assert gen.failures == ["ServiceUnavailableException: busy"]
    assert gen.describe()["failed_samples"] == 1


def test_access_denied_stops_at_once_with_advice(stubbed):
    client, stubber = stubbed
    stubber.add_client_error("converse", service_error_code="AccessDeniedException",
                             service_message="not authorized", http_status_code=403)
    gen, sleeps = generator(client)
    with pytest.raises(UserError, match="AccessDeniedException.*bedrock:InvokeModel"):
        gen.generate([PROMPT], n=1, max_new_tokens=16, temperature=0.7, seed=0)
    assert sleeps == []


def test_greedy_and_top_p_reach_the_request(stubbed):
    client, stubber = stubbed
    expected = {**EXPECTED_REQUEST, "inferenceConfig": {"maxTokens": 8, "temperature": 0.0, "topP": 0.9}}
    stubber.add_response("converse", response("4"), expected)
    gen, _ = generator(client, top_p=0.9)
    assert gen.generate([PROMPT], n=1, max_new_tokens=8, temperature=0.0, seed=0)[0][0].text == "4"


def test_threads_keep_the_order_of_samples(stubbed):
    client, stubber = stubbed
    for i in range(6):
        stubber.add_response("converse", response("same", tokens=i + 1))
    gen = BedrockGenerator(MODEL, client=client, workers=3, sleep=lambda s: None, progress=False)
    out = gen.generate([PROMPT, PROMPT, PROMPT], n=2, max_new_tokens=16, temperature=1.0, seed=0)
    assert [len(row) for row in out] == [2, 2, 2]
    assert sorted(c.num_tokens for row in out for c in row) == [1, 2, 3, 4, 5, 6]


def test_unknown_stop_reason_is_an_error_finish():
    from nbkit.policy.bedrock import completion_from_response

    assert completion_from_response(response("", stop="content_filtered", tokens=0)).finish_reason == "error"


def test_conversation_must_start_with_user(stubbed):
    client, _ = stubbed
    gen, _ = generator(client)
    with pytest.raises(UserError, match="must start with a user message"):
        gen.generate([[{"role": "assistant", "content": "hi"}]], n=1, max_new_tokens=4, temperature=0, seed=0)


def test_load_generator_dispatches_bedrock_specs(stubbed):
    client, _ = stubbed
    gen = load_generator(f"bedrock:{MODEL}", client=client)
    assert isinstance(gen, BedrockGenerator) and gen.model_id == MODEL
    with pytest.raises(UserError, match="needs a model id"):
        load_generator("bedrock:", client=client)
