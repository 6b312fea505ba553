"""The Nova RFT record: constants, typed models and the text helpers every other data module shares.

Records travel between stages as plain dicts (the JSONL format is the interface); the typed models here give
notebooks and users attribute access and a schema once a dict has passed `nbkit.data.validate`
(`parse_record` checks a dict and returns its `RftRecord`).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nbkit.plain import content_text, fold_text

PROFILES = ("sagemaker", "bedrock")
Profile = Literal["sagemaker", "bedrock"]

# Roles each profile accepts. The SageMaker SDK also takes `tool` and `developer` (read as system);
# AWS's stricter Bedrock checker takes only these three.
ROLES: dict[str, frozenset[str]] = {
    "sagemaker": frozenset({"system", "user", "assistant", "tool", "developer"}),
    "bedrock": frozenset({"system", "user", "assistant"}),
}
SYSTEM_ROLES = frozenset({"system", "developer"})
MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id"})
KNOWN_FIELDS = frozenset({"id", "messages", "reference_answer", "tools"})
# Markers Bedrock's own validator refuses inside content (matched case-insensitively).
RESERVED_MARKERS = ("System:", "User:", "Bot:", "Assistant:", "Thought:", "[EOS]", "<image>", "<video>", "<unk>")
RESERVED_RE = re.compile("|".join(re.escape(m) for m in RESERVED_MARKERS), re.IGNORECASE)

# Documented sizes: start with >= 100 training and >= 100 evaluation examples; Bedrock takes 100..20,000.
MIN_TRAIN = 100
MIN_EVAL = 100
BEDROCK_MAX_PROMPTS = 20_000


class TextPart(BaseModel):
    """One element of list-form content (the form the Nova evaluation docs use)."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text"]
    text: str = Field(min_length=1)


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    arguments: str | dict[str, Any] = ""


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[TextPart] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ToolParameters(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["object"]
    properties: dict[str, dict[str, Any]]
    required: list[str] = []


class ToolFunction(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    parameters: ToolParameters


class Tool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["function"]
    function: ToolFunction


class RftRecord(BaseModel):
    """A typed view of one valid record; extra top-level keys stay as metadata for the reward function."""

    model_config = ConfigDict(extra="allow")
    id: str | None = None
    messages: list[Message] = Field(min_length=1)
    reference_answer: str | dict[str, Any] | None = None
    tools: list[Tool] = []

    @property
    def metadata(self) -> dict[str, Any]:
        """The extra keys (domain, difficulty_level, ...) that reach the reward function untouched."""
        return dict(self.model_extra or {})


def prompt_text(record: dict[str, Any]) -> str:
    """The last user turn: what a person reading results calls "the prompt"."""
    for message in reversed(record.get("messages") or []):
        if message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def system_text(record: dict[str, Any]) -> str:
    """The system (or developer) prompt of a record, "" when it has none."""
    messages = record.get("messages") or []
    if messages and messages[0].get("role") in SYSTEM_ROLES:
        return content_text(messages[0].get("content"))
    return ""


def full_prompt_text(record: dict[str, Any]) -> str:
    """Every message's text joined: what the model reads, for length counts."""
    return "\n".join(content_text(m.get("content")) for m in record.get("messages") or [])


def prompt_key(record: dict[str, Any]) -> str:
    """Identity of a prompt for duplicate, conflict and leakage checks: every turn with its role, normalized.

    The system prompt is part of the key: the same question under a different instruction is a different
    prompt to the model.
    """
    return "\x1e".join(
        f"{m.get('role')}\x1f{fold_text(content_text(m.get('content')))}" for m in record.get("messages") or []
    )


def reference_key(record: dict[str, Any]) -> str:
    """Canonical JSON of the reference answer, so {"a":1,"b":2} and {"b":2,"a":1} compare equal."""
    return json.dumps(record.get("reference_answer"), sort_keys=True, ensure_ascii=False)
