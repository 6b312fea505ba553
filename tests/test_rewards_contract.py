"""Event samples for both variants, result checks, and the typed models agreeing with the fast checks."""

from __future__ import annotations

import copy

import pytest
from pydantic import ValidationError

from nbkit.errors import UserError
from nbkit.rewards import make_sample
from nbkit.rewards.contract import ContractError, check_result, record_id, strip_response
from nbkit.rewards.models import BedrockSample, RewardResult, SageMakerSample, sample_model

RECORD = {"id": "math-0001",
          "messages": [{"role": "system", "content": "Answer with the number only."},
                       {"role": "user", "content": "Solve for x: 3x + 2 = 11"}],
          "reference_answer": {"solution": "x = 3"}, "domain": "algebra", "difficulty_level": "easy"}


def test_sagemaker_sample_keeps_reference_and_extra_keys_at_top_level():
    before = copy.deepcopy(RECORD)
    sample = make_sample(RECORD, "x = 3")
    assert sample == {
        "id": "math-0001",
        "messages": RECORD["messages"] + [{"role": "assistant", "content": "x = 3"}],
        "reference_answer": {"solution": "x = 3"}, "domain": "algebra", "difficulty_level": "easy",
    }
    assert before == RECORD, "the record is not modified"
    sample["messages"][0]["content"] = "changed"
    assert RECORD["messages"][0]["content"] == "Answer with the number only."
    SageMakerSample.model_validate(sample)


def test_bedrock_sample_moves_reference_and_extras_under_metadata():
    sample = make_sample(RECORD, "3", variant="bedrock", sample_id="math-0001#2")
    assert sample["id"] == "math-0001#2"
    assert set(sample) == {"id", "messages", "metadata"}
    assert sample["metadata"] == {"reference_answer": {"solution": "x = 3"}, "domain": "algebra",
                                  "difficulty_level": "easy"}
    assert sample_model(sample) is BedrockSample
    BedrockSample.model_validate(sample)


def test_response_as_a_message_carries_tool_calls():
    call = [{"type": "function", "function": {"name": "DiceRollAPI", "arguments": "{}"}}]
    sample = make_sample(RECORD, {"role": "user", "content": None, "tool_calls": call})
    assert sample["messages"][-1] == {"role": "assistant", "content": "", "tool_calls": call}


def test_record_without_id_gets_a_stable_content_id():
    record = {k: v for k, v in RECORD.items() if k != "id"}
    assert record_id(record) == record_id(copy.deepcopy(record))
    assert record_id(record).startswith("record-")
    assert make_sample(record, "3")["id"] == record_id(record)


def test_bad_records_and_variants_are_user_errors():
    with pytest.raises(UserError, match="variant"):
        make_sample(RECORD, "3", variant="vertex")
    with pytest.raises(UserError, match="no 'messages'"):
        make_sample({"id": "x"}, "3")


def test_strip_response_undoes_make_sample():
    for variant in ("sagemaker", "bedrock"):
        record = strip_response(make_sample(RECORD, "3", variant=variant))
        assert record["messages"] == RECORD["messages"]
        assert record["reference_answer"] == RECORD["reference_answer"] and record["domain"] == "algebra"


CASES = [
    ({"id": "a", "aggregate_reward_score": 0.5}, None),
    ({"id": "a", "aggregate_reward_score": 1, "metrics_list": [{"name": "m", "value": 2, "type": "Metric"}]}, None),
    ({"id": "a", "aggregate_reward_score": 0.5, "metrics_list": None}, None),
    ({"id": "a", "aggregate_reward_score": float("nan")}, "non_finite"),
    ({"id": "a", "aggregate_reward_score": float("-inf")}, "non_finite"),
    ({"id": "a", "aggregate_reward_score": "0.5"}, "invalid_format"),
    ({"id": "a", "aggregate_reward_score": True}, "invalid_format"),
    ({"id": "a"}, "invalid_format"),
    ({"id": "a", "aggregate_reward_score": 1.0, "metrics_list": [{"name": "m", "value": 1}]}, "invalid_format"),
    ({"id": "a", "aggregate_reward_score": 1.0, "metrics_list": [{"name": "", "value": 1, "type": "Reward"}]},
     "invalid_format"),
    ({"id": "a", "aggregate_reward_score": 1.0, "metrics_list": [{"name": "m", "value": None, "type": "Reward"}]},
     "invalid_format"),
]


@pytest.mark.parametrize("result, status", CASES)
def test_fast_check_agrees_with_the_typed_model(result, status):
    try:
        check_result(result)
        fast = None
    except ContractError as exc:
        fast = exc.status
    assert fast == status
    if status is None:
        RewardResult.model_validate(result)
    else:
        with pytest.raises(ValidationError):
            RewardResult.model_validate(result)


def test_numpy_float32_gets_a_hint():
    np = pytest.importorskip("numpy")
    with pytest.raises(ContractError, match=r"float32 is not JSON serializable: return float\(x\)"):
        check_result({"id": "a", "aggregate_reward_score": np.float32(0.5)})
    assert check_result({"id": "a", "aggregate_reward_score": np.float64(0.5)})[0] == 0.5


def test_event_model_requires_the_generation_last():
    with pytest.raises(ValidationError, match="last message must be the generation"):
        SageMakerSample.model_validate({"id": "a", "messages": [{"role": "user", "content": "hi"}]})
