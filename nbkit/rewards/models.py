"""Typed models of the reward Lambda's event and result (reference/nova-rft.md section 2).

Used to validate event files (`nbkit reward check --events`) with line-precise messages and to document the
contract as JSON schema. The harness itself uses the equivalent fast checks in `contract.py`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "text"
    text: str = ""


class Message(BaseModel):
    """One chat turn; the service appends the generation as the last one (role assistant or nova_assistant)."""

    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "nova_assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[dict[str, Any]] | None = None


class SageMakerSample(BaseModel):
    """SMTJ / SMHP / RFT-eval sample: `reference_answer` and the record's extra keys at the top level."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    reference_answer: str | dict[str, Any] | list[Any] | int | float | None = None

    @model_validator(mode="after")
    def _ends_with_generation(self) -> SageMakerSample:
        if self.messages[-1].role not in ("assistant", "nova_assistant"):
            raise ValueError(
                f"the last message must be the generation (role assistant), got role {self.messages[-1].role!r}"
            )
        return self


class BedrockSample(SageMakerSample):
    """Bedrock sample: `reference_answer` and the extra dataset keys sit under `metadata`."""

    metadata: dict[str, Any] = Field(default_factory=dict)


class MetricEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    value: float
    type: Literal["Reward", "Metric"]

    @field_validator("value", mode="before")
    @classmethod
    def _strict_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        return value


class RewardResult(BaseModel):
    """One result per sample, same id; `aggregate_reward_score` is the training signal (finite number)."""

    model_config = ConfigDict(extra="allow")
    id: str
    aggregate_reward_score: float
    metrics_list: list[MetricEntry] | None = None

    @field_validator("aggregate_reward_score", mode="before")
    @classmethod
    def _finite_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"must be finite, got {value!r}")
        return value


def sample_model(sample: dict[str, Any]) -> type[SageMakerSample]:
    """The variant a sample is written in: Bedrock when it carries `metadata`, SageMaker otherwise."""
    return BedrockSample if isinstance(sample, dict) and "metadata" in sample else SageMakerSample
