"""The Nova RFT reward contract (reference/nova-rft.md section 2): building event samples and judging results.

`check_result` is the harness's hot path (it runs on every sample of every GRPO step), so it is plain Python
with a fast path for the common well-formed result; `nbkit.rewards.models` holds the equivalent pydantic
models for documentation, JSON schema and validating files, and a test keeps the two in agreement.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from nbkit.errors import UserError

STATUSES = ("ok", "exception", "timeout", "crash", "invalid_format", "missing_result", "non_finite")
METRIC_TYPES = ("Reward", "Metric")
VARIANTS = ("sagemaker", "bedrock")


class ContractError(Exception):
    """A result that breaks the contract; `status` is invalid_format or non_finite."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def _number_problem(value: Any, where: str) -> ContractError | None:
    """Why a score or metric value is unusable, or None. Bools and numeric strings are not numbers in JSON
    terms; numpy float32 cannot be serialized by the Lambda runtime."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = type(value).__name__
        hint = " (numpy float32 is not JSON serializable: return float(x))" if kind == "float32" else ""
        return ContractError("invalid_format", f"{where} is {kind} {value!r:.40}, expected a number{hint}")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int no float can hold (JSON readers turn it into infinity or fail)
        return ContractError("non_finite", f"{where} is an integer of {int(value).bit_length()} bits, beyond the "
                                           "largest float")
    if not finite:
        return ContractError("non_finite", f"{where} is {value!r}")
    return None


def check_metrics(metrics_list: Any) -> dict[str, float]:
    """`metrics_list` as name -> value, or ContractError saying which entry is wrong and how."""
    if not isinstance(metrics_list, list):
        raise ContractError("invalid_format", f"metrics_list is {type(metrics_list).__name__}, expected a list")
    out: dict[str, float] = {}
    for i, entry in enumerate(metrics_list):
        if not isinstance(entry, dict):
            raise ContractError("invalid_format", f"metrics_list[{i}] is {type(entry).__name__}, expected an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise ContractError("invalid_format", f"metrics_list[{i}].name is {name!r}, expected a non-empty string")
        if entry.get("type") not in METRIC_TYPES:
            raise ContractError(
                "invalid_format", f"metrics_list[{i}] ({name}).type is {entry.get('type')!r}, expected 'Reward' or 'Metric'"
            )
        value: Any = entry.get("value")  # any JSON value until _number_problem has checked it
        problem = _number_problem(value, f"metrics_list[{i}] ({name}).value")
        if problem:
            raise problem
        out[name] = float(value)
    return out


def check_result(result: Any) -> tuple[float, dict[str, float]]:
    """(score, metrics) of one result object, or ContractError (the id is matched by the caller)."""
    if not isinstance(result, dict):
        raise ContractError("invalid_format", f"result is {type(result).__name__}, expected an object")
    if "aggregate_reward_score" not in result:
        keys = ", ".join(sorted(map(str, result))) or "none"
        raise ContractError("invalid_format", f"result has no aggregate_reward_score (keys: {keys})")
    score = result["aggregate_reward_score"]
    problem = _number_problem(score, "aggregate_reward_score")
    if problem:
        raise problem
    metrics = result.get("metrics_list")
    return float(score), ({} if metrics is None else check_metrics(metrics))


def envelope_hint(out: Any) -> str:
    """Extra advice when a handler returned the HTTP envelope used by open-weight models on SageMaker."""
    if isinstance(out, dict) and {"statusCode", "body"} <= set(out):
        return "; it looks like the {'statusCode', 'body'} envelope: Nova expects the list of results itself"
    return ""


# ----------------------------------------------------------------------------------------- samples

_RECORD_KEYS = ("id", "messages", "reference_answer")


def record_id(record: dict) -> str:
    """A record's id, or a stable one derived from its content when it has none (ids are optional in data)."""
    rid = record.get("id")
    if isinstance(rid, str) and rid.strip():
        return rid
    if isinstance(rid, int) and not isinstance(rid, bool):
        return str(rid)
    digest = hashlib.sha1(json.dumps(record.get("messages"), sort_keys=True, default=str).encode()).hexdigest()
    return f"record-{digest[:12]}"


def make_sample(record: dict, response: str | dict, variant: str = "sagemaker",
                sample_id: str | None = None) -> dict:
    """One reward-event sample: the record's messages plus the generation as the last (assistant) message.

    SageMaker puts `reference_answer` and the record's other keys (domain, tools, ...) at the top level;
    Bedrock puts them under `metadata`. `response` may be a message dict to carry `tool_calls`.
    """
    if variant not in VARIANTS:
        raise UserError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not isinstance(record, dict):
        raise UserError(f"a data record is a dict in the Nova RFT format, got {type(record).__name__}")
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise UserError(f"record {record.get('id', '(no id)')!r} has no 'messages' list: it cannot be scored")
    if isinstance(response, dict):
        turn = {k: v for k, v in response.items() if k != "role"}
        turn = {"role": "assistant", "content": turn.pop("content", "") or "", **turn}
    else:
        turn = {"role": "assistant", "content": "" if response is None else str(response)}
    sample: dict[str, Any] = {
        "id": str(sample_id) if sample_id is not None else record_id(record),
        "messages": [dict(m) if isinstance(m, dict) else m for m in messages] + [turn],
    }
    extra = {k: v for k, v in record.items() if k not in _RECORD_KEYS}
    if variant == "bedrock":
        metadata = dict(record["metadata"]) if isinstance(record.get("metadata"), dict) else {}
        metadata.update({k: v for k, v in extra.items() if k != "metadata"})
        if "reference_answer" in record:
            metadata["reference_answer"] = record["reference_answer"]
        sample["metadata"] = metadata
    else:
        if "reference_answer" in record:
            sample["reference_answer"] = record["reference_answer"]
        sample.update(extra)
    return sample


def strip_response(sample: dict) -> dict:
    """A data record back from an event sample: the trailing generation dropped, metadata lifted to the top."""
    messages = list(sample.get("messages") or [])
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") in ("assistant", "nova_assistant"):
        messages = messages[:-1]
    record = {k: v for k, v in sample.items() if k not in ("messages", "metadata")}
    record["messages"] = messages
    if isinstance(sample.get("metadata"), dict):
        for key, value in sample["metadata"].items():
            record.setdefault(key, value)
    return record
